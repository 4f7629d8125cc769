"""``medfm finetune --resume`` with another ``--init`` is refused before the data set is read.

Before, :func:`medfm.training.runs.run_finetune` loaded the training split (md5 check and
decompression: seconds to minutes for the larger MedMNIST files) before it compared ``--init``
with the run's ``init.json``, so a missing data root hid the init error behind a data error and a
present one made the user wait for it. The segmentation and VQA runners already checked first
(``tests/training/test_resume_init.py``).
"""
from __future__ import annotations

import re

import pytest

import medfm.training.runs as runs
from medfm.config import ConfigError, dump_yaml, from_dict
from medfm.data.errors import MedFMDataError
from medfm.training.recipes import FinetuneRecipe
from medfm.training.resume import record_init
from tests.conftest import cli_error

FINETUNE = {"data": {"dataset": "pneumoniamnist", "verify_md5": False, "val_split": None},
            "encoder": {"name": "resnet_test"}, "mode": "full", "augment": None,
            "train": {"epochs": 1, "batch_size": 8, "precision": "fp32"}}


def _resumable_run(tmp_path):
    """A run folder started with ``--init <tmp>/A``: a training state, config.yaml, init.json."""
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "trainer_state.json").write_text("{}")
    (run / "config.yaml").write_text(dump_yaml(from_dict(FinetuneRecipe, FINETUNE)))
    record_init(run, str(tmp_path / "A"), resume=False)
    (tmp_path / "A").mkdir()  # the init exists (its weights are only read after the data)
    (tmp_path / "A" / "config.json").write_text("{}")
    return run


def test_another_init_on_resume_is_refused_without_reading_data(tmp_path, monkeypatch):
    run = _resumable_run(tmp_path)
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    recipe = from_dict(FinetuneRecipe, FINETUNE)
    loads = []
    real_load = runs._load
    monkeypatch.setattr(runs, "_load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    for other, shown in [(str(tmp_path / "B"), f"--init {tmp_path.resolve() / 'B'}"), (None, "no --init")]:
        with pytest.raises(ConfigError, match=re.escape(f"this resume has {shown};")):
            runs.run_finetune(recipe, run, init=other, data_root=str(tmp_path / "nodata"), resume=True)
    assert loads == [] and {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files
    with pytest.raises(MedFMDataError, match="not found at"):  # the same init passes; the missing data is read next
        runs.run_finetune(recipe, run, init=str(tmp_path / "." / "A"), data_root=str(tmp_path / "nodata"), resume=True)
    assert len(loads) == 1


def test_cli_names_the_init_mismatch_not_the_missing_data(tmp_path, capsys):
    run = _resumable_run(tmp_path)
    (tmp_path / "empty").mkdir()  # a data root without medmnist/pneumoniamnist.npz (the CLI refuses a missing root)
    (tmp_path / "B").mkdir()  # an existing checkpoint folder: the CLI names a missing --init before the runner
    (tmp_path / "B" / "config.json").write_text("{}")
    recipe = tmp_path / "ft.yaml"
    recipe.write_text(dump_yaml(FINETUNE))
    code, err = cli_error(capsys, ["finetune", recipe, "--output", run, "--resume", "--init", tmp_path / "B",
                                   "--data-root", tmp_path / "empty"])
    assert code == 2 and err.startswith(f"medfm: error: cannot resume {run}: it was started with --init "
                                        f"{tmp_path.resolve() / 'A'}, this resume has --init {tmp_path.resolve() / 'B'}")


def test_a_missing_local_init_is_refused_without_reading_data(tmp_path, monkeypatch):
    from medfm.hub import CheckpointError

    monkeypatch.setattr(runs, "_load", lambda *a, **k: pytest.fail("the data set was read"))
    recipe = from_dict(FinetuneRecipe, FINETUNE)
    with pytest.raises(CheckpointError, match=re.escape(f"no checkpoint directory at '{tmp_path / 'nope'}'")):
        runs.run_finetune(recipe, tmp_path / "new", init=str(tmp_path / "nope"), data_root=str(tmp_path))
    with pytest.raises(CheckpointError, match="no checkpoint directory"):  # the recipe's encoder.pretrained too
        runs.run_finetune(from_dict(FinetuneRecipe, {**FINETUNE, "encoder": {"name": "resnet_test",
                                                                              "pretrained": str(tmp_path / "nope")}}),
                          tmp_path / "new", data_root=str(tmp_path))
    assert not (tmp_path / "new").exists()
