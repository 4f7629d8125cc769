"""When a LoRA run writes ``<output>/base`` (its model's starting weights, the base its adapter records):

``medfm finetune``, ``medfm segment`` and its text-conditioned runs saved ``base/`` before the fit (the old
``keep_lora_base``), so a run refused by the fit's checks (a resume whose state does not fit another
``--data-root``, with ``base/`` deleted; any refusal of a fresh run) left ``base/`` behind, and a fresh run wrote it
before ``config.yaml``. The base is decided before the fit (:func:`medfm.training.adaptation.lora_base`, it feeds
the checkpoint's metadata and the trainer's ``save_fn``) and written in the trainer's ``before_write``, after
``config.yaml`` (by the writer ``lora_base`` returns), from the weights taken before LoRA wraps the model. A
finished run still reloads bit-exactly.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import medfm.hub
from medfm.training.loop import Trainer
from tests.training.runs_helpers import (finetune_recipe, folder_snapshot, hippocampus_writer, lgg_slices_writer,
                                         segment_recipe, text_segment_recipe, write_pneumoniamnist)

TRAIN = {"epochs": 1, "batch_size": 2, "precision": "fp32", "seed": 5, "log_every": 1}
LORA = {"rank": 2, "train_norm": False}  # frozen BatchNorms: their statistics move in the model's own tensors


def _finetune(output, root, resume=False):
    from medfm.training.runs import run_finetune

    return run_finetune(finetune_recipe(root, lora=LORA), output, resume=resume)


def _segment(output, root, resume=False):
    from medfm.training.segmentation import run_segmentation

    recipe = segment_recipe(TRAIN, mode="lora", lora=LORA)
    return run_segmentation(recipe, output, data_root=str(root), resume=resume)["checkpoint"]


def _text_segment(output, root, resume=False):
    from medfm.training.text_segmentation import run_text_segmentation

    recipe = text_segment_recipe(root, TRAIN, mode="lora", lora=LORA)
    return run_text_segmentation(recipe, output, data_root=str(root), resume=resume)["checkpoint"]


def _pneumonia(n):
    return lambda root: write_pneumoniamnist(root, n)


# name: (runner, the run's data, the same data with more training items)
RUNNERS = {
    "finetune": (_finetune, _pneumonia(16), _pneumonia(32)),
    "segment": (_segment, hippocampus_writer(10), hippocampus_writer(16)),
    "text_segment": (_text_segment, lgg_slices_writer((1, 2, 10)), lgg_slices_writer((1, 2, 3, 4, 10))),
}


def _data(tmp_path, name, more=False):
    _, write, write_more = RUNNERS[name]
    root = tmp_path / ("more" if more else "d")
    (write_more if more else write)(root)
    return root


@pytest.fixture
def trained(monkeypatch):
    """The models the runs' fits returned, and whether ``config.yaml`` was there when each ``base/`` was saved."""
    seen = {"models": [], "base_after_config": []}
    fit, save = Trainer.fit, medfm.hub.save_pretrained

    def spy_fit(self, *args, **kw):
        seen["models"].append(fit(self, *args, **kw))
        return seen["models"][-1]

    def spy_save(model, path, *args, **kw):
        if Path(path).name == "base":
            seen["base_after_config"].append((Path(path).parent / "config.yaml").is_file())
        return save(model, path, *args, **kw)

    monkeypatch.setattr(Trainer, "fit", spy_fit)
    monkeypatch.setattr(medfm.hub, "save_pretrained", spy_save)
    return seen


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


@pytest.mark.parametrize("name", list(RUNNERS))
def test_a_fresh_lora_run_refused_by_the_fit_leaves_no_base(tmp_path, name, monkeypatch):
    """The fit refuses before its before_write (as its checks do): base/ was already written."""
    def refuse(self, resume=False, before_write=None):
        raise ValueError("refused by the fit's checks")

    monkeypatch.setattr(Trainer, "fit", refuse)
    with pytest.raises(ValueError, match="refused by the fit's checks"):
        RUNNERS[name][0](tmp_path / "run", _data(tmp_path, name))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", list(RUNNERS))
def test_a_lora_run_writes_its_base_after_config_yaml_and_reloads_bit_exactly(tmp_path, name, trained):
    adapter = RUNNERS[name][0](tmp_path / "run", _data(tmp_path, name))
    assert trained["base_after_config"] == [True]  # was [False]: base/ before config.yaml
    cfg = medfm.hub.load_config(adapter)
    assert cfg["base_checkpoint"] == str((tmp_path / "run" / "base").resolve())
    again = medfm.hub.from_pretrained(adapter)
    assert _same_weights(again, trained["models"][0])  # the base's weights are the ones the adapter trained over


@pytest.mark.parametrize("name", list(RUNNERS))
def test_a_refused_resume_with_base_deleted_leaves_the_run_folder_as_it_was(tmp_path, name, trained):
    """base/ was written again before the trainer refused the resume (another --data-root); a resume on the run's own
    data writes it again, with the starting weights (the resumed state, loaded into the model's tensors before the
    trainer's before_write, has moved the frozen BatchNorms' statistics)."""
    run, out = RUNNERS[name][0], tmp_path / "run"
    run(out, _data(tmp_path, name))
    first = medfm.hub.load_state_dict(out / "base")
    shutil.rmtree(out / "base")
    before = folder_snapshot(out)
    with pytest.raises(ValueError, match=r"^cannot resume from .*checkpoint: its state .* does not fit this run's"):
        run(out, _data(tmp_path, name, more=True), resume=True)
    assert folder_snapshot(out) == before  # was: base/ written again
    adapter = run(out, tmp_path / "d", resume=True)
    again = medfm.hub.load_state_dict(out / "base")
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)
    assert _same_weights(medfm.hub.from_pretrained(adapter), trained["models"][-1])
