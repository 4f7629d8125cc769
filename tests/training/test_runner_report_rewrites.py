"""A run folder rewritten by a runner holds only the new report's files, and no ``results.json`` unless the new
report is complete (:func:`medfm.evaluation.report.start_report_dir`); the user's own files stay:

- ``medfm vqa``: a ``--resume`` of a finished run whose evaluation failed kept the old ``results.json`` (and its
  ``report.md`` and figures) beside the new checkpoint and ``predictions.jsonl``;
- ``medfm segment`` (U-Net and text-conditioned): a resume with fewer ``eval.overlays`` kept the old overlay PNGs
  (``overlays/``, ``tasks/<name>/overlays/``), and one whose evaluation failed kept the old ``results.json``;
- ``medfm fuse``'s report (classification and segmentation): a report without subsets kept an earlier
  ``subsets.png`` (only ``results.json`` was cleared, and it lists no files).
"""
from __future__ import annotations

import json

import pytest

from medfm.config import from_dict
from tests.training.runs_helpers import (hippocampus_writer, lgg_slices_writer, text_segment_recipe, vqa_recipe,
                                         write_vqa_data)

TRAIN = {"epochs": 1, "batch_size": 2, "precision": "fp32", "seed": 5, "log_every": 1}


def _files(folder):
    """Every file under ``folder`` but the checkpoints' (relative paths, sorted)."""
    skip = {"checkpoint", "model", "train_state"}
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
                  and not skip & set(p.relative_to(folder).parts))


def _user_files(out):
    """A user's notes in the run folder, one beside the report and one in its overlays folder."""
    (out / "notes.md").write_text("mine")
    (out / "overlays").mkdir(exist_ok=True)
    (out / "overlays" / "sketch.png").write_bytes(b"mine")
    return {"notes.md", "overlays/sketch.png"}


def _fail(*args, **kwargs):
    raise RuntimeError("evaluation failed")


def test_a_vqa_resume_whose_evaluation_fails_leaves_no_earlier_report(tmp_path, monkeypatch):
    import medfm.evaluation.vqa as vqa_eval
    from medfm.training.vqa import run_vqa

    root, out = write_vqa_data(tmp_path / "d", 1), tmp_path / "run"
    run_vqa(vqa_recipe(tmp_path, epochs=1), out, data_root=root)
    assert set(json.loads((out / "results.json").read_text())["files"]) >= {"report.md", "training_curve.png"}
    mine = _user_files(out)
    monkeypatch.setattr(vqa_eval, "plot_group_accuracy", _fail)  # after the checkpoint and predictions.jsonl
    with pytest.raises(RuntimeError, match="evaluation failed"):
        run_vqa(vqa_recipe(tmp_path, epochs=1), out, data_root=root, resume=True)
    # was: the old results.json, report.md and both figures beside the new checkpoint and predictions
    assert _files(out) == sorted({"config.yaml", "init.json", "metrics.jsonl", "predictions.jsonl"} | mine)
    monkeypatch.undo()
    res = run_vqa(vqa_recipe(tmp_path, epochs=1), out, data_root=root, resume=True)
    assert _files(out) == sorted({"config.yaml", "init.json", *res["files"]} - {"checkpoint"} | mine)


def _segment(out, root, overlays, resume=False):
    from medfm.training.segmentation import SegmentationRecipe, run_segmentation

    recipe = {"data": {"dataset": "msd_hippocampus", "patch": [8, 8, 8], "repeats": 1},  # 2 test volumes
              "encoder": {"name": "resnet3d_test"}, "decoder": {"stem_channels": 8}, "train": TRAIN,
              "eval": {"overlays": overlays, "distances": False}}
    return run_segmentation(from_dict(SegmentationRecipe, recipe), out, data_root=str(root), resume=resume)


def test_a_segment_resume_writes_only_its_own_overlays(tmp_path, monkeypatch):
    import medfm.evaluation.segmentation as seg_eval

    hippocampus_writer(10)(tmp_path / "d")
    out = tmp_path / "run"
    _segment(out, tmp_path / "d", 2)
    assert {p.name for p in (out / "overlays").iterdir()} == {"hippocampus_004.png", "hippocampus_009.png"}
    mine = _user_files(out)
    res = _segment(out, tmp_path / "d", 1, resume=True)  # eval.overlays may change on a resume
    report = ["results.md", "overlays/hippocampus_004.png", "results.json"]
    run = {"config.yaml", "init.json", "metrics.jsonl", "training_curve.png"}
    assert _files(out) == sorted(run | set(report) | mine)  # was: overlays/hippocampus_009.png kept
    assert res["kind"] == "segmentation" and res["files"] == report
    assert json.loads((out / "results.json").read_text())["files"] == report
    monkeypatch.setattr(seg_eval, "case_metrics", _fail)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        _segment(out, tmp_path / "d", 1, resume=True)
    assert _files(out) == sorted(run | mine)  # was: the old results.json, results.md and overlay


def test_a_text_segment_resume_without_overlays_leaves_none(tmp_path):
    from medfm.training.text_segmentation import run_text_segmentation

    root, out = tmp_path / "d", tmp_path / "run"
    lgg_slices_writer((1, 2, 10))(root)
    overlay = "tasks/lesion/overlays/TCGA_BB_0003_20000101.png"

    def run(overlays, resume):
        recipe = text_segment_recipe(root, TRAIN, eval={"overlays": overlays, "distances": False})
        return run_text_segmentation(recipe, out, data_root=str(root), resume=resume)

    run(1, False)
    assert (out / overlay).is_file()
    (out / "tasks" / "lesion" / "notes.md").write_text("mine")
    res = run(0, True)
    assert _files(out) == sorted({"config.yaml", "init.json", "metrics.jsonl", "training_curve.png", "results.md",
                                  "results.json", "tasks/lesion/notes.md"})  # was: the overlay kept
    assert res["kind"] == "text_segmentation" and res["files"] == ["results.md", "results.json"]


def _fusion_result(metric):
    rows = [{"subset": s, "model": "late", metric: 0.6, "n": 4, "n_patients": 2} for s in ("pre", "flair")]
    if metric == "auc":
        return {"subsets": rows, "natural": [], "mcar": [], "mnar": [], "checks": {}}
    return {"subsets": rows, "natural": [], "checks": {}}


@pytest.mark.parametrize("metric", ["auc", "dice"])
def test_a_fusion_report_without_subsets_leaves_no_earlier_figure(tmp_path, metric):
    from medfm.evaluation.fusion import write_fusion_report
    from medfm.evaluation.fusion_seg import write_seg_fusion_report

    write = write_fusion_report if metric == "auc" else write_seg_fusion_report
    res = _fusion_result(metric)
    assert set(write(res, tmp_path)) == {"plot", "report", "results"}
    (tmp_path / "notes.md").write_text("mine")
    (tmp_path / "models").mkdir()  # (a fuse run's trained models)
    (tmp_path / "models" / "config.yaml").write_text("mine")
    paths = write({**res, "subsets": []}, tmp_path)
    assert set(paths) == {"report", "results"}
    assert _files(tmp_path) == ["models/config.yaml", "notes.md", "report.md", "results.json"]  # was: subsets.png
