"""Same seed, same result: what a run writes must not depend on the process's string hashes (``PYTHONHASHSEED``).

The runs of the determinism audit (``medfm pretrain``/``finetune``/``segment``/``vqa``/``fuse`` twice each, with
``PYTHONHASHSEED=1`` and ``=2``) wrote identical weights and metrics; the one file that differed was a LoRA
adapter's ``adapter_config.json``, whose ``target_modules`` peft writes from a set, in hash order.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.lora import LoraSettings, apply_lora, save_adapter

REPO = Path(__file__).resolve().parents[1]

#: saves a LoRA adapter of a tiny classifier into argv[1] (its base checkpoint beside it)
_SAVE_ADAPTER = """
import sys
from pathlib import Path
import torch
import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.lora import LoraSettings, apply_lora, save_adapter
out = Path(sys.argv[1])
torch.manual_seed(0)
model = ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2)
medfm.save_pretrained(model, out / "base")
save_adapter(apply_lora(model, LoraSettings(rank=2, alpha=4)), out / "adapter", str(out / "base"))
"""


def _adapter_config(path: Path) -> dict:
    cfg = json.loads((path / "adapter" / "adapter_config.json").read_text())
    cfg.pop("base_model_name_or_path")  # the base's folder: each process writes its own
    return cfg


def test_adapter_config_is_the_same_under_other_string_hashes(tmp_path):
    """Two processes with ``PYTHONHASHSEED`` 1 and 2 write the same ``adapter_config.json`` (its base folder aside):
    ``target_modules`` in sorted order. Before, peft wrote the set in hash order, e.g. ``layer1.0.conv1``, ``conv1``,
    ... under seed 1 and ``layer3.0.conv2``, ``layer1.0.conv2``, ... under seed 2."""
    procs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        procs.append(subprocess.Popen([sys.executable, "-c", _SAVE_ADAPTER, str(tmp_path / seed)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out
    first, second = _adapter_config(tmp_path / "1"), _adapter_config(tmp_path / "2")
    assert first == second
    assert len(first["target_modules"]) > 3
    assert first["target_modules"] == sorted(first["target_modules"])


def test_saving_leaves_the_live_config_a_set(tmp_path):
    """Guard: the sorted list is only what is written; the model's peft config keeps peft's own set afterwards
    (peft's later calls, e.g. a merge, see what they built)."""
    model = ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2)
    base = medfm.save_pretrained(model, tmp_path / "base")
    peft_model = apply_lora(model, LoraSettings(rank=2, alpha=4))
    before = peft_model.peft_config["default"].target_modules
    save_adapter(peft_model, tmp_path / "adapter", str(base))
    assert isinstance(before, set)
    assert peft_model.peft_config["default"].target_modules == before
    assert isinstance(peft_model.peft_config["default"].target_modules, set)
