"""``--resume`` with another ``--init`` than the run was started with is refused, writing nothing.

``--init`` is not part of the recipe, so :func:`medfm.training.resume.check_resume_recipe` never
saw it: a LoRA fine-tune killed after a checkpoint and resumed with ``--init B`` finished with
an adapter recording base B (its frozen base weights came from A), and resumed without
``--init`` it saved the model's fresh random weights as ``<output>/base`` and recorded those.
The runners that take ``--init`` (finetune, segment, vqa) now record it in ``init.json``.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest
import torch

from medfm.config import ConfigError, dump_yaml, from_dict
from tests.conftest import Killed, kill_after_first_mid_epoch_checkpoint, pneumonia_classifier
from tests.training.runs_helpers import folder_snapshot, write_pneumoniamnist

FINETUNE = {"data": {"dataset": "pneumoniamnist", "verify_md5": False, "val_split": None},
            "encoder": {"name": "resnet_test"}, "mode": "lora", "lora": {"rank": 2}, "augment": None,
            "train": {"epochs": 2, "batch_size": 8, "precision": "fp32", "log_every": 1, "checkpoint_every": 1,
                      "deterministic": True}}


def _init_checkpoint(path: Path, seed: int) -> Path:
    """A pneumoniamnist classifier checkpoint (:func:`pneumonia_classifier`) with seeded weights."""
    from medfm.hub import save_pretrained

    return save_pretrained(pneumonia_classifier(seed), path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Data, two init checkpoints (A, B) and an uninterrupted 2-epoch LoRA run from A."""
    tmp = tmp_path_factory.mktemp("init")
    write_pneumoniamnist(tmp / "data", 16, n_eval=4)
    a, b = _init_checkpoint(tmp / "A", 0), _init_checkpoint(tmp / "B", 1)
    _finetune(tmp, tmp / "full", a)
    return tmp, a, b


def _finetune(tmp: Path, output: Path, init, resume: bool = False) -> Path:
    from medfm.training.recipes import FinetuneRecipe
    from medfm.training.runs import run_finetune

    return run_finetune(from_dict(FinetuneRecipe, FINETUNE), output, init=None if init is None else str(init),
                        data_root=str(tmp / "data"), resume=resume)


def _killed_run(tmp: Path, monkeypatch, name: str, init) -> Path:
    """A run started with ``init`` and killed right after its first mid-epoch checkpoint."""
    revive = kill_after_first_mid_epoch_checkpoint(monkeypatch)
    with pytest.raises(Killed):
        _finetune(tmp, tmp / name, init)
    revive()
    return tmp / name


def test_resume_with_another_or_no_init_is_refused_and_writes_nothing(setup, monkeypatch):
    tmp, a, b = setup
    run = _killed_run(tmp, monkeypatch, "other", a)
    assert json.loads((run / "init.json").read_text()) == {"init": str(a), "identity": str(a.resolve())}
    before = folder_snapshot(run)
    with pytest.raises(ConfigError) as err:
        _finetune(tmp, run, b, resume=True)
    assert str(err.value) == (f"cannot resume {run}: it was started with --init {a.resolve()}, this resume has "
                              f"--init {b.resolve()}; resume with --init {a.resolve()}, or choose a new --output "
                              "for the new starting point")
    assert folder_snapshot(run) == before
    with pytest.raises(ConfigError, match=re.escape(f"started with --init {a.resolve()}, this resume has no --init;")):
        _finetune(tmp, run, None, resume=True)
    assert folder_snapshot(run) == before  # no <output>/base of random weights either


def test_resume_without_init_refuses_one_now(setup, monkeypatch):
    tmp, a, _ = setup
    run = _killed_run(tmp, monkeypatch, "none", None)
    before = folder_snapshot(run)
    with pytest.raises(ConfigError, match=re.escape(f"started with no --init, this resume has --init {a.resolve()};")):
        _finetune(tmp, run, a, resume=True)
    assert folder_snapshot(run) == before
    _finetune(tmp, run, None, resume=True)  # as started: finishes


def test_resume_with_the_same_init_by_another_path_matches_the_uninterrupted_run(setup, monkeypatch):
    """A relative path from another folder and a symbolic link name the same checkpoint."""
    from safetensors.torch import load_file

    tmp, a, _ = setup
    run = _killed_run(tmp, monkeypatch, "same", a)
    (tmp / "link").symlink_to(a, target_is_directory=True)
    monkeypatch.chdir(tmp / "data")
    assert not Path(os.path.relpath(tmp / "link", tmp / "data")).is_absolute()
    final = _finetune(tmp, run, os.path.relpath(tmp / "link", tmp / "data"), resume=True)
    full = tmp / "full" / "adapter"
    x = load_file(str(final / "adapter_model.safetensors"))
    y = load_file(str(full / "adapter_model.safetensors"))
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    recorded = json.loads((final / "config.json").read_text())["training"]["finetuning"]["init"]
    assert Path(recorded).resolve() == a.resolve()  # the base the adapter was trained on (as given now)
    assert json.loads((run / "init.json").read_text())["init"] == str(a)  # the record the run started with


def test_cli_exits_2_with_one_line(setup, monkeypatch, capsys):
    from medfm.cli import main

    tmp, a, b = setup
    run = _killed_run(tmp, monkeypatch, "cli", a)
    recipe = tmp / "ft.yaml"
    recipe.write_text(dump_yaml(FINETUNE))
    before = folder_snapshot(run)
    capsys.readouterr()  # the killed run's progress bars
    assert main(["finetune", str(recipe), "--output", str(run), "--resume", "--init", str(b),
                 "--data-root", str(tmp / "data")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"medfm: error: cannot resume {run}: it was started with")
    assert str(a.resolve()) in err and str(b.resolve()) in err
    assert folder_snapshot(run) == before


def test_a_run_without_a_record_resumes_with_a_warning(tmp_path, caplog):
    """A run folder from before init.json: nothing to compare, the resume goes on as given."""
    from medfm.training.resume import check_resume_init

    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "trainer_state.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="medfm.training.resume"):
        check_resume_init(run, str(tmp_path / "A"), resume=True)
    assert "no init.json" in caplog.text
    check_resume_init(tmp_path / "new", str(tmp_path / "A"), resume=True)  # nothing to resume
    (run / "init.json").write_text(json.dumps({"init": None, "identity": None}))
    check_resume_init(run, str(tmp_path / "A"), resume=False)  # a new run (refused elsewhere if it has a state)


def test_init_identity():
    from medfm.training.resume import init_identity

    assert init_identity(None) is None
    assert init_identity("hf-hub:org/name@v1") == "hf-hub:org/name@v1" and init_identity("timm") == "timm"
    assert init_identity("runs/pt/checkpoint") == init_identity("./runs/pt/../pt/checkpoint") \
        == str(Path.cwd().resolve() / "runs" / "pt" / "checkpoint")
    assert init_identity("~/ckpt") == str(Path.home().resolve() / "ckpt")


# -- segment / text segment / vqa: refused before their data are read ---------------------------
def _seg(tmp, recipe, init, resume):
    from medfm.training.segmentation import SegmentationRecipe, run_segmentation

    run_segmentation(from_dict(SegmentationRecipe, recipe), tmp / "run", init=init, data_root=str(tmp / "nodata"),
                     resume=resume)


def _text_seg(tmp, recipe, init, resume):
    from medfm.training.text_segmentation import TextSegRecipe, run_text_segmentation

    run_text_segmentation(from_dict(TextSegRecipe, recipe), tmp / "run", init=init, data_root=str(tmp / "nodata"),
                          resume=resume)


def _vqa(tmp, recipe, init, resume):
    from medfm.training.vqa import VQARecipe, run_vqa

    run_vqa(from_dict(VQARecipe, recipe), tmp / "run", init=init, data_root=str(tmp / "nodata"), resume=resume)


@pytest.mark.parametrize("runner,recipe,state", [
    (_seg, {"data": {"patch": [32, 32]}}, "checkpoint"),
    (_text_seg, {"tasks": [{"data": {"patch": [32, 32]}}]}, "checkpoint"),
    (_vqa, {}, "train_state"),
])
def test_other_runners_refuse_another_init_before_reading_data(tmp_path, runner, recipe, state):
    from medfm.data.errors import MedFMDataError
    from medfm.training.resume import record_init
    from medfm.training.segmentation import SegmentationRecipe
    from medfm.training.text_segmentation import TextSegRecipe
    from medfm.training.vqa import VQARecipe

    recipe_cls = {_seg: SegmentationRecipe, _text_seg: TextSegRecipe, _vqa: VQARecipe}[runner]
    run = tmp_path / "run"
    (run / state).mkdir(parents=True)
    (run / state / "trainer_state.json").write_text("{}")
    (run / "config.yaml").write_text(dump_yaml(from_dict(recipe_cls, recipe)))  # as the runner wrote them
    record_init(run, str(tmp_path / "A"), resume=False)
    (tmp_path / "A").mkdir()  # the init exists: the VQA runner refuses a missing local --init before the data too
    (tmp_path / "A" / "config.json").write_text("{}")
    before = folder_snapshot(run)
    for other, shown in [(str(tmp_path / "B"), f"--init {tmp_path.resolve() / 'B'}"), (None, "no --init")]:
        with pytest.raises(ConfigError, match=re.escape(f"this resume has {shown};")):
            runner(tmp_path, recipe, other, True)
        assert folder_snapshot(run) == before
    with pytest.raises(MedFMDataError):  # the same init passes the check; the (missing) data is read next
        runner(tmp_path, recipe, str(tmp_path / "." / "A"), True)
