"""select_probe_c scores each C with the probe's own steps (its one logits formula, standardised once for the grid)
instead of a copy of the logits formula; the unchecked standardised path is private (was: a public
``standardised=True`` flag of LinearProbe.logits / predict)."""
import numpy as np
import pytest

from medfm.evaluation import protocols as P
from medfm.evaluation.metrics import classification_metrics

ML = "multi-label, binary-class"


def _data(task):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 6))
    if task == ML:
        return x, (x[:, :2] + rng.normal(size=(90, 2)) > 0).astype(int), 2
    k = 2 if task == "binary-class" else 3
    return x, (x[:, :k] + 0.7 * rng.normal(size=(90, k))).argmax(1), k


@pytest.mark.parametrize("task", ["binary-class", "multi-class", ML])
def test_predict_of_standardised_features_is_predict_bit_for_bit(task):
    x, y, k = _data(task)
    probe = P.fit_linear_probe(x[:60], y[:60], task, k)
    z = (x[60:] - probe.mean) / probe.scale
    assert np.array_equal(probe._standardised_logits(z), probe.logits(x[60:]))
    assert np.array_equal(probe._probabilities(probe._standardised_logits(z)), probe.predict(x[60:]))


@pytest.mark.parametrize("task", ["binary-class", ML])
def test_select_probe_c_scores_every_c_with_the_probes_logits(monkeypatch, task):
    x, y, k = _data(task)
    grid = (0.01, 0.1, 1.0, 10.0)
    want = {c: float(classification_metrics(y[60:], P.fit_linear_probe(x[:60], y[:60], task, k, C=c).predict(x[60:]),
                                            task)["acc"]) for c in grid}
    calls = []
    logits = P.LinearProbe._standardised_logits
    monkeypatch.setattr(P.LinearProbe, "_standardised_logits", lambda self, z: calls.append(z.shape) or logits(self, z))
    best, accs = P.select_probe_c(x[:60], y[:60], x[60:], y[60:], task, k, grid=grid)
    assert calls == [(30, 6)] * len(grid)  # once per C, on the validation set standardised once
    assert accs == want and best == max(grid, key=lambda c: (want[c], -c))
