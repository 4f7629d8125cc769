"""The missing-modality protocols' reports: ``results.json``, ``report.md`` and ``subsets.png`` in one folder.

:func:`write_fusion_report` writes the classification protocol's
(:func:`medfm.evaluation.fusion.run_fusion_protocol`: AUC per modality subset, natural, MCAR and MNAR tables);
:func:`write_protocol_report` is the writer it shares with the segmentation protocol's
(:func:`medfm.evaluation.fusion_seg.write_seg_fusion_report`), :func:`subset_table` the per-subset pivot both tables
use, :func:`format_ci` their one interval format and :func:`plot_subset_metric` their one subsets figure. Files
are written atomically (:mod:`medfm.io`), ``results.json`` last. matplotlib is imported only when a figure is drawn
(:mod:`medfm.evaluation.plots`). Every name here is importable from :mod:`medfm.evaluation.fusion` too, as before.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from medfm.io import PathLike, atomic_write_json, atomic_write_text, to_jsonable


def subset_table(rows: Sequence[Mapping[str, Any]], metric: str) -> Tuple[List[str], List[Dict[str, Any]]]:
    """Pivot per-(subset, model) result rows into ``(models, table)``: one table row per subset
    with ``n`` ("slices (patients pat.)") and one ``metric`` column per model, in first-seen order."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    table: Dict[str, Dict[str, Any]] = {}
    for r in rows:
        row = table.setdefault(r["subset"], {"subset": r["subset"]})
        row[r["model"]] = r[metric]
        row["n"] = f"{r['n']} ({r['n_patients']} pat.)"
    return models, list(table.values())


def format_ci(ci: Sequence[Optional[float]]) -> str:
    """A 95% interval ``[lo, hi]`` (a result row's ``auc_ci95`` / ``dice_ci95``) as report text: ``0.612-0.931``
    (3 decimals), or ``n/a`` when either end is NaN or None (no bootstrap: ``n_boot=0``, or too few patients or
    one class). The one interval format of both protocols' ``report.md``; the segmentation report printed
    ``nan-nan``.

    Raises:
        ValueError: ``ci`` not a pair ``[lo, hi]``.
    """
    try:
        lo, hi = ci
    except (TypeError, ValueError):
        raise ValueError(f"a 95% interval must be a pair [lo, hi], got {ci!r}") from None
    if any(v is None or np.isnan(v) for v in (lo, hi)):
        return "n/a"
    return f"{lo:.3f}-{hi:.3f}"


def render_markdown(res: Mapping[str, Any]) -> str:
    """``report.md`` text: subset table (AUC per model), natural, MCAR, MNAR and the checks."""
    from medfm.evaluation.report import markdown_table

    models, table = subset_table(res["subsets"], "auc")
    lines = ["# Missing-modality fusion: TCGA-LGG slice-level abnormality", "",
             "AUC (positive = FLAIR abnormality present). The test split has few patients: read the "
             "patient-bootstrap 95% intervals in results.json / below before comparing close numbers.", "",
             "## Every modality subset at test time (samples that have every modality of the subset)", "",
             markdown_table(table, ["subset", "n", *models], floatfmt=".3f"), "",
             "## Natural missingness (every modality a sample really has)", "",
             markdown_table([{**r, "ci": format_ci(r["auc_ci95"])} for r in res["natural"]],
                            {"model": "model", "auc": "AUC", "ci": "AUC 95% CI (patients)", "acc": "ACC", "n": "n"},
                            ".3f"), "",
             "## MCAR", "",
             markdown_table([{**r, "ci": format_ci(r["auc_ci95"])} for r in res["mcar"]],
                            {"rate": "rate", "model": "model", "auc": "AUC", "ci": "AUC 95% CI", "acc": "ACC",
                             "n": "n"}, ".3f"), "",
             "## MNAR (missingness tied to the label in training; flipped at test)", "",
             markdown_table([{**r, "ci": format_ci(r["auc_ci95"])} for r in res["mnar"]],
                            {"model": "model", "trained": "trained", "test": "test", "auc": "AUC", "ci": "AUC 95% CI",
                             "acc": "ACC", "n": "n"}, ".3f"), "",
             "## Checks", "", "```", json.dumps(to_jsonable(res["checks"]), indent=1), "```", ""]
    return "\n".join(lines)


def plot_subset_metric(res: Mapping[str, Any], path: PathLike, metric: str, ylabel: str, title: str,
                       reference: Optional[float] = None) -> Path:
    """PNG of a protocol's ``res["subsets"]`` rows: ``row[metric]`` (y) per modality subset (x, a category, in
    first-seen order) for every model (one marker series each, models side by side within a subset), with a dotted
    horizontal line at ``reference`` (e.g. 0.5, chance AUC; None: none). The one subsets figure of both protocols
    (:func:`plot_subsets`, :func:`medfm.evaluation.fusion_seg.plot_seg_subsets`); NaN values are left out.
    Written atomically (:func:`medfm.evaluation.plots.save_figure`); matplotlib is imported here, lazily.

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: a row without ``metric`` (a misspelt key was a bare KeyError mid-figure).
    """
    from medfm.evaluation.plots import new_figure, save_figure

    rows = res["subsets"]
    bad = next((r for r in rows if metric not in r), None)
    if bad is not None:
        raise ValueError(f"a subsets row has no {metric!r} value to plot (its keys: {sorted(bad)})")
    subsets = list(dict.fromkeys(r["subset"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig = new_figure((10.0, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    markers = "os^Dvx+*<>ph"
    width = 0.7 / max(1, len(models))
    for k, m in enumerate(models):  # every model has a row (models are read from the rows)
        xs, ys = zip(*[(subsets.index(r["subset"]) + (k - (len(models) - 1) / 2) * width, r[metric])
                       for r in rows if r["model"] == m])
        ax.plot(xs, ys, marker=markers[k % len(markers)], linestyle="none", label=m, alpha=0.85)
    ax.set_xticks(range(len(subsets)))
    ax.set_xticklabels(subsets, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    if reference is not None:
        ax.axhline(reference, color="grey", linewidth=0.8, linestyle=":")
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def plot_subsets(res: Mapping[str, Any], path: PathLike) -> Path:
    """PNG: AUC per modality subset (x) for every model, chance (0.5) dotted (:func:`plot_subset_metric`)."""
    return plot_subset_metric(res, path, "auc", "test AUC", "AUC per modality subset at test time", reference=0.5)


#: the files :func:`write_protocol_report` may write besides ``results.json`` (``subsets.png`` only with subsets)
PROTOCOL_REPORT_FILES = ("report.md", "subsets.png")


def write_fusion_report(res: Mapping[str, Any], output: PathLike,
                        extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Path]:
    """Write ``results.json`` (the header of every result, :func:`medfm.versions.result_header` with ``"kind":
    "fusion"``, then ``extra`` and ``res``), ``report.md`` and ``subsets.png`` atomically into ``output``.

    Everything is computed before the first file is written, an earlier report's ``results.json`` in ``output``
    is removed before it, and ``results.json`` is written last, so its presence marks a complete report whose
    files are all from the same call (:func:`medfm.evaluation.report.start_report_dir`, as
    :func:`medfm.evaluation.report.write_classification_report`).

    Raises:
        NotADirectoryError: ``output`` or one of its parents is a file
            (:func:`medfm.evaluation.report.make_output_dir`).
        TypeError: ``extra`` not a mapping, or a value that cannot be written as JSON.
        ValueError: ``extra`` or ``res`` holds a key of the header (:data:`medfm.versions.RESULT_HEADER_KEYS`).
    """
    return write_protocol_report(res, output, extra, render_markdown, plot_subsets if res["subsets"] else None,
                                 kind="fusion")


def write_protocol_report(res: Mapping[str, Any], output: PathLike, extra: Optional[Mapping[str, Any]],
                          render: Any, plot: Any, kind: str) -> Dict[str, Path]:
    """The writer shared by :func:`write_fusion_report` and
    :func:`medfm.evaluation.fusion_seg.write_seg_fusion_report`: ``render(res)`` -> ``report.md`` text, followed by
    the header's line (:func:`medfm.versions.provenance_text`), ``plot(res, path)`` (or None) -> ``subsets.png``;
    ``results.json`` (:func:`medfm.versions.result_header` of ``kind``, then ``extra`` and ``res``) last, an earlier
    one removed before the first file is written (:func:`medfm.evaluation.report.start_report_dir`: it was kept
    beside the new figures, marking a half-written report complete), and with it an earlier ``report.md`` and
    ``subsets.png`` (:data:`PROTOCOL_REPORT_FILES`: a report without subsets kept the old figure).

    Raises:
        as :func:`write_fusion_report`.
    """
    from medfm.evaluation.report import start_report_dir
    from medfm.versions import RESULT_HEADER_KEYS, provenance_text, result_header

    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"extra must be a mapping of JSON-ready values, got {type(extra).__name__}")
    taken = [k for k in RESULT_HEADER_KEYS if k in (extra or {}) or k in res]
    if taken:
        raise ValueError(f"a fusion report's extra or results may not set {taken}: the report's header writes them")
    payload = to_jsonable({**result_header(kind), **dict(extra or {}), **dict(res)})  # TypeError: before any write
    text = f"{render(res)}\n\n{provenance_text(payload)}\n"
    out = start_report_dir(output, PROTOCOL_REPORT_FILES)
    paths = {}
    if plot is not None:
        paths["plot"] = plot(res, out / "subsets.png")
    paths["report"] = atomic_write_text(out / "report.md", text)
    paths["results"] = atomic_write_json(out / "results.json", payload)
    return paths


__all__ = ["subset_table", "format_ci", "render_markdown", "plot_subset_metric", "plot_subsets", "write_fusion_report",
           "write_protocol_report", "PROTOCOL_REPORT_FILES"]
