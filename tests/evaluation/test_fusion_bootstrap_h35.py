"""The fusion protocol's patient bootstrap and AUC ranking.

- The patient bootstrap (:func:`medfm.evaluation.fusion.patient_bootstrap_auc`) sorted the scores once per resample
  (one ``weighted_auc`` per resample); it now weighs every sample by its patient's draw count, a chunk of
  resamples per call, with intervals bit-identical to a plain per-resample loop.
- The protocol ranked its AUC by float32 probabilities; it now ranks by the fuser's logits
  (:func:`medfm.evaluation.fusion.predict_rows`, :func:`~medfm.evaluation.fusion.score_row`'s ``logits``), which
  tell apart slices whose probabilities round to one float32 value; where they do not, the numbers are the same.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import medfm.evaluation.fusion as FU
from tests.helpers.margin_model import MarginModel, margin_batch  # logits [0, margin]


def _reference_interval(y, s, groups, n_boot, seed, alpha=0.05):
    """The per-resample loop written out by hand: U patients drawn per resample (one ``integers`` call each), their
    samples put end to end, the Mann-Whitney AUC over every positive/negative pair (ties 1/2), one-class resamples
    dropped, percentiles."""
    uniq = sorted(set(groups))
    members = [[i for i, g in enumerate(groups) if g == u] for u in uniq]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = [i for p in rng.integers(0, len(uniq), len(uniq)) for i in members[p]]
        pos = [s[i] for i in idx if y[i] == 1]
        neg = [s[i] for i in idx if y[i] == 0]
        if pos and neg:
            wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
            vals.append(wins / (len(pos) * len(neg)))
    lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _case(n=40, n_patients=7, seed=0):
    """Scores with ties (quantised), patients of unequal sizes, one patient with negatives only (so that some
    resamples have one class)."""
    rng = np.random.default_rng(seed)
    groups = [f"p{int(k)}" for k in rng.integers(0, n_patients, n)]
    y = rng.integers(0, 2, n)
    y[[i for i, g in enumerate(groups) if g == "p0"]] = 0
    s = np.round(np.clip(rng.random(n) * 0.7 + 0.3 * y, 0, 1), 2)
    return y, s, groups


@pytest.mark.parametrize("seed, n_patients, n_boot", [(0, 7, 200), (1, 3, 300), (2, 12, 57)])
def test_patient_bootstrap_equals_a_hand_written_per_resample_loop(seed, n_patients, n_boot):
    """Guard: the same intervals, bit for bit, as the per-resample loop (the old code's), for the same seed."""
    y, s, groups = _case(n_patients=n_patients, seed=seed)
    got = FU.patient_bootstrap_auc(y, s, groups, n_boot=n_boot, seed=seed + 5)
    assert got == _reference_interval(y, s, groups, n_boot, seed + 5)


def test_patient_bootstrap_equals_the_reference_across_chunks(monkeypatch):
    """Guard: resamples split over several weighted_auc calls give the same interval (chunks of 7 here)."""
    y, s, groups = _case(seed=3)
    monkeypatch.setattr(FU, "BOOT_CHUNK_ELEMS", 7 * len(y), raising=False)  # (no chunks before)
    assert FU.patient_bootstrap_auc(y, s, groups, n_boot=50, seed=1) == _reference_interval(y, s, groups, 50, 1)


def test_patient_bootstrap_scores_a_chunk_of_resamples_per_auc_call(monkeypatch):
    """The scores were sorted once per resample (one weighted_auc call each: 200 here); now once per chunk."""
    calls = []
    real = FU.weighted_auc
    monkeypatch.setattr(FU, "weighted_auc", lambda t, s, w: calls.append(w.shape) or real(t, s, w))
    y, s, groups = _case()
    FU.patient_bootstrap_auc(y, s, groups, n_boot=200, seed=0)
    assert calls == [(200, len(y))]


def test_patient_bootstrap_of_no_resample_or_one_class():
    """Guard: n_boot 0 and a one-class set give (nan, nan)."""
    y, s, groups = _case()
    assert all(np.isnan(v) for v in FU.patient_bootstrap_auc(y, s, groups, n_boot=0))
    assert all(np.isnan(v) for v in FU.patient_bootstrap_auc(np.zeros(6), s[:6], groups[:6], n_boot=20))


def test_predict_rows_gives_the_probabilities_and_the_logits_they_came_from():
    batch = margin_batch([0.5, -1.0, 2.0], [0, 1, 1])
    probs, logits = FU.predict_rows(MarginModel(), batch, batch_size_=2)
    assert logits.dtype == np.float32 and logits.tolist() == [[0.0, 0.5], [0.0, -1.0], [0.0, 2.0]]
    assert np.array_equal(probs, torch.tensor(logits).softmax(-1).numpy())
    empty = FU.predict_rows(MarginModel(), FU.slice_batch(batch, torch.zeros(0, dtype=torch.long)))
    assert [a.shape for a in empty] == [(0, 2), (0, 2)]


def test_the_protocol_ranks_by_logits_where_float32_probabilities_tie():
    """Margins 5 and 5 + 2e-6 (p1 ~ 0.9933, not saturated) round to one float32 probability: the AUC of the
    probabilities was 0.5 (a tie); the logits rank the positive above the negative."""
    margins, labels = [5.0, 5.000002, 5.0, 5.000002], [0, 1, 0, 1]
    batch = margin_batch(margins, labels)
    probs, _ = FU.predict_rows(MarginModel(), batch)
    assert probs[0, 1] == probs[1, 1] and np.float32(margins[0]) != np.float32(margins[1])
    res = FU.run_fusion_protocol({"single_flair": MarginModel()}, batch, ["flair"], mcar_rates=(),
                                 mnar_modalities=["flair"], n_boot=10)
    assert res["natural"][0]["auc"] == 1.0  # was 0.5
    assert FU.score_row(np.array(labels), probs, batch["patient"], 0, 0)["auc"] == 0.5  # probabilities alone


def test_score_row_with_logits_keeps_every_number_where_nothing_ties():
    """Guard: distinct, unsaturated probabilities rank as their logits do: AUC, interval and ACC unchanged."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 60)
    logits = np.stack([np.zeros(60), rng.normal(labels * 1.5 - 0.5, 1.5)], 1).astype(np.float32)
    probs = torch.tensor(logits).softmax(-1).numpy()
    assert len(set(probs[:, 1].tolist())) == 60 and probs.max() < 0.9999
    patients = [f"p{i % 9}" for i in range(60)]
    plain = FU.score_row(labels, probs, patients, n_boot=100, seed=2)
    assert FU.score_row(labels, probs, patients, n_boot=100, seed=2, logits=logits) == plain
    assert 0.5 < plain["auc"] < 1.0


def test_score_row_refuses_logits_that_did_not_make_the_probabilities():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    with pytest.raises(ValueError, match="logits do not match y_score"):
        FU.score_row(np.array([0, 1]), probs, ["a", "b"], 0, 0, logits=np.array([[0.0, 3.0], [0.0, -3.0]]))
