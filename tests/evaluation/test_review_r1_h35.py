"""Review mends (R1, evaluation).

The fusion protocol's patient bootstrap counted its draws with a copy of the bincount of
:func:`medfm.evaluation.metrics.bootstrap_weights` (the sample bootstrap's draw counts), drawing them with one
``rng.integers`` call per resample because "one ``(n_boot, U)`` draw would give other numbers". It gives the same
numbers: the patient bootstrap now uses the one helper, one draw per chunk, with the same intervals (the
bit-identical guards against a hand-written per-resample loop are in ``test_fusion_bootstrap_h35.py``).
"""
from __future__ import annotations

import numpy as np
import pytest

import medfm.evaluation.fusion as FU
from medfm.evaluation import metrics


def test_patient_bootstrap_draws_its_patient_counts_with_the_sample_bootstraps_weights(monkeypatch):
    """One call of the shared helper per chunk, U patients each: it drew with 200 calls of its own."""
    calls = []
    real = metrics.bootstrap_weights
    monkeypatch.setattr(FU, "bootstrap_weights", lambda rng, b, n: calls.append((b, n)) or real(rng, b, n))
    groups = ["a", "b", "b", "c", "c", "c", "d"]
    FU.patient_bootstrap_auc(np.array([0, 1, 0, 1, 0, 1, 1]), np.arange(7.0), groups, n_boot=200, seed=3)
    assert calls == [(200, 4)]


@pytest.mark.parametrize("n_items, n_boot", [(1, 5), (4, 57), (7, 300), (1001, 3)])
def test_one_draw_per_chunk_is_the_per_resample_draws(n_items, n_boot):
    """Guard: the numpy property the patient bootstrap relies on, by hand: the weights of one ``(b, U)`` draw are the
    counts of ``b`` successive ``rng.integers(0, U, U)`` calls (U = 1: no draw at all, every count 1)."""
    rng = np.random.default_rng(11)
    expected = np.zeros((n_boot, n_items))
    for row in expected:
        np.add.at(row, rng.integers(0, n_items, n_items), 1.0)
    got = metrics.bootstrap_weights(np.random.default_rng(11), n_boot, n_items)
    assert got.dtype == np.float64 and np.array_equal(got, expected)
