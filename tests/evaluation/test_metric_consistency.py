"""Consistency of the evaluation modules with the classification metrics (audit after 853cbe6):
the ROC plot ranks scores as ``classification_metrics`` does (its legend said AUC 0.500 on saturated
float32 softmax rows where the metrics say 0.750), the fusion protocol's ACC thresholds with ``>``
as ``classification_metrics`` and MedMNIST's ``getACC`` do (it used ``>=``), and what the card's
undefined-AUC text and ``summarize_cases`` document is what the code does."""
import numpy as np
import pytest
import torch
from medmnist.evaluator import getACC

import medfm.evaluation.plots as plots
from medfm.evaluation.fusion import score_row
from medfm.evaluation.metrics import binary_auc, classification_metrics
from medfm.evaluation.segmentation import summarize_cases


def _roc_figure(monkeypatch, tmp_path, y, s, task):
    """The figure :func:`plots.plot_roc` draws (captured when it is saved)."""
    seen = {}
    save = plots.save_figure

    def keep(fig, path):
        seen["fig"] = fig
        return save(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    plots.plot_roc(y, s, task, None, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").is_file()
    return seen["fig"]


def _legend(fig):
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_roc_plot_binary_auc_equals_metrics_on_saturated_scores(monkeypatch, tmp_path):
    # logit margins 20 and 30 (positives) vs 18 and 25 (negatives): every float32 p1 is 1.0; by
    # margin 3 of the 4 (pos, neg) pairs are ordered right -> 0.75. The plot ranked p1 itself
    # (all ties): legend 'AUC 0.500' and the diagonal as curve.
    s = torch.tensor([[0.0, 20.0], [0.0, 30.0], [0.0, 18.0], [0.0, 25.0]]).softmax(-1).numpy()
    y = np.array([1, 1, 0, 0])
    auc = classification_metrics(y, s, "binary-class")["per_class_auc"]["1"]
    assert auc == pytest.approx(0.75)
    fig = _roc_figure(monkeypatch, tmp_path, y, s, "binary-class")
    assert _legend(fig) == [f"AUC {auc:.3f}"]
    fpr, tpr = fig.axes[0].get_lines()[0].get_data()  # the ROC curve (the diagonal is drawn after it)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc)


def test_roc_plot_one_vs_rest_aucs_equal_metrics_on_saturated_scores(monkeypatch, tmp_path):
    # class 1 saturated at 1.0 for rows 0-3: ranked by complement, class 1's AUC is 0.875 (the plot
    # said 0.750); classes 0 and 2 are not saturated and agree either way
    s = torch.tensor([[0., 20., 0.], [0., 30., 0.], [0., 18., 0.], [0., 25., 0.], [5., 0., 0.],
                      [0., 0., 5.]]).softmax(-1).numpy()
    y = np.array([1, 1, 0, 0, 0, 2])
    per_class = classification_metrics(y, s, "multi-class")["per_class_auc"]
    assert per_class["1"] == pytest.approx(0.875)
    fig = _roc_figure(monkeypatch, tmp_path, y, s, "multi-class")
    assert _legend(fig) == [f"{name} ({a:.3f})" for name, a in per_class.items()]
    for line, a in zip(fig.axes[0].get_lines(), per_class.values()):
        fpr, tpr = line.get_data()
        assert np.trapezoid(tpr, fpr) == pytest.approx(a)


def test_fusion_acc_thresholds_like_classification_metrics_and_getacc():
    # a probability of exactly 0.5 is a negative prediction (``> 0.5``); score_row counted it
    # positive (``>= 0.5``) and reported ACC 0.5 here
    labels, probs = np.array([0, 1, 0, 1]), np.array([0.5, 0.9, 0.2, 0.5000001])
    row = score_row(labels, probs, ["a", "b", "c", "d"], n_boot=0, seed=0)
    assert row["acc"] == 1.0
    assert row["acc"] == classification_metrics(labels, probs, "binary-class")["acc"]
    assert row["acc"] == getACC(labels, probs, "binary-class")
    assert row["auc"] == binary_auc(labels, probs)


def test_undefined_auc_is_a_silent_nan_in_binary_auc_and_a_named_warning_in_metrics():
    # what the comment on medfm.card_kinds.UNDEFINED_AUC says
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(binary_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    res = classification_metrics(np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9]), "binary-class",
                                 label_names=["normal", "pneumonia"])
    assert np.isnan(res["auc"])
    assert any("'pneumonia'" in w and "AUC undefined" in w for w in res["warnings"])


def test_summarize_cases_population_std_nan_hd95_left_out_and_n_as_documented():
    # case a: one mask empty (HD95 NaN); b: both empty (HD95 0.0, Dice 1.0); c: an ordinary case
    per_case = {"a": {"fg": {"dice": 0.0, "hd95": float("nan")}},
                "b": {"fg": {"dice": 1.0, "hd95": 0.0}},
                "c": {"fg": {"dice": 0.5, "hd95": 4.0}}}
    out = summarize_cases(per_case)
    hd = out["per_class"]["fg"]["hd95"]
    assert out["n_cases"] == 3
    assert hd == {"mean": 2.0, "std": 2.0, "median": 2.0, "n": 2}  # std of [0, 4] with ddof=0 (ddof=1: 2.83)
    assert out["per_class"]["fg"]["dice"]["std"] == pytest.approx(np.std([0.0, 1.0, 0.5]))
    doc = " ".join(summarize_cases.__doc__.split())
    assert "ddof=0" in doc and "population standard deviation" in doc
    assert "left out of that class's HD95 mean" in doc and "counts as HD95 0.0" in doc
    assert "``n`` reports how many cases" in doc
