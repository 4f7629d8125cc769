"""Evaluation API tidy (h37/h5).

* ``LinearProbe.logits`` / ``predict`` always check their features: the unchecked path for features already
  standardised (``select_probe_c``'s validation set) is private; was a public ``standardised=True`` flag that let
  NaN features through to NaN probabilities.
* ``select_probe_c`` chooses as before (a guard with a hand-made expectation).
* The suite report names what an AUC ranked with :data:`medfm.evaluation.report.AUC_RANKINGS`, one definition.
* ``medfm.evaluation.fusion.predict_prob_rows`` (a one-expression wrapper only tests called) is gone:
  ``predict_rows(...)[0]``.
"""
import inspect

import numpy as np
import pytest

from medfm.evaluation import fusion as FU
from medfm.evaluation import protocols as P
from medfm.evaluation import suite_report as SR
from medfm.evaluation.report import AUC_RANKINGS


def _probe():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    return P.fit_linear_probe(x, (x[:, 0] > 0).astype(int), "binary-class", 2), x


@pytest.mark.parametrize("method", ["logits", "predict"])
def test_the_public_probe_api_has_no_unchecked_flag(method):
    probe, _ = _probe()
    assert list(inspect.signature(getattr(probe, method)).parameters) == ["features"]
    with pytest.raises(TypeError):
        getattr(probe, method)(np.zeros((2, 4)), standardised=True)


@pytest.mark.parametrize("method", ["logits", "predict"])
def test_nan_features_are_refused_by_name(method):
    """Guard (passes on the old code too: it calls without the flag): the one public path refuses NaN features by
    name; the removed ``standardised=True`` flag returned NaN probabilities for them."""
    probe, _ = _probe()
    with pytest.raises(ValueError, match="features"):
        getattr(probe, method)(np.full((2, 4), np.nan))


def test_select_probe_c_picks_the_hand_computed_c():
    """Guard. One feature, symmetric about 0, the class its sign: at every C, the strongest regularisation too, the
    probe's weight is positive and its intercept ~0, so it classifies by sign: ACC 1.0 at every C and the tie goes
    to the smallest C; on the flipped validation labels ACC is 0.0 at every C (the smallest C again)."""
    x = np.array([[-2.0], [-1.0], [-0.5], [0.5], [1.0], [2.0]])
    y = np.array([0, 0, 0, 1, 1, 1])
    grid = (0.01, 1.0, 100.0)
    best, accs = P.select_probe_c(x, y, x, y, "binary-class", 2, grid=grid)
    assert accs == {0.01: 1.0, 1.0: 1.0, 100.0: 1.0} and best == 0.01
    best, accs = P.select_probe_c(x, y, x, 1 - y, "binary-class", 2, grid=grid)
    assert accs == {0.01: 0.0, 1.0: 0.0, 100.0: 0.0} and best == 0.01


def test_select_probe_c_scores_each_c_as_the_public_predict():
    """Guard: the private standardised path gives the public ``predict``'s ACC for every C, bit for bit."""
    from medfm.evaluation.metrics import classification_metrics

    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 5))
    y = (x[:, :3] + 0.8 * rng.normal(size=(80, 3))).argmax(1)
    grid = (1e-3, 0.1, 10.0)
    _, accs = P.select_probe_c(x[:50], y[:50], x[50:], y[50:], "multi-class", 3, grid=grid)
    want = {c: float(classification_metrics(y[50:], P.fit_linear_probe(x[:50], y[:50], "multi-class", 3, C=c)
                                            .predict(x[50:]), "multi-class")["acc"]) for c in grid}
    assert accs == want


def test_the_suite_report_takes_the_ranking_names_from_the_report():
    """Guard: one definition of the names (the report's), the same descriptions in the same order."""
    assert list(SR._AUC_RANKED) == [AUC_RANKINGS[True], AUC_RANKINGS[False]] == ["logits", "probabilities"]
    assert SR._AUC_RANKED["logits"].startswith("the model's log-odds")
    assert SR._AUC_RANKED["probabilities"].startswith("the predicted probabilities, a kNN's vote shares")


def test_the_suite_report_text_of_a_ranking(monkeypatch):
    """Guard: the legend line and the "this checkpoint" note read as before for both rankings."""
    from medfm.evaluation.evaluate import MEDMNIST_V2_RESNET18_28

    flag = next(iter(MEDMNIST_V2_RESNET18_28))
    for ranking, legend in [("logits", "the model's log-odds (float32 saturation does not tie them)"),
                            ("probabilities", "the predicted probabilities, a kNN's vote shares (it has no logits; "
                                              "equal shares tie)")]:
        run = {"auc_ranking": ranking, "metrics": {"acc": 0.5, "auc": 0.6}}
        rows = SR._references({"size": 28, "flag": flag}, run, None)
        assert rows[0]["note"] == f"28 px; AUC ranks the {ranking}"
        assert SR._AUC_RANKED[ranking] == legend
    assert SR._references({"size": 28, "flag": flag}, {"metrics": {"acc": 0.5, "auc": 0.6}}, None)[0]["note"] == "28 px"


def test_fusion_has_no_predict_prob_rows():
    assert not hasattr(FU, "predict_prob_rows") and "predict_prob_rows" not in FU.__all__
    assert "predict_rows" in FU.__all__
