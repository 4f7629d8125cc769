"""Classification reports: ``results.json`` + ``report.md`` + PNG figures, written atomically.

``results.json`` schema (``schema_version`` 1)::

    {
      "schema_version": 1, "kind": "classification",
      "created": ISO-8601 UTC timestamp,
      "versions": {"medfm", "numpy", "python", "torch", "scikit-learn", "scipy", "transformers"},
      "meta": {...caller's provenance: checkpoint path/hash, dataset flag, split, data md5...},
      "task": str, "label_names": [str], "n_samples": int,
      "auc_ranking": "logits" | "probabilities",
      "metrics": {acc, auc, balanced_acc, ece, per_class_recall, per_class_auc, support,
                  confusion_matrix, threshold},
      "ci": {"acc"|"auc": {"low", "high", "level", "method", "n_boot", "seed"}},
      "calibration": {"ece", "mce", "n_bins", "bins": [{lower, upper, count, confidence, accuracy}]} | null,
      "warnings": [str], "files": [str]
    }

Non-finite numbers (an undefined AUC) are written as ``null`` (strict JSON). ``auc_ranking`` says what the
AUC, its interval and the ROC curves ranked (:data:`AUC_RANKINGS`): the model's ``"logits"`` (their log-odds,
which float32 saturation does not tie) or, when the caller had none (a kNN's vote shares), the
``"probabilities"`` (:func:`medfm.evaluation.metrics.one_vs_rest`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from medfm.arg_checks import check_mapping_list, check_string_list
from medfm.evaluation.calibration import expected_calibration_error
from medfm.evaluation.metrics import MULTI_LABEL, bootstrap_ci, check_task, classification_metrics
from medfm.evaluation.plots import plot_confusion_matrix, plot_reliability, plot_roc
from medfm.io import (REPORT_FOLDER_ADVICE, PathLike, atomic_write_json, atomic_write_text, file_sha256, make_dir,
                      refuse_file_in_the_way, to_jsonable)
# re-exported: results record them
from medfm.versions import NUMERIC_DISTRIBUTIONS, provenance_text, result_header, versions, versions_text

__all__ = ["SCHEMA_VERSION", "AUC_RANKINGS", "checkpoint_hash", "check_output_dir", "make_output_dir",
           "start_report_dir", "markdown_table", "NUMERIC_DISTRIBUTIONS", "versions",
           "versions_text", "result_header", "provenance_text", "write_classification_report"]

SCHEMA_VERSION = 1
#: ``results.json``'s ``auc_ranking``: what the AUC ranked, by whether the writer was given the logits
AUC_RANKINGS = {True: "logits", False: "probabilities"}
_WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")
#: every file :func:`write_classification_report` may write (which of them depends on the task)
_REPORT_FILES = ("confusion_matrix.png", "roc.png", "reliability.png", "report.md", "results.json")


def checkpoint_hash(checkpoint_dir: PathLike) -> str:
    """SHA-256 of a checkpoint's weights file, identifying exactly which weights were evaluated.

    Hashes ``model.safetensors``, or ``adapter_model.safetensors`` for adapter-only
    (LoRA) checkpoints that have no full weights file.

    Raises:
        FileNotFoundError: ``checkpoint_dir`` is not a directory or holds neither file.
    """
    d = Path(checkpoint_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(d)!r} does not exist")
    for name in _WEIGHT_FILES:
        if (d / name).is_file():
            return file_sha256(d / name)
    raise FileNotFoundError(f"checkpoint {str(d)!r} holds no {' or '.join(_WEIGHT_FILES)}")


def make_output_dir(path: PathLike) -> Path:
    """Create the report folder ``path`` (with its parents) and return it as a ``Path``.

    Raises:
        NotADirectoryError: ``path`` or a folder above it is a file, the topmost such file named in the one wording of
            :func:`medfm.io.in_the_way_error`: ``cannot write 'out': 'out' is a file, not a folder; choose another
            output folder`` (was pathlib's ``[Errno 17]`` / ``[Errno 20]``, then words of its own and a
            ``FileExistsError`` for ``path`` itself).
    """
    return make_dir(path, advice=REPORT_FOLDER_ADVICE)


def check_output_dir(path: PathLike) -> None:
    """Refuse a report folder ``path`` that is a file or lies under one, creating nothing: :func:`make_output_dir`'s
    rule and words, for a command that checks its output folder before any work is done
    (:func:`medfm.evaluation.evaluate.earlier_report`).

    Raises:
        NotADirectoryError: as :func:`make_output_dir` (:func:`medfm.io.refuse_file_in_the_way` with
            :data:`medfm.io.REPORT_FOLDER_ADVICE`).
    """
    refuse_file_in_the_way(Path(path), REPORT_FOLDER_ADVICE)


def start_report_dir(path: PathLike, own: Sequence[str] = ()) -> Path:
    """The report folder ``path`` (:func:`make_output_dir`) cleared of an earlier report's own files, for a writer
    that writes ``results.json`` last: called before its first file is written, so that a ``results.json`` there
    marks a complete report whose files are all from the same call, and a rewritten folder holds only the new
    report's files (a binary report rewritten as a multi-label one kept the old ``confusion_matrix.png`` and
    ``reliability.png`` beside the new figures).

    An earlier report's own files are: ``results.json``; the files its ``results.json`` lists in ``"files"`` when it
    is a medfm report (a JSON object with a ``"kind"`` and a ``"files"`` list; each a relative path inside
    ``path``: a name with ``..`` or an absolute one is ignored); and ``own``, every name the caller's report may
    write (it writes them there in some call anyway; this clears a report that stopped before its
    ``results.json``). Anything else (the user's notes, another tool's files) and folders are kept.
    ``results.json`` goes first, so a call that stops half way leaves no complete-looking report.

    Args:
        path: the report folder, created with its parents when missing.
        own: file names (relative to ``path``) the caller's report may write, e.g. ``("roc.png", "report.md")``.

    Raises:
        as :func:`make_output_dir`.
        ValueError: ``own`` not a list of strings (one string was read letter by letter).
    """
    own = check_string_list("own", own, what="a list of file names")
    out = make_output_dir(path)
    earlier = out / "results.json"
    listed: List[str] = []
    try:
        res = json.loads(earlier.read_text())
    except (OSError, ValueError):  # none there, or not JSON: only results.json itself goes
        res = None
    if isinstance(res, dict) and isinstance(res.get("kind"), str) and isinstance(res.get("files"), list):
        listed = [f for f in res["files"] if isinstance(f, str)]
    earlier.unlink(missing_ok=True)
    root = out.resolve()
    for name in dict.fromkeys([*listed, *own]):
        rel = Path(name)
        if not name or rel.is_absolute() or ".." in rel.parts:
            continue
        target = out / rel
        inside = target.parent.resolve().is_relative_to(root)  # no linked folder out
        if inside and (target.is_symlink() or target.is_file()):
            target.unlink(missing_ok=True)
    return out


def _cell(value: Any, floatfmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return format(value, floatfmt)
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(to_jsonable(value))
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Union[Sequence[str], Mapping[str, str]],
    floatfmt: str = ".4f",
) -> str:
    """Render rows as a GitHub-flavoured Markdown table.

    Args:
        rows: one mapping per table row; a key missing from a row gives an empty cell.
        columns: keys to show, in order; a mapping ``{key: header}`` renames headers.
        floatfmt: format spec for floats; NaN and None print as ``n/a``; ``|`` is escaped.

    Returns:
        The table, lines joined by ``\\n``, ending with a newline.

    Raises:
        ValueError: no columns given; ``columns`` one string (``"ab"`` was read as the columns ``a``
            and ``b``), a set (no order) or a list holding anything but strings
            (:func:`medfm.arg_checks.check_string_list`).
        TypeError: ``rows`` not a list of mappings (:func:`medfm.arg_checks.check_mapping_list`; a string, one
            dict or None stopped with ``string indices must be integers`` or ``... is not iterable``):
            ``rows must be a list of row mappings ({column key: value}), got str``; an item:
            ``..., got int at index 0``.
    """
    rows = check_mapping_list("rows", rows, what="a list of row mappings ({column key: value})")
    if isinstance(columns, Mapping):
        headers = dict(columns)
    else:
        keys = check_string_list("columns", columns, what="a list of column keys or a {key: header} mapping")
        headers = {c: c for c in keys}
    if not headers:
        raise ValueError("markdown_table needs at least one column")
    lines = ["| " + " | ".join(_cell(h, floatfmt) for h in headers.values()) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join("" if k not in row else _cell(row[k], floatfmt) for k in headers) + " |")
    return "\n".join(lines) + "\n"


def _ci_text(ci: Optional[Mapping[str, Any]]) -> str:
    if not ci or ci["low"] is None or (isinstance(ci["low"], float) and math.isnan(ci["low"])):
        return ""
    return f"[{ci['low']:.4f}, {ci['high']:.4f}]"


def _render_markdown(res: Mapping[str, Any]) -> str:
    m = res["metrics"]
    level = int(round(100 * (1 - res["_alpha"])))
    parts = ["# Classification report\n\n"]
    fields = {**res["meta"], "task": res["task"], "n_samples": res["n_samples"], "auc_ranking": res["auc_ranking"],
              "created": res["created"],
              "versions": versions_text(res["versions"])}  # one row per field
    meta_rows = [{"field": k, "value": v} for k, v in fields.items()]
    parts.append(markdown_table(meta_rows, ["field", "value"]))
    parts.append("\n## Metrics\n\n")
    rows = [
        {"metric": "ACC", "value": m["acc"], "ci": _ci_text(res["ci"].get("acc"))},
        {"metric": "AUC", "value": m["auc"], "ci": _ci_text(res["ci"].get("auc"))},
        {"metric": "balanced ACC", "value": m["balanced_acc"], "ci": ""},
    ]
    if res["calibration"] is not None:
        rows.append({"metric": f"ECE ({res['calibration']['n_bins']} bins)", "value": m["ece"], "ci": ""})
    parts.append(markdown_table(rows, {"metric": "metric", "value": "value", "ci": f"{level}% CI (bootstrap)"}))
    parts.append("\n## Per class\n\n" if res["task"] != MULTI_LABEL else "\n## Per label\n\n")
    per = [{"name": n, "support": m["support"].get(n), "recall": m["per_class_recall"].get(n),
            "auc": m["per_class_auc"].get(n)} for n in res["label_names"]]
    parts.append(markdown_table(per, {"name": "class", "support": "support", "recall": "recall", "auc": "AUC"}))
    if res["warnings"]:
        parts.append("\n## Warnings\n\n" + "".join(f"- {w}\n" for w in res["warnings"]))
    figs = [f for f in res["files"] if f.endswith(".png")]
    if figs:
        parts.append("\n## Figures\n\n" + "".join(f"![{Path(f).stem}]({f})\n" for f in figs))
    return "".join(parts)


def write_classification_report(
    out_dir: PathLike,
    y_true: Any,
    y_score: Any,
    task: str,
    label_names: Optional[Sequence[str]],
    meta: Mapping[str, Any],
    *,
    threshold: float = 0.5,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_bins: int = 15,
    extra_warnings: Sequence[str] = (),
    logits: Any = None,
) -> Dict[str, Any]:
    """Compute metrics and write ``results.json``, ``report.md`` and PNG figures into ``out_dir``.

    Figures: ``confusion_matrix.png`` and ``reliability.png`` (binary, multi-class,
    ordinal; skipped for multi-label where neither is defined) and ``roc.png`` (all tasks).
    Every file is written atomically; ``results.json`` is written last, and an earlier report in
    ``out_dir`` is removed before the first figure is written (:func:`start_report_dir`: its ``results.json``,
    the files it lists and any of the names above), so the folder holds only this call's report and
    ``results.json`` marks it complete (a call that stops half way leaves no ``results.json`` beside its
    figures; a binary report rewritten as a multi-label one used to keep ``confusion_matrix.png`` and
    ``reliability.png``).

    Args:
        out_dir: output directory (created if missing; files that are no report's own are kept).
        y_true, y_score, task, threshold: as in
            :func:`medfm.evaluation.metrics.classification_metrics`.
        label_names: class (or label) names, None for "0", "1", ...
        meta: provenance to record (checkpoint path/hash, dataset flag, split, data md5);
            must be JSON-serialisable.
        n_boot, alpha, seed: percentile bootstrap for the ACC/AUC intervals.
        n_bins: ECE bins.
        extra_warnings: the caller's warnings (e.g. a probe fitted on very few labels), listed
            after the metrics' own in ``warnings`` and the report.
        logits: optional, the logits ``y_score`` was made from (:func:`medfm.evaluation.predict.predict_outputs`):
            the AUC, its interval and the ROC curves rank their log-odds, which float32 saturation does not
            tie (:func:`medfm.evaluation.metrics.classification_metrics`); ACC, ECE and the rest use ``y_score``.
            ``results.json`` records which in ``auc_ranking`` (``"logits"``, or ``"probabilities"`` without them).

    Returns:
        The results dict exactly as written to ``results.json`` (NaN written as None).

    Raises:
        ValueError: the input errors of ``classification_metrics`` (``threshold`` not a number in [0, 1]
            among them: NaN made every prediction negative).
        TypeError: ``meta`` not a mapping or holding a value that cannot be written as JSON;
            ``extra_warnings`` not a list of strings (:func:`medfm.arg_checks.check_string_list`: a string was listed
            letter by letter, None failed once the metrics were computed).
        NotADirectoryError: ``out_dir`` or one of its parents is a file (:func:`make_output_dir`).
    """
    check_task(task)
    if not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a mapping of provenance fields, got {type(meta).__name__}")
    extra_warnings = check_string_list("extra_warnings", extra_warnings, error=TypeError)
    meta_json = to_jsonable(dict(meta))  # fail before writing anything
    metrics = classification_metrics(y_true, y_score, task, threshold=threshold, label_names=label_names,
                                     logits=logits)
    names = list(metrics["per_class_recall"])
    level = 1.0 - alpha
    ci = {}
    for name in ("acc", "auc"):
        low, high = bootstrap_ci(y_true, y_score, task, metric=name, n_boot=n_boot, alpha=alpha, seed=seed,
                                 threshold=threshold, logits=logits)
        ci[name] = {"low": low, "high": high, "level": level, "method": "percentile bootstrap",
                    "n_boot": n_boot, "seed": seed}
    cal = None if task == MULTI_LABEL else expected_calibration_error(y_true, y_score, n_bins=n_bins, task=task)

    out = start_report_dir(out_dir, _REPORT_FILES)  # an earlier report's files go before the first new one
    files: List[str] = []
    if metrics["confusion_matrix"] is not None:
        plot_confusion_matrix(metrics["confusion_matrix"], names, out / "confusion_matrix.png")
        files.append("confusion_matrix.png")
    plot_roc(y_true, y_score, task, names, out / "roc.png", logits=logits)
    files.append("roc.png")
    if cal is not None:
        plot_reliability(cal, out / "reliability.png")
        files.append("reliability.png")
    files += ["report.md", "results.json"]

    warnings = list(metrics.pop("warnings")) + extra_warnings
    metrics["ece"] = cal.ece if cal is not None else None
    res: Dict[str, Any] = {
        **result_header("classification", SCHEMA_VERSION),
        "meta": meta_json,
        "task": metrics.pop("task"),
        "label_names": names,
        "n_samples": metrics.pop("n_samples"),
        "auc_ranking": AUC_RANKINGS[logits is not None],
        "metrics": metrics,
        "ci": ci,
        "calibration": cal.to_dict() if cal is not None else None,
        "warnings": warnings,
        "files": files,
    }
    res = to_jsonable(res)
    atomic_write_text(out / "report.md", _render_markdown({**res, "_alpha": alpha}))
    atomic_write_json(out / "results.json", res)
    return res
