"""Audit of the classification metrics against MedMNIST's ``getAUC`` and hand-computed values:
``binary_auc`` refuses NaN scores and non-0/1 targets (it ranked NaN as the highest score and
returned AUC 4/3 for a target 2), and the saturated-probability ranking applies only to rows that
are probability distributions to float32 precision (4-decimal rows inverted an AUC)."""
import numpy as np
import pytest

from medfm.evaluation.metrics import binary_auc, classification_metrics, ranking_scores


def test_binary_auc_refuses_nan_scores():
    # was 0.75: NaN sorted last, i.e. ranked above every real score
    with pytest.raises(ValueError, match="y_score contains 1 NaN"):
        binary_auc([0, 1, 0, 1], [0.1, np.nan, 0.3, 0.2])


@pytest.mark.parametrize("targets", [[0, 2, 0, 1], [0, np.nan, 0, 1], [0, 0.5, 0, 1]])
def test_binary_auc_refuses_targets_that_are_not_0_1(targets):
    # [0, 2, 0, 1] gave AUC 4/3 (a target 2 weighed twice as a positive and -1 as a negative),
    # NaN gave NaN silently
    with pytest.raises(ValueError, match="y_true must hold 0/1 targets"):
        binary_auc(targets, [0.1, 0.5, 0.3, 0.2])


def test_binary_auc_hand_computed_with_infinite_scores():
    # logits may be +-inf; they rank: pairs (pos, neg) = (inf, -inf) 1, (inf, 0.2) 1, (0.3, -inf) 1,
    # (0.3, 0.2) 1 -> 1.0; a tie inf/inf counts 1/2
    assert binary_auc([1, 0, 1, 0], [np.inf, -np.inf, 0.3, 0.2]) == 1.0
    assert binary_auc([1, 0], [np.inf, np.inf]) == 0.5


def test_unnormalised_rows_rank_as_given_like_getauc():
    # 4-decimal probabilities: row 0 (positive) p1 = 0.9998 with nothing left in column 0 (row sum
    # 0.9998), row 1 (negative) p1 = 0.9999. getAUC ranks 0.9998 < 0.9999: AUC 0. The old code took
    # the rows for probability distributions (sum within 1e-3), ranked row 0 by its complement 0
    # (key +inf) and reported AUC 1.0.
    s = np.array([[0.0, 0.9998], [0.0001, 0.9999]])
    assert ranking_scores(s) is None
    assert classification_metrics(np.array([1, 0]), s, "binary-class")["auc"] == 0.0


def test_float32_softmax_rows_keep_the_saturated_ranking():
    import torch

    # margins 20 and 30 (positives) vs 18 and 25 (negatives): every float32 p1 is 1.0; by margin
    # 3 of the 4 (pos, neg) pairs are ordered right (20 < 25) -> 0.75
    s = torch.tensor([[0.0, 20.0], [0.0, 30.0], [0.0, 18.0], [0.0, 25.0]]).softmax(-1).numpy()
    assert ranking_scores(s) is not None
    assert classification_metrics(np.array([1, 1, 0, 0]), s, "binary-class")["auc"] == pytest.approx(0.75)


def test_binary_auc_of_no_sample_is_nan_like_one_class():
    """N = 0 holds no class, so no AUC: NaN, as for one class (it raised IndexError inside
    weighted_auc); the fusion bootstrap of no sample gives (nan, nan)."""
    from medfm.evaluation.fusion import patient_bootstrap_auc

    assert np.isnan(binary_auc([], []))
    assert np.isnan(binary_auc([1, 1], [0.2, 0.9]))
    assert all(np.isnan(v) for v in patient_bootstrap_auc(np.zeros(0), np.zeros(0), [], n_boot=10))
