"""Real data: ``medfm finetune`` (LoRA) run twice, in processes with other string hashes, writes the same files.

The determinism audit's runs (pretrain SimCLR/MoCo/SwAV/graph matching/CLIP, finetune full/LoRA, segment 2D/3D/
text-conditioned, vqa, fuse; ``PYTHONHASHSEED`` 1 and 2) found one file that differed: a LoRA adapter's
``adapter_config.json`` (``target_modules`` in hash order). This run covers it on BreastMNIST.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import logged_rows

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_lora_finetune_writes_the_same_files_under_other_string_hashes(tmp_path, real_data_root):
    """Every weight file, ``adapter_config.json`` and ``metrics.jsonl`` (its time fields aside) of two runs match."""
    import json

    from safetensors.torch import load_file

    recipe = yaml.safe_load((REPO / "finetune" / "lora_resnet18_pneumoniamnist.yaml").read_text())
    recipe["data"]["dataset"] = "breastmnist"
    recipe["encoder"]["name"] = "resnet_test"
    recipe["train"].update(epochs=1, batch_size=64, log_every=1, num_threads=1)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    procs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
               "MEDFM_DATA": str(real_data_root)}
        procs.append(subprocess.Popen([sys.executable, "-m", "medfm.cli", "finetune", str(tmp_path / "r.yaml"),
                                       "--output", str(tmp_path / seed)], env=env, cwd=str(REPO),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-2000:]
    one, two = tmp_path / "1", tmp_path / "2"
    weights = sorted(p.relative_to(one) for p in one.rglob("*.safetensors"))
    assert len(weights) >= 3
    for rel in weights:
        a, b = load_file(str(one / rel)), load_file(str(two / rel))
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), rel
    for name in ("adapter", "checkpoint"):
        cfg = [json.loads((run / name / "adapter_config.json").read_text()) for run in (one, two)]
        assert cfg[0]["target_modules"] == cfg[1]["target_modules"] == sorted(cfg[0]["target_modules"])

    assert logged_rows(one / "metrics.jsonl") == logged_rows(two / "metrics.jsonl")
