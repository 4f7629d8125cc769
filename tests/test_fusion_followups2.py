"""Follow-ups of the fusion presence-mask / generator / training-set fixes and of the report rough edges.

* ``write_protocol_report`` (fusion and segmentation-fusion reports) kept an earlier ``results.json`` while it
  wrote new figures: a report that stopped half way was marked complete by the old file.
* ``drop_modalities`` took a drop mask of 0.5 or 2 as a drop, and broadcast a ``(1,)`` mask over the batch.
* ``sample_modality_dropout`` / ``hierarchical_channel_sampling`` refused a bad ``gen`` naming both draws.
* ``medfm fuse`` read the whole training set with ``get_batch`` for its presence several times per run
  (classification: once per modality plus once for the training-set check); then once, building a batch of the
  whole set's float images for its masks alone.
* ``markdown_table("ab", ["a"])`` stopped with ``TypeError: string indices must be integers``.
* ``zeroshot_eval`` checked ``batch_size`` and ``prompts`` only after the checkpoint and the data were loaded.
"""
from __future__ import annotations

import json

import pytest
import torch

from medfm.adapters.fusion import hierarchical_channel_sampling, sample_modality_dropout
from medfm.data.multimodal import drop_modalities
from medfm.evaluation.fusion import write_protocol_report
from medfm.evaluation.report import markdown_table, start_report_dir
from medfm.versions import versions


# -- 1: the protocol report removes an earlier results.json before its first file -----------------------------
def test_protocol_report_removes_an_earlier_results_json_before_writing(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "results.json").write_text('{"old": true}')

    def broken(res, path):
        raise RuntimeError("plot failed")

    with pytest.raises(RuntimeError, match="plot failed"):
        write_protocol_report({"subsets": []}, out, None, lambda res: "text", broken, kind="fusion")
    assert not (out / "results.json").exists()  # was kept: the old report marked the half-written one complete
    paths = write_protocol_report({"subsets": []}, out, {"note": "new"}, lambda res: "text", None, kind="fusion")
    written = json.loads(paths["results"].read_text())
    assert written.pop("created").endswith("+00:00")
    assert written == {"schema_version": 1, "kind": "fusion", "versions": versions(), "note": "new", "subsets": []}


def test_start_report_dir_creates_the_folder_and_removes_only_results_json(tmp_path):
    out = tmp_path / "a" / "b"
    assert start_report_dir(out) == out and out.is_dir()
    (out / "results.json").write_text("{}")
    (out / "roc.png").write_text("x")
    start_report_dir(out)
    assert sorted(p.name for p in out.iterdir()) == ["roc.png"]


# -- 2: drop masks by presence()'s rule -----------------------------------------------------------------------
def _batch():
    return {"pre": torch.rand(4, 1, 2, 2), "present": {"pre": torch.ones(4, dtype=torch.bool)}}


@pytest.mark.parametrize("mask, message", [
    (torch.tensor([0.5, 0.0, 0.0, 0.0]), r"^the drop mask of 'pre' must be a \(B,\) bool tensor \(or 0/1 integers\), "
                                         r"got a torch\.float32 tensor of shape \(4,\) holding \[0\.5\]$"),
    (torch.tensor([2, 0, 0, 0]), r"^the drop mask of 'pre' must be .*, got integer values \[2\]"),
    (torch.tensor([True]), r"^the drop mask of 'pre' must be .* with one value per sample \(4\), got shape \(1,\)$"),
])
def test_drop_modalities_refuses_a_mask_that_is_not_one_0_1_value_per_sample(mask, message):
    with pytest.raises(ValueError, match=message):  # was: 0.5 and 2 taken as a drop, (1,) dropped every sample
        drop_modalities(_batch(), {"pre": mask})


def test_drop_modalities_takes_bool_and_0_1_integer_masks():
    for mask in (torch.tensor([True, False, False, False]), torch.tensor([1, 0, 0, 0])):
        out = drop_modalities(_batch(), {"pre": mask})
        assert out["present"]["pre"].tolist() == [False, True, True, True]
        assert out["pre"][0].isnan().all() and not out["pre"][1:].isnan().any()


# -- 3: the samplers name their own draw ----------------------------------------------------------------------
def test_the_samplers_name_their_own_draw():
    pres = {"a": torch.ones(2, dtype=torch.bool), "b": torch.ones(2, dtype=torch.bool)}
    with pytest.raises(ValueError, match=r"\(it draws the random modality dropout in training when modality_dropout "
                                         r"> 0\) or None, got 0;"):
        sample_modality_dropout(pres, 0.5, 0)
    with pytest.raises(ValueError, match=r"\(it draws the hierarchical channel sampling in training when hcs is on\) "
                                         r"or None, got 0;"):
        hierarchical_channel_sampling(torch.ones(2, 3, dtype=torch.bool), 0)


# -- 4: the training set's presence is read once per run ------------------------------------------------------
@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_fuse_reads_the_whole_training_set_once(lgg, tmp_path, monkeypatch, task):
    from medfm.data.lgg_fusion import LGGFusionSet
    from medfm.training import loop
    from medfm.training.fusion import run_fusion
    from tests.training.runs_helpers import fusion_recipe

    whole = []
    get_batch = LGGFusionSet.get_batch

    def counting(self, indices):
        if len(indices) == len(self):  # a read of a whole set: 8 training slices, 4 test slices
            whole.append(len(indices))
        return get_batch(self, indices)

    monkeypatch.setattr(LGGFusionSet, "get_batch", counting)
    monkeypatch.setattr(loop.Trainer, "fit",  # the reads, not the training (config.yaml: the fit's before_write)
                        lambda self, resume=False, before_write=None: before_write and before_write())
    run_fusion(fusion_recipe(task, batch_size=2), tmp_path / "out", str(lgg))
    # the test set only: the training set's presence is read from its masks (LGGFusionSet.presence), not from a
    # batch of its images (was [8, 4]: read once so; earlier 5 times (classification) or twice (segmentation))
    assert whole == [4]


# -- 5: markdown_table checks its rows ------------------------------------------------------------------------
@pytest.mark.parametrize("rows, got", [("ab", "str"), ({"a": 1}, "dict"), (None, "NoneType"),
                                       ([{"a": 1}, 1], "int at index 1")])
def test_markdown_table_refuses_rows_that_are_not_a_list_of_mappings(rows, got):
    with pytest.raises(TypeError, match=rf"^rows must be a list of row mappings \({{column key: value}}\), got {got}$"):
        markdown_table(rows, ["a"])  # was: string indices must be integers / 'NoneType' object is not iterable


def test_markdown_table_takes_a_generator_of_rows():
    assert markdown_table(({"a": i} for i in range(2)), ["a"]) == "| a |\n|---|\n| 0 |\n| 1 |\n"


# -- 6: zeroshot_eval checks its arguments before loading -----------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, r"^batch_size must be an integer >= 1, got 0$"),
    ({"prompts": ["a", "b"]}, r"^prompts must be a list with one non-empty list of strings per class"),
])
def test_zeroshot_eval_checks_its_arguments_before_loading(tmp_path, kwargs, message):
    from medfm.evaluation.zeroshot import zeroshot_eval

    with pytest.raises(ValueError, match=message):  # was: the missing checkpoint's CheckpointError
        zeroshot_eval(str(tmp_path / "no-such-checkpoint"), "pneumoniamnist", **kwargs)
