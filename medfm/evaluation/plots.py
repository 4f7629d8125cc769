"""Report figures: confusion matrix, ROC curves, reliability diagram, training curve (PNG, atomic writes).

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, so
no pyplot global state or GUI backend is touched (safe in threads and headless runs).
matplotlib is imported lazily: ``import medfm.evaluation`` stays light.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from medfm.arg_checks import check_mapping_list
from medfm.evaluation.calibration import Calibration
from medfm.evaluation.metrics import MULTI_LABEL, label_name_list, one_vs_rest, prepare_scores, weighted_auc
from medfm.io import PathLike, atomic_path

__all__ = ["plot_confusion_matrix", "plot_roc", "plot_reliability", "plot_training_curve", "draw_series",
           "check_log_rows"]

_DPI = 120


def new_figure(size=(5.0, 4.5)) -> Any:
    """A matplotlib ``Figure`` of ``size`` inches at the report DPI on an Agg canvas (no pyplot, no
    global state: safe in threads and without a display). Draw on it, then :func:`save_figure`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: PathLike) -> Path:
    """Lay out ``fig`` and write it as PNG to ``path`` atomically (temp file, then rename); returns ``path``."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def plot_confusion_matrix(cm: Any, label_names: Sequence[str], path: PathLike, normalize: bool = True) -> Path:
    """Draw a confusion matrix heat map to a PNG.

    Args:
        cm: (K, K) counts, rows = true class, columns = predicted class.
        label_names: K class names (None: "0", "1", ...).
        path: output ``.png`` path (written atomically).
        normalize: colour by row-normalised recall (counts are printed in the cells).

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: ``cm`` not square, not counts (negative, fractional, NaN: "cannot convert float NaN
            to integer" before) or ``label_names`` not a list of K names
            (:func:`medfm.evaluation.metrics.label_name_list`).
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be (K, K), got shape {cm.shape}")
    if cm.dtype == object or not np.issubdtype(cm.dtype, np.number) or not np.all(np.isfinite(cm)) \
            or (cm < 0).any() or not np.all(cm == np.round(cm)):
        raise ValueError(f"confusion matrix must hold counts (integers >= 0), got {cm.tolist()}"[:300])
    label_names = label_name_list(label_names, cm.shape[0])
    k = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    shown = cm / np.maximum(rows, 1) if normalize else cm
    fig = new_figure((max(4.0, 0.6 * k + 2.5), max(3.5, 0.6 * k + 2.0)))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="recall" if normalize else "count")
    ax.set_xticks(range(k), labels=list(label_names), rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), labels=list(label_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        hi = shown.max() if shown.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > 0.6 * hi else "black")
    ax.set_title("confusion matrix")
    return save_figure(fig, path)


def _roc_points(t: np.ndarray, s: np.ndarray):
    """ROC (fpr, tpr) over distinct thresholds, highest first; starts at (0, 0)."""
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]
    tp = np.cumsum(t)[last]
    fp = (last + 1) - tp
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]


def plot_roc(y_true: Any, y_score: Any, task: str, label_names: Optional[Sequence[str]], path: PathLike,
             logits: Any = None) -> Path:
    """ROC curves: one for binary, one-vs-rest per class (multi-class/ordinal) or per label.

    Columns whose ROC is undefined (one class only in ``y_true``) are skipped and noted
    in the legend title. Curves and legend AUCs rank the scores as
    :func:`~medfm.evaluation.metrics.classification_metrics` does (its ``one_vs_rest`` on the full
    score rows, so saturated float32 probabilities are ordered by their complements, or by the
    log-odds of ``logits`` when given), so each legend AUC equals that class's ``per_class_auc``.

    Args:
        y_true, y_score, task, logits: as in :func:`medfm.evaluation.metrics.classification_metrics`.
        label_names: class/label names (None: "0", "1", ...).
        path: output ``.png`` path (written atomically).

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: the input errors of ``classification_metrics`` (the wrong number of label names
            included: curves used to be labelled by index without a word;
            :func:`medfm.evaluation.metrics.label_name_list`).
    """
    y, s, scores = prepare_scores(y_true, y_score, task, full=True)
    t_cols, s_cols = one_vs_rest(y, s, task, scores, logits)
    n_cols = t_cols.shape[1]
    names = label_name_list(label_names, 2 if task == "binary-class" else n_cols,
                            "labels" if task == MULTI_LABEL else "classes")
    if task == "binary-class":
        names = names[-1:]
    fig = new_figure((5.5, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    skipped = 0
    for c in range(n_cols):
        t, sc = t_cols[:, c], s_cols[:, c]
        if t.min() == t.max():
            skipped += 1
            continue
        fpr, tpr = _roc_points(t, sc)
        auc = float(weighted_auc(t, sc, np.ones((1, len(t))))[0])
        label = f"AUC {auc:.3f}" if task == "binary-class" else f"{names[c] if c < len(names) else c} ({auc:.3f})"
        ax.plot(fpr, tpr, lw=1.5, label=label)
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC" + ("" if task == "binary-class" else (" per label" if task == MULTI_LABEL else " one-vs-rest")))
    if n_cols - skipped:
        ax.legend(loc="lower right", fontsize=7, title=f"{skipped} undefined, skipped" if skipped else None)
    return save_figure(fig, path)


def plot_reliability(cal: Calibration, path: PathLike) -> Path:
    """Reliability diagram (Guo et al. 2017, Fig. 1): per-bin accuracy vs confidence.

    Args:
        cal: result of :func:`medfm.evaluation.calibration.expected_calibration_error`.
        path: output ``.png`` path (written atomically).

    Returns:
        ``Path(path)``.

    Raises:
        TypeError: ``cal`` is no :class:`~medfm.evaluation.calibration.Calibration` (a dict such as its
            ``to_dict()`` stopped with ``AttributeError: 'dict' object has no attribute 'bin_edges'``).
    """
    if not isinstance(cal, Calibration):
        raise TypeError(f"cal must be a Calibration (from expected_calibration_error), got {type(cal).__name__}")
    edges = cal.bin_edges
    width = np.diff(edges)
    centers = edges[:-1] + width / 2
    filled = cal.bin_count > 0
    fig = new_figure((5.0, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(centers[filled], cal.bin_accuracy[filled], width=width[filled], edgecolor="black",
           color="tab:blue", alpha=0.8, label="accuracy")
    ax.hlines(cal.bin_confidence[filled], edges[:-1][filled], edges[1:][filled], colors="tab:red", lw=2.0,
              label="mean confidence")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {cal.ece:.3f}, {cal.n_bins} bins)")
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)


#: ``metrics.jsonl`` keys that are bookkeeping, not curves (:class:`medfm.training.loop.Trainer` rows).
NOT_CURVES = ("step", "epoch", "time", "img_per_s")


def check_log_rows(rows: Any) -> List[Mapping[str, Any]]:
    """``rows`` as a list of log records (mappings): a single record (a dict, read as its keys), a
    string, a set, anything not iterable, or an item that is not a mapping is refused
    (``AttributeError: 'str' object has no attribute 'get'`` before; :func:`medfm.arg_checks.check_mapping_list`).

    Raises:
        TypeError: ``rows must be a list of log records (dicts, e.g. metrics.jsonl lines), got dict``;
            an item: ``..., got str at index 0``.
    """
    return check_mapping_list("rows", rows, what="a list of log records (dicts, e.g. metrics.jsonl lines)")


def _series(rows: Sequence[Mapping[str, Any]], key: str, x: str) -> Tuple[np.ndarray, np.ndarray]:
    """(xs, ys) of ``key`` against ``x``: rows lacking either, or whose value is not a finite real
    number (NaN, inf, bool, str, dict), are skipped; for an ``x`` repeated (a resumed run) the last
    row wins; sorted by ``x``."""
    last: Dict[float, float] = {}
    for r in rows:
        xv, yv = r.get(x), r.get(key)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in (xv, yv)):
            last[float(xv)] = float(yv)
    xs = np.array(sorted(last), dtype=float)
    return xs, np.array([last[v] for v in xs], dtype=float)


def draw_series(ax: Any, rows: Sequence[Mapping[str, Any]], keys: Sequence[str], x: str = "step",
                ylabel: Optional[str] = None, smooth: bool = False) -> int:
    """Draw each of ``keys`` from log ``rows`` (dicts, e.g. ``metrics.jsonl`` lines) against ``x`` on ``ax``.

    Series are read as in :func:`plot_training_curve` (missing / non-finite values skipped, the last
    row per ``x`` kept). A series of <= 30 points gets markers (a one-row run shows a dot); with
    ``smooth`` and > 50 points the raw line is drawn faint under a trailing moving average
    (window ``max(5, n // 25)`` points). A legend is drawn when more than one series, or a moving
    average, is shown; ``ax`` gets ``x`` as x label and ``ylabel`` (if given) as y label.

    Returns:
        the number of series drawn (those with at least one point).

    Raises:
        TypeError: ``rows`` not a list of mappings (:func:`check_log_rows`).
    """
    rows = check_log_rows(rows)
    return _draw_series(ax, {key: _series(rows, key, x) for key in keys}, x, ylabel, smooth)


def _draw_series(ax: Any, series: Mapping[str, Tuple[np.ndarray, np.ndarray]], x: str, ylabel: Optional[str],
                 smooth: bool) -> int:
    """:func:`draw_series` of series already read (``{key: (xs, ys)}`` of :func:`_series`, drawn in that order):
    :func:`plot_training_curve` reads each once, for its panel choice and its drawing."""
    drawn = 0
    for key, (xs, ys) in series.items():
        if not len(xs):
            continue
        drawn += 1
        marker = "o" if len(xs) <= 30 else None
        if smooth and len(xs) > 50:
            w = max(5, len(xs) // 25)
            avg = np.convolve(ys, np.ones(w) / w, mode="valid")
            line, = ax.plot(xs, ys, lw=0.8, alpha=0.35)
            ax.plot(xs[w - 1:], avg, lw=1.5, color=line.get_color(), label=f"{key} ({w}-point mean)")
        else:
            ax.plot(xs, ys, lw=1.3, marker=marker, ms=3.5, label=key)
    ax.set_xlabel(x)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if drawn > 1 or any(label.endswith("mean)") for label in ax.get_legend_handles_labels()[1]):
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return drawn


def plot_training_curve(rows: Sequence[Mapping[str, Any]], path: PathLike, x: str = "step",
                        title: Optional[str] = None) -> Path:
    """Training curves of a run's ``metrics.jsonl`` rows against the global step, as a PNG.

    Panels: every key containing ``loss`` (``loss``, ``gm_loss``, ``clip_loss``, ...) on the first,
    ``lr`` on its own, the task metrics whose values all lie in [0, 1] (``acc``, ``match_acc``,
    ``fg_frac``, ``val_auc``, ...) together, and any other numeric series (``logit_scale``) each on
    its own. :data:`NOT_CURVES` keys (``step``, ``epoch``, ``time``, ``img_per_s``) and non-numeric
    values are not drawn.

    Robustness: a row may lack any key (the epoch-end rows carry only validation metrics); NaN / inf
    points are skipped; when a step occurs in several rows (a resumed run whose log was not trimmed)
    each series keeps its value from the *last* row that has it for that step, so a step row and an
    epoch-end row of the same step both count; a single row draws dots.

    Args:
        rows: log records (dicts), in the order written.
        path: output ``.png`` path (written atomically).
        x: the key of the x axis (``"step"``: the global optimizer step).
        title: figure title (None: none).

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: no row has a finite numeric value (other than bookkeeping keys) with an ``x``.
        TypeError: ``rows`` not a list of mappings (:func:`check_log_rows`: one dict, a string, None).
    """
    from matplotlib.ticker import MaxNLocator

    rows = check_log_rows(rows)
    keys: List[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys and k not in NOT_CURVES and k != x]
    series = {k: _series(rows, k, x) for k in keys}
    series = {k: v for k, v in series.items() if len(v[0])}
    if not series:
        raise ValueError(f"no numeric series against {x!r} to plot in {len(rows)} log rows")
    losses = [k for k in series if "loss" in k]
    bounded = [k for k in series if k not in losses and k != "lr" and 0.0 <= series[k][1].min()
               and series[k][1].max() <= 1.0]
    panels: List[Tuple[List[str], str]] = []  # (keys, y label: the key itself when the panel has one)
    if losses:
        panels.append((losses, losses[0] if len(losses) == 1 else "loss"))
    if "lr" in series:
        panels.append((["lr"], "learning rate"))
    if bounded:
        panels.append((bounded, bounded[0] if len(bounded) == 1 else "metric"))
    panels += [([k], k) for k in series if k not in losses and k != "lr" and k not in bounded]
    ncols = 2 if len(panels) == 4 else min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = new_figure((4.2 * ncols, 3.2 * nrows))
    first = None
    for i, (panel_keys, ylabel) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1, sharex=first)  # one step range: an epoch-end dot sits at its step
        first = first or ax
        _draw_series(ax, {k: series[k] for k in panel_keys}, x, ylabel, smooth=panel_keys is losses)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel_keys == ["lr"]:
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        if panel_keys is bounded:
            ax.set_ylim(-0.02, 1.02)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
