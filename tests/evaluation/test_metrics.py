"""medfm.evaluation.metrics / calibration: MedMNIST parity, hand-computed cases, errors."""
import numpy as np
import pytest
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from medfm.evaluation import (
    TASKS,
    balanced_error,
    be_rbe,
    binary_auc,
    bootstrap_ci,
    classification_metrics,
    corruption_errors,
    expected_calibration_error,
)
from medfm.evaluation.metrics import bootstrap_weights

ML = "multi-label, binary-class"


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_preds(task, n=200, k=4, seed=0, ties=False):
    """Synthetic (y_true, y_score) in MedMNIST label layout: (N, 1) or (N, L)."""
    rng = np.random.default_rng(seed)
    if task == ML:
        y = rng.integers(0, 2, size=(n, k))
        s = 1 / (1 + np.exp(-(rng.normal(size=(n, k)) + 1.5 * (y - 0.5))))
    else:
        kk = 2 if task == "binary-class" else k
        y = rng.integers(0, kk, size=(n, 1))
        z = rng.normal(size=(n, kk))
        z[np.arange(n), y[:, 0]] += 1.0
        s = _softmax(z)
    if ties:
        s = np.round(s, 1)
        if task != ML:
            s = s / s.sum(axis=1, keepdims=True)
    return y, s


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("ties", [False, True])
def test_acc_auc_equal_medmnist_reference(task, ties):
    y, s = make_preds(task, ties=ties, seed=1)
    m = classification_metrics(y, s, task)
    assert abs(m["acc"] - getACC(y, s, task)) < 1e-12
    assert abs(m["auc"] - getAUC(y, s, task)) < 1e-12
    assert m["warnings"] == []


def test_binary_accepts_positive_column_and_flat_labels():
    y, s = make_preds("binary-class", seed=2)
    a = classification_metrics(y, s, "binary-class")
    b = classification_metrics(y[:, 0], s[:, 1], "binary-class")
    c = classification_metrics(y, s[:, 1:], "binary-class")
    import torch

    d = classification_metrics(torch.from_numpy(y), torch.from_numpy(s).requires_grad_(), "binary-class")
    for key in ("acc", "auc", "balanced_acc"):
        assert a[key] == b[key] == c[key] == d[key]
    # the threshold is "> threshold" on the last column, as in MedMNIST
    assert a["acc"] == pytest.approx(np.mean((s[:, 1] > 0.5) == y[:, 0]))
    assert classification_metrics(y, s, "binary-class", threshold=0.9)["acc"] == pytest.approx(
        getACC(y, s, "binary-class", threshold=0.9))


def test_binary_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    t = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 1)  # many ties
    assert abs(binary_auc(t, s) - roc_auc_score(t, s)) < 1e-12
    assert binary_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert binary_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert np.isnan(binary_auc([1, 1], [0.2, 0.3]))


def test_multiclass_balanced_acc_recall_confusion_hand_computed():
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    s = np.full((6, 3), 0.1)
    s[np.arange(6), pred] = 0.8
    m = classification_metrics(y, s, "multi-class", label_names=["a", "b", "c"])
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["per_class_recall"] == pytest.approx({"a": 2 / 3, "b": 1 / 2, "c": 1.0})
    assert m["balanced_acc"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["balanced_acc"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["support"] == {"a": 3, "b": 2, "c": 1}


def test_multilabel_balanced_acc_hand_computed():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.3, 0.7], [0.6, 0.8], [0.1, 0.9]])
    m = classification_metrics(y, s, ML)
    # label 0: pred [1,0,1,0] -> recall(1)=1/2, recall(0)=1/2 -> 0.5
    # label 1: pred [0,1,1,1] -> recall(1)=1,   recall(0)=1/2 -> 0.75
    assert m["balanced_acc"] == pytest.approx((0.5 + 0.75) / 2)
    assert m["per_class_recall"] == pytest.approx({"0": 0.5, "1": 1.0})
    assert m["acc"] == pytest.approx((2 / 4 + 3 / 4) / 2)
    assert m["confusion_matrix"] is None


def test_absent_class_auc_is_nan_with_warning_and_excluded():
    y, s = make_preds("multi-class", n=100, k=4, seed=4)
    y[y == 3] = 0  # class 3 never occurs
    m = classification_metrics(y, s, "multi-class")
    assert np.isnan(m["per_class_auc"]["3"]) and np.isnan(m["per_class_recall"]["3"])
    expected = np.mean([roc_auc_score(y[:, 0] == c, s[:, c]) for c in range(3)])
    assert m["auc"] == pytest.approx(expected, abs=1e-12)
    assert any("'3'" in w and "AUC" in w for w in m["warnings"])
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        assert m["balanced_acc"] == pytest.approx(balanced_accuracy_score(y[:, 0], s.argmax(1)))
    single = classification_metrics(np.ones(5, int), np.full((5, 2), 0.5), "binary-class")
    assert np.isnan(single["auc"]) and single["warnings"]


def _good(task="multi-class"):
    return make_preds(task, n=20, k=3)


@pytest.mark.parametrize(
    "args, match",
    [
        ((_good()[0][:10], _good()[1], "multi-class"), "10 samples but y_score has 20"),
        ((_good()[0], np.where(np.eye(20, 3) > 0, np.nan, _good()[1]), "multi-class"), "NaN"),
        ((_good()[0], _good()[1], "multiclass"), "did you mean 'multi-class'"),
        ((_good()[0], _good()[1], "binary-class"), r"binary-class.*\(N, 2\).*multi-class"),
        ((_good()[0], _good()[1][:, 0], "multi-class"), r"\(N, K\) with K >= 2"),
        ((np.eye(3)[_good()[0][:, 0]], _good()[1], "multi-class"), "one-hot"),
        ((_good()[0] + 3, _good()[1], "multi-class"), "only 3 columns"),
        ((_good()[0], _good()[1] * 5 - 2, "multi-class"), r"probabilities in \[0, 1\].*softmax"),
        ((_good()[0] + 0.5, _good()[1], "multi-class"), "integer"),
        ((_good(ML)[0][:, :2], _good(ML)[1], ML), r"equal L"),
        ((np.zeros((0,), int), np.zeros((0, 2)), "binary-class"), "empty"),
    ],
)
def test_input_errors_are_clear(args, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(*args)


def test_other_errors():
    y, s = _good()
    with pytest.raises(ValueError, match="2 label_names for 3 classes"):
        classification_metrics(y, s, "multi-class", label_names=["a", "b"])
    with pytest.raises(TypeError, match="numeric"):
        classification_metrics(np.array(["a"] * 20), s, "multi-class")
    with pytest.raises(ValueError, match="did you mean 'auc'"):
        bootstrap_ci(y, s, "multi-class", metric="acu")
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(y, s, "multi-class", n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(y, s, "multi-class", alpha=1.0)


@pytest.mark.parametrize("task", TASKS)
def test_bootstrap_ci_contains_estimate_and_is_deterministic(task):
    y, s = make_preds(task, n=300, seed=5)
    m = classification_metrics(y, s, task)
    for metric in ("acc", "auc"):
        lo, hi = bootstrap_ci(y, s, task, metric=metric, n_boot=300, seed=7)
        assert lo < m[metric] < hi
        assert (lo, hi) == bootstrap_ci(y, s, task, metric=metric, n_boot=300, seed=7)
        if metric == "auc":  # ACC percentiles are multiples of 1/N and may coincide
            assert (lo, hi) != bootstrap_ci(y, s, task, metric=metric, n_boot=300, seed=8)
        narrow = bootstrap_ci(y, s, task, metric=metric, n_boot=300, seed=7, alpha=0.5)
        assert lo <= narrow[0] <= narrow[1] <= hi


@pytest.mark.parametrize("task", ["binary-class", "multi-class"])
def test_vectorised_bootstrap_equals_loop_over_resamples(task):
    y, s = make_preds(task, n=120, k=3, seed=6, ties=True)
    n_boot, seed = 40, 11
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    # same draws as the vectorised code (one chunk)
    w = bootstrap_weights(np.random.default_rng(seed), n_boot, len(y))
    assert np.array_equal(w, np.stack([np.bincount(r, minlength=len(y)) for r in idx]))
    for metric, ref in (("acc", getACC), ("auc", getAUC)):
        vals = [ref(y[r], s[r], task) for r in idx]
        expected = np.percentile(vals, [2.5, 97.5])
        got = bootstrap_ci(y, s, task, metric=metric, n_boot=n_boot, seed=seed)
        assert np.allclose(got, expected, atol=1e-12, rtol=0)


# --------------------------- calibration (Guo et al. 2017) ---------------------------

def test_ece_hand_computed_multiclass():
    s = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.2, 0.6], [0.4, 0.35, 0.25]])
    y = np.array([0, 1, 1, 0, 0])
    cal = expected_calibration_error(y, s, n_bins=5)
    # bins (0.2,0.4]: conf .4 acc 1 | (0.4,0.6]: conf .6 acc .5 | (0.6,0.8]: .8 / 0 | (0.8,1]: .9 / 1
    assert cal.ece == pytest.approx((0.6 + 2 * 0.1 + 0.8 + 0.1) / 5)
    assert cal.mce == pytest.approx(0.8)
    assert cal.bin_count.tolist() == [0, 1, 2, 1, 1]
    assert np.allclose(cal.bin_accuracy[1:], [1.0, 0.5, 0.0, 1.0])
    assert np.isnan(cal.bin_accuracy[0])
    d = cal.to_dict()
    assert d["n_bins"] == 5 and len(d["bins"]) == 4 and d["bins"][1]["count"] == 2


def test_ece_binary_forms_agree_and_hand_computed():
    p = np.array([0.9, 0.2, 0.55])
    y = np.array([1, 1, 0])
    # confidences .9 (right), .8 (wrong), .55 (wrong), all in bin (0.5, 1]
    expected = abs((0.9 + 0.8 + 0.55) / 3 - 1 / 3)
    assert expected_calibration_error(y, p, n_bins=2).ece == pytest.approx(expected)
    two = np.stack([1 - p, p], 1)
    assert expected_calibration_error(y, two, n_bins=2, task="binary-class").ece == pytest.approx(expected)
    assert expected_calibration_error(y, two, n_bins=2).ece == pytest.approx(expected)


def test_ece_errors():
    y, s = _good(ML)
    with pytest.raises(ValueError, match="multi-label"):
        expected_calibration_error(y, s, task=ML)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0, 1], [0.2, 0.7], n_bins=0)


# ------------------------ MedMNIST-C BE / rBE (Di Salvo et al. 2024) ------------------------

@pytest.mark.parametrize(
    "dataset, task, k, threshold",
    [
        ("breastmnist", "binary-class", 2, 0.5),
        ("dermamnist", "multi-class", 7, None),
        ("retinamnist", "ordinal-regression", 5, None),
        ("chestmnist", ML, 14, [0.3 + 0.02 * i for i in range(14)]),
    ],
)
def test_be_rbe_equal_medmnistc_evaluator(tmp_path, dataset, task, k, threshold):
    from medmnistc.eval import Evaluator
    from medmnistc.utils.baselines import BASELINES

    corruptions = list(BASELINES[dataset]["raw_scores"])[:4]
    n = 60
    y, clean = make_preds(task, n=n, k=k, seed=9)
    scores = {}
    for i, c in enumerate(corruptions):  # severity-major (5N, K), increasingly noisy
        sev = [make_preds(task, n=n, k=k, seed=100 + 10 * i + j)[1] for j in range(5)]
        scores[c] = np.concatenate([(1 - 0.1 * j) * clean + 0.1 * j * sv for j, sv in enumerate(sev)])

    ref = Evaluator(dataset, y, corruptions, str(tmp_path), "test", task)
    ref.evaluate_clean(clean, threshold)
    for c in corruptions:
        ref.evaluate(scores[c], c, threshold)
    ref.output_log = {}
    ref.populate_summary()
    log = ref.output_log

    thr = 0.5 if threshold is None else threshold
    clean_err = balanced_error(y, clean, task, thr)
    errs = corruption_errors(y, scores, task, thr)
    got = be_rbe(errs, clean_err, dataset=dataset)
    assert abs(clean_err - log["metrics"]["clean_score"]) < 1e-6
    assert abs(got["be"] - log["metrics"]["be"]) < 1e-6
    assert abs(got["rbe"] - log["metrics"]["rbe"]) < 1e-6
    for c in corruptions:
        assert abs(got["be_per_corruption"][c] - log["be_scores"][c]) < 1e-6
        assert abs(got["rbe_per_corruption"][c] - log["rbe_scores"][c]) < 1e-6
        assert abs(got["error_per_corruption"][c] - log["raw_scores"][c]) < 1e-6
        assert np.allclose(errs[c], ref.corruption_errors[c], atol=1e-6, rtol=0)


def test_be_rbe_hand_computed_and_stacked_layouts():
    ref = {"clean_score": 0.1, "raw_scores": {"blur": 0.3, "noise": 0.5}}
    out = be_rbe({"blur": [0.2] * 5, "noise": [0.1, 0.2, 0.3, 0.4, 0.5]}, clean_error=0.05, reference=ref)
    assert out["be_per_corruption"] == pytest.approx({"blur": 0.2 / 0.3, "noise": 0.3 / 0.5})
    assert out["rbe_per_corruption"] == pytest.approx({"blur": 0.15 / 0.2, "noise": 0.25 / 0.4})
    assert out["be"] == pytest.approx((0.2 / 0.3 + 0.6) / 2)
    y, s = make_preds("multi-class", n=30, k=3, seed=12)
    stacked = np.concatenate([s] * 5)
    a = corruption_errors(y, {"x": stacked}, "multi-class")
    b = corruption_errors(y, {"x": stacked.reshape(5, 30, 3)}, "multi-class")
    assert a == b and len(a["x"]) == 5
    assert a["x"][0] == pytest.approx(1 - balanced_accuracy_score(y[:, 0], s.argmax(1)))


def test_be_rbe_errors():
    with pytest.raises(ValueError, match="did you mean 'pneumoniamnist'"):
        be_rbe({"pixelate": [0.1] * 5}, 0.1, dataset="pneumoniamnst")
    with pytest.raises(ValueError, match="no AlexNet reference error for corruption 'pixelat'.*'pixelate'"):
        be_rbe({"pixelat": [0.1] * 5}, 0.1, dataset="pneumoniamnist")
    with pytest.raises(ValueError, match="exactly one"):
        be_rbe({"pixelate": [0.1] * 5}, 0.1)
    y, s = make_preds("binary-class", n=10)
    with pytest.raises(ValueError, match=r"expected \(5, 10, K\) or \(50, K\)"):
        corruption_errors(y, {"x": np.concatenate([s] * 4)}, "binary-class")
    y, s = make_preds(ML, n=10, k=3)
    with pytest.raises(ValueError, match="3 per-label thresholds"):
        balanced_error(y, s, ML, threshold=[0.5, 0.5])


def _softmax32(logits):
    import torch

    return torch.tensor(logits, dtype=torch.float32).softmax(dim=-1).numpy()


def test_auc_ranks_saturated_float32_softmax_by_its_log_odds():
    """Logit margins 20 and 30 (positives) vs 18 and 25 (negatives): float32 softmax rounds
    every p1 to 1.0, so ranking by p1 ties everything (AUC 0.5); the true AUC from the
    margins is 3/4 (20>18, 30>18, 30>25; 20<25). The complement p0 = exp(-margin) keeps the order."""
    s = _softmax32([[0.0, 20.0], [0.0, 30.0], [0.0, 18.0], [0.0, 25.0]])
    y = np.array([1, 1, 0, 0])
    assert len(np.unique(s[:, 1])) == 1  # the saturation the fix is about
    assert classification_metrics(y, s, "binary-class")["auc"] == pytest.approx(0.75)
    assert classification_metrics(y, s[:, 1], "binary-class")["auc"] == pytest.approx(0.5)  # no complement given
    low, high = bootstrap_ci(y, s, "binary-class", metric="auc", n_boot=200, seed=0)
    assert high > 0.5  # the bootstrap ranks the same way (all-ties would pin every resample at 0.5)
    # multi-class: class 2 saturated for three samples, ranked by the other classes' mass
    m = _softmax32([[0.0, 1.0, 40.0], [0.0, 0.0, 20.0], [0.0, 0.0, 30.0], [5.0, 0.0, 0.0]])
    res = classification_metrics(np.array([2, 0, 2, 0]), m, "multi-class")
    assert res["per_class_auc"]["2"] == pytest.approx(1.0)  # 40 and 30 beat 20 and the class-0 sample


def test_auc_is_unchanged_where_probabilities_do_not_tie():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 4)) * 2
    p = _softmax32(logits)
    y = rng.integers(0, 4, 300)
    want = roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert classification_metrics(y, p, "multi-class")["auc"] == pytest.approx(want, abs=1e-12)
    yb = rng.integers(0, 2, 300)
    pb = _softmax32(logits[:, :2])
    assert classification_metrics(yb, pb, "binary-class")["auc"] == pytest.approx(roc_auc_score(yb, pb[:, 1]), abs=1e-12)


def test_scores_that_are_not_probability_rows_are_ranked_as_given():
    from medfm.evaluation.metrics import ranking_scores

    s = np.array([[0.2, 0.3], [0.1, 0.9], [0.5, 0.5]])  # first row sums to 0.5
    assert ranking_scores(s) is None
    y = np.array([1, 0, 1])
    assert classification_metrics(y, s, "binary-class")["auc"] == pytest.approx(roc_auc_score(y, s[:, 1]))
