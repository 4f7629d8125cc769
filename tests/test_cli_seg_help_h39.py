"""``medfm segment --help`` and ``medfm fuse --help`` say what a segmentation run scores and writes.

Before, the segment help said results.json and results.md hold "Dice, HD95, surface Dice": a recipe with
``eval.distances: false`` scores Dice only; a text-conditioned run scores each task (and a task's referring query,
Dice only, in results.json) and writes its overlays under ``tasks/<task>/overlays/`` only. The fuse help said every
model is scored "with the MCAR/MNAR protocol": a segmentation recipe's are not (Dice per patient by subset of
present modalities and with their natural missingness). Each statement is checked against a tiny run (seconds).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from tests.helpers.cli import help_text
from tests.helpers.lgg_fusion import write_fake_lgg
from tests.training.runs_helpers import (fusion_recipe, hippocampus_writer, lgg_slices_writer, segment_recipe,
                                         text_segment_recipe)

TRAIN = {"epochs": 1, "batch_size": 2, "precision": "fp32", "seed": 5, "log_every": 1}
#: the referring query of the text-conditioned run (words the tiny BERT of :func:`lgg_slices_writer` knows)
QUERY = "a brain mri of abnormality"


def _segment(distances: bool) -> Callable[[Path, Path], None]:
    """A run of a tiny full-mode MSD hippocampus recipe with ``eval.distances`` and one overlay."""
    def run(out: Path, root: Path) -> None:
        from medfm.training.segmentation import run_segmentation

        eval_ = {"overlays": 1, "distances": distances}
        run_segmentation(segment_recipe(TRAIN, mode="full", eval=eval_), out, data_root=str(root))
    return run


def _text_segment(out: Path, root: Path) -> None:
    """A tiny text-conditioned run (one task, ``lesion``, with the referring query :data:`QUERY`)."""
    from medfm.training.text_segmentation import run_text_segmentation

    recipe = text_segment_recipe(root, TRAIN, eval={"overlays": 1, "distances": True})
    recipe.tasks[0].query = QUERY
    run_text_segmentation(recipe, out, data_root=str(root))


def _fuse(task: str) -> Callable[[Path, Path], None]:
    """A run of the tiny ``medfm fuse`` recipe of ``task`` (:func:`tests.training.runs_helpers.fusion_recipe`)."""
    def run(out: Path, root: Path) -> None:
        from medfm.training.fusion import run_fusion

        run_fusion(fusion_recipe(task, 4), out, str(root))
    return run


# case: (data writer, run(output, data root))
RUNS = {
    "segment_distances": (hippocampus_writer(5), _segment(True)),
    "segment_dice_only": (hippocampus_writer(5), _segment(False)),
    "text_segment": (lgg_slices_writer((1, 2, 10)), _text_segment),
    "fuse_segmentation": (lambda root: write_fake_lgg(root, slices=4), _fuse("segmentation")),
    "fuse_classification": (lambda root: write_fake_lgg(root, slices=4), _fuse("classification")),
}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """``run_folder(case)``: the run folder of the case (:data:`RUNS`), each case run once a module."""
    done: Dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in done:
            write_data, run = RUNS[case]
            tmp = tmp_path_factory.mktemp(case)
            write_data(tmp / "d")
            run(tmp / "run", tmp / "d")
            done[case] = tmp / "run"
        return done[case]

    return get


def _results(run: Path) -> dict:
    """The run's ``results.json``."""
    return json.loads((run / "results.json").read_text())


def _entries(run: Path) -> List[str]:
    """The entries of ``run`` and of each of its ``models/<name>/`` folders (these as ``models/<name>/<entry>``),
    a folder's name ending in ``/``."""
    def names(folder: Path) -> List[str]:
        return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())

    models = sorted((run / "models").iterdir())
    return names(run) + sorted({"models/<name>/" + name for model in models for name in names(model)})


def test_segment_help_says_hd95_and_surface_dice_only_with_eval_distances(run_folder):
    """HD95 and surface Dice are scored by default and left out with ``eval.distances: false``; Dice always."""
    from medfm.training.segmentation import SegEvalConfig

    assert ("(the test Dice, and HD95 and surface Dice unless the recipe sets eval.distances: false;"
            in help_text("segment"))
    assert SegEvalConfig().distances is True
    assert set(_results(run_folder("segment_distances"))["summary"]["mean"]) == {"dice", "hd95", "surface_dice"}
    assert set(_results(run_folder("segment_dice_only"))["summary"]["mean"]) == {"dice"}


def test_segment_help_says_a_text_conditioned_run_reports_per_task(run_folder):
    """A text-conditioned run: results per task (results.md a table each), its query's Dice in results.json, its
    overlays in ``tasks/<task>/overlays/`` and no ``overlays/`` of the run's own."""
    text = help_text("segment")
    assert "text-conditioned: per task, with the Dice of a task's query in results.json)" in text
    assert "text-conditioned: tasks/<task>/overlays/*.png instead)" in text
    run = run_folder("text_segment")
    tasks = _results(run)["tasks"]
    assert list(tasks) == ["lesion"] and set(tasks["lesion"]["summary"]["mean"]) == {"dice", "hd95", "surface_dice"}
    assert tasks["lesion"]["referring"]["query"] == QUERY and 0 <= tasks["lesion"]["referring"]["dice"] <= 1
    assert (run / "results.md").read_text().count(" test results\n") == len(tasks)
    assert [p.name for p in (run / "tasks" / "lesion" / "overlays").iterdir()] != []
    assert not (run / "overlays").exists()


def test_fuse_help_says_a_segmentation_recipe_has_no_mcar_mnar_protocol(run_folder):
    """A segmentation fuse run scores Dice per patient by subset and with natural missingness (no MCAR/MNAR rows,
    which a classification run has), and writes the files and model folders of a classification run (those
    tests/test_cli_run_help_h38.py checks against the help)."""
    text = help_text("fuse")
    assert "by subset of present modalities, with the MCAR/MNAR protocol (" not in text  # the old, every recipe
    assert ("by subset of present modalities, with their natural missingness and, unless the recipe is for "
            "segmentation (task: segmentation), with the MCAR/MNAR protocol") in text
    assert "(every model's test AUC, or for segmentation its Dice per patient, per subset" in text
    seg, cls = run_folder("fuse_segmentation"), run_folder("fuse_classification")
    seg_res, cls_res = _results(seg), _results(cls)
    assert seg_res["subsets"] and seg_res["natural"] and "mcar" not in seg_res and "mnar" not in seg_res
    assert seg_res["settings"]["metric"].startswith("Dice per patient")
    assert cls_res["natural"] and cls_res["mcar"] and "mnar" in cls_res
    assert "MCAR" not in (seg / "report.md").read_text() and "## MCAR" in (cls / "report.md").read_text()
    assert _entries(seg) == _entries(cls)


def test_segment_help_names_the_human_reference_and_the_brats_regions_that_results_json_holds():
    """A case with a second observer adds ``human_reference`` (CHASE_DB1), a task with regions adds ``regions``
    (BraTS); the help names both, the regions by the names of :data:`medfm.data.brats.BRATS_REGIONS`."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from medfm.data.brats import BRATS_REGIONS
    from medfm.training.segmentation import SegEvalConfig, evaluate_task

    text = help_text("segment")
    assert "CHASE_DB1: also the second observer scored against the first, a human reference;" in text
    regions = ", ".join(name.replace("_", " ") for name in BRATS_REGIONS).replace(", enhancing", " and enhancing")
    assert f"BraTS: also the {regions} regions;" in text

    ref = np.zeros((8, 8), np.uint8)
    ref[2:6, 2:6] = 1
    observer = np.zeros_like(ref)
    observer[2:6, 2:5] = 1
    case = SimpleNamespace(reference=ref, spacing=None, extra={"second_observer": observer})
    task = SimpleNamespace(name="t", label_names=["background", "lesion"], regions={"any": (1,)},
                           test_cases=lambda: ["c0"], load_case=lambda cid: case,
                           predict=lambda model, case, overlap, sw: ref.copy())
    res = evaluate_task(torch.nn.Identity(), task, SegEvalConfig(overlays=0, distances=False))
    assert res["human_reference"]["summary"]["mean"]["dice"] == pytest.approx(2 * 12 / (16 + 12))
    assert res["regions"]["definition"] == {"any": [1]} and res["regions"]["summary"]["mean"]["dice"] == 1.0
