"""Strict VQA scoring: exact match after normalisation, no substring credit, every question counted."""
from __future__ import annotations

import numpy as np
import pytest

from medfm.data.errors import DataShapeError
from medfm.evaluation.vqa import accuracy_by_group, bootstrap_mean_ci, exact_match, majority_baseline, score_vqa


def test_hand_made_cases():
    preds = ["Yes", "no", "left lung", "x-ray", None, "2"]
    answers = ["yes", "yes", "left", "X-Ray.", "2", 2]
    types = ["CLOSED", "CLOSED ", "OPEN", "OPEN", "open", "OPEN"]
    res = score_vqa(preds, answers, types, n_boot=200)
    assert res["correct"] == [True, False, False, True, False, True]
    assert (res["closed"]["correct"], res["closed"]["n"]) == (1, 2)
    assert (res["open"]["correct"], res["open"]["n"]) == (2, 4)
    assert res["overall"]["acc"] == pytest.approx(3 / 6)
    assert res["closed"]["acc"] == 0.5 and res["open"]["acc"] == 0.5


def _substring_scorer(preds, answers):
    """The trap: credit an answer found inside the prediction, and drop closed predictions that
    contain neither 'yes' nor 'no' from the denominator."""
    kept = [(p, a) for p, a in zip(preds, answers) if "yes" in p.lower() or "no" in p.lower()]
    return sum(a in p.lower() for p, a in kept) / len(kept)


def test_substring_trap_is_not_ours():
    preds = ["yes, on the left", "no", "maybe", "unclear", "yes"]
    answers = ["yes", "yes", "no", "yes", "no"]
    trap = _substring_scorer(preds, answers)
    strict = score_vqa(preds, answers, ["CLOSED"] * 5, n_boot=50)["closed"]
    assert trap == pytest.approx(1 / 3)  # 1 substring hit, 2 questions silently dropped
    assert strict["acc"] == 0.0 and strict["n"] == 5  # no question dropped, no substring credit
    assert not exact_match(["yes, left"], ["yes"])[0]
    assert not exact_match(["right lung"], ["right"])[0]


def test_empty_or_missing_prediction_is_wrong_and_counted():
    res = score_vqa([None, "", "a"], ["a", "a", "a"], ["OPEN"] * 3, n_boot=10)
    assert res["correct"] == [False, False, True] and res["open"]["n"] == 3


def test_answer_outside_vocabulary_still_counts():
    # the model can never say "ring enhancing" (not a training answer): the question stays in the denominator
    res = score_vqa(["no", "no"], ["ring-enhancing", "no"], ["OPEN", "CLOSED"], n_boot=10)
    assert res["overall"]["n"] == 2 and res["overall"]["acc"] == 0.5


def test_errors():
    with pytest.raises(ValueError, match="predictions"):
        score_vqa(["a"], ["a", "b"], ["OPEN", "OPEN"])
    with pytest.raises(DataShapeError, match="answer_type"):
        score_vqa(["a"], ["a"], ["MAYBE"])
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_mean_ci([1, 0], n_boot=0)


def test_bootstrap_ci_properties():
    x = np.array([1] * 70 + [0] * 30)
    low, high = bootstrap_mean_ci(x, n_boot=500, seed=1)
    assert low < 0.7 < high and (low, high) == bootstrap_mean_ci(x, n_boot=500, seed=1)
    # normal approximation: half-width ~ 1.96 * sqrt(.7 * .3 / 100) = 0.09
    assert 0.06 < (high - low) / 2 < 0.12
    assert bootstrap_mean_ci([1, 1, 1], n_boot=50) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_mean_ci([], n_boot=5)))


def test_majority_baseline_and_groups():
    res = majority_baseline(["No", "no", "yes", "axial", "CT"], ["CLOSED", "CLOSED", "CLOSED ", "OPEN", "OPEN"],
                            ["no", "yes", "axial"], ["CLOSED", "CLOSED", "OPEN"], n_boot=10)
    assert res["majority"] == {"CLOSED": "no", "OPEN": "axial"}  # OPEN tie broken alphabetically
    assert res["closed"]["acc"] == 0.5 and res["open"]["acc"] == 1.0
    rows = accuracy_by_group([True, False, True], ["PRES", "PRES", "SIZE"])
    assert rows == [{"group": "PRES", "n": 2, "acc": 0.5}, {"group": "SIZE", "n": 1, "acc": 1.0}]
