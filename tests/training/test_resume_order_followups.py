"""Follow-ups of the label-fraction rule and of the resume order:

- :func:`medfm.evaluation.protocols.subset_indices`, :func:`medfm.evaluation.finetune_protocol.auto_epochs` and
  :func:`medfm.data.medmnist.label_fraction_indices` had label-fraction rules of their own, in other words than
  ``--label-fraction`` (NaN, ``True``, ``"0.5"``: "must be a finite number in (0, 1]"): all use
  :func:`medfm.arg_checks.check_label_fraction` now (moved from :mod:`medfm.suite_protocols`, which re-exports it);
- ``medfm vqa --resume`` from a state without its epoch log failed with a bare ``KeyError: 'log'``;
- a resume refused because the saved counters do not fit the data (``medfm vqa``, ``pretrain``, ``finetune``) had
  already rewritten ``config.yaml`` (with the new ``data_root``) and written ``init.json``.
"""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

import medfm.arg_checks
import medfm.suite_protocols
from medfm.data.medmnist import label_fraction_indices
from medfm.evaluation.finetune_protocol import auto_epochs
from medfm.evaluation.protocols import subset_indices
from medfm.training.loop import Trainer
from tests.conftest import TinyPairs, save_state_dict, tiny_train_config
from tests.training.runs_helpers import (finetune_recipe, folder_snapshot, pretrain_recipe, vqa_recipe,
                                         write_pneumoniamnist, write_vqa_data)


# -- one label-fraction rule, one wording -------------------------------------------------------------------------
SITES = [
    ("check_label_fraction", lambda v: medfm.arg_checks.check_label_fraction(v, "data.label_fraction"),
     "data.label_fraction"),
    ("subset_indices", lambda v: subset_indices(np.repeat(np.arange(2), 5), v, 0), "label_fraction"),
    ("auto_epochs", auto_epochs, "label fraction"),
    ("label_fraction_indices", lambda v: label_fraction_indices(10, v), "fraction"),
]


@pytest.mark.parametrize("value,got", [(1.5, "1.5"), (0, "0"), (math.nan, "nan"), (True, "True (bool)"),
                                       ("0.5", "'0.5' (str)")])
@pytest.mark.parametrize("site,call,name", SITES, ids=[s[0] for s in SITES])
def test_every_label_fraction_rule_says_the_same_words(site, call, name, value, got):
    """NaN, True and a string were "must be a finite number in (0, 1]" at the three evaluation/data sites."""
    with pytest.raises(ValueError) as info:
        call(value)
    assert str(info.value) == f"{name} must be in (0, 1], got {got}"


def test_the_rule_lives_in_arg_checks_and_suite_protocols_re_exports_it():
    assert medfm.suite_protocols.check_label_fraction is medfm.arg_checks.check_label_fraction
    with pytest.raises(ValueError, match=r"^protocol\.label_fractions must be in \(0, 1\], got \[0\.1, 1\.5\]$"):
        medfm.suite_protocols.parse_label_fractions([0.1, 1.5])
    assert medfm.arg_checks.check_label_fraction(1) == 1.0 and auto_epochs(0.1) == 20


# -- vqa: a state without its log; a refused resume writes nothing -------------------------------------------------
@pytest.fixture(scope="module")
def vqa_run(tmp_path_factory):
    """A finished tiny VQA run on 16 training questions (2 epochs of 4 steps): (folder, the folder of its tiny BERT,
    data roots)."""
    from medfm.training.vqa import run_vqa

    tmp = tmp_path_factory.mktemp("vqa")
    roots = {n: write_vqa_data(tmp / f"d{16 * n}", n) for n in (1, 2)}
    run_vqa(vqa_recipe(tmp, roots[1]), tmp / "run")
    return tmp / "run", tmp, roots


def test_a_vqa_state_without_its_log_is_named_corrupt(vqa_run, tmp_path):
    from medfm.training.vqa import run_vqa

    run, folder, roots = vqa_run
    shutil.copytree(run, tmp_path / "run")
    state = tmp_path / "run" / "train_state" / "trainer_state.json"
    payload = json.loads(state.read_text())
    del payload["counters"]["log"]
    state.write_text(json.dumps(payload))
    before = folder_snapshot(tmp_path / "run")
    with pytest.raises(ValueError, match=r"^cannot resume from .*train_state: training state corrupt \(its "
                                         r"trainer_state\.json counters have no list 'log'\)$"):  # was KeyError: 'log'
        run_vqa(vqa_recipe(folder, roots[1]), tmp_path / "run", resume=True)
    assert folder_snapshot(tmp_path / "run") == before


def test_a_refused_vqa_resume_leaves_the_run_folder_as_it_was(vqa_run, tmp_path):
    """config.yaml got the new data_root and init.json was written before the counters were read."""
    from medfm.training.vqa import run_vqa

    run, folder, roots = vqa_run
    shutil.copytree(run, tmp_path / "run")
    (tmp_path / "run" / "init.json").unlink()  # (a run of an older medfm: a resume writes one)
    before = folder_snapshot(tmp_path / "run")
    with pytest.raises(ValueError, match=r"^cannot resume from .*train_state: its state \(epoch 2, step 0, global step "
                                         r"8\) does not fit this run's 2 epochs of 8 steps \(32 samples, batch 4\)"):
        run_vqa(vqa_recipe(folder, roots[2]), tmp_path / "run", resume=True)
    assert folder_snapshot(tmp_path / "run") == before
    run_vqa(vqa_recipe(folder, roots[1]), tmp_path / "run", resume=True)  # the run's own data: resumed, recorded
    assert json.loads((tmp_path / "run" / "init.json").read_text()) == {"init": None, "identity": None}


# -- Trainer: before_write once the resumed counters are checked; pretrain/finetune write nothing when refused -----
def test_trainer_calls_before_write_after_the_resume_check_and_before_its_own_writes(tmp_path):
    calls = []

    def before_write():
        calls.append(sorted(p.name for p in tmp_path.joinpath("run").glob("*")) if tmp_path.joinpath("run").exists()
                     else None)

    def trainer(n):
        torch.manual_seed(0)
        return Trainer(torch.nn.Linear(4, 2), lambda m, b, g: {"loss": m(b["x"]).square().mean()}, TinyPairs(n),
                       tiny_train_config(checkpoint_every=0), tmp_path / "run", save_state_dict)

    trainer(16).fit(before_write=before_write)
    assert calls == [None]  # a new run: before anything is written (the folder included)
    with pytest.raises(ValueError, match=r"does not fit this run's 2 epochs of 8 steps \(32 samples, batch 4\)"):
        trainer(32).fit(resume=True, before_write=before_write)
    assert len(calls) == 1
    trainer(16).fit(resume=True, before_write=before_write)
    assert calls[1] == ["checkpoint", "metrics.jsonl", "training_curve.png"]


def _pretrain(output, root, resume=False):
    from medfm.training.runs import run_pretrain

    run_pretrain(pretrain_recipe(root), output, resume=resume)


def _finetune(output, root, resume=False):
    from medfm.training.runs import run_finetune

    run_finetune(finetune_recipe(root), output, resume=resume)


@pytest.mark.parametrize("runner", [_pretrain, _finetune], ids=["pretrain", "finetune"])
def test_a_refused_resume_leaves_the_run_folder_as_it_was(tmp_path, runner):
    """config.yaml got the new data_root (and finetune's init.json was written) before the Trainer refused."""
    runner(tmp_path / "run", write_pneumoniamnist(tmp_path / "d16", 16))
    (tmp_path / "run" / "init.json").unlink(missing_ok=True)
    before = folder_snapshot(tmp_path / "run")
    with pytest.raises(ValueError, match=r"^cannot resume from .*checkpoint: its state \(epoch 1, step 0, global step "
                                         r"2\) does not fit this run's 1 epochs of 4 steps \(32 samples, batch 8\)"):
        runner(tmp_path / "run", write_pneumoniamnist(tmp_path / "d32", 32), resume=True)
    assert folder_snapshot(tmp_path / "run") == before
