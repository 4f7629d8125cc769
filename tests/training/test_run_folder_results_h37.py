"""A new run is refused in a folder that holds a finished run's weights, also once its ``checkpoint/`` is gone.

Before, :func:`medfm.training.loop.refuse_existing_run` looked only for a training state: a finished run whose
``checkpoint/`` was deleted by hand (its ``model/``, ``adapter/``, a ``medfm vqa`` ``checkpoint/``, a fusion model's
``models/<label>/model/`` kept) was silently reused, and the new run overwrote its weights and report and emptied its
``metrics.jsonl``. Now the weights are the marker (:func:`medfm.training.loop.finished_weights`), named in a one-line
error. A run killed before its first checkpoint (a partial ``metrics.jsonl``, ``config.yaml``, a LoRA ``base/``) has
none, and a new run over it still starts; a resume is refused only where it has no state to continue.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medfm.config import dump_yaml
from medfm.training.loop import Trainer, refuse_existing_run
from tests.conftest import Killed, cli_error
from tests.training.runs_helpers import finetune_recipe, folder_snapshot, fusion_recipe, write_pneumoniamnist


def _finetune(root: Path, output: Path, resume: bool = False, **kw) -> Path:
    from medfm.training.runs import run_finetune

    return run_finetune(finetune_recipe(root, **kw), output, resume=resume)


def _finished_without_checkpoint(tmp_path: Path, **kw) -> Path:
    """A finished tiny finetune run (``kw``: recipe keys) whose ``checkpoint/`` was deleted by hand."""
    run = tmp_path / "run"
    _finetune(write_pneumoniamnist(tmp_path / "data", 16), run, **kw)
    shutil.rmtree(run / "checkpoint")
    return run


def _message(run: Path, weights: str, folder: str) -> str:
    return (f"{run} already holds a finished run's weights ({weights}) with no training state to resume; a new run "
            f"would overwrite them and the run's results: choose another --output or delete {run / folder}")


@pytest.mark.parametrize("mode, weights", [("full", "model/model.safetensors"),
                                           ("lora", "adapter/adapter_model.safetensors")])
def test_a_new_run_over_finished_weights_is_refused_and_writes_nothing(tmp_path, mode, weights):
    """Was: the second run trained and rewrote config.yaml, metrics.jsonl and the final model."""
    run = _finished_without_checkpoint(tmp_path, mode=mode)
    before = folder_snapshot(run)
    assert weights in before and before["metrics.jsonl"]
    with pytest.raises(FileExistsError) as err:
        _finetune(tmp_path / "data", run, mode=mode, seed=1)
    assert str(err.value) == _message(run, weights, weights.split("/")[0])
    assert folder_snapshot(run) == before  # nothing written, the old files as they were


def test_the_command_answers_in_one_line_with_exit_code_2(tmp_path, capsys):
    run = _finished_without_checkpoint(tmp_path, mode="full")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(dump_yaml(finetune_recipe(tmp_path / "data", mode="full")))
    before = folder_snapshot(run)
    capsys.readouterr()  # the first run's progress bars
    code, err = cli_error(capsys, ["finetune", recipe, "--output", run])
    assert code == 2 and err == "medfm: error: " + _message(run, "model/model.safetensors", "model")
    assert folder_snapshot(run) == before


def test_other_layouts_vqa_checkpoint_and_fusion_models(tmp_path):
    """``medfm vqa``: its state is ``train_state/``, its final weights ``checkpoint/``; ``medfm fuse``: a model's
    ``models/<label>/model/`` (checked by :func:`medfm.training.fusion_run.start_run`'s one call, before the data)."""
    from medfm.training.fusion_run import start_run

    vqa = tmp_path / "vqa"
    (vqa / "checkpoint").mkdir(parents=True)
    (vqa / "checkpoint" / "model.safetensors").write_bytes(b"w")
    with pytest.raises(FileExistsError) as err:
        refuse_existing_run(vqa, False, ("train_state",))  # medfm vqa's call (check_run_start)
    assert str(err.value) == _message(vqa, "checkpoint/model.safetensors", "checkpoint")

    fuse = tmp_path / "fuse"
    (fuse / "models" / "late" / "model").mkdir(parents=True)
    (fuse / "models" / "late" / "model" / "model.safetensors").write_bytes(b"w")
    (fuse / "results.json").write_text("{}")
    before = folder_snapshot(fuse)
    with pytest.raises(FileExistsError) as err:
        start_run(fusion_recipe("classification", 4), fuse, str(tmp_path / "no-data"))
    assert str(err.value) == _message(fuse, "models/late/model/model.safetensors", "models/late/model")
    assert folder_snapshot(fuse) == before


def test_a_run_killed_before_its_first_checkpoint_may_be_started_over(tmp_path, monkeypatch):
    """Guard (passed before too): a LoRA run killed at its first save left config.yaml, init.json, base/ (its
    starting weights, a model.safetensors) and a partial metrics.jsonl; a new run over it is not refused."""
    root = write_pneumoniamnist(tmp_path / "data", 16)
    run = tmp_path / "run"

    def killed(self, counters):
        raise Killed

    monkeypatch.setattr(Trainer, "_save", killed)
    with pytest.raises(Killed):
        _finetune(root, run, mode="lora", train={"checkpoint_every": 1})
    monkeypatch.undo()
    assert (run / "base" / "model.safetensors").is_file() and (run / "metrics.jsonl").read_text()
    assert not any((run / name).exists() for name in ("checkpoint", "model", "adapter"))
    final = _finetune(root, run, mode="lora")
    assert final == run / "adapter" and (run / "checkpoint").is_dir()


def test_resume_is_not_refused_and_a_checkpoint_keeps_its_message(tmp_path):
    """Guard (passed before too): a finished run (checkpoint/ and model/) resumes; without --resume the
    checkpoint's own message is given, not the weights' one."""
    root = write_pneumoniamnist(tmp_path / "data", 16)
    run = tmp_path / "run"
    _finetune(root, run, mode="full")
    with pytest.raises(FileExistsError) as err:
        _finetune(root, run, mode="full")
    assert str(err.value) == (f"{run} already holds a checkpoint (checkpoint/); pass --resume to continue it or "
                              "choose another --output")
    assert _finetune(root, run, resume=True, mode="full") == run / "model"


def test_a_resume_over_finished_weights_without_a_state_is_refused_too(tmp_path):
    """Was: --resume found no state, started over and overwrote the finished weights and results."""
    run = _finished_without_checkpoint(tmp_path, mode="full")
    before = folder_snapshot(run)
    with pytest.raises(FileExistsError) as err:
        _finetune(tmp_path / "data", run, resume=True, mode="full", seed=1)
    assert str(err.value) == _message(run, "model/model.safetensors", "model")
    assert folder_snapshot(run) == before


def test_a_fuse_resume_reuses_a_model_whose_checkpoint_was_deleted(tmp_path):
    """``medfm fuse --resume`` reuses a model's ``model/`` (:func:`medfm.training.fusion.fit_or_reuse`) and needs no
    state there: its ``checkpoint/`` deleted by hand, the resume was refused as if it would start over the weights
    (r3). Another run's model folder is still refused on resume, in refuse_unrecorded_models's words."""
    from medfm.config import ConfigError
    from medfm.data.errors import MedFMDataError
    from medfm.training.fusion_run import start_run
    from medfm.training.runs import write_run_record

    recipe = fusion_recipe("classification", 4)
    fuse = tmp_path / "fuse"
    write_run_record(fuse, recipe, takes_init=False)
    (fuse / "models" / "late" / "model").mkdir(parents=True)
    (fuse / "models" / "late" / "model" / "model.safetensors").write_bytes(b"w")
    with pytest.raises(MedFMDataError):  # every check passed: it goes on to read the (missing) data
        start_run(recipe, fuse, str(tmp_path / "no-data"), resume=True)
    (fuse / "models" / "other" / "model").mkdir(parents=True)
    (fuse / "models" / "other" / "model" / "model.safetensors").write_bytes(b"w")
    with pytest.raises(ConfigError, match="models/other/ holds a model that the run's config.yaml does not list"):
        start_run(recipe, fuse, str(tmp_path / "no-data"), resume=True)
