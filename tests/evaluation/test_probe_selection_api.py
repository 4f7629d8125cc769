"""select_probe_c scores each C through LinearProbe.predict (the public API; standardised once for the grid)
instead of the private _probabilities and a copy of the logits formula."""
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
    assert np.array_equal(probe.logits(z, standardised=True), probe.logits(x[60:]))
    assert np.array_equal(probe.predict(z, standardised=True), probe.predict(x[60:]))


@pytest.mark.parametrize("task", ["binary-class", ML])
def test_select_probe_c_scores_every_c_with_the_probes_predict(monkeypatch, task):
    x, y, k = _data(task)
    grid = (0.01, 0.1, 1.0, 10.0)
    want = {c: float(classification_metrics(y[60:], P.fit_linear_probe(x[:60], y[:60], task, k, C=c).predict(x[60:]),
                                            task)["acc"]) for c in grid}
    calls = []
    predict = P.LinearProbe.predict
    monkeypatch.setattr(P.LinearProbe, "predict", lambda self, f, standardised=False:
                        calls.append(standardised) or predict(self, f, standardised))
    best, accs = P.select_probe_c(x[:60], y[:60], x[60:], y[60:], task, k, grid=grid)
    assert calls == [True] * len(grid)  # old: predict was never called (a private copy of it was)
    assert accs == want and best == max(grid, key=lambda c: (want[c], -c))
