"""The torch thread count a run trained with is recorded (``host`` in every training row of ``metrics.jsonl``), and
every shipped recipe pins ``train.num_threads``: without it a run trained with torch's default (the machine's core
count), and the same seed gave other weights on a machine with another count, with nothing in the run folder saying
which count was used."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import medfm.training.loop as loop
from medfm.config import load_yaml
from medfm.training.loop import Trainer
from tests.conftest import (Killed, TinyPairs, kill_after_first_mid_epoch_checkpoint, save_state_dict,
                            tiny_train_config)
from tests.training.runs_helpers import (finetune_recipe, pretrain_recipe, vqa_recipe, write_pneumoniamnist,
                                         write_vqa_data)

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(p for folder in ("pretrain", "finetune") for p in (REPO / folder).rglob("*.yaml"))


@pytest.fixture
def threads_back():
    """Put torch's thread count back after a test that trains with another one."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fake_threads(monkeypatch):
    """torch's thread count as a plain number that ``torch.set_num_threads`` sets and ``torch.get_num_threads`` reads
    (1 to start): a run "on 2 threads" without 2 OpenMP threads spinning on the shared test machine."""
    count = [1]
    monkeypatch.setattr(torch, "set_num_threads", lambda n: count.__setitem__(0, n))
    monkeypatch.setattr(torch, "get_num_threads", lambda: count[0])


@pytest.fixture
def step_threads(monkeypatch):
    """``torch.get_num_threads()`` at every training step (read where the loops check the step's loss)."""
    seen = []
    real = loop.check_finite_loss

    def watch(*args):
        seen.append(torch.get_num_threads())
        return real(*args)

    monkeypatch.setattr(loop, "check_finite_loss", watch)
    monkeypatch.setattr("medfm.training.vqa.check_finite_loss", watch)
    return seen


def _rows(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_pretraining_run_records_the_thread_count_it_trained_with(tmp_path, fake_threads, step_threads):
    from medfm.training.runs import run_pretrain

    root = write_pneumoniamnist(tmp_path / "data", 16)
    run_pretrain(pretrain_recipe(root, num_threads=2), tmp_path / "run")
    rows = _rows(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 2 and step_threads == [2, 2]  # (the process started at 1: the recipe set 2)
    assert [r["host"] for r in rows] == [{"cpus": os.cpu_count(), "torch_threads": 2}] * 2


def test_a_finetuning_run_records_the_count_in_use_not_the_recipe_setting(tmp_path, thread_calls, step_threads):
    """``thread_calls`` keeps ``torch.set_num_threads`` from applying the recipe's 3: the row says what was used."""
    from medfm.training.runs import run_finetune

    root = write_pneumoniamnist(tmp_path / "data", 16)
    run_finetune(finetune_recipe(root, mode="full", train={"num_threads": 3}), tmp_path / "run")  # (full: no peft)
    rows = _rows(tmp_path / "run" / "metrics.jsonl")
    assert thread_calls == [3] and step_threads == [1, 1] == [torch.get_num_threads()] * 2
    assert len(rows) == 2 and all(r["host"]["torch_threads"] == 1 for r in rows)


def test_a_run_resumed_with_another_thread_count_shows_both(tmp_path, monkeypatch, threads_back, step_threads):
    """``train.num_threads`` may change on a resume (an operational key): the rows of each start keep their count."""
    def trainer(threads):
        return Trainer(torch.nn.Linear(4, 2), lambda m, b, g: {"loss": m(b["x"]).logsumexp(-1).mean()}, TinyPairs(),
                       tiny_train_config(num_threads=threads), tmp_path / "run", save_state_dict)

    restore = kill_after_first_mid_epoch_checkpoint(monkeypatch)
    with pytest.raises(Killed):
        trainer(1).fit()  # checkpoint at step 3, killed
    restore()
    trainer(2).fit(resume=True)
    rows = _rows(tmp_path / "run" / "metrics.jsonl")
    assert [(r["step"], r["host"]["torch_threads"]) for r in rows] == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2),
                                                                        (6, 2), (7, 2), (8, 2)]
    assert step_threads == [1, 1, 1, 2, 2, 2, 2, 2]


def test_a_vqa_run_records_the_thread_count_of_each_epoch(tmp_path, fake_threads, step_threads):
    """``medfm vqa`` has its own loop: one row per epoch, in its training state's log and its ``metrics.jsonl``."""
    from medfm.training.vqa import run_vqa

    run = tmp_path / "run"
    run_vqa(vqa_recipe(tmp_path, num_threads=2, epochs=1), run, data_root=write_vqa_data(tmp_path / "d", 1))
    rows = _rows(run / "metrics.jsonl")
    assert len(rows) == 1 and step_threads == [2] * 4  # 16 questions, batch 4
    assert rows[0]["host"] == {"cpus": os.cpu_count(), "torch_threads": 2}
    assert json.loads((run / "train_state" / "trainer_state.json").read_text())["counters"]["log"] == rows  # (resume)


@pytest.mark.parametrize("name", ["segment_3d_hippocampus", "segment_text", "fuse_classification"])
def test_the_other_runners_record_it_in_each_run_folder(tmp_path, name):
    """``medfm segment`` (plain and text-conditioned) and ``medfm fuse`` (one run folder per model) train through
    the same loop: each step row of each ``metrics.jsonl`` names the count (the tests' one thread)."""
    from tests.helpers.runner_cases import RUNNERS

    write, run, runs, _, _ = RUNNERS[name]
    write(tmp_path / "data")
    run(tmp_path / "run", tmp_path / "data", False)
    for sub in runs:
        rows = [r for r in _rows(tmp_path / "run" / sub / "metrics.jsonl") if "loss" in r]
        assert rows and all(r["host"] == {"cpus": os.cpu_count(), "torch_threads": 1} for r in rows), sub


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(REPO)) for p in RECIPES])
def test_every_shipped_recipe_sets_its_thread_count(path):
    """Left out, a run used the machine's core count: a re-run with the same seed on another machine (or on this one
    with ``OMP_NUM_THREADS`` set) trained other weights than the recipe's documented numbers."""
    threads = (load_yaml(path).get("train") or {}).get("num_threads")
    assert isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1, threads


def test_the_recipes_are_found():
    assert len(RECIPES) >= 40 and any(p.parent.name == "families" for p in RECIPES)
