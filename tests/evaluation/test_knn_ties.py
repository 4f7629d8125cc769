"""kNN vote shares and the AUC: a multi-label share one far neighbour short of 1 no longer ties a full vote
(float32 rounded it to 1.0); single-label shares stay the float32 votes they always were."""
import math

import numpy as np
import pytest

from medfm.evaluation.metrics import classification_metrics
from medfm.evaluation.protocols import knn_scores

ML = "multi-label, binary-class"


def _far_neighbour_case():
    """Test row 0 has 3 neighbours with the label (a full vote, share 1.0); row 1 has 2 at cosine 1 with it and a
    third without it at cosine -0.5 (weight ``exp(-1.5 / T) / (2 + exp(-1.5 / T))`` ~ 2.5e-10 at T = 0.07)."""
    a = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
    e2 = np.array([0.0, 1.0, 0.0])
    c = np.array([-math.sqrt(3) / 2, -0.5, 0.0])  # cos(e2, c) = -0.5, cos(a, c) ~ -0.26, cos(a, e2) ~ -0.71
    train = np.stack([a, a, a, e2, e2, c]).astype(np.float32)
    labels = np.array([[1], [1], [1], [1], [1], [0]])
    return train, labels, np.stack([a, e2]).astype(np.float32)


def test_a_multi_label_share_short_of_one_does_not_tie_a_full_vote():
    train, labels, test = _far_neighbour_case()
    s = knn_scores(train, labels, test, 1, k=3, temperature=0.07, task=ML)
    w = math.exp(-1.5 / 0.07)
    assert s[0, 0] == 1.0
    assert 1.0 - s[1, 0] == pytest.approx(w / (2 + w), rel=1e-5)  # old: 0.0 (float32 rounded the share to 1.0)
    assert s.dtype == np.float64
    # the positive row (a full vote) outranks the negative one: AUC 1, where the tie gave 0.5
    assert classification_metrics(np.array([[1], [0]]), s, ML)["auc"] == 1.0


def test_single_label_shares_stay_the_float32_votes():
    """Guard: single-label scores are float32 votes widened exactly (ACC/AUC of earlier reports unchanged; their
    saturated shares keep their complements in the other columns, which the AUC ranks), by the formula."""
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(10, 8)).astype(np.float32)
    labels = rng.integers(0, 3, size=40)
    s = knn_scores(train, labels, test, 3, k=5, temperature=0.1)
    assert np.array_equal(s, s.astype(np.float32))
    tn = train / np.linalg.norm(train, axis=1, keepdims=True)
    sim = (test / np.linalg.norm(test, axis=1, keepdims=True)) @ tn.T
    idx = np.argsort(-sim, axis=1)[:, :5]
    w = np.exp(np.take_along_axis(sim, idx, 1) / 0.1)
    want = np.stack([(w * (labels[idx] == c)).sum(1) for c in range(3)], 1) / w.sum(1, keepdims=True)
    np.testing.assert_allclose(s, want, atol=1e-6)
