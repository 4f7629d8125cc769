"""One place per rule in the segmentation and VQA runners:

- a segmentation overlay's file name (``overlays/<case>.png``) was built both by ``evaluate_task`` (which writes
  it) and by ``seg_report_files`` (which lists and clears it): :func:`medfm.training.segmentation.overlay_name`;
- the U-Net and text-conditioned runners repeated their fit-then-report sequence (run record and an earlier
  report's removal in the fit's ``before_write``, final checkpoint, ``results.md``, ``results.json`` last, card):
  :func:`medfm.training.segmentation.fit_and_report`;
- ``check_resume_counters`` of the shared loop carried a ``lists=`` check only ``medfm vqa`` used:
  :func:`medfm.training.vqa.check_state_log`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.runs_helpers import (folder_snapshot, hippocampus_writer, lgg_slices_writer, segment_recipe,
                                         text_segment_recipe)

TRAIN = {"epochs": 1, "batch_size": 2, "precision": "fp32", "seed": 5, "log_every": 1}


def test_an_overlay_is_written_under_the_name_its_report_lists(tmp_path, monkeypatch):
    """evaluate_task writes, and seg_report_files lists (the names a run clears), the one overlay_name."""
    import medfm.training.segmentation as seg
    from medfm.training.seg_tasks import build_task

    hippocampus_writer(5)(tmp_path / "d")
    recipe = segment_recipe(TRAIN, eval={"overlays": 1, "distances": False})
    task = build_task(recipe.data, str(tmp_path / "d"))
    torch.manual_seed(0)
    model = seg.build_segmenter(recipe, task)
    monkeypatch.setattr(seg, "overlay_name", lambda cid: f"figures/{cid}-overlay.png")
    seg.evaluate_task(model, task, recipe.eval, tmp_path / "run")
    written = sorted(str(p.relative_to(tmp_path / "run")) for p in (tmp_path / "run").rglob("*.png"))
    case = task.test_cases()[0]
    assert written == [f"figures/{case}-overlay.png"]
    assert seg.seg_report_files({"tasks/x/": task}, 1) == ["results.md", f"tasks/x/figures/{case}-overlay.png"]


class _Trainer:
    """A stand-in :class:`medfm.training.loop.Trainer`: its fit calls ``before_write`` (or raises ``refuse``)."""

    def __init__(self, refuse=None):
        self.model, self.refuse, self.calls = torch.nn.Linear(2, 1), refuse, []

    def fit(self, resume=False, before_write=None):
        self.calls.append(("fit", resume))
        if self.refuse is not None:
            raise self.refuse
        before_write()


def _earlier_report(out: Path, case: str) -> None:
    """A finished run's report in ``out``: results.json listing an old figure, results.md, the test case's overlay;
    and the user's files: a note, an overlay of no test case."""
    (out / "overlays").mkdir(parents=True)
    for name in ("results.md", "old.png", f"overlays/{case}.png", "overlays/other_case.png", "notes.md"):
        (out / name).write_text("earlier")
    (out / "results.json").write_text(json.dumps({"kind": "segmentation", "files": ["old.png"]}))


@pytest.fixture()
def hippocampus(tmp_path):
    """(recipe with one overlay, its task, its one test case) on a generated MSD hippocampus of 5 volumes."""
    from medfm.training.seg_tasks import build_task

    hippocampus_writer(5)(tmp_path / "d")
    recipe = segment_recipe(TRAIN, eval={"overlays": 1, "distances": False})
    task = build_task(recipe.data, str(tmp_path / "d"))
    return recipe, task, task.test_cases()[0]


def test_fit_and_report_writes_the_record_then_the_report_with_results_json_last(tmp_path, hippocampus,
                                                                                 monkeypatch):
    import medfm.cards
    import medfm.training.adaptation as adaptation
    from medfm.training.segmentation import fit_and_report
    from medfm.versions import provenance_text

    recipe, task, case = hippocampus
    out = tmp_path / "run"
    _earlier_report(out, case)
    events = []
    monkeypatch.setattr(adaptation, "save_final", lambda model, mode, base, meta, output: (
        events.append(("final", mode, base, meta)), output / "model")[1])
    monkeypatch.setattr(medfm.cards, "write_card", lambda final, results: events.append(("card", final, results)))

    def evaluate(final, train_s):
        # the fit wrote the record and cleared the earlier report (results.json first), kept the user's note
        assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["config.yaml", "init.json", "notes.md",
                                                                          "other_case.png"]
        events.append(("evaluate", final))
        return {"kind": "segmentation", "train_seconds": round(train_s, 1)}, "# table\n"

    trainer = _Trainer()
    res = fit_and_report(trainer, recipe, out, None, False, None, lambda: events.append(("base",)), {"m": 1},
                         {"": task}, evaluate)
    assert trainer.calls == [("fit", False)]
    assert [e[0] for e in events] == ["base", "final", "evaluate", "card"]
    assert events[1] == ("final", "full", None, {"m": 1}) and events[2] == ("evaluate", out / "model")
    files = ["results.md", f"overlays/{case}.png", "results.json"]
    assert res["files"] == files and events[3] == ("card", out / "model", res)
    assert json.loads((out / "results.json").read_text()) == res
    assert (out / "results.md").read_text() == f"# table\n\n{provenance_text(res)}\n"  # the header's line last
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(
        ["config.yaml", "init.json", "notes.md", "overlays/other_case.png", "results.json", "results.md"])


def test_fit_and_report_refused_by_the_fit_writes_nothing(tmp_path, hippocampus):
    """Guard: a fit refused before its before_write (a resumed state that does not fit) leaves the folder as it
    was, the earlier report included; nothing is evaluated."""
    from medfm.training.segmentation import fit_and_report

    recipe, task, case = hippocampus
    out = tmp_path / "run"
    _earlier_report(out, case)
    before = folder_snapshot(out)

    def evaluate(final, train_s):
        raise AssertionError("evaluated after a refused fit")

    with pytest.raises(ValueError, match="does not fit"):
        fit_and_report(_Trainer(ValueError("its state does not fit")), recipe, out, None, True, None, None, {},
                       {"": task}, evaluate)
    assert folder_snapshot(out) == before


@pytest.mark.parametrize("runner", ["unet", "text"])
def test_both_segmentation_runners_report_through_fit_and_report(tmp_path, monkeypatch, runner):
    """Each runner hands its trainer, recipe, run folder and its overlays' folders (``""`` for the U-Net run,
    ``tasks/<name>/`` per text-conditioned task) to the one fit-and-report sequence, and returns what it returns."""
    import medfm.training.segmentation as seg

    seen = {}

    def fake(trainer, recipe, output, init, resume, base, write_base, meta, folders, evaluate):
        seen.update(trainer=trainer, recipe=recipe, output=output, resume=resume, folders=folders)
        return {"kind": "sentinel"}

    monkeypatch.setattr(seg, "fit_and_report", fake)
    root, out = tmp_path / "d", tmp_path / "run"
    if runner == "unet":
        hippocampus_writer(5)(root)
        recipe = segment_recipe(TRAIN)
        res = seg.run_segmentation(recipe, out, data_root=str(root))
        names = [""]
    else:
        from medfm.training.text_segmentation import run_text_segmentation

        lgg_slices_writer((1, 2, 10))(root)
        recipe = text_segment_recipe(root, TRAIN)
        res = run_text_segmentation(recipe, out, data_root=str(root))
        names = ["tasks/lesion/"]
    assert res == {"kind": "sentinel"}
    assert seen["recipe"] is recipe and seen["output"] == out and seen["resume"] is False
    assert list(seen["folders"]) == names and seen["trainer"].cfg is recipe.train


def test_a_vqa_state_log_is_checked_by_the_vqa_runner():
    from medfm.training.loop import check_resume_counters
    from medfm.training.vqa import check_state_log

    log = [{"epoch": 1, "loss": 0.5}]
    counters = {"epoch": 1, "step": 4, "log": log}
    got = check_state_log(Path("run/train_state"), counters)
    assert got == log and got is not log  # a new list: the run appends to it
    for bad in ({"epoch": 1, "step": 4}, {"epoch": 1, "step": 4, "log": "x"}, {"log": {"epoch": 1}}):
        with pytest.raises(ValueError, match=r"^cannot resume from run/train_state: training state corrupt \(its "
                                             r"trainer_state\.json counters have no list 'log'\)$"):
            check_state_log(Path("run/train_state"), bad)
    with pytest.raises(TypeError):  # the shared loop's check has no VQA-only parameter
        check_resume_counters(Path("s"), counters, 4, 2, 16, 4, keys=("epoch", None, "step"), lists=("log",))
