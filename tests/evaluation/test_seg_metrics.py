"""medfm's Dice / HD95 / surface Dice against hand-computed values and MONAI's metrics."""
import math

import numpy as np
import pytest
import torch

from medfm.evaluation.segmentation import (case_metrics, dice_score, hd95, overlay_image, save_overlay,
                                           summarize_cases, surface_dice)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI deprecation noise


def _square(shape, top, left, side):
    m = np.zeros(shape, dtype=bool)
    m[top:top + side, left:left + side] = True
    return m


def _cube(shape, corner, side):
    m = np.zeros(shape, dtype=bool)
    z, y, x = corner
    m[z:z + side, y:y + side, x:x + side] = True
    return m


def _monai(pred, ref, spacing=None, tol=1.0):
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

    p = torch.from_numpy(np.stack([~pred, pred]))[None].float()
    r = torch.from_numpy(np.stack([~ref, ref]))[None].float()
    d = compute_dice(p, r, include_background=False)[0, 0].item()
    h = compute_hausdorff_distance(p, r, include_background=False, percentile=95, spacing=spacing)[0, 0].item()
    s = compute_surface_dice(p, r, [tol], include_background=False, spacing=spacing)[0, 0].item()
    return d, h, s


def test_hand_computed_values():
    a = _square((20, 20), 2, 2, 6)   # 36 px
    b = _square((20, 20), 2, 5, 6)   # shifted 3 px right; overlap 6 x 3 = 18
    assert dice_score(a, b) == pytest.approx(2 * 18 / 72)
    # every surface pixel of a is exactly 3 px from b's surface or closer; the left edge is 3
    assert hd95(a, b) == pytest.approx(3.0)
    assert dice_score(a, a) == 1.0 and hd95(a, a) == 0.0 and surface_dice(a, a, 0.0) == 1.0
    empty = np.zeros((20, 20), bool)
    assert dice_score(empty, empty) == 1.0 and hd95(empty, empty) == 0.0
    assert dice_score(a, empty) == 0.0 and math.isnan(hd95(a, empty)) and surface_dice(a, empty, 1.0) == 0.0
    assert math.isnan(surface_dice(empty, empty, 1.0))


@pytest.mark.parametrize("case", [
    (_square((32, 32), 4, 4, 10), _square((32, 32), 6, 7, 12), None),
    (_square((32, 32), 0, 0, 9), _square((32, 32), 1, 0, 14) & ~_square((32, 32), 4, 4, 3), (0.5, 2.0)),
    (_cube((16, 18, 20), (2, 3, 4), 7), _cube((16, 18, 20), (4, 3, 6), 6), None),
    (_cube((16, 18, 20), (2, 3, 4), 7) | _cube((16, 18, 20), (11, 12, 14), 3), _cube((16, 18, 20), (3, 3, 3), 8), (1.0, 0.7, 2.5)),
])
def test_equal_to_monai(case):
    pred, ref, spacing = case
    d, h, s = _monai(pred, ref, spacing=spacing, tol=1.5)
    assert dice_score(pred, ref) == pytest.approx(d, abs=1e-6)
    assert hd95(pred, ref, spacing=spacing) == pytest.approx(h, abs=1e-4)
    assert surface_dice(pred, ref, 1.5, spacing=spacing) == pytest.approx(s, abs=1e-6)


def test_random_masks_equal_monai():
    rng = np.random.default_rng(0)
    from scipy.ndimage import binary_opening

    for _ in range(3):
        pred = binary_opening(rng.random((40, 40)) > 0.4)
        ref = binary_opening(rng.random((40, 40)) > 0.45)
        d, h, s = _monai(pred, ref, tol=2.0)
        assert dice_score(pred, ref) == pytest.approx(d, abs=1e-6)
        assert hd95(pred, ref) == pytest.approx(h, abs=1e-4)
        assert surface_dice(pred, ref, 2.0) == pytest.approx(s, abs=1e-6)


def test_case_metrics_and_summary():
    ref = np.zeros((10, 10), np.uint8)
    ref[2:5, 2:5] = 1
    ref[6:9, 6:9] = 2
    pred = ref.copy()
    pred[6:9, 6:9] = 0
    res = case_metrics(pred, ref, ["background", "anterior", "posterior"])
    assert set(res) == {"anterior", "posterior"}
    assert res["anterior"]["dice"] == 1.0 and res["posterior"]["dice"] == 0.0
    assert math.isnan(res["posterior"]["hd95"])
    summary = summarize_cases({"a": res, "b": case_metrics(ref, ref, ["bg", "anterior", "posterior"])})
    assert summary["n_cases"] == 2
    assert summary["per_class"]["posterior"]["dice"]["mean"] == pytest.approx(0.5)
    assert summary["per_class"]["posterior"]["hd95"]["n"] == 1  # the NaN is ignored
    assert summary["mean"]["dice"] == pytest.approx(0.75)


def test_bad_inputs():
    with pytest.raises(ValueError, match="differ in shape"):
        dice_score(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="2D"):
        dice_score(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="spacing"):
        hd95(np.ones((4, 4)), np.ones((4, 4)), spacing=(1, 2, 3))
    with pytest.raises(ValueError, match="tolerance"):
        surface_dice(np.ones((4, 4)), np.ones((4, 4)), -1)


def test_overlay_colours(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    pred = np.array([[1, 1, 0, 0]] * 4, bool)
    ref = np.array([[1, 0, 1, 0]] * 4, bool)
    out = overlay_image(img, pred, ref)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == (153, 153, 0)   # TP yellow
    assert tuple(out[0, 1]) == (153, 0, 0)     # FP red
    assert tuple(out[0, 2]) == (0, 153, 0)     # FN green
    assert tuple(out[0, 3]) == (0, 0, 0)
    path = save_overlay(tmp_path / "o.png", img, pred, ref)
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(path)), out)


def _full_volume_distances(a, b, sp):
    """The plain reference: distance transforms over the whole image (no bounding box)."""
    from scipy.ndimage import distance_transform_edt

    from medfm.evaluation.segmentation import surface

    sa, sb = surface(a), surface(b)
    return distance_transform_edt(~sb, sampling=sp)[sa], distance_transform_edt(~sa, sampling=sp)[sb]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bounding_box_distances_equal_the_whole_image_ones(seed):
    """surface_distances runs its transforms on the two surfaces' bounding box: the result must
    be identical to transforms over the whole volume, also for objects touching the border and
    for two objects far apart, with anisotropic spacing."""
    from medfm.evaluation.segmentation import surface_distances

    rng = np.random.default_rng(seed)
    a = np.zeros((40, 50, 30), bool)
    b = np.zeros_like(a)
    a[3:9, 10:20, 0:6] = True                          # touches the border
    a[30:34, 40:48, 20:25] = rng.random((4, 8, 5)) > 0.3  # a second, ragged island far away
    b[5:12, 12:22, 1:7] = True
    sp = (1.0, 0.7, 2.5)
    got = surface_distances(a, b, sp)
    want = _full_volume_distances(a, b, np.asarray(sp))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    row = case_metrics(a.astype(int), b.astype(int), ["bg", "fg"], spacing=sp, tolerance=2.0)["fg"]
    assert row["hd95"] == max(np.percentile(want[0], 95), np.percentile(want[1], 95))
    assert row["surface_dice"] == (np.sum(want[0] <= 2.0) + np.sum(want[1] <= 2.0)) / (want[0].size + want[1].size)
