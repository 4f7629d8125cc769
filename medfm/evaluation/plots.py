"""Report figures: confusion matrix, ROC curves, reliability diagram (PNG, atomic writes).

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, so
no pyplot global state or GUI backend is touched (safe in threads and headless runs).
matplotlib is imported lazily: ``import medfm.evaluation`` stays light.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from medfm.evaluation.calibration import Calibration
from medfm.evaluation.metrics import MULTI_LABEL, one_vs_rest, prepare_scores, weighted_auc
from medfm.io import PathLike, atomic_path

__all__ = ["plot_confusion_matrix", "plot_roc", "plot_reliability"]

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
        label_names: K class names.
        path: output ``.png`` path (written atomically).
        normalize: colour by row-normalised recall (counts are printed in the cells).

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: ``cm`` not square or ``label_names`` of the wrong length.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be (K, K), got shape {cm.shape}")
    if len(label_names) != cm.shape[0]:
        raise ValueError(f"got {len(label_names)} label names for a {cm.shape[0]}-class confusion matrix")
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


def plot_roc(y_true: Any, y_score: Any, task: str, label_names: Optional[Sequence[str]], path: PathLike) -> Path:
    """ROC curves: one for binary, one-vs-rest per class (multi-class/ordinal) or per label.

    Columns whose ROC is undefined (one class only in ``y_true``) are skipped and noted
    in the legend title.

    Args:
        y_true, y_score, task: as in :func:`medfm.evaluation.metrics.classification_metrics`.
        label_names: class/label names (None: "0", "1", ...).
        path: output ``.png`` path (written atomically).

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: the input errors of ``classification_metrics``.
    """
    y, s = prepare_scores(y_true, y_score, task)
    t_cols, s_cols = one_vs_rest(y, s, task)
    n_cols = t_cols.shape[1]
    if label_names is None:
        names = [str(i) for i in range(2 if task == "binary-class" else n_cols)]
    else:
        names = [str(x) for x in label_names]
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
    """
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
