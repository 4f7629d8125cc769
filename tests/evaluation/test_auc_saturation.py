"""AUC from saturated float32 probabilities: with the logits, AUC ranks their log-odds (no rounding ties).

A float32 sigmoid is exactly 1.0 above logit ~17.3 and a softmax complement underflows to 0 above a
margin of ~104, so distinct logits become tied probabilities; the Mann-Whitney AUC depends only on the
order of the scores, so ranking the log-odds gives the exact probabilities' AUC.
"""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medfm.adapters.classification import ImageClassifier
from medfm.data.medmnist_info import MULTI_LABEL_TASK as ML
from medfm.encoders import create_encoder
from medfm.evaluation.array_sets import ArraySet
from medfm.evaluation.metrics import (binary_auc, bootstrap_ci, classification_metrics, log_odds, one_vs_rest,
                                      prepare_scores)
from medfm.evaluation.predict import predict_outputs, predict_scores
from medfm.evaluation.report import write_classification_report


def _sigmoid(z):
    return torch.sigmoid(torch.from_numpy(np.asarray(z, dtype=np.float32))).numpy()


def _softmax(z):
    return torch.softmax(torch.from_numpy(np.asarray(z, dtype=np.float32)), -1).numpy()


# label 0: logits 18..25, all exactly 1.0 in float32; ranked by logit the positives come first
ML_Z = np.array([[20.0, 1.0], [18.0, -1.0], [25.0, 2.0], [19.0, -2.0]], dtype=np.float32)
ML_Y = np.array([[1, 1], [0, 0], [1, 1], [0, 0]])
# binary softmax margins of 105..120: the complement p0 underflows to 0.0 in float32 as well
BIN_Z = np.array([[0.0, 110.0], [0.0, 105.0], [0.0, 120.0], [0.0, 106.0]], dtype=np.float32)
BIN_Y = np.array([1, 0, 1, 0])


def test_multilabel_saturated_sigmoid_auc_is_the_logit_auc():
    p = _sigmoid(ML_Z)
    assert (p[:, 0] == 1.0).all()  # the case is saturated
    res = classification_metrics(ML_Y, p, ML, logits=ML_Z)
    assert res["per_class_auc"]["0"] == binary_auc(ML_Y[:, 0], ML_Z[:, 0]) == 1.0
    assert res["auc"] == 1.0
    assert res["acc"] == classification_metrics(ML_Y, p, ML)["acc"]  # ACC stays on the probabilities


def test_binary_softmax_beyond_the_float32_complement_ranks_the_margin():
    p = _softmax(BIN_Z)
    assert (p[:, 1] == 1.0).all() and (p[:, 0] == 0.0).all()
    assert classification_metrics(BIN_Y, p, "binary-class", logits=BIN_Z)["auc"] == 1.0
    assert bootstrap_ci(BIN_Y, p, "binary-class", metric="auc", n_boot=50, logits=BIN_Z) == (1.0, 1.0)


def test_single_column_binary_sigmoid_ranks_its_logit():
    z = np.array([30.0, 18.0, 40.0, 20.0, -3.0], dtype=np.float32)
    y = np.array([1, 0, 1, 0, 0])
    p = _sigmoid(z)
    assert classification_metrics(y, p, "binary-class", logits=z)["auc"] == binary_auc(y, z) == 1.0


def test_multiclass_probability_underflowing_to_zero_ranks_its_log_odds():
    z = np.array([[0.0, 120.0, 3.0], [-10.0, 120.0, 0.0], [5.0, 0.0, 1.0], [0.0, 3.0, 1.0]], dtype=np.float32)
    y = np.array([0, 1, 0, 2])
    p = _softmax(z)
    assert p[0, 0] == p[1, 0] == 0.0  # a positive and a negative of class 0 tie at 0.0
    zz = z.astype(np.float64)
    want = binary_auc(y == 0, zz[:, 0] - np.logaddexp(zz[:, 1], zz[:, 2]))
    assert want == 0.75
    assert classification_metrics(y, p, "multi-class", logits=z)["per_class_auc"]["0"] == want


def test_report_auc_interval_and_roc_rank_the_logits(tmp_path):
    p = _sigmoid(ML_Z)
    res = write_classification_report(tmp_path, ML_Y, p, ML, ["a", "b"], {"checkpoint": "x"}, n_boot=20,
                                      logits=ML_Z)
    assert res["metrics"]["per_class_auc"] == {"a": 1.0, "b": 1.0}
    assert (res["ci"]["auc"]["low"], res["ci"]["auc"]["high"]) == (1.0, 1.0)
    assert json.loads((tmp_path / "results.json").read_text())["metrics"]["auc"] == 1.0


def test_predict_outputs_scores_are_predict_scores_and_logits_rank_saturated_labels():
    rng = np.random.default_rng(0)
    n = 12
    like = SimpleNamespace(labels=np.zeros((n, 3), dtype=np.int64), task=ML, num_classes=3, label_names=["a", "b", "c"],
                           n_channels=1, size=28, md5="x", flag="x")
    ds = ArraySet(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), like)
    torch.manual_seed(0)
    model = ImageClassifier(create_encoder("resnet_test", in_chans=1, img_size=28), 3, ML, ["a", "b", "c"])
    with torch.no_grad():
        model.task_head.bias[0] = 40.0  # label "a": every sigmoid is 1.0 in float32
    p, z = predict_outputs(model, ds, batch_size=5)
    assert p.dtype == z.dtype == np.float32 and p.shape == z.shape == (n, 3)
    np.testing.assert_array_equal(p, predict_scores(model, ds, batch_size=5))
    np.testing.assert_array_equal(p, _sigmoid(z))
    assert (p[:, 0] == 1.0).all() and len(np.unique(z[:, 0])) == n
    y = np.stack([z[:, 0] > np.median(z[:, 0]), np.arange(n) % 2, np.arange(n) % 3 == 0], 1).astype(int)
    assert classification_metrics(y, p, ML)["per_class_auc"]["0"] == 0.5  # probabilities alone: all tied
    assert classification_metrics(y, p, ML, logits=z)["per_class_auc"]["0"] == binary_auc(y[:, 0], z[:, 0]) == 1.0


@pytest.mark.parametrize("task,k", [("binary-class", 2), ("multi-class", 5), ("ordinal-regression", 4), (ML, 4)])
def test_unsaturated_scores_give_the_same_auc_and_interval_with_logits(task, k):
    """Guard: where nothing saturates the logits change no AUC, and it is sklearn's (MedMNIST getAUC)."""
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    z = (rng.normal(size=(300, k)) * 2.0).astype(np.float32)
    p = _sigmoid(z) if task == ML else _softmax(z)
    y = (rng.random((300, k)) < 0.4).astype(int) if task == ML else rng.integers(0, k, 300)
    old = classification_metrics(y, p, task)
    new = classification_metrics(y, p, task, logits=z)
    assert new == old
    if task == ML:
        want = np.mean([skm.roc_auc_score(y[:, j], p[:, j]) for j in range(k)])
    elif task == "binary-class":
        want = skm.roc_auc_score(y, p[:, 1])
    else:
        want = skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert new["auc"] == pytest.approx(want, abs=1e-12)
    assert (bootstrap_ci(y, p, task, metric="auc", n_boot=100, logits=z)
            == bootstrap_ci(y, p, task, metric="auc", n_boot=100))


def test_log_odds_are_the_probabilities_log_odds_and_keep_ties():
    z = np.array([[0.5, -1.0, 2.0], [0.5, -1.0, 2.0], [3.0, 0.0, -2.0]])
    e = np.exp(z)
    p = e / e.sum(1, keepdims=True)
    lo = log_odds(z, "multi-class")
    np.testing.assert_allclose(lo, np.log(p / (1 - p)), rtol=1e-12)
    assert (lo[0] == lo[1]).all()
    np.testing.assert_array_equal(log_odds(z[:, :2], "binary-class")[:, 1], z[:, 1] - z[:, 0])
    np.testing.assert_array_equal(log_odds(z, ML), z)


@pytest.mark.parametrize("logits,match", [
    (BIN_Z / 100, "logits do not match y_score: their softmax differs from y_score by up to 0.259"),
    (BIN_Z[:, 1], r"logits must have the shape of y_score \(4, 2\), got \(4,\)"),
    (np.where(BIN_Z > 107, np.nan, BIN_Z), "logits contain 2 NaN/inf value"),
])
def test_logits_that_are_not_y_scores_are_refused(logits, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(BIN_Y, _softmax(BIN_Z), "binary-class", logits=logits)


def test_one_vs_rest_needs_the_scores_to_check_logits_against():
    y, s = prepare_scores(BIN_Y, _softmax(BIN_Z), "binary-class")
    with pytest.raises(ValueError, match="pass scores too"):
        one_vs_rest(y, s, "binary-class", logits=BIN_Z)


def test_medfm_eval_saves_the_logits_and_ranks_a_saturated_softmax_by_them(tmp_path, write_medmnist):
    """``medfm eval --data``: a head whose softmax saturates (p1 = 1.0, p0 = 0.0 for every image) was
    scored AUC 0.5 from the tied probabilities; the AUC is now the margins' and the logits are saved."""
    from medfm.cli import main
    from medfm.hub import save_pretrained
    from tests.conftest import fake_medmnist_arrays, pneumonia_classifier

    root = write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(4, 2, 16)))
    model = pneumonia_classifier()
    with torch.no_grad():
        model.task_head.bias[1] = 300.0  # margins far beyond float32's softmax range
    ckpt, out = save_pretrained(model, tmp_path / "ckpt"), tmp_path / "eval"
    assert main(["eval", str(ckpt), "--data", "pneumoniamnist", "--data-root", str(root), "--output", str(out)]) == 0
    saved = np.load(out / "predictions.npz")
    p, z, y = saved["scores"], saved["logits"], saved["labels"].ravel()
    assert (p[:, 1] == 1.0).all() and (p[:, 0] == 0.0).all()  # saturated: nothing left to rank by
    margin = z[:, 1].astype(np.float64) - z[:, 0]
    assert len(np.unique(margin)) == len(y) and 0 < y.sum() < len(y)
    auc = json.loads((out / "results.json").read_text())["metrics"]["auc"]
    assert auc == pytest.approx(binary_auc(y, margin), abs=1e-12) and auc != 0.5
