"""A run started from Python that fails before it logged a step leaves no run folder behind.

Before: only the ``medfm`` command removed a run folder it had created when the run failed (its own
``_discard_failed_output``); ``run_pretrain``, ``run_finetune``, ``run_segmentation``, ``run_text_segmentation``,
``run_vqa``, ``run_fusion`` (and ``run_fusion_segmentation``) interrupted or failing after the trainer's
``before_write`` left ``config.yaml``, ``init.json``, an empty ``metrics.jsonl`` and a LoRA ``base/`` there. Now
every runner and the command share one rule (:mod:`medfm.training.run_folder`): a folder the failed call created
is removed unless it holds a training state or a non-empty ``metrics.jsonl``; a folder that existed is kept.

Also: a LoRA run whose ``<output>/base`` is a file or a foreign folder was refused only after ``config.yaml`` and
``init.json`` were written there (:func:`medfm.hub.refuse_non_checkpoint_dir`, in
:func:`medfm.training.adaptation.lora_base`, now comes first).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.runs_helpers import (finetune_recipe, folder_snapshot, fusion_recipe, hippocampus_writer,
                                         lgg_slices_writer, pretrain_recipe, segment_recipe, text_segment_recipe,
                                         vqa_recipe, write_pneumoniamnist, write_vqa_data)

TRAIN = {"epochs": 1, "batch_size": 2, "precision": "fp32", "seed": 5, "log_every": 1}


# -- the rule itself (no torch, no run) ------------------------------------------------------------------------
def _half_written(folder: Path) -> Path:
    """What a run failing after its before_write leaves: config.yaml, init.json, an empty metrics.jsonl."""
    folder.mkdir(parents=True)
    for name in ("config.yaml", "init.json", "metrics.jsonl"):
        (folder / name).write_text("" if name == "metrics.jsonl" else "x: 1\n")
    return folder


@pytest.mark.parametrize("error", [ValueError("bad"), KeyboardInterrupt()], ids=["ValueError", "KeyboardInterrupt"])
def test_a_folder_created_by_a_failed_block_is_removed_and_the_error_passes(tmp_path, error):
    from medfm.training.run_folder import discard_on_failure

    out = tmp_path / "run"
    with pytest.raises(type(error)) as info:
        with discard_on_failure(out):
            _half_written(out)
            raise error
    assert info.value is error and not out.exists()


def test_a_folder_that_existed_or_a_block_that_succeeds_is_kept(tmp_path):
    from medfm.training.run_folder import discard_on_failure

    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        with discard_on_failure(out):
            _half_written(out / "inner")  # (only to have files there)
            raise KeyboardInterrupt
    assert (out / "inner" / "config.yaml").is_file()
    with discard_on_failure(tmp_path / "ok"):
        _half_written(tmp_path / "ok")
    assert (tmp_path / "ok" / "config.yaml").is_file()


@pytest.mark.parametrize("record", ["models/late/checkpoint/trainer_state.json", "train_state/trainer_state.json",
                                    "metrics.jsonl", "models/late/metrics.jsonl"])
def test_a_folder_with_a_training_state_or_a_logged_step_is_kept(tmp_path, record):
    from medfm.training.run_folder import discard_on_failure
    from medfm.training.state import STATE_JSON

    assert STATE_JSON == "trainer_state.json"
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with discard_on_failure(out):
            _half_written(out)
            (out / record).parent.mkdir(parents=True, exist_ok=True)
            (out / record).write_text('{"step": 1}\n')
            raise RuntimeError("diverged")
    assert (out / record).is_file() and (out / "config.yaml").is_file()


def test_the_rule_is_torch_free_until_a_folder_is_left():
    """The command imports it before torch (a usage error answers at once): importing it, and a failure that left
    no folder, load no torch."""
    script = ("import sys\nfrom medfm.training.run_folder import discard_failed_run\n"
              "print(discard_failed_run('no/such/run'), 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr


# -- the runners, started from Python --------------------------------------------------------------------------
def _pretrain(tmp):
    from medfm.training.runs import run_pretrain

    recipe = pretrain_recipe(write_pneumoniamnist(tmp / "d", 16), seed=TRAIN["seed"])
    return lambda out: run_pretrain(recipe, out)


def _finetune(tmp):  # LoRA over random weights: its own base/ too
    from medfm.training.runs import run_finetune

    recipe = finetune_recipe(write_pneumoniamnist(tmp / "d", 16))
    return lambda out: run_finetune(recipe, out)


def _segment(tmp):
    from medfm.training.segmentation import run_segmentation

    hippocampus_writer(10)(tmp / "d")
    return lambda out: run_segmentation(segment_recipe(TRAIN), out, data_root=str(tmp / "d"))


def _text_segment(tmp):
    from medfm.training.text_segmentation import run_text_segmentation

    lgg_slices_writer((1, 2, 10))(tmp / "d")
    return lambda out: run_text_segmentation(text_segment_recipe(tmp / "d", TRAIN), out, data_root=str(tmp / "d"))


def _vqa(tmp):
    from medfm.training.vqa import run_vqa

    root, recipe = write_vqa_data(tmp / "d", 1), vqa_recipe(tmp, epochs=1, batch_size=8)
    return lambda out: run_vqa(recipe, out, data_root=root)


def _fuse(task):
    def make(tmp):
        from medfm.training.fusion import run_fusion
        from tests.helpers.lgg_fusion import write_fake_lgg

        write_fake_lgg(tmp / "d", slices=4)
        return lambda out: run_fusion(fusion_recipe(task, 2), out, str(tmp / "d"))
    return make


RUNNERS = {"pretrain": _pretrain, "finetune": _finetune, "segment": _segment, "text_segment": _text_segment,
           "vqa": _vqa, "fuse_classification": _fuse("classification"), "fuse_segmentation": _fuse("segmentation")}


def _interrupt_training(monkeypatch, out: Path, error: BaseException, seen: list):
    """The first training step raises ``error`` (Trainer-based runners and medfm vqa's own loop); ``seen`` gets the
    files of ``out`` at that moment (after the runner's before_write)."""
    from medfm.training import loop, vqa

    def fail(*args, **kwargs):
        seen.append(sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()))
        raise error
    monkeypatch.setattr(loop.Trainer, "_train", fail)
    monkeypatch.setattr(vqa, "check_finite_loss", fail)


@pytest.mark.parametrize("name", list(RUNNERS))
def test_a_run_interrupted_after_its_record_leaves_nothing_and_runs_again(tmp_path, name, monkeypatch):
    run, out, seen = RUNNERS[name](tmp_path), tmp_path / "runs" / "a", []
    _interrupt_training(monkeypatch, out, KeyboardInterrupt(), seen)
    with pytest.raises(KeyboardInterrupt):
        run(out)
    assert "config.yaml" in seen[0]  # failed after its before_write wrote the run's record
    assert not out.exists() and (tmp_path / "runs").is_dir()  # was: config.yaml (init.json, metrics.jsonl) left
    monkeypatch.undo()
    run(out)  # the same call again: a whole run
    assert (out / "config.yaml").is_file() and any(out.rglob("trainer_state.json"))


def test_a_finetune_failing_with_any_error_leaves_neither_record_nor_base(tmp_path, monkeypatch):
    run, out, seen = _finetune(tmp_path), tmp_path / "run", []
    _interrupt_training(monkeypatch, out, RuntimeError("CUDA out of memory"), seen)
    with pytest.raises(RuntimeError, match="out of memory"):
        run(out)
    assert {"config.yaml", "init.json", "base/config.json"} <= set(seen[0]) and not out.exists()


def test_a_failed_run_keeps_a_folder_that_existed(tmp_path, monkeypatch):
    run, out = _finetune(tmp_path), tmp_path / "run"
    out.mkdir()
    _interrupt_training(monkeypatch, out, KeyboardInterrupt(), [])
    with pytest.raises(KeyboardInterrupt):
        run(out)
    assert (out / "config.yaml").is_file()  # the user's folder: what the run wrote is there to see


def test_a_failed_run_keeps_its_logged_steps_and_its_training_state(tmp_path, monkeypatch):
    """A run diverging at its second step keeps the first step's metrics.jsonl line; one failing after its last
    checkpoint (here drawing its curve) keeps the checkpoint, for a resume."""
    from medfm.training import loop

    run, calls = _finetune(tmp_path), []
    check = loop.check_finite_loss

    def diverge(loss, epoch, step):
        calls.append(step)
        if len(calls) == 2:
            raise ValueError("non-finite loss")
        check(loss, epoch, step)
    monkeypatch.setattr(loop, "check_finite_loss", diverge)
    with pytest.raises(ValueError, match="non-finite"):
        run(tmp_path / "diverged")
    assert (tmp_path / "diverged" / "metrics.jsonl").read_text().count("\n") == 1
    monkeypatch.undo()

    def no_plot(self):
        raise RuntimeError("no display")
    monkeypatch.setattr(loop.Trainer, "_plot_curve", no_plot)
    with pytest.raises(RuntimeError, match="no display"):
        run(tmp_path / "finished")
    assert (tmp_path / "finished" / "checkpoint" / "trainer_state.json").is_file()


# -- a LoRA run's base/ in the way -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["file", "foreign folder"])
def test_a_lora_base_in_the_way_is_refused_before_anything_is_written(tmp_path, kind):
    from medfm.hub import CheckpointError

    run, out = _finetune(tmp_path), tmp_path / "run"
    out.mkdir()
    if kind == "file":
        (out / "base").write_text("notes\n")
    else:
        (out / "base").mkdir()
        (out / "base" / "notes.txt").write_text("mine\n")
    before = folder_snapshot(out)
    with pytest.raises(CheckpointError, match=r"base' exists and is not a checkpoint directory; a LoRA run keeps its "
                                              r"starting weights there: choose another output or move it away$"):
        run(out)
    assert folder_snapshot(out) == before  # was: config.yaml and init.json written first
