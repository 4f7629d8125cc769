"""MedMNIST-C robustness scores: balanced error, BE and rBE vs AlexNet, error-vs-severity plot.

Di Salvo, Doerrich & Ledig 2024, "MedMNIST-C: Comprehensive benchmark and improved
classifier robustness by simulating realistic image corruptions" (arXiv:2406.17536);
reference code ``medmnistc/eval.py``. The formulas are in the comment block below; the
numbers equal ``medmnistc.eval.Evaluator``'s to 1e-6 (``tests/evaluation/test_metrics.py``).
These functions used to live in :mod:`medfm.evaluation.metrics`, which still re-exports them.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from medfm.arg_checks import check_number, number_fits, shown
from medfm.evaluation.metrics import (MULTI_LABEL, balanced_accuracy, prepare_scores, thresholded_predictions,
                                     to_numpy)
from medfm.io import PathLike
from medfm.registry import close_match_hint

__all__ = [
    "balanced_error",
    "corruption_errors",
    "alexnet_reference",
    "be_rbe",
    "check_errors",
    "corruption_family",
    "plot_error_vs_severity",
    "robustness_summary",
    "robustness_markdown",
]

# --------------------------------------------------------------------------------------
# MedMNIST-C robustness metrics (Di Salvo, Doerrich & Ledig 2024, "MedMNIST-C:
# Comprehensive benchmark and improved classifier robustness by simulating realistic
# image corruptions", arXiv:2406.17536; reference code medmnistc/eval.py).
#
#   E^f_{c,s} = 1 - BalancedAccuracy of model f on corruption c at severity s (1..5)
#   BE^f_c    = mean_s E^f_{c,s} / E^{AlexNet}_c
#   rBE^f_c   = (mean_s E^f_{c,s} - E^f_clean) / (E^{AlexNet}_c - E^{AlexNet}_clean)
#   BE, rBE   = means of BE^f_c, rBE^f_c over the dataset's corruptions c
#
# where E^{AlexNet}_c is AlexNet's error on c averaged over the 5 severities, as shipped
# in medmnistc.utils.baselines.BASELINES (following Hendrycks & Dietterich 2019, CE/rCE).
# --------------------------------------------------------------------------------------


def balanced_error(y_true: Any, y_score: Any, task: str, threshold: Union[float, Sequence[float]] = 0.5) -> float:
    """MedMNIST-C error ``1 - balanced accuracy`` (medmnistc ``Evaluator.get_eval_metric``).

    Binary: last column ``> threshold``; multi-class/ordinal: argmax (threshold unused);
    multi-label: mean over labels of the per-label balanced accuracy at ``threshold``
    (a float, or one threshold per label).

    Args:
        y_true, y_score, task: as in :func:`classification_metrics`.
        threshold: float, or (L,) per-label thresholds for multi-label.

    Raises:
        ValueError: input errors as in :func:`classification_metrics`; wrong number of
            per-label thresholds; a threshold that is not a finite number (NaN made every
            prediction negative without a word).
    """
    y, s = prepare_scores(y_true, y_score, task)
    values = threshold if isinstance(threshold, (list, tuple, np.ndarray)) else [threshold]
    if not all(number_fits(t) for t in np.asarray(values, dtype=object).reshape(-1)):
        raise ValueError(f"threshold must be a finite number (or one per label), got {shown(threshold)}")
    thr = np.asarray(threshold, dtype=np.float64)
    if task == MULTI_LABEL:
        if thr.ndim > 1 or (thr.ndim == 1 and thr.shape[0] != y.shape[1]):
            raise ValueError(f"need a float or {y.shape[1]} per-label thresholds, got shape {thr.shape}")
        pred = thresholded_predictions(s, task, thr)
        return 1.0 - float(np.mean([balanced_accuracy(y[:, j], pred[:, j], 2) for j in range(y.shape[1])]))
    if thr.ndim != 0 and task == "binary-class":
        raise ValueError(f"task 'binary-class' takes one float threshold, got shape {thr.shape}")
    k = 2 if task == "binary-class" else s.shape[1]
    return 1.0 - balanced_accuracy(y, thresholded_predictions(s, task, float(thr) if thr.ndim == 0 else 0.5), k)


def corruption_errors(
    y_true: Any,
    scores_by_corruption: Mapping[str, Any],
    task: str,
    threshold: Union[float, Sequence[float]] = 0.5,
    n_severities: int = 5,
) -> Dict[str, List[float]]:
    """Per-severity MedMNIST-C errors ``E_{c,s}`` for each corruption ``c``.

    Args:
        y_true: (N,), (N, 1) or (N, L) labels of the clean test set.
        scores_by_corruption: corruption name -> scores of the corrupted test set, either
            (S, N, K) or severity-major stacked (S*N, K) as medmnistc's dataset yields them
            (rows ``s*N .. (s+1)*N`` belong to severity ``s+1``).
        task, threshold: as in :func:`balanced_error`.
        n_severities: S, 5 in MedMNIST-C.

    Returns:
        corruption -> list of S errors, severity 1 first.

    Raises:
        ValueError: scores whose length is not ``n_severities * N``, ``n_severities`` not an
            integer >= 1 (0 gave empty error lists), plus the input errors of :func:`balanced_error`.
        TypeError: ``scores_by_corruption`` not a mapping.
    """
    n_severities = check_number("n_severities", n_severities, ge=1, integer=True)
    if not isinstance(scores_by_corruption, Mapping):
        raise TypeError("scores_by_corruption must map corruption names to scores, "
                        f"got {type(scores_by_corruption).__name__}")
    n = len(to_numpy(y_true, "y_true"))
    out: Dict[str, List[float]] = {}
    for name, scores in scores_by_corruption.items():
        a = to_numpy(scores, f"scores of {name!r}")
        if a.ndim >= 1 and a.shape[0] == n_severities * n:
            stacked = a.reshape((n_severities, n) + a.shape[1:])
        elif a.ndim >= 2 and a.shape[:2] == (n_severities, n):
            stacked = a
        else:
            raise ValueError(f"scores of {name!r} have shape {a.shape}; expected ({n_severities}, {n}, K) "
                             f"or ({n_severities * n}, K) for {n_severities} severities of {n} samples")
        out[name] = [balanced_error(y_true, stacked[i], task, threshold) for i in range(n_severities)]
    return out


def alexnet_reference(dataset: str) -> Dict[str, Any]:
    """AlexNet reference errors for ``dataset`` shipped with the ``medmnistc`` package.

    Returns:
        ``{"clean_score": float, "raw_scores": {corruption: float}}`` (errors, i.e.
        1 - balanced accuracy; raw scores already averaged over the 5 severities).

    Raises:
        ImportError: medmnistc is not installed (``pip install medfm[eval]``).
        ValueError: no reference for ``dataset``; lists close matches.
    """
    try:
        from medmnistc.utils.baselines import BASELINES
    except ImportError as err:
        raise ImportError(f"MedMNIST-C reference errors need the medmnistc package "
                          f"(pip install 'medfm[eval]'): {err}") from None
    if dataset not in BASELINES:
        raise ValueError(f"medmnistc has no AlexNet reference for {dataset!r}"
                         f"{close_match_hint(dataset, sorted(BASELINES), n=2, cutoff=0.4, fallback=None)} (known: "
                         f"{', '.join(sorted(BASELINES))})")
    ref = BASELINES[dataset]
    return {"clean_score": float(ref["clean_score"]), "raw_scores": dict(ref["raw_scores"])}


def check_errors(errors_by_corruption: Any, clean_error: Any) -> float:
    """Check :func:`corruption_errors`-style errors and a clean error before they are averaged or drawn.

    NaN is no "not measured" value here: :func:`balanced_error` of a non-empty split is always finite,
    so a NaN error is a caller's mistake (it gave NaN BE/rBE, or a line with a silent gap in a plot).

    Returns:
        ``clean_error`` as a float.

    Raises:
        ValueError: ``clean_error`` not a finite number; ``errors_by_corruption`` empty; a
            corruption's errors that are not a non-empty list of finite numbers (``[0.1, nan]``,
            ``"0.1"``, ``[]``).
        TypeError: ``errors_by_corruption`` not a mapping.
    """
    clean_error = check_number("clean_error", clean_error)
    if not isinstance(errors_by_corruption, Mapping):
        raise TypeError("errors_by_corruption must map corruption names to per-severity errors, "
                        f"got {type(errors_by_corruption).__name__}")
    if not errors_by_corruption:
        raise ValueError("errors_by_corruption is empty")
    for name, errors in errors_by_corruption.items():
        if (not isinstance(errors, (list, tuple, np.ndarray)) or not len(errors)
                or not all(number_fits(e) for e in np.asarray(errors, dtype=object).reshape(-1))):
            raise ValueError(f"errors of {name!r} must be a non-empty list of finite numbers (one per severity), "
                             f"got {shown(errors)}")
    return float(clean_error)


def be_rbe(
    errors_by_corruption: Mapping[str, Sequence[float]],
    clean_error: float,
    dataset: Optional[str] = None,
    reference: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """MedMNIST-C balanced error (BE) and relative balanced error (rBE) vs AlexNet.

    Formulas in the comment block above (Di Salvo et al. 2024, arXiv:2406.17536); the
    numbers equal ``medmnistc.eval.Evaluator.populate_summary``'s output.

    Args:
        errors_by_corruption: corruption -> per-severity errors (from
            :func:`corruption_errors`).
        clean_error: the model's error on the clean test set (:func:`balanced_error`).
        dataset: MedMNIST flag whose medmnistc AlexNet reference to use.
        reference: explicit reference ``{"clean_score", "raw_scores"}`` instead of
            ``dataset`` (for datasets medmnistc does not cover).

    Returns:
        ``{"clean_error", "be", "rbe", "be_per_corruption", "rbe_per_corruption",
        "error_per_corruption"}``; per-corruption values are dicts keyed by corruption.

    Raises:
        ValueError: neither/both of ``dataset``/``reference``; a corruption without a
            reference error; a zero reference error or zero reference error gap; empty input;
            a corruption's errors that are not a non-empty list of finite numbers, or a
            ``clean_error`` that is not a finite number (NaN gave NaN BE/rBE, ``"0.1"`` was read
            as one error, ``[]`` averaged to NaN): :func:`check_errors`.
        TypeError: ``errors_by_corruption`` not a mapping.
    """
    if (dataset is None) == (reference is None):
        raise ValueError("pass exactly one of dataset= (medmnistc reference) or reference=")
    clean_error = check_errors(errors_by_corruption, clean_error)
    ref = alexnet_reference(dataset) if reference is None else reference
    ref_clean = float(ref["clean_score"])
    raw = ref["raw_scores"]
    be_c: Dict[str, float] = {}
    rbe_c: Dict[str, float] = {}
    err_c: Dict[str, float] = {}
    for name, errors in errors_by_corruption.items():
        if name not in raw:
            raise ValueError(f"no AlexNet reference error for corruption {name!r}"
                             f"{close_match_hint(name, sorted(raw), n=2, cutoff=0.4, fallback=None)} (known: "
                             f"{', '.join(sorted(raw))})")
        ref_err = float(raw[name])
        if ref_err == 0.0 or ref_err == ref_clean:
            raise ValueError(f"reference error for {name!r} is {ref_err} (clean {ref_clean}); BE/rBE undefined")
        mean_err = float(np.mean(np.asarray(errors, dtype=np.float64)))
        err_c[name] = mean_err
        be_c[name] = mean_err / ref_err
        rbe_c[name] = (mean_err - float(clean_error)) / (ref_err - ref_clean)
    return {
        "clean_error": float(clean_error),
        "be": float(np.mean(list(be_c.values()))),
        "rbe": float(np.mean(list(rbe_c.values()))),
        "be_per_corruption": be_c,
        "rbe_per_corruption": rbe_c,
        "error_per_corruption": err_c,
    }


#: MedMNIST-C's grouping of corruptions into families (``medmnistc.corruptions.registry``).
_FAMILIES_FALLBACK = {
    "digital": ["pixelate", "jpeg_compression"],
    "noise": ["gaussian_noise", "speckle_noise", "impulse_noise", "shot_noise"],
    "blur": ["defocus_blur", "motion_blur", "zoom_blur", "gaussian_blur"],
    "color": ["brightness_up", "brightness_down", "contrast_up", "contrast_down", "saturate"],
    "task-specific": ["stain_deposit", "bubble", "black_corner", "characters", "gamma_corr_up", "gamma_corr_down"],
}


def corruption_family(name: str) -> str:
    """MedMNIST-C family of a corruption: digital, noise, blur, color or task-specific.

    Read from ``medmnistc.corruptions.registry.CORRUPTIONS_DS_FOLDS`` when importable (it
    needs ImageMagick), else from the same table copied here.

    Returns:
        The family name, or ``"other"`` for a name MedMNIST-C does not group.
    """
    try:
        from medmnistc.corruptions.registry import CORRUPTIONS_DS_FOLDS as folds
    except ImportError:
        folds = _FAMILIES_FALLBACK
    for family, names in folds.items():
        if name in names:
            return family
    return "other"


def plot_error_vs_severity(
    errors_by_corruption: Mapping[str, Sequence[float]],
    clean_error: float,
    path: PathLike,
    severities: Optional[Sequence[int]] = None,
    title: str = "",
) -> Any:
    """Error (1 - balanced accuracy) against severity, one panel per corruption family.

    Args:
        errors_by_corruption: corruption -> per-severity errors (:func:`corruption_errors`).
        clean_error: the clean error, drawn as a dashed line in every panel.
        path: output ``.png`` (written atomically).
        severities: the severity of each error (default 1..S).
        title: figure title.

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: empty input, corruptions with different numbers of severities, or an error
            (or ``clean_error``) that is not a finite number (:func:`check_errors`: NaN was drawn
            as a silent gap in the line, and no error is "not measured" in
            :func:`robustness_summary`).
        TypeError: ``errors_by_corruption`` not a mapping.
    """
    from medfm.evaluation.plots import new_figure, save_figure

    clean_error = check_errors(errors_by_corruption, clean_error)
    lengths = {len(v) for v in errors_by_corruption.values()}
    if len(lengths) != 1:
        raise ValueError(f"every corruption needs the same number of severities, got lengths {sorted(lengths)}")
    n_sev = lengths.pop()
    sev = list(severities) if severities is not None else list(range(1, n_sev + 1))
    if len(sev) != n_sev:
        raise ValueError(f"{len(sev)} severities given for {n_sev} errors per corruption")
    groups: Dict[str, List[str]] = {}
    for name in errors_by_corruption:
        groups.setdefault(corruption_family(name), []).append(name)
    n = len(groups)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = new_figure((4.2 * cols, 3.4 * rows))
    top = max(max(max(v) for v in errors_by_corruption.values()), clean_error)
    for i, (family, names) in enumerate(sorted(groups.items())):
        ax = fig.add_subplot(rows, cols, i + 1)
        for name in names:
            ax.plot(sev, errors_by_corruption[name], marker="o", ms=3, lw=1.4, label=name)
        ax.axhline(clean_error, ls="--", lw=0.9, color="grey", label="clean")
        ax.set_xticks(sev)
        ax.set_ylim(0, min(1.0, top * 1.1 + 0.02))
        ax.set_xlabel("severity")
        ax.set_ylabel("error (1 - balanced ACC)")
        ax.set_title(family)
        ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def robustness_summary(
    y_true: Any,
    clean_scores: Any,
    scores_by_corruption: Mapping[str, Any],
    control_scores: Optional[Any],
    task: str,
    dataset: Optional[str],
    severities: Sequence[int],
    plot_path: Optional[PathLike] = None,
    threshold: float = 0.5,
    title: str = "",
) -> Dict[str, Any]:
    """Errors per corruption and severity, BE/rBE vs AlexNet, and the error-vs-severity plot.

    Args:
        y_true: (N,) / (N, 1) / (N, L) labels of the test set.
        clean_scores: (N, K) scores on the clean set.
        scores_by_corruption: corruption -> (S, N, K) scores, severity order as ``severities``.
        control_scores: (N, K) scores on the clean set passed through the resolution policy
            alone (see :func:`medfm.data.corruptions.resample_roundtrip`), or None.
        task: MedMNIST task string; dataset: MedMNIST flag for the AlexNet reference.
        severities: the S severities evaluated.
        plot_path: where to draw :func:`plot_error_vs_severity` (None: no plot).
        threshold: binary/multi-label decision threshold.

    Returns:
        JSON-ready dict: ``clean_error``, ``control_error``, ``severities``, ``errors``
        ({corruption: [E_s]}), ``mean_error``, ``family``, and, when medmnistc has an
        AlexNet reference for ``dataset``, ``be``, ``rbe``, ``be_per_corruption``,
        ``rbe_per_corruption``; ``warnings`` (list of str).
    """
    clean = balanced_error(y_true, clean_scores, task, threshold)
    errors = corruption_errors(y_true, scores_by_corruption, task, threshold, n_severities=len(severities))
    out: Dict[str, Any] = {
        "clean_error": clean,
        "control_error": None if control_scores is None else balanced_error(y_true, control_scores, task, threshold),
        "severities": list(severities),
        "errors": errors,
        "mean_error": {c: float(np.mean(v)) for c, v in errors.items()},
        "family": {c: corruption_family(c) for c in errors},
        "warnings": [],
    }
    if list(severities) != [1, 2, 3, 4, 5]:
        out["warnings"].append(f"severities {list(severities)} only: BE/rBE normalise by AlexNet errors averaged over "
                               "severities 1-5 and are not comparable with published figures")
    try:
        br = be_rbe(errors, clean, dataset=dataset) if dataset else None
    except (ImportError, ValueError) as err:
        br = None
        out["warnings"].append(f"BE/rBE unavailable: {err}")
    if br is not None:
        out.update({k: br[k] for k in ("be", "rbe", "be_per_corruption", "rbe_per_corruption")})
        ref = alexnet_reference(dataset)
        flat = [c for c in errors if ref["raw_scores"][c] < ref["clean_score"]]
        if flat:
            out["warnings"].append(f"AlexNet's reference error on {', '.join(flat)} is below its clean error, so "
                                   "rBE for these divides by a negative gap (medmnistc's definition, kept as is)")
    if plot_path is not None and errors:
        plot_error_vs_severity(errors, clean, plot_path, severities, title)
    return out


def robustness_markdown(rob: Mapping[str, Any]) -> str:
    """Markdown table of a :func:`robustness_summary`: one row per corruption, then totals."""
    from medfm.evaluation.report import markdown_table

    sev = rob["severities"]
    cols: Dict[str, str] = {"corruption": "corruption", "family": "family"}
    cols.update({f"s{s}": f"E s{s}" for s in sev})
    cols.update({"mean": "mean E", "be": "BE", "rbe": "rBE"})
    rows = []
    for c, errs in rob["errors"].items():
        row = {"corruption": c, "family": rob["family"][c], "mean": rob["mean_error"][c],
               "be": rob.get("be_per_corruption", {}).get(c), "rbe": rob.get("rbe_per_corruption", {}).get(c)}
        row.update({f"s{s}": e for s, e in zip(sev, errs)})
        rows.append(row)
    rows.append({"corruption": "**all (mean)**", "family": "", "mean": float(np.mean(list(rob["mean_error"].values()))),
                 "be": rob.get("be"), "rbe": rob.get("rbe")})
    text = markdown_table(rows, cols, floatfmt=".3f")
    text += f"\nClean error (1 - balanced ACC): {rob['clean_error']:.4f}"
    if rob.get("control_error") is not None:
        text += f"; clean images through the resampling alone (control): {rob['control_error']:.4f}"
    text += ".\n"
    return text + "".join(f"\n- {w}" for w in rob.get("warnings", [])) + ("\n" if rob.get("warnings") else "")
