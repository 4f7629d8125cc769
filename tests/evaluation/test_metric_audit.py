"""Audit regressions: non-binary masks, zero-shot cosine with unnormalised encoders, 3D MONAI parity,
single-class AUC, ECE bin edges, kNN vs a float64 loop."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from medfm.evaluation.calibration import expected_calibration_error
from medfm.evaluation.metrics import bootstrap_ci, classification_metrics
from medfm.evaluation.protocols import knn_scores
from medfm.evaluation.segmentation import dice_score, hd95, surface_dice
from medfm.evaluation.zeroshot import class_embeddings, zeroshot_classify
from tests.conftest import ImageItems

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI deprecation noise


# -- segmentation: a probability map or NaN used to be binarised as "non-zero" -------------------
def test_probability_map_or_nan_mask_is_rejected():
    ref = np.zeros((8, 8))
    ref[2:6, 2:6] = 1
    prob = np.full((8, 8), 0.02)
    prob[2:6, 2:6] = 0.9  # silently gave Dice 0.4 (every 0.02 pixel counted as foreground)
    for fn in (dice_score, hd95, lambda a, b: surface_dice(a, b, 1.0)):
        with pytest.raises(ValueError, match="binary mask"):
            fn(prob, ref)
    nan_mask = ref.copy()
    nan_mask[0, 0] = np.nan
    with pytest.raises(ValueError, match="reference must be a binary mask"):
        dice_score(ref, nan_mask)
    with pytest.raises(TypeError, match="numeric or boolean"):
        dice_score(ref.astype(str), ref)
    # 0/1 ints, floats and torch tensors are still accepted and equal the bool result
    assert dice_score(ref, ref.astype(np.uint8)) == 1.0
    assert dice_score(prob > 0.5, torch.from_numpy(ref)) == 1.0


def _monai(pred, ref, spacing, tol):
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

    p = torch.from_numpy(np.stack([~pred, pred]))[None].float()
    r = torch.from_numpy(np.stack([~ref, ref]))[None].float()
    return (compute_dice(p, r, include_background=False)[0, 0].item(),
            compute_hausdorff_distance(p, r, include_background=False, percentile=95, spacing=spacing)[0, 0].item(),
            compute_surface_dice(p, r, [tol], include_background=False, spacing=spacing)[0, 0].item())


def test_noisy_3d_masks_touching_the_border_equal_monai_with_spacing():
    rng = np.random.default_rng(3)
    for i in range(4):
        pred = rng.random((6, 9, 11)) < 0.5
        ref = rng.random((6, 9, 11)) < 0.3
        if i == 0:
            pred[:] = True  # whole-volume mask: its surface is the image border
        spacing = tuple(rng.uniform(0.3, 3.0, 3).round(2))
        d, h, s = _monai(pred, ref, spacing, 1.5)
        assert dice_score(pred, ref) == pytest.approx(d, abs=1e-6)
        assert hd95(pred, ref, spacing) == pytest.approx(h, abs=1e-4)
        assert surface_dice(pred, ref, 1.5, spacing) == pytest.approx(s, abs=1e-6)


# -- zero-shot: logits must be scale * cosine even if encode_* do not normalise ----------------
class _UnnormalisedCLIP(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.encoder = nn.Module()
        self.encoder.in_chans = 1
        self.vocab = {"a": torch.tensor([10.0, 0.0]), "b": torch.tensor([0.0, 1.0]), "c": torch.tensor([0.0, 3.0])}

    def scale(self):
        return torch.tensor(2.0)

    def encode_text(self, texts):
        return torch.stack([self.vocab[t] for t in texts])

    def encode_image(self, x):
        m = x.mean((1, 2, 3))
        return torch.stack([5 * m, 1 - m], 1)


def test_zeroshot_normalises_unnormalised_embeddings():
    model = _UnnormalisedCLIP()
    prompts = [["a", "b"], ["c"]]
    # CLIP ensembling: normalize(mean(normalize(a), normalize(b))) = [1, 1] / sqrt(2)
    r = 1 / math.sqrt(2)
    np.testing.assert_allclose(class_embeddings(model, prompts).numpy(), [[r, r], [0, 1]], atol=1e-6)
    x = torch.full((1, 1, 2, 2), 0.5)
    img = torch.tensor([2.5, 0.5]) / math.hypot(2.5, 0.5)
    cos = torch.stack([img @ torch.tensor([r, r]), img[1]])
    expected = torch.softmax(2.0 * cos, 0).numpy()
    np.testing.assert_allclose(zeroshot_classify(model, ImageItems(x), prompts)[0], expected, atol=1e-6)


# -- classification: one class only -> NaN AUC with a warning, not a crash ---------------------
def test_binary_single_class_auc_is_nan_and_bootstrap_nan():
    p = np.array([0.1, 0.7, 0.4, 0.9])
    res = classification_metrics(np.ones(4, int), np.stack([1 - p, p], 1), "binary-class")
    assert math.isnan(res["auc"]) and res["acc"] == 0.5
    assert any("AUC undefined" in w for w in res["warnings"])
    lo, hi = bootstrap_ci(np.ones(4, int), p, "binary-class", "auc", n_boot=50)
    assert math.isnan(lo) and math.isnan(hi)


# -- calibration: Guo et al. bins are right-closed ((m-1)/M, m/M] --------------------------------
def test_ece_right_closed_bins_hand_computed():
    # confidences 0.8 (= 12/15, an edge: bin 11), 0.9, 0.7, 0.55, 0.95 each alone in a bin
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55], [0.05, 0.95]])
    y = np.array([0, 1, 1, 0, 1])
    cal = expected_calibration_error(y, p, n_bins=15)
    assert cal.ece == pytest.approx((0.1 + 0.8 + 0.3 + 0.55 + 0.05) / 5)
    assert cal.mce == pytest.approx(0.8)
    assert np.flatnonzero(cal.bin_count).tolist() == [8, 10, 11, 13, 14]


def test_knn_equals_float64_loop():
    rng = np.random.default_rng(1)
    tr, te, y = rng.normal(size=(30, 6)), rng.normal(size=(5, 6)), rng.integers(0, 4, 30)
    trn = tr / np.linalg.norm(tr, axis=1, keepdims=True)
    ten = te / np.linalg.norm(te, axis=1, keepdims=True)
    ref = np.zeros((5, 4))
    for i in range(5):
        sim = ten[i] @ trn.T
        nn_idx = np.argsort(-sim)[:11]
        w = np.exp(sim[nn_idx] / 0.07)
        np.add.at(ref[i], y[nn_idx], w / w.sum())
    np.testing.assert_allclose(knn_scores(tr, y, te, 4, k=11, temperature=0.07), ref, atol=1e-5)


def test_knn_rejects_labels_that_do_not_fit_the_features():
    tr, te = np.eye(3), np.array([[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="3 train features but 5 train labels"):  # was silently accepted
        knn_scores(tr, np.array([0, 1, 1, 0, 0]), te, 2, k=1)
    with pytest.raises(ValueError, match="3 train features but 2 train labels"):  # was an IndexError
        knn_scores(tr, np.array([0, 1]), te, 2, k=3)
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):  # was a torch RuntimeError
        knn_scores(tr, np.array([0, 1, 5]), te, 2, k=3)
    with pytest.raises(ValueError, match=r"multi-label train labels must be \(M, 2\)"):
        knn_scores(tr, np.ones((3, 3)), te, 2, task="multi-label, binary-class")
    assert knn_scores(tr, np.array([[0], [1], [1]]), np.zeros((0, 3)), 2).shape == (0, 2)
