"""Missing-modality segmentation protocol: per-patient Dice for every subset of image modalities.

For trained segmentation fusers / baselines (:class:`medfm.adapters.fusion.FusedUNet`) and a
test set in the :mod:`medfm.data.multimodal` layout (``batch["mask"]`` ``(N, S, S)``,
``batch["patient"]`` ids), :func:`run_seg_fusion_protocol` measures, as medfm's LGG
segmentation does (:mod:`medfm.training.seg_tasks` ``LGGTask``), the **Dice per patient**:
each patient's predicted slices stacked into a volume against the stacked reference masks
(:func:`medfm.evaluation.segmentation.case_metrics`), then the mean over patients
(:func:`medfm.evaluation.segmentation.summarize_cases`), with a patient-level percentile
bootstrap 95% interval of that mean. Settings:

* **subsets**: for each of the ``2^M - 1`` non-empty image-modality subsets ``S``, the patients
  whose slices have every modality of ``S`` are shown ``S`` only (rows and inputs shared by
  all models; a single-modality model without any modality of ``S`` gets no entry);
* **natural**: every slice with the modalities it really has.

:func:`write_seg_fusion_report` writes ``results.json``, ``report.md`` and ``subsets.png``
atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from medfm.arg_checks import check_number, check_string_list
from medfm.data.multimodal import batch_size, presence
from medfm.evaluation.fusion import check_patient_ids, slice_batch, subset_checks, subset_name, subset_views, usable
from medfm.evaluation.fusion_args import SEGMENTATION_KEYS, check_protocol_args
from medfm.evaluation.fusion_report import format_ci, plot_subset_metric, subset_table, write_protocol_report
from medfm.io import PathLike


@torch.no_grad()
def predict_masks(model: torch.nn.Module, batch: Mapping[str, Any], batch_size_: int = 32) -> np.ndarray:
    """Label maps ``(N, S, S)`` uint8 (argmax over classes) of ``model`` on a batch, in chunks.

    Raises:
        ValueError: ``batch_size_`` not an integer >= 1.
    """
    batch_size_ = check_number("batch_size_", batch_size_, ge=1, integer=True)
    model.eval()
    n = batch_size(batch)
    out = [model(slice_batch(batch, torch.arange(s, min(n, s + batch_size_))))["logits"]
           .argmax(1).to(torch.uint8).cpu().numpy()
           for s in range(0, n, batch_size_)]
    return np.concatenate(out) if out else np.zeros((0,), np.uint8)


def check_seg_label_names(label_names: Any) -> List[str]:
    """``label_names`` as a list of names after checking that they name the background (index 0) and at least one
    foreground class, by the one rule of a list of names (:func:`medfm.arg_checks.check_string_list`; integers
    accepted, as :func:`medfm.evaluation.segmentation.case_metrics` accepts them).

    Raises:
        ValueError: ``label_names must be a list of class names, the background and at least one foreground class,
            got ['bg']`` (a string, a set, a mapping or a name that is no string or integer alike).
    """
    what = "a list of class names, the background and at least one foreground class"
    names = check_string_list("label_names", label_names, what=what, integers=True)
    if len(names) < 2:
        raise ValueError(f"label_names must be {what}, got {names!r}")
    return names


def patient_dice(pred: np.ndarray, ref: np.ndarray, patients: Sequence[str],
                 label_names: Sequence[str]) -> Dict[str, float]:
    """``{patient: Dice}`` of the first foreground class, slices stacked per patient (input order).

    Args:
        pred, ref: ``(N, S, S)`` integer label maps; patients: ``N`` ids.
        label_names: K >= 2 class names, index 0 background.

    Raises:
        ValueError: ``patients`` not a list of N ids (:func:`medfm.evaluation.fusion.check_patient_ids`; a shorter
            list failed in numpy's boolean indexing), ``label_names`` not a list of 2 or more names
            (:func:`check_seg_label_names`); the errors of :func:`medfm.evaluation.segmentation.case_metrics`.
    """
    from medfm.evaluation.segmentation import case_metrics

    label_names = check_seg_label_names(label_names)
    patients = np.asarray(check_patient_ids(patients, len(pred), "patient_dice", unit="slice"))
    fg = label_names[1]
    return {str(p): case_metrics(pred[patients == p], ref[patients == p], label_names, distances=False)[fg]["dice"]
            for p in dict.fromkeys(patients.tolist())}


def mean_dice_row(per_patient: Mapping[str, float], n_slices: int, n_boot: int, seed: int) -> Dict[str, Any]:
    """Mean per-patient Dice (:func:`summarize_cases`), patient-bootstrap 95% interval, counts."""
    from medfm.evaluation.metrics import bootstrap_mean_ci
    from medfm.evaluation.segmentation import summarize_cases

    summary = summarize_cases({p: {"fg": {"dice": d}} for p, d in per_patient.items()})
    vals = np.asarray(list(per_patient.values()), dtype=np.float64)
    ci = list(bootstrap_mean_ci(vals, n_boot, seed=seed)) if n_boot else [float("nan")] * 2
    return {"dice": summary["mean"].get("dice", float("nan")), "dice_ci95": ci, "n": int(n_slices),
            "n_patients": len(per_patient), "per_patient": dict(per_patient)}


def _evaluate(model, batch, rows, label_names, n_boot, seed, bs) -> Dict[str, Any]:
    part = slice_batch(batch, rows.nonzero().flatten())
    pred = predict_masks(model, part, bs)
    dice = patient_dice(pred, part["mask"].numpy().astype(np.uint8), part["patient"], label_names)
    return mean_dice_row(dice, len(pred), n_boot, seed)


def run_seg_fusion_protocol(models: Mapping[str, torch.nn.Module], test_batch: Mapping[str, Any],
                            modalities: Sequence[str], label_names: Sequence[str] = ("background", "abnormality"),
                            n_boot: int = 500, seed: int = 0, batch_size_: int = 32) -> Dict[str, Any]:
    """Per-patient Dice of every model on every modality subset and on the natural test set.

    Args:
        models: ``{label: segmentation fuser}`` (fusers, zero-fill late fusion, single-modality).
        test_batch: the whole test set as one batch, with ``"mask"`` and ``"patient"``.
        modalities: the image modalities whose subsets are tabulated (7 for 3).
        label_names: K class names, index 0 background; Dice is for class 1.
        n_boot: patient-bootstrap resamples of the mean Dice (0: no interval).

    Returns:
        ``{"subsets": [{"subset", "size", "model", "dice", "dice_ci95", "n", "n_patients",
        "per_patient"}], "natural": [...], "checks": {...}, "settings": {...}}``.

    Raises:
        ValueError: checked before any model runs (:func:`medfm.evaluation.fusion_args.check_protocol_args`,
            :func:`check_seg_label_names`): a modality the test batch does not hold (with close matches), a batch
            without ``mask`` or ``patient`` (no ``label`` is needed), ``label_names`` not a list of 2 or more names,
            ``n_boot`` not an integer >= 0, ``batch_size_`` not an integer >= 1.
    """
    modalities, n_boot = check_protocol_args(test_batch, modalities, n_boot, batch_size_,  # no MCAR / MNAR here
                                             needs=SEGMENTATION_KEYS)
    label_names = check_seg_label_names(label_names)
    natural = {m: presence(test_batch, m) for m in modalities}
    res: Dict[str, Any] = {"subsets": [], "natural": []}
    for subset, rows, shown, label, model in subset_views(test_batch, modalities, models):
        row = _evaluate(model, shown, rows, label_names, n_boot, seed, batch_size_)
        res["subsets"].append({"subset": subset_name(subset), "size": len(subset), "model": label, **row})
    for label, model in models.items():
        res["natural"].append({"model": label, **_evaluate(model, test_batch, usable(model, natural), label_names,
                                                           n_boot, seed, batch_size_)})
    res["checks"] = seg_fusion_checks(res, modalities)
    res["settings"] = {"metric": "Dice per patient (slices stacked), mean over patients", "n_boot": n_boot,
                       "seed": seed}
    return res


def seg_fusion_checks(res: Mapping[str, Any], modalities: Sequence[str], tolerance: float = 0.02) -> Dict[str, Any]:
    """The issue's figures on Dice: :func:`medfm.evaluation.fusion.subset_checks` on the rows' ``dice``
    (fused with all modalities vs the best single-modality model on those patients; per subset fused
    minus late fusion, subsets worse by more than ``tolerance``)."""
    return subset_checks(res["subsets"], modalities, "dice", tolerance)


def render_seg_markdown(res: Mapping[str, Any]) -> str:
    """``report.md``: Dice per subset (table, one column per model), natural missingness, checks."""
    import json

    from medfm.evaluation.report import markdown_table
    from medfm.io import to_jsonable

    models, table = subset_table(res["subsets"], "dice")
    natural = [{**r, "ci": format_ci(r["dice_ci95"])} for r in res["natural"]]  # n/a for NaN (was nan-nan)
    return "\n".join([
        "# Missing-modality segmentation: TCGA-LGG FLAIR abnormality", "",
        "Dice per patient (the patient's test slices stacked as a volume), mean over patients. "
        "Few test patients: read the patient-bootstrap 95% intervals before comparing close numbers.", "",
        "## Every image-modality subset at test time (patients that have every modality of the subset)", "",
        markdown_table(table, ["subset", "n", *models], floatfmt=".3f"), "",
        "## Natural missingness (every sequence a slice really has)", "",
        markdown_table(natural, {"model": "model", "dice": "mean Dice", "ci": "95% CI (patients)", "n": "slices",
                                 "n_patients": "patients"}, ".3f"), "",
        "## Checks", "", "```", json.dumps(to_jsonable(res["checks"]), indent=1), "```", ""])


def plot_seg_subsets(res: Mapping[str, Any], path: PathLike) -> Path:
    """PNG: mean per-patient Dice per modality subset (x) for every model, no reference line
    (:func:`medfm.evaluation.fusion_report.plot_subset_metric`, the classification protocol's figure too)."""
    return plot_subset_metric(res, path, "dice", "mean per-patient Dice", "Dice per image-modality subset at test time")


def write_seg_fusion_report(res: Mapping[str, Any], output: PathLike,
                            extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Path]:
    """Write ``results.json`` (the header of every result, :func:`medfm.versions.result_header` with ``"kind":
    "fusion_segmentation"``, then ``extra`` and ``res``), ``report.md`` and ``subsets.png`` atomically into ``output``,
    ``results.json`` last, an earlier one (and its ``report.md`` and ``subsets.png``) removed before the first file
    is written (:func:`medfm.evaluation.fusion_report.write_protocol_report`).

    Raises:
        NotADirectoryError: ``output`` or one of its parents is a file
            (:func:`medfm.evaluation.report.make_output_dir`).
        TypeError: ``extra`` not a mapping, or a value that cannot be written as JSON.
        ValueError: ``extra`` or ``res`` holds a key of the header (:data:`medfm.versions.RESULT_HEADER_KEYS`).
    """
    return write_protocol_report(res, output, extra, render_seg_markdown, plot_seg_subsets if res["subsets"] else None,
                                 kind="fusion_segmentation")


__all__ = ["predict_masks", "check_seg_label_names", "patient_dice", "mean_dice_row", "run_seg_fusion_protocol",
           "seg_fusion_checks", "render_seg_markdown", "plot_seg_subsets", "write_seg_fusion_report"]
