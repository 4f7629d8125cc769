"""Strict VQA scoring: exact match after normalisation, CLOSED / OPEN / overall, bootstrap CIs.

A prediction is correct only when ``normalize_answer(prediction) == normalize_answer(answer)``
(:func:`medfm.data.vqa_rad.normalize_answer`: case, whitespace, punctuation). Every
question counts in its denominator: an empty prediction, or a question whose answer is not in
the training vocabulary, is simply wrong. There is no substring matching: a scorer that
credits ``"yes"`` inside ``"yes, left"``, or that drops unmatched predictions from the
denominator (as a widely copied VQA-RAD evaluation script does for closed questions),
inflates closed accuracy; :func:`score_vqa` does neither.

Confidence intervals are percentile bootstraps over questions (Efron & Tibshirani 1993),
resampled within each subset (CLOSED, OPEN, overall) separately.
:func:`medfm.evaluation.metrics.bootstrap_ci` takes class scores; here the statistic is the
mean of a 0/1 correctness vector, so the resampling is the few lines below.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from medfm.arg_checks import check_list, check_number
from medfm.data.vqa_rad import normalize_answer, normalize_answer_type
from medfm.evaluation.metrics import bootstrap_mean_ci

__all__ = ["exact_match", "bootstrap_mean_ci", "score_vqa", "majority_baseline", "accuracy_by_group", "check_lists"]


def check_lists(**lists: Any) -> List[list]:
    """Each keyword argument as a list of answers, answer types or groups (one entry per question), in the
    rule and words of :func:`medfm.arg_checks.check_list`: one string is refused (``"yes"`` was scored as three
    one-letter answers), and so are bytes, a mapping (its keys were scored), a set (no order: it was paired
    with the answers in an arbitrary order) and anything not iterable.

    Returns:
        the values as new lists, in the order given (a numpy array or a generator is read once here).

    Raises:
        ValueError: ``predictions must be a list (one entry per question), got 'yes' (str)``.
    """
    return [check_list(name, value, what="a list (one entry per question)") for name, value in lists.items()]


def exact_match(predictions: Sequence[Any], answers: Sequence[Any]) -> np.ndarray:
    """``(N,)`` bool: normalised prediction equals normalised answer (None/"" never matches).

    Raises:
        ValueError: different lengths; a single string instead of a list (``"yes"`` was scored as
            three one-letter answers).
    """
    predictions, answers = check_lists(predictions=predictions, answers=answers)
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    out = []
    for p, a in zip(predictions, answers):
        pn = normalize_answer(p) if p is not None else ""
        out.append(bool(pn) and pn == normalize_answer(a))
    return np.asarray(out, dtype=bool)


def _subset(correct: np.ndarray, n_boot: int, alpha: float, seed: int) -> Dict[str, Any]:
    low, high = bootstrap_mean_ci(correct, n_boot, alpha, seed)
    return {"acc": float(correct.mean()) if correct.size else float("nan"), "correct": int(correct.sum()),
            "n": int(correct.size), "ci": {"low": low, "high": high, "level": 1 - alpha,
                                          "method": "percentile bootstrap", "n_boot": int(n_boot), "seed": seed}}


def score_vqa(predictions: Sequence[Any], answers: Sequence[Any], answer_types: Sequence[Any],
              n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> Dict[str, Any]:
    """Strict exact-match accuracy for CLOSED, OPEN and all questions.

    Args:
        predictions: N predicted answers (top-1), any case/punctuation; None = no answer.
        answers: N ground-truth answers.
        answer_types: N raw answer types ("CLOSED", "OPEN", "CLOSED " ...).
        n_boot, alpha, seed: percentile bootstrap settings.

    Returns:
        ``{"overall"|"closed"|"open": {"acc", "correct", "n", "ci": {...}}, "correct": [bool]*N}``.

    Raises:
        ValueError: length mismatch, a string instead of a list; DataShapeError: unknown answer type.
    """
    (answer_types,) = check_lists(answer_types=answer_types)
    correct = exact_match(predictions, answers)
    if len(answer_types) != len(correct):
        raise ValueError(f"{len(answer_types)} answer types for {len(correct)} answers")
    types = np.asarray([normalize_answer_type(t) for t in answer_types])
    return {
        "overall": _subset(correct, n_boot, alpha, seed),
        "closed": _subset(correct[types == "CLOSED"], n_boot, alpha, seed),
        "open": _subset(correct[types == "OPEN"], n_boot, alpha, seed),
        "correct": correct.tolist(),
    }


def majority_baseline(train_answers: Sequence[Any], train_types: Sequence[Any], test_answers: Sequence[Any],
                      test_types: Sequence[Any], n_boot: int = 1000, seed: int = 0) -> Dict[str, Any]:
    """Answer every test question with the most frequent training answer of its type, scored strictly.

    Returns:
        :func:`score_vqa` output plus ``"majority": {"CLOSED": answer, "OPEN": answer}``.

    Raises:
        ValueError: ``train_answers`` and ``train_types`` of different lengths (the extra answers were
            dropped without a word), a string instead of a list; the errors of :func:`score_vqa`.
    """
    train_answers, train_types, test_answers, test_types = check_lists(
        train_answers=train_answers, train_types=train_types, test_answers=test_answers, test_types=test_types)
    if len(train_answers) != len(train_types):
        raise ValueError(f"{len(train_answers)} train answers for {len(train_types)} train answer types")
    if len(test_answers) != len(test_types):
        raise ValueError(f"{len(test_answers)} test answers for {len(test_types)} test answer types")
    majority: Dict[str, str] = {}
    for kind in ("CLOSED", "OPEN"):
        counts = Counter(normalize_answer(a) for a, t in zip(train_answers, train_types)
                         if normalize_answer_type(t) == kind)
        majority[kind] = sorted(counts, key=lambda a: (-counts[a], a))[0] if counts else ""
    preds = [majority[normalize_answer_type(t)] for t in test_types]
    res = score_vqa(preds, test_answers, test_types, n_boot=n_boot, seed=seed)
    res["majority"] = majority
    return res


def accuracy_by_group(correct: Sequence[bool], groups: Sequence[str], min_count: int = 1) -> List[Dict[str, Any]]:
    """Accuracy per group (e.g. VQA-RAD question type), largest groups first.

    Returns:
        ``[{"group", "n", "acc"}]`` for groups with at least ``min_count`` questions.

    Raises:
        ValueError: ``correct`` and ``groups`` of different lengths (numpy's boolean-index error
            before), a string instead of a list, ``min_count`` not an integer >= 1.
    """
    correct, groups = check_lists(correct=correct, groups=groups)
    min_count = check_number("min_count", min_count, ge=1, integer=True)
    if len(correct) != len(groups):
        raise ValueError(f"{len(correct)} correctness flags for {len(groups)} groups")
    c = np.asarray(correct, dtype=bool)
    g = np.asarray([str(x) for x in groups])
    rows = [{"group": k, "n": int((g == k).sum()), "acc": float(c[g == k].mean())} for k in sorted(set(g.tolist()))]
    return sorted((r for r in rows if r["n"] >= min_count), key=lambda r: (-r["n"], r["group"]))


def plot_group_accuracy(rows: Sequence[Dict[str, Any]], path: Any, title: Optional[str] = None) -> Any:
    """Horizontal bar chart of :func:`accuracy_by_group` rows to a PNG (atomic write)."""
    from medfm.evaluation.plots import new_figure, save_figure

    fig = new_figure((6.0, 0.35 * max(4, len(rows)) + 1.0))
    ax = fig.add_subplot(1, 1, 1)
    labels = [f"{r['group']} (n={r['n']})" for r in rows][::-1]
    ax.barh(labels, [r["acc"] for r in rows][::-1], color="#4c72b0")
    ax.set_xlim(0, 1)
    ax.set_xlabel("exact-match accuracy")
    ax.set_title(title or "accuracy by question type")
    return save_figure(fig, path)
