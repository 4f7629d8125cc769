"""Classification metrics: MedMNIST ACC/AUC, balanced accuracy, per-class recall, bootstrap CIs.

The MedMNIST-C robustness scores (balanced error, BE, rBE) are in
:mod:`medfm.evaluation.robustness` and re-exported here for compatibility.

ACC and AUC follow the MedMNIST definitions exactly (Yang et al. 2023, "MedMNIST v2",
Sci. Data 10:41; reference code ``medmnist.evaluator.getACC/getAUC``):

* ``binary-class``: the last score column is the positive-class probability;
  ACC thresholds it at ``threshold`` (``>``, default 0.5), AUC is the ROC AUC of it.
* ``multi-class`` and ``ordinal-regression``: ACC uses ``argmax``; AUC is the mean over
  the K score columns of the one-vs-rest ROC AUC.
* ``multi-label, binary-class``: per label ``score > threshold``; ACC and AUC are the
  means over labels of the per-label accuracy / ROC AUC.

A column whose one-vs-rest targets hold one class only (a class absent from ``y_true``, a
constant label) has no ROC AUC: it is NaN in ``per_class_auc``, named in ``warnings`` and left
out of the mean AUC, which averages the defined columns (NaN when none is). ``getAUC``
averages all columns, so its AUC is then NaN (the installed sklearn 1.9 returns NaN for such a
column, older versions raise).

ROC AUC is computed as the Mann-Whitney U statistic (ties count 1/2; Hanley & McNeil
1982), which equals the trapezoidal ROC area sklearn reports; the same code serves the
vectorised bootstrap.

Saturated probabilities: a confident classifier's float32 softmax rounds every
``p_k`` above ``1 - 6e-8`` to exactly 1.0 (a logit margin above ~17), so ranking by the
column itself turns distinct predictions into ties (a 1-epoch Mamba model's 624
PneumoniaMNIST test scores all had p1 = 1.0: AUC 0.500, against 0.572 from its logit
margins). When the scores are full probability rows (binary with both columns, multi-class,
ordinal; rows summing to 1 within :data:`ROW_SUM_ATOL` = 1e-5, as float32 softmax rows do to
~5e-7), AUC ranks a probability whose complement ``sum_{j != k} p_j`` is below 1e-4 by that
complement, which float32 resolves down to ~1e-45 (:func:`ranking_scores`). Elsewhere the
ranking is the probabilities' own, so the AUC equals MedMNIST's ``getAUC`` unless
probabilities above 0.9999 are involved. Multi-label sigmoid scores, a single positive-class
column and rows that are not distributions to that precision (e.g. probabilities rounded to
4 decimals, whose complements carry no information) are ranked as given.

Logits: a probability that float32 rounds to exactly 1.0 or 0.0 keeps nothing to rank by: a
multi-label (or single-column) sigmoid saturates above logit ~17.3, a softmax complement underflows
to 0 above a margin of ~104 and ``p_k`` itself below ~-104. Callers that hold the scores before the
saturating transform (:func:`medfm.evaluation.predict.predict_outputs`) pass them as ``logits``;
AUC then ranks every column by its log-odds ``log(p_k / (1 - p_k))`` computed from them in float64
(:func:`logit_ranking`: the logit itself for sigmoid columns, ``z_k - logsumexp_{j != k} z_j`` for
softmax rows). The Mann-Whitney AUC depends only on the order of the scores, and the log-odds is a
strictly increasing function of the exact probability, so this is the AUC of the exact
probabilities, without ties made by float rounding; ACC, recall and the confusion matrix still use
the probabilities.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from medfm.arg_checks import check_number, check_string_list
from medfm.data.medmnist_info import MULTI_LABEL_TASK as MULTI_LABEL  # the task string of MedMNIST's INFO
from medfm.registry import close_match_hint


__all__ = [
    "TASKS",
    "check_task",
    "classification_metrics",
    "binary_auc",
    "ranking_scores",
    "log_odds",
    "logit_ranking",
    "prepare_scores",
    "one_vs_rest",
    "weighted_auc",
    "thresholded_predictions",
    "balanced_accuracy",
    "label_name_list",
    "to_numpy",
    "bootstrap_ci",
    "bootstrap_mean_ci",
    "balanced_error",
    "corruption_errors",
    "alexnet_reference",
    "be_rbe",
    "BOOT_CHUNK_ELEMS",
    "bootstrap_weights",
]

TASKS = ("binary-class", "multi-class", MULTI_LABEL, "ordinal-regression")
_BOOT_METRICS = ("acc", "auc")
#: resamples x samples per chunk of a bootstrap (~32 MB of float64): :func:`bootstrap_ci` and the fusion protocol's
#: patient bootstrap (:func:`medfm.evaluation.fusion.patient_bootstrap_auc`)
BOOT_CHUNK_ELEMS = 4_000_000


def check_task(task: str) -> str:
    """Return ``task`` if it is a MedMNIST task string, else raise.

    Raises:
        ValueError: unknown task; the message lists close matches and all valid tasks.
    """
    if task in TASKS:
        return task
    raise ValueError(f"unknown task {task!r}{close_match_hint(task, TASKS, n=2, cutoff=0.4, fallback=None)} (valid: "
                     f"{', '.join(TASKS)})")


def to_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` (tensor, array or sequence) as a numpy array, any shape.

    Raises:
        TypeError: ``x`` is not numeric or boolean (the message names the argument ``name``).
    """
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    return a


def prepare_scores(y_true: Any, y_score: Any, task: str, full: bool = False) -> Tuple[np.ndarray, ...]:
    """Validate inputs and bring them to canonical shapes.

    Returns ``(y, s)``: binary ``y`` (N,) in {0,1}, ``s`` (N,) positive-class probability;
    multi-class/ordinal ``y`` (N,) in [0, K), ``s`` (N, K); multi-label ``y``, ``s`` (N, L).
    With ``full``: ``(y, s, scores)``, ``scores`` the validated float64 ``y_score`` as given
    (binary: both columns when given), for :func:`one_vs_rest`'s :func:`ranking_scores`.
    """
    y, s, scores = _prepare_full(y_true, y_score, task)
    return (y, s, scores) if full else (y, s)


def _prepare_full(y_true: Any, y_score: Any, task: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    check_task(task)
    y = to_numpy(y_true, "y_true")
    s = to_numpy(y_score, "y_score").astype(np.float64)
    if s.ndim not in (1, 2):
        raise ValueError(f"y_score must be (N,) or (N, K), got shape {s.shape}")
    if y.ndim not in (1, 2):
        raise ValueError(f"y_true must be (N,) or (N, L), got shape {y.shape}")
    if len(y) != len(s):
        raise ValueError(f"y_true has {len(y)} samples but y_score has {len(s)}")
    if len(y) == 0:
        raise ValueError("y_true and y_score are empty")
    n_bad = int((~np.isfinite(s)).sum())
    if n_bad:
        raise ValueError(f"y_score contains {n_bad} NaN/inf value(s)")
    if s.min() < 0.0 or s.max() > 1.0:
        raise ValueError(
            f"y_score must be probabilities in [0, 1] (got range [{s.min():.4g}, {s.max():.4g}]); "
            "apply softmax (binary/multi-class) or sigmoid (multi-label) to logits first"
        )
    yf = y.astype(np.float64)
    if not np.all(np.isfinite(yf)) or not np.all(yf == np.round(yf)):
        raise ValueError("y_true must hold integer class indices / 0-1 labels (found NaN or fractions)")
    y = yf.astype(np.int64)

    if task == MULTI_LABEL:
        if y.ndim != 2 or s.ndim != 2 or y.shape != s.shape:
            raise ValueError(
                f"task {task!r} needs y_true and y_score both (N, L) with equal L, "
                f"got y_true {y.shape} and y_score {s.shape}"
            )
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"y_true for task {task!r} must be 0/1 per label")
        return y, s, s

    if y.ndim == 2:
        if y.shape[1] != 1:
            raise ValueError(
                f"y_true for task {task!r} must be (N,) or (N, 1) class indices, got shape {y.shape} "
                "(one-hot labels? pass their argmax)"
            )
        y = y[:, 0]
    if y.min() < 0:
        raise ValueError(f"y_true holds a negative class index ({y.min()})")
    if task == "binary-class":
        if s.ndim == 2 and s.shape[1] not in (1, 2):
            raise ValueError(
                f"task 'binary-class' expects y_score of shape (N,), (N, 1) or (N, 2), got {s.shape} "
                "(more than 2 classes? use task 'multi-class')"
            )
        if y.max() > 1:
            raise ValueError(f"y_true for task 'binary-class' must be 0/1, found class {y.max()}")
        return y, (s[:, -1] if s.ndim == 2 else s), s
    # multi-class / ordinal-regression
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"task {task!r} expects y_score of shape (N, K) with K >= 2, got {s.shape}")
    if y.max() >= s.shape[1]:
        raise ValueError(f"y_true holds class {y.max()} but y_score has only {s.shape[1]} columns")
    return y, s, s


#: complement mass ``sum_{j != k} p_j`` below which a probability counts as saturated
SATURATED_COMPLEMENT = 1e-4
#: largest ``|row sum - 1|`` of scores ranked by :func:`ranking_scores`: a tenth of
#: :data:`SATURATED_COMPLEMENT`, so a complement and ``1 - p_k`` cannot disagree about saturation
#: away from 0.9999 (4-decimal rows off by 1e-4 made a 0.9998 outrank a 0.9999, inverting an AUC)
ROW_SUM_ATOL = 1e-5


def ranking_scores(probs: np.ndarray) -> Optional[np.ndarray]:
    """AUC ranking keys ``(N, K)`` for probability rows ``(N, K)`` that stay distinct where float32
    probabilities saturate at 1.0.

    Key of class ``k``: ``p_k`` itself while its complement ``c_k = sum_{j != k} p_j`` (summed
    from the other columns, not ``1 - p_k``) is at least :data:`SATURATED_COMPLEMENT`;
    otherwise ``1 + log(SATURATED_COMPLEMENT / c_k)`` (>= 1, growing as ``c_k`` shrinks;
    ``+inf`` when ``c_k`` is 0). Both pieces increase with the true ``p_k``, so the ranking is the
    probabilities' own wherever they do not saturate (ties included: quantised scores keep their
    ties), and saturated ones are ordered by their well-resolved small complements.

    Returns:
        ``(N, K)`` float64, or None when the rows are not probability distributions (a row
        sum off 1 by more than :data:`ROW_SUM_ATOL`, or K < 2): such scores are ranked as given.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2 or not np.allclose(p.sum(axis=1), 1.0, rtol=0.0, atol=ROW_SUM_ATOL):
        return None
    rest = np.stack([np.delete(p, k, axis=1).sum(axis=1) for k in range(p.shape[1])], axis=1)
    saturated = rest < SATURATED_COMPLEMENT
    with np.errstate(divide="ignore"):
        tail = 1.0 + np.log(SATURATED_COMPLEMENT / np.where(saturated, rest, 1.0))
    return np.where(saturated, tail, p)


#: largest ``|sigmoid/softmax(logits) - y_score|`` :func:`logit_ranking` accepts (float32 scores are
#: off by ~1e-7; probabilities rounded to 4 decimals by 5e-5); more: the logits are another model's
LOGIT_PROB_ATOL = 1e-4


def log_odds(logits: Any, task: str) -> np.ndarray:
    """Log-odds ``log(p_k / (1 - p_k))`` ``(N, K)`` float64 of each score column, from ``logits``
    ``(N, K)`` (or ``(N,)``) computed stably, without forming ``p``.

    Multi-label and single-column (sigmoid) logits are their own log-odds; softmax rows (K >= 2,
    other tasks) give ``z_k - logsumexp_{j != k} z_j`` (for K = 2: the margin ``z_1 - z_0``). Equal
    logits give equal log-odds, so ties in the model's output stay ties.

    Raises:
        ValueError: an unknown task, ``logits`` not (N,) or (N, K), or NaN/inf logits.
        TypeError: non-numeric ``logits``.
    """
    check_task(task)
    z = to_numpy(logits, "logits").astype(np.float64)
    if z.ndim not in (1, 2):
        raise ValueError(f"logits must be (N,) or (N, K), got shape {z.shape}")
    n_bad = int((~np.isfinite(z)).sum())
    if n_bad:
        raise ValueError(f"logits contain {n_bad} NaN/inf value(s)")
    if task == MULTI_LABEL or z.ndim == 1 or z.shape[1] == 1:
        return z
    return np.stack([z[:, k] - np.logaddexp.reduce(np.delete(z, k, axis=1), axis=1)
                     for k in range(z.shape[1])], axis=1)


def logit_ranking(logits: Any, scores: np.ndarray, task: str) -> np.ndarray:
    """AUC ranking keys ``(N, K)`` float64 from the ``logits`` the probabilities ``scores`` were made from:
    :func:`log_odds`, checked against ``scores``.

    ``scores``: the validated score rows (:func:`prepare_scores` with ``full``; shape of ``y_score``).

    Raises:
        ValueError: ``logits`` not of the shape of ``y_score``, NaN/inf logits, or logits whose
            sigmoid (multi-label, one column) / softmax (rows) differs from ``y_score`` by more than
            :data:`LOGIT_PROB_ATOL` (another model's, or rows in another order).
    """
    z = to_numpy(logits, "logits")
    if z.shape != scores.shape:
        raise ValueError(f"logits must have the shape of y_score {scores.shape}, got {z.shape}")
    lo = log_odds(z, task)
    sigmoid = task == MULTI_LABEL or z.ndim == 1 or z.shape[1] == 1
    with np.errstate(over="ignore"):  # exp(+large) = inf: p = 0
        p = 1.0 / (1.0 + np.exp(-lo))  # sigmoid of the log-odds: the sigmoid, or the softmax of the rows
    gap = float(np.abs(p - scores).max())
    if gap > LOGIT_PROB_ATOL:
        raise ValueError(f"logits do not match y_score: their {'sigmoid' if sigmoid else 'softmax'} differs from "
                         f"y_score by up to {gap:.3g} (> {LOGIT_PROB_ATOL:g}); pass the logits these probabilities "
                         "were made from")
    return lo


def one_vs_rest(y: np.ndarray, s: np.ndarray, task: str,
                 scores: Optional[np.ndarray] = None, logits: Any = None) -> Tuple[np.ndarray, np.ndarray]:
    """Binary targets and ranking scores per AUC column: ``(T, S)`` both (N, C).

    With ``logits`` (the scores before the sigmoid/softmax, shape of ``y_score``; needs ``scores``),
    every column is ranked by its log-odds (:func:`logit_ranking`), which float rounding does not
    tie. Otherwise, with ``scores`` (the full probability rows, :func:`prepare_scores` with ``full``),
    binary and multi-class columns are ranked by :func:`ranking_scores`, which stay distinct where
    float32 probabilities saturate at 1.0; else by the probabilities ``s``.

    Raises:
        ValueError: ``logits`` without ``scores``, or the errors of :func:`logit_ranking`.
    """
    if logits is not None:
        if scores is None:
            raise ValueError("one_vs_rest ranks logits against their probabilities: pass scores too")
        lo = logit_ranking(logits, scores, task)
        lo = lo[:, None] if lo.ndim == 1 else lo
    else:  # (multi-label sigmoid scores are no distributions)
        lo = None if scores is None or task == MULTI_LABEL else ranking_scores(scores)
    if task == MULTI_LABEL:
        return y.astype(np.float64), (s if lo is None else lo)
    if task == "binary-class":
        return y[:, None].astype(np.float64), (s[:, None] if lo is None else lo[:, -1:])
    return (y[:, None] == np.arange(s.shape[1])[None, :]).astype(np.float64), (s if lo is None else lo)


def weighted_auc(t: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mann-Whitney ROC AUC of scores ``s`` (N,) for 0/1 targets ``t`` (N,) per weight row.

    ``w`` (B, N) holds per-sample multiplicities (all ones: the plain AUC; bootstrap
    counts: the AUC of each resample). Ties between a positive and a negative count 1/2.
    Returns (B,) float64, NaN where a row has no positive or no negative weight.
    """
    order = np.argsort(s, kind="stable")
    s_sorted, t_sorted = s[order], t[order]
    w_sorted = w[:, order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])  # tie groups
    pos = np.add.reduceat(w_sorted * t_sorted, starts, axis=1)  # (B, U)
    neg = np.add.reduceat(w_sorted * (1.0 - t_sorted), starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    num = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def binary_auc(y_true: Any, y_score: Any) -> float:
    """ROC AUC of one score column for 0/1 targets (Mann-Whitney U / (n_pos n_neg)).

    Args:
        y_true: (N,) 0/1 targets.
        y_score: (N,) float scores, higher = more positive (``+-inf`` rank as such).

    Returns:
        AUC in [0, 1]; NaN when ``y_true`` holds only one class (or no sample: N = 0).

    Raises:
        ValueError: shapes differ or are not 1-D, NaN scores, targets other than 0/1 (NaN
            included).
    """
    t = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    if t.ndim != 1 or t.shape != s.shape:
        raise ValueError(f"binary_auc needs two (N,) arrays, got {t.shape} and {s.shape}")
    n_nan = int(np.isnan(s).sum())
    if n_nan:
        raise ValueError(f"y_score contains {n_nan} NaN value(s)")
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError(f"y_true must hold 0/1 targets, found {t[~np.isin(t, (0.0, 1.0))][0].item()!r}")
    if not len(t):  # no class at all (weighted_auc's reduceat raised IndexError)
        return float("nan")
    return float(weighted_auc(t, s, np.ones((1, len(t))))[0])


def thresholded_predictions(s: np.ndarray, task: str, threshold: Union[float, np.ndarray]) -> np.ndarray:
    """Predicted labels from :func:`prepare_scores` output: binary / multi-label ``s > threshold``
    (int64, shape of ``s``; ``threshold`` a scalar or one per label), otherwise ``argmax`` over the last axis (N,)."""
    if task in ("binary-class", MULTI_LABEL):
        return (s > threshold).astype(np.int64)
    return np.argmax(s, axis=-1)


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 counts, rows = true class, columns = predicted class."""
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def _recalls(cm: np.ndarray) -> np.ndarray:
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.where(support > 0, support, 1), np.nan)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Mean recall over classes present in ``y`` (= sklearn ``balanced_accuracy_score``)."""
    r = _recalls(_confusion(y, pred, k))
    return float(np.mean(r[~np.isnan(r)]))


def label_name_list(label_names: Optional[Sequence[str]], n: int, what: str = "classes") -> List[str]:
    """``label_names`` as a list of ``n`` strings (``"0"`` .. ``"n-1"`` for None): the one rule of the
    metrics' and the figures' class / label names (:func:`classification_metrics`,
    :func:`medfm.evaluation.plots.plot_roc`, :func:`~medfm.evaluation.plots.plot_confusion_matrix`).

    Args:
        label_names: the names (strings or integers), or None.
        n: how many there must be.
        what: what they name, ``"classes"`` or ``"labels"``, for the message.

    Raises:
        ValueError: not a list of names (:func:`medfm.arg_checks.check_string_list`, integers accepted: a
            string ``"ab"`` was read as the names ``a``, ``b``), or ``got 2 label_names for 3 classes``.
    """
    if label_names is None:
        return [str(i) for i in range(n)]
    one = {"classes": "class", "labels": "label"}.get(what, what)
    names = check_string_list("label_names", label_names, what=f"a list of {n} names, one per {one}",
                              integers=True)  # (a string "ab" was read as the names "a", "b")
    if len(names) != n:
        raise ValueError(f"got {len(names)} label_names for {n} {what}")
    return names


def classification_metrics(
    y_true: Any,
    y_score: Any,
    task: str,
    threshold: float = 0.5,
    label_names: Optional[Sequence[str]] = None,
    logits: Any = None,
) -> Dict[str, Any]:
    """MedMNIST ACC/AUC plus balanced accuracy, per-class recall/AUC and confusion matrix.

    Args:
        y_true: (N,) or (N, 1) int class indices; (N, L) 0/1 for multi-label.
        y_score: (N, K) probabilities (softmax for binary/multi-class/ordinal, K = 2 for
            binary; (N,) or (N, 1) positive-class probability also accepted for binary);
            (N, L) sigmoid probabilities for multi-label. Numpy arrays or CPU tensors.
        task: a MedMNIST task string, see :data:`TASKS`.
        threshold: decision threshold on the positive probability (binary, multi-label).
        label_names: K class names (2 for binary) or L label names; default "0", "1", ...
        logits: optional, the model's scores before the sigmoid/softmax that made ``y_score`` (shape
            of ``y_score``): AUC then ranks their log-odds (:func:`logit_ranking`; see the module doc),
            which float32 saturation at 0/1 does not tie. Everything else uses ``y_score``.

    Returns:
        dict with ``task``, ``n_samples``, ``threshold``, ``acc``, ``auc`` (MedMNIST
        semantics, see module doc), ``balanced_acc`` (mean recall over classes present in
        ``y_true``; multi-label: mean over labels), ``per_class_recall``,
        ``per_class_auc``, ``support`` (dicts keyed by label name; multi-label recall is
        the per-label sensitivity and support its positive count), ``confusion_matrix``
        (list of lists, rows true / columns predicted; ``None`` for multi-label) and
        ``warnings`` (list of str: undefined AUC/recall columns).

    Raises:
        ValueError: unknown task (with close matches), length mismatch, score shape not
            matching the task, NaN/inf or out-of-[0, 1] scores, non-integer or
            out-of-range labels, wrong number of label names or ``label_names`` not a list of names
            (:func:`medfm.arg_checks.check_string_list`, integers accepted), ``threshold`` not a finite number
            in [0, 1] (``threshold must be a finite number in [0, 1], got nan``: NaN made every
            prediction negative without a word); ``logits`` not matching ``y_score`` (:func:`logit_ranking`).
        TypeError: non-numeric inputs.
    """
    threshold = check_number("threshold", threshold, ge=0, le=1)
    y, s, scores = prepare_scores(y_true, y_score, task, full=True)
    pred = thresholded_predictions(s, task, threshold)
    warnings: List[str] = []
    t_cols, s_cols = one_vs_rest(y, s, task, scores, logits)
    col_auc = np.array([weighted_auc(t_cols[:, c], s_cols[:, c], np.ones((1, len(y))))[0]
                        for c in range(t_cols.shape[1])])

    if task == MULTI_LABEL:
        names = label_name_list(label_names, y.shape[1], "labels")
        acc = float(np.mean((pred == y).mean(axis=0)))
        cms = [_confusion(y[:, j], pred[:, j], 2) for j in range(y.shape[1])]
        bal = float(np.mean([balanced_accuracy(y[:, j], pred[:, j], 2) for j in range(y.shape[1])]))
        recall = np.array([_recalls(cm)[1] for cm in cms])
        support = y.sum(axis=0)
        auc_names = names
        cm_out = None
    else:
        k = 2 if task == "binary-class" else s.shape[1]
        names = label_name_list(label_names, k, "classes")
        acc = float(np.mean(pred == y))
        cm = _confusion(y, pred, k)
        recall = _recalls(cm)
        bal = float(np.mean(recall[~np.isnan(recall)]))
        support = cm.sum(axis=1)
        auc_names = names[-1:] if task == "binary-class" else names
        cm_out = cm.tolist()

    for name, a in zip(auc_names, col_auc):
        if np.isnan(a):
            warnings.append(f"AUC undefined for {name!r}: y_true has only one class in its one-vs-rest "
                            "column; excluded from the mean AUC")
    for name, r in zip(names, recall):
        if np.isnan(r):
            warnings.append(f"recall undefined for {name!r}: no positive samples in y_true")
    defined = col_auc[~np.isnan(col_auc)]
    return {
        "task": task,
        "n_samples": int(len(y)),
        "threshold": float(threshold),
        "acc": acc,
        "auc": float(np.mean(defined)) if defined.size else float("nan"),
        "balanced_acc": bal,
        "per_class_recall": {n: float(r) for n, r in zip(names, recall)},
        "per_class_auc": {n: float(a) for n, a in zip(auc_names, col_auc)},
        "support": {n: int(c) for n, c in zip(names, support)},
        "confusion_matrix": cm_out,
        "warnings": warnings,
    }


def bootstrap_weights(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    """``(b, n)`` float64 multiplicities of ``n`` items drawn with replacement, one row per resample (Efron's
    nonparametric bootstrap): one ``rng.integers(0, n, (b, n))`` draw, counted per row. Weighting each item by
    its count gives the resample's statistic without building it (:func:`bootstrap_ci` over samples,
    :func:`medfm.evaluation.fusion.patient_bootstrap_auc` over patients)."""
    idx = rng.integers(0, n, size=(b, n))
    flat = (idx + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def bootstrap_ci(
    y_true: Any,
    y_score: Any,
    task: str,
    metric: str = "acc",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    threshold: float = 0.5,
    logits: Any = None,
) -> Tuple[float, float]:
    """Percentile bootstrap confidence interval of ACC or AUC (Efron & Tibshirani 1993).

    Samples are drawn with replacement ``n_boot`` times (numpy ``default_rng(seed)``); each
    resample's metric is computed with the semantics of :func:`classification_metrics`
    (vectorised: resamples are represented by per-sample multiplicities). Resamples whose
    AUC is undefined (no positive or no negative in every column) are dropped.

    Args:
        y_true, y_score, task, threshold, logits: as in :func:`classification_metrics` (``logits``
            serve the AUC only).
        metric: ``"acc"`` or ``"auc"``.
        n_boot: number of resamples (>= 1).
        alpha: 1 - confidence level, in (0, 1); 0.05 gives a 95% interval.
        seed: random seed; equal seeds give equal intervals.

    Returns:
        ``(low, high)``: the ``alpha/2`` and ``1 - alpha/2`` percentiles; ``(nan, nan)`` if
        no resample has a defined value.

    Raises:
        ValueError: unknown metric, ``n_boot`` not an integer >= 1, ``alpha`` not a number in (0, 1)
            (``True`` is refused, not taken as 1), ``threshold`` not a number in [0, 1] (as
            :func:`classification_metrics`), or any input error of :func:`classification_metrics`.
    """
    if metric not in _BOOT_METRICS:
        raise ValueError("unknown bootstrap metric "
                         f"{metric!r}{close_match_hint(metric, _BOOT_METRICS, n=2, cutoff=0.4, fallback=None)} "
                         f"(valid: {', '.join(_BOOT_METRICS)})")
    n_boot = check_number("n_boot", n_boot, ge=1, integer=True)
    alpha = check_number("alpha", alpha, gt=0, lt=1)
    threshold = check_number("threshold", threshold, ge=0, le=1)
    y, s, scores = prepare_scores(y_true, y_score, task, full=True)
    n = len(y)
    rng = np.random.default_rng(seed)
    chunk = max(1, BOOT_CHUNK_ELEMS // n)
    if metric == "acc":
        correct = (thresholded_predictions(s, task, threshold) == y).astype(np.float64)
        if correct.ndim == 2:  # multi-label: mean over labels per sample
            correct = correct.mean(axis=1)
    else:
        t_cols, s_cols = one_vs_rest(y, s, task, scores, logits)
    stats = []
    for start in range(0, n_boot, chunk):
        w = bootstrap_weights(rng, min(chunk, n_boot - start), n)
        if metric == "acc":
            stats.append(w @ correct / n)
        else:
            per_col = np.stack([weighted_auc(t_cols[:, c], s_cols[:, c], w) for c in range(t_cols.shape[1])], 1)
            defined = ~np.isnan(per_col)
            cnt = defined.sum(axis=1)
            total = np.where(defined, per_col, 0.0).sum(axis=1)
            stats.append(np.where(cnt > 0, total / np.maximum(cnt, 1), np.nan))
    values = np.concatenate(stats)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(low), float(high)


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 1000, alpha: float = 0.05,
                      seed: int = 0) -> Tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` of the mean of ``values`` ``(N,)``; ``(nan, nan)`` if N = 0.

    Raises:
        ValueError: ``n_boot`` not an integer >= 1 or ``alpha`` not a number in (0, 1)
            (``n_boot must be an integer >= 1, got 10.0``).
    """
    n_boot = check_number("n_boot", n_boot, ge=1, integer=True)
    alpha = check_number("alpha", alpha, gt=0, lt=1)
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


_ROBUSTNESS_NAMES = ("balanced_error", "corruption_errors", "alexnet_reference", "be_rbe")


def __getattr__(name: str) -> Any:
    """Lazy re-export of the MedMNIST-C functions, which live in :mod:`medfm.evaluation.robustness`.

    Kept so ``from medfm.evaluation.metrics import be_rbe`` goes on working; lazy (PEP 562)
    because ``robustness`` itself imports this module's helpers.
    """
    if name in _ROBUSTNESS_NAMES:
        from medfm.evaluation import robustness

        return getattr(robustness, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
