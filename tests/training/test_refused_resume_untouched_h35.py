"""A ``--resume`` refused by its checks leaves the run folder byte for byte as it was, also after a kill inside the
checkpoint's rename window (no ``checkpoint/``, the previous one aside at ``.checkpoint.old-<id>``, a maybe partial
``.checkpoint.tmp-<id>``).

Before, :meth:`medfm.training.loop.Trainer.fit` repaired the folder (:func:`medfm.io.restore_interrupted_dir`: the
version aside renamed back, the ``.tmp-`` one deleted) before it read and checked the resumed state, so a resume then
refused (another data root, whose counters do not fit) had already renamed and deleted folders. Now the state is read
where it is found (:func:`medfm.io.interrupted_version`, :func:`medfm.training.state.find_training_state`) and the
folder repaired once the checks passed.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from medfm.training.loop import Trainer
from tests.conftest import (Killed, TinyPairs, kill_after_first_mid_epoch_checkpoint, logged_rows, noisy_step,
                            save_state_dict, tiny_net, tiny_train_config)
from tests.training.runs_helpers import folder_snapshot, pretrain_recipe, write_pneumoniamnist

ASIDE = ".checkpoint.old-0123456789ab"


def _in_the_rename_window(run: Path) -> None:
    """The disk state of a kill between atomic_dir's two renames: checkpoint/ aside, a partial next one."""
    (run / "checkpoint").rename(run / ASIDE)
    (run / ".checkpoint.tmp-partial").mkdir()
    (run / ".checkpoint.tmp-partial" / "model.safetensors").write_bytes(b"\x00" * 8)


def _killed_run(tmp_path, monkeypatch) -> Path:
    """A tiny run killed after its step-3 checkpoint, inside the rename window of the next save."""
    restore = kill_after_first_mid_epoch_checkpoint(monkeypatch)
    with pytest.raises(Killed):
        Trainer(tiny_net(), noisy_step, TinyPairs(), tiny_train_config(), tmp_path / "killed", save_state_dict).fit()
    restore()
    run = tmp_path / "killed"
    _in_the_rename_window(run)
    return run


def test_a_refused_resume_leaves_the_folder_as_it_was_and_the_accepted_one_repairs_and_continues(tmp_path,
                                                                                                   monkeypatch):
    """8 samples instead of 16: the step-3 state does not fit 2 steps per epoch. Was: refused with checkpoint/ back
    in place and the .tmp- folder deleted. The resume on the run's data then repairs and ends bit-identically."""
    full = Trainer(tiny_net(), noisy_step, TinyPairs(), tiny_train_config(), tmp_path / "full", save_state_dict).fit()
    run = _killed_run(tmp_path, monkeypatch)
    before = folder_snapshot(run)
    with pytest.raises(ValueError) as err:
        Trainer(tiny_net(), noisy_step, TinyPairs(8), tiny_train_config(), run, save_state_dict).fit(resume=True)
    assert folder_snapshot(run) == before
    assert str(err.value).startswith(f"cannot resume from {run / ASIDE}: its state (epoch 0, step 3, global step 3) "
                                     "does not fit this run's 2 epochs of 2 steps")  # names the folder it read
    assert sorted(p.name for p in run.iterdir()) == [ASIDE, ".checkpoint.tmp-partial", "metrics.jsonl"]
    steps = []
    resumed = Trainer(tiny_net(), lambda m, b, g: steps.append(1) or noisy_step(m, b, g), TinyPairs(),
                      tiny_train_config(), run, save_state_dict).fit(resume=True)
    assert len(steps) == 8 - 3  # from the step-3 state aside, not from scratch
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), resumed.state_dict().values()))
    assert logged_rows(run / "metrics.jsonl") == logged_rows(tmp_path / "full" / "metrics.jsonl")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint", "metrics.jsonl", "training_curve.png"]


def test_a_corrupt_state_aside_is_refused_and_left_as_it_was(tmp_path, monkeypatch):
    """Was: renamed back to checkpoint/ (and the .tmp- folder deleted) before the load failed."""
    run = _killed_run(tmp_path, monkeypatch)
    (run / ASIDE / "trainer_state.json").write_text("{not json")
    before = folder_snapshot(run)
    with pytest.raises(ValueError) as err:
        Trainer(tiny_net(), noisy_step, TinyPairs(), tiny_train_config(), run, save_state_dict).fit(resume=True)
    assert folder_snapshot(run) == before
    assert str(err.value).startswith(f"cannot resume from {run / ASIDE}: training state missing or corrupt")


def test_several_versions_aside_refuse_the_resume_and_stay(tmp_path, monkeypatch):
    """Guard (passed before too): two candidates are ambiguous; the resume is refused, nothing renamed or deleted."""
    run = _killed_run(tmp_path, monkeypatch)
    (run / ".checkpoint.old-second").mkdir()
    (run / ".checkpoint.old-second" / "trainer_state.json").write_text("{}")
    before = folder_snapshot(run)
    with pytest.raises(FileExistsError, match=r"is missing and several earlier versions wait beside it \("
                                              + re.escape(f"{ASIDE}, .checkpoint.old-second); rename the right one")):
        Trainer(tiny_net(), noisy_step, TinyPairs(), tiny_train_config(), run, save_state_dict).fit(resume=True)
    assert folder_snapshot(run) == before


def test_a_new_run_is_refused_over_a_state_set_aside(tmp_path, monkeypatch):
    """Without --resume, a run killed inside the rename window holds a training state all the same. Was: started
    over it (metrics.jsonl emptied), the state aside left behind for good."""
    run = _killed_run(tmp_path, monkeypatch)
    before = folder_snapshot(run)
    with pytest.raises(FileExistsError, match=re.escape(f"{run} already holds a checkpoint (checkpoint/, set aside as "
                                                        f"{ASIDE} by a kill while it was saved); pass --resume")):
        Trainer(tiny_net(), noisy_step, TinyPairs(), tiny_train_config(), run, save_state_dict).fit()
    assert folder_snapshot(run) == before


def test_interrupted_version_finds_the_version_aside_and_changes_nothing(tmp_path):
    from medfm.io import interrupted_version

    target = tmp_path / "checkpoint"
    assert interrupted_version(target) is None  # nothing there
    assert interrupted_version(tmp_path / "missing" / "checkpoint") is None  # no folder above it
    (tmp_path / ".checkpoint.tmp-new").mkdir()  # a new version is never one: maybe partial
    assert interrupted_version(target) is None
    (tmp_path / ".checkpoint.old-a").mkdir()
    (tmp_path / ".checkpoint.old-a" / "state.json").write_text("step 3")
    (tmp_path / ".other.old-b").mkdir()  # another folder's version
    before = sorted(p.name for p in tmp_path.iterdir())
    assert interrupted_version(target) == tmp_path / ".checkpoint.old-a"
    assert interrupted_version(str(target)) == tmp_path / ".checkpoint.old-a"
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    target.mkdir()  # in place: the .old- one is a leftover of a kill while deleting it, not a version to read
    assert interrupted_version(target) is None
    target.rmdir()
    (tmp_path / ".checkpoint.old-c").mkdir()
    with pytest.raises(FileExistsError, match=re.escape("several earlier versions wait beside it (.checkpoint.old-a, "
                                                        ".checkpoint.old-c); rename the right one to 'checkpoint'")):
        interrupted_version(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + [".checkpoint.old-c"])


def test_pretrain_refused_on_another_data_root_leaves_a_killed_run_as_it_was(tmp_path):
    """The runner's case: ``medfm pretrain --resume`` with another --data-root (32 images, not 16) after a kill in
    the rename window of the last save; was: the folder repaired, then refused. The run's own data resume it."""
    from medfm.training.runs import run_pretrain

    own, other = write_pneumoniamnist(tmp_path / "d16", 16), write_pneumoniamnist(tmp_path / "d32", 32)
    out = tmp_path / "run"
    run_pretrain(pretrain_recipe(own), out, data_root=own)
    _in_the_rename_window(out)
    before = folder_snapshot(out)
    with pytest.raises(ValueError) as err:
        run_pretrain(pretrain_recipe(own), out, data_root=other, resume=True)
    assert folder_snapshot(out) == before
    assert str(err.value).startswith(f"cannot resume from {out / ASIDE}: its state (epoch 1, step 0, global step 2) "
                                     "does not fit this run's 1 epochs of 4 steps")
    run_pretrain(pretrain_recipe(own), out, data_root=own, resume=True)
    assert not list(out.glob(".checkpoint.*")) and (out / "checkpoint" / "trainer_state.json").is_file()
