"""medfm.evaluation.protocols: kNN votes by hand, linear probe, probe-as-classifier, 2.5D features."""
import numpy as np
import pytest
import torch

from medfm.encoders import create_encoder
from medfm.evaluation import protocols as P
from medfm.evaluation.metrics import classification_metrics


class _Set:
    """Minimal dataset: float images (N, C, H, W) or (N, C, D, H, W), MedMNIST-style labels."""

    def __init__(self, images, labels, task="multi-class", k=3):
        self.images, self.labels, self.task, self.num_classes = images, labels, task, k
        self.label_names = [str(i) for i in range(k)]

    def __len__(self):
        return len(self.images)

    def get_batch(self, idx):
        return {"image": self.images[idx], "label": torch.as_tensor(self.labels[np.asarray(idx)])}


def test_knn_weighted_votes_by_hand():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = np.array([0, 1, 1, 2])
    test = np.array([[2.0, 0.2]])
    got = P.knn_scores(train, labels, test, num_classes=3, k=2, temperature=0.5)
    t = test[0] / np.linalg.norm(test[0])
    sims = np.array([t @ (v / np.linalg.norm(v)) for v in train])
    top = np.argsort(-sims)[:2]  # neighbours 0 (class 0) and 2 (class 1)
    w = np.exp(sims[top] / 0.5)
    want = np.zeros(3)
    for i, wi in zip(top, w):
        want[labels[i]] += wi
    assert np.allclose(got[0], want / want.sum(), atol=1e-6)
    assert np.allclose(P.knn_scores(train, labels, train, 3, k=1).argmax(1), labels)  # own nearest neighbour
    ml = P.knn_scores(train, np.array([[1, 0], [0, 1], [1, 1], [0, 0]]), test, 2, k=2, task="multi-label, binary-class")
    assert ml.shape == (1, 2) and np.all((ml >= 0) & (ml <= 1))
    with pytest.raises(ValueError, match="k must be"):
        P.knn_scores(train, labels, test, 3, k=0)


@pytest.mark.parametrize("k,task", [(2, "binary-class"), (3, "multi-class")])
def test_linear_probe_fits_and_folds_into_a_classifier(k, task):
    torch.manual_seed(0)
    enc = create_encoder("resnet_test", in_chans=1, img_size=28).eval()
    x = torch.rand(40, 1, 28, 28)
    y = np.arange(40) % k
    x[torch.as_tensor(y) == 1] *= 0.3  # make classes separable by brightness
    feats = P.extract_features(enc, _Set(x, y[:, None], task, k))
    probe = P.fit_linear_probe(feats, y, task, k, C=10.0)
    p = probe.predict(feats)
    assert p.shape == (40, k) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert classification_metrics(y, p, task)["acc"] > 0.7
    clf = probe.to_classifier(enc)
    with torch.no_grad():
        q = clf.scores(clf(x)).numpy()
    assert np.allclose(p, q, atol=1e-4)  # standardisation folded exactly into the head


def test_probe_with_a_missing_class_and_multilabel():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(30, 4))
    y = (f[:, 0] > 0).astype(int) * 2  # classes 0 and 2 only, of 3
    p = P.fit_linear_probe(f, y, "multi-class", 3).predict(f)
    assert p.shape == (30, 3) and p[:, 1].max() < 1e-6 and (p.argmax(1) == y).mean() > 0.9
    yml = np.stack([f[:, 0] > 0, f[:, 1] > 0, np.ones(30, bool)], 1).astype(int)  # third label constant
    pm = P.fit_linear_probe(f, yml, "multi-label, binary-class", 3).predict(f)
    assert pm.shape == (30, 3) and np.all(pm[:, 2] > 0.99)
    with pytest.raises(ValueError, match="single class"):
        P.fit_linear_probe(f, np.zeros(30, int), "binary-class", 2)


def test_extract_features_embeds_volumes_per_slice():
    torch.manual_seed(0)
    enc = create_encoder("resnet_test", in_chans=1, img_size=28).eval()
    vol = torch.rand(3, 1, 5, 28, 28)
    got = P.extract_features(enc, _Set(vol, np.zeros((3, 1), int)), batch_size=4)
    with torch.no_grad():
        want = torch.stack([enc(vol[i, :, :, :, :].permute(1, 0, 2, 3)).mean(0) for i in range(3)]).numpy()
    assert np.allclose(got, want, atol=1e-5)


def test_linear_probe_and_knn_end_to_end_with_label_fraction():
    torch.manual_seed(0)
    enc = create_encoder("resnet_test", in_chans=1, img_size=28).eval()
    y = np.arange(60) % 3
    x = torch.rand(60, 1, 28, 28) * torch.as_tensor(1 + y, dtype=torch.float32)[:, None, None, None] / 3
    tr, te = _Set(x[:45], y[:45, None]), _Set(x[45:], y[45:, None])
    for scores in (P.linear_probe(enc, tr, te, label_fraction=0.5, seed=1),
                   P.knn_predict(enc, tr, te, label_fraction=0.5, seed=1, k=5)):
        assert scores.shape == (15, 3) and np.allclose(scores.sum(1), 1, atol=1e-5)
    assert len(P.subset_indices(y[:45], 0.2, 0)) == 9  # stratified: 3 per class
    with pytest.raises(ValueError, match="differ"):
        P.linear_probe(enc, tr, _Set(x[45:], y[45:, None], k=4))
    with pytest.raises(ValueError, match="did you mean 'linear'"):
        P.check_protocol("lineer")


def test_select_probe_c_picks_the_best_validation_accuracy():
    rng = np.random.default_rng(0)
    # 40 training points: label = sign of feature 0, plus 20 noise features that a weakly
    # regularised probe overfits; validation from the same rule
    def draw(n):
        x = rng.normal(size=(n, 21))
        return x, (x[:, 0] + 0.8 * rng.normal(size=n) > 0).astype(int)
    xtr, ytr = draw(40)
    xva, yva = draw(200)
    grid = [1e-3, 1e-2, 1e-1, 1.0, 100.0]
    best, accs = P.select_probe_c(xtr, ytr, xva, yva, "binary-class", 2, grid=grid)
    want = {c: classification_metrics(yva, P.fit_linear_probe(xtr, ytr, "binary-class", 2, C=c).predict(xva),
                                      "binary-class")["acc"] for c in grid}
    assert accs == pytest.approx(want)
    assert accs[best] == max(want.values()) and best == min(c for c in grid if want[c] == max(want.values()))
    assert len(set(accs.values())) > 1  # the grid matters on this data
    # separable data: every C is perfect on validation -> the strongest regularisation wins
    sep = np.concatenate([np.full((10, 1), -3.0), np.full((10, 1), 3.0)])
    lab = np.repeat([0, 1], 10)
    best, accs = P.select_probe_c(sep, lab, sep, lab, "binary-class", 2, grid=[10.0, 0.1, 1.0])
    assert best == 0.1 and set(accs.values()) == {1.0}
    with pytest.raises(ValueError, match="positive"):
        P.select_probe_c(sep, lab, sep, lab, "binary-class", 2, grid=[0.0, 1.0])
    with pytest.raises(ValueError, match="width"):
        P.select_probe_c(sep, lab, np.zeros((3, 2)), lab[:3], "binary-class", 2)


def test_extract_features_shows_progress_when_labelled(capsys):
    """The 64³ probe suite printed nothing for its first 90+ s of feature extraction."""
    torch.manual_seed(0)
    enc = create_encoder("resnet_test", in_chans=1, img_size=28)
    data = _Set(torch.rand(6, 1, 28, 28), np.zeros((6, 1), int))
    quiet = P.extract_features(enc, data, batch_size=2)
    assert "train features" not in capsys.readouterr().err
    shown = P.extract_features(enc, data, batch_size=2, desc="pneumoniamnist train features")
    assert "pneumoniamnist train features" in capsys.readouterr().err
    np.testing.assert_array_equal(quiet, shown)
