"""Top-label calibration: expected calibration error (ECE) and reliability-diagram bins.

Follows Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural Networks"
(ICML), Sec. 2: predictions are grouped into ``M`` equal-width bins on the confidence
``conf_i = max_k p_ik``, bin ``m`` covering ``((m-1)/M, m/M]`` (confidence 0 falls in
the first bin), and

    ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|,    MCE = max_m |acc(B_m) - conf(B_m)|

with ``acc(B_m)`` the fraction of correct argmax predictions and ``conf(B_m)`` the mean
confidence in bin ``m`` (empty bins contribute nothing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from medfm.arg_checks import check_number
from medfm.evaluation.metrics import MULTI_LABEL, check_task, prepare_scores, to_numpy

__all__ = ["Calibration", "expected_calibration_error"]


@dataclass(frozen=True)
class Calibration:
    """ECE, MCE and per-bin reliability data.

    Attributes:
        ece: expected calibration error in [0, 1].
        mce: maximum calibration error over non-empty bins in [0, 1].
        bin_edges: (M + 1,) bin boundaries ``m / M``, 0 .. 1, each the float nearest ``m / M``.
        bin_count: (M,) number of samples per bin.
        bin_confidence: (M,) mean confidence per bin (NaN for empty bins).
        bin_accuracy: (M,) accuracy per bin (NaN for empty bins).
    """

    ece: float
    mce: float
    bin_edges: np.ndarray
    bin_count: np.ndarray
    bin_confidence: np.ndarray
    bin_accuracy: np.ndarray

    @property
    def n_bins(self) -> int:
        """Number of bins M."""
        return int(len(self.bin_count))

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict: ``ece``, ``mce``, ``n_bins`` and a list of non-empty ``bins``
        each ``{"lower", "upper", "count", "confidence", "accuracy"}``."""
        bins: List[Dict[str, Any]] = []
        for m in range(self.n_bins):
            if self.bin_count[m] == 0:
                continue
            bins.append({
                "lower": float(self.bin_edges[m]),
                "upper": float(self.bin_edges[m + 1]),
                "count": int(self.bin_count[m]),
                "confidence": float(self.bin_confidence[m]),
                "accuracy": float(self.bin_accuracy[m]),
            })
        return {"ece": self.ece, "mce": self.mce, "n_bins": self.n_bins, "bins": bins}


def expected_calibration_error(
    y_true: Any,
    y_score: Any,
    n_bins: int = 15,
    task: Optional[str] = None,
) -> Calibration:
    """Top-label ECE with equal-width confidence bins (Guo et al. 2017).

    Args:
        y_true: (N,) or (N, 1) int class indices.
        y_score: (N, K) probabilities (K >= 2, softmax), or (N,) positive-class
            probabilities of a binary task (treated as ``[1 - p, p]``).
        n_bins: number of equal-width bins M (>= 1; 15 as in Guo et al.).
        task: optional MedMNIST task string to validate against; top-label ECE is defined
            for ``binary-class``, ``multi-class`` and ``ordinal-regression``.

    Returns:
        :class:`Calibration` with ``ece``, ``mce`` and per-bin data for a reliability diagram.

    Raises:
        ValueError: multi-label task, ``n_bins`` not an integer >= 1 (``15.0`` and ``True`` are
            refused), or the input errors of
            :func:`medfm.evaluation.metrics.classification_metrics` (shape, NaN, range).
    """
    n_bins = check_number("n_bins", n_bins, ge=1, integer=True)
    if task is not None and check_task(task) == MULTI_LABEL:
        raise ValueError("top-label ECE is defined for binary/multi-class tasks, not 'multi-label, binary-class' "
                         "(compute it per label as a binary task instead)")
    s = to_numpy(y_score, "y_score")
    if task is None:
        task = "binary-class" if s.ndim == 1 or (s.ndim == 2 and s.shape[1] == 1) else "multi-class"
    y, p = prepare_scores(y_true, s, task)
    if p.ndim == 1:  # binary positive-class probability
        p = np.stack([1.0 - p, p], axis=1)
    conf = p.max(axis=1)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)

    edges = np.arange(n_bins + 1) / n_bins  # each m / M rounded once (linspace was an ulp off for M = 7, 98, ...)
    # bin m holds conf in (edges[m], edges[m+1]]; conf == 0 goes to bin 0
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        bin_acc = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
    gap = np.abs(np.nan_to_num(bin_acc) - np.nan_to_num(bin_conf))
    ece = float(np.sum(count / len(y) * gap))
    mce = float(gap[count > 0].max())
    return Calibration(ece=ece, mce=mce, bin_edges=edges, bin_count=count,
                       bin_confidence=bin_conf, bin_accuracy=bin_acc)
