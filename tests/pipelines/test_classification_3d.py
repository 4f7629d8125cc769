"""``medfm.pipeline("image-classification")`` with a 3D encoder: volumes in, ``{"label", "score"}`` out.

Before, the pipeline read 2D images only: a ``(D, H, W)`` volume was refused as a bad 2D array
and users of 3D classifiers had to call ``model.scores(model(volumes))`` themselves.
"""
import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.pipelines.classification import ImageClassificationPipeline
from medfm.pipelines.inputs import PipelineInputError

NAMES = ["liver", "kidney", "spleen"]
SIDE = 16
VOL = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, SIDE), dtype=np.uint8)


def _classifier(in_chans=1):
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet3d_test", in_chans=in_chans, img_size=SIDE)
    return ImageClassifier(enc, 3, "multi-class", NAMES).eval()


@pytest.fixture(scope="module")
def clf():
    return ImageClassificationPipeline(_classifier())


def _by_hand(model, x):
    """``{label: score}`` of a hand-made forward pass on ``x`` (B, C, D, H, W) float in [0, 1]."""
    with torch.no_grad():
        rows = model.scores(model(x)).tolist()
    return [dict(zip(NAMES, row)) for row in rows]


def _as_dict(out):
    return {d["label"]: d["score"] for d in out}


def test_uint8_float_and_channel_first_volumes_score_as_a_hand_made_forward_pass(clf, tmp_path):
    x = torch.from_numpy(VOL).to(torch.float32).div(255)[None, None]
    want = _by_hand(clf.model, x)[0]
    out = clf(VOL)
    assert [d["label"] for d in out] == sorted(NAMES, key=lambda n: -want[n])  # highest first
    assert _as_dict(out) == want
    assert _as_dict(clf(VOL[None])) == want  # (C, D, H, W)
    assert _as_dict(clf(VOL.astype(np.float64) / 255)) == pytest.approx(want, abs=1e-6)  # float in [0, 1]
    second = VOL[::-1].copy()
    want2 = _by_hand(clf.model, torch.from_numpy(second).float().div(255)[None, None])[0]
    batch = clf([VOL, second], top_k=2)  # one batch of two volumes (conv rounding differs from batches of 1)
    assert [[d["label"] for d in r] for r in batch] == [[d["label"] for d in r[:2]] for r in (out, clf(second))]
    assert [_as_dict(r) for r in batch] == [pytest.approx({d["label"]: w[d["label"]] for d in r}, abs=1e-6)
                                            for r, w in zip(batch, (want, want2))]
    np.save(tmp_path / "vol.npy", VOL)
    assert _as_dict(clf(str(tmp_path / "vol.npy"))) == want
    # a saved checkpoint: the pipeline reads the loaded encoder's dims
    from medfm.hub import save_pretrained

    ckpt = save_pretrained(clf.model, tmp_path / "ckpt")
    assert _as_dict(medfm.pipeline("image-classification", model=str(ckpt))(VOL)) == want


def test_nifti_intensities_are_min_max_scaled_per_volume(clf, tmp_path):
    hu = np.random.default_rng(1).uniform(-1000, 400, (SIDE, SIDE, SIDE)).astype(np.float32)  # CT units
    for name in ("ct.nii.gz", "ct.nii"):
        nib.save(nib.Nifti1Image(hu, np.diag([0.8, 0.8, 2.5, 1.0])), str(tmp_path / name))
    unit = (hu.astype(np.float64) - hu.min()) / (hu.max() - hu.min())
    want = _by_hand(clf.model, torch.from_numpy(unit.astype(np.float32))[None, None])[0]
    assert _as_dict(clf(str(tmp_path / "ct.nii.gz"))) == want
    assert _as_dict(clf(tmp_path / "ct.nii")) == want  # os.PathLike, uncompressed
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.full((SIDE,) * 3, 7.0, np.float32), np.eye(4)), str(flat))
    zeros = _by_hand(clf.model, torch.zeros(1, 1, SIDE, SIDE, SIDE))[0]
    assert _as_dict(clf(str(flat))) == zeros  # a constant volume scales to zeros


def test_volumes_of_another_size_are_resized_trilinearly(clf, tmp_path):
    vol = np.random.default_rng(2).integers(0, 256, (20, 11, 9), dtype=np.uint8)  # not cubic, not 16^3
    x = torch.from_numpy(vol).float().div(255)[None, None]
    resized = F.interpolate(x, size=(SIDE,) * 3, mode="trilinear", align_corners=False)
    want = _by_hand(clf.model, resized)[0]
    assert _as_dict(clf(vol)) == want
    nearest = _by_hand(clf.model, F.interpolate(x, size=(SIDE,) * 3, mode="nearest"))[0]
    assert _as_dict(clf(vol)) != nearest
    nib.save(nib.Nifti1Image(vol.astype(np.int16) * 4 - 300, np.eye(4)), str(tmp_path / "small.nii.gz"))
    scaled = (vol.astype(np.float64) - vol.min()) / (vol.max() - vol.min())
    want_nii = _by_hand(clf.model, F.interpolate(torch.from_numpy(scaled.astype(np.float32))[None, None],
                                                 size=(SIDE,) * 3, mode="trilinear", align_corners=False))[0]
    assert _as_dict(clf(str(tmp_path / "small.nii.gz"))) == pytest.approx(want_nii, abs=1e-6)


def test_a_single_channel_volume_is_repeated_for_a_3_channel_model():
    rgb = ImageClassificationPipeline(_classifier(in_chans=3))
    x = torch.from_numpy(VOL).float().div(255)[None, None].expand(1, 3, -1, -1, -1)
    want = _by_hand(rgb.model, x)[0]
    assert _as_dict(rgb(VOL)) == want and _as_dict(rgb(VOL[None])) == want
    assert _as_dict(rgb(np.stack([VOL] * 3))) == want
    with pytest.raises(PipelineInputError, match=r"volume has 2 channels .* but the model takes 3"):
        rgb(np.stack([VOL] * 2))
    with pytest.raises(PipelineInputError, match=r"^this 3D classifier takes volumes \(D, H, W\) or \(C, D, H, W\) "
                                                 r"with C = 1 or 3, any size"):
        rgb(VOL[0])


def _bad_files(tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti file")
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), str(tmp_path / "4d.nii.gz"))
    nan = np.zeros((4, 4, 4), np.float32)
    nan[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    Image.fromarray(VOL[0]).save(tmp_path / "slice.png")
    for name, arr in (("slice2d.nii.gz", VOL[0]), ("slab.nii.gz", VOL[..., :1]), ("slab4d.nii", VOL[:, :, :1, None])):
        nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / name))  # a 2D slice as NIfTI tools write one


#: what every shape error of the 1-channel 16^3 classifier begins with
TAKES = (r"^this 3D classifier takes volumes \(D, H, W\) or \(C, D, H, W\) with C = 1, any size \(resized to 16\^3 "
         r"voxels\); ")
BAD = [
    (lambda p: VOL[0], TAKES + r"got a 2D array of shape \(16, 16\) \(a 2D image needs a 2D classifier\)$"),
    (lambda p: Image.fromarray(VOL[0]), TAKES + r"got a 2D PIL image of size \(16, 16\) \(a 2D image needs a 2D "
                                                r"classifier\)$"),
    (lambda p: str(p / "slice.png"), TAKES + r"slice.png is not a volume file \(.nii, .nii.gz, .npy\): a 2D image "
                                             r"needs a 2D classifier$"),
    (lambda p: VOL[None, None], TAKES + r"got an array of shape \(1, 1, 16, 16, 16\)$"),
    (lambda p: np.stack([VOL] * 2), r"volume has 2 channels \(C, D, H, W\) = \(2, 16, 16, 16\) but the model takes 1"),
    (lambda p: VOL[:0], r"empty volume of shape \(0, 16, 16\)"),
    (lambda p: VOL.astype(np.int16), r"volume must be uint8 \(0-255\) or float in \[0, 1\], got int16"),
    (lambda p: VOL.astype(np.float32), r"float values must be in \[0, 1\], got values in \[0, 255\]"),
    (lambda p: np.where(VOL > 100, np.nan, 0.5), r"volume has \d+ NaN/inf voxel value\(s\)"),
    (lambda p: torch.rand(1, 16, 16, 16), r"expected a volume file path .* or a numpy array .*, got Tensor \(a torch "
                                          r"tensor: pass tensor\.detach\(\)\.cpu\(\)\.numpy\(\)\)$"),
    (lambda p: str(p / "missing.nii.gz"), r"no such volume file: .*missing.nii.gz"),
    (lambda p: str(p / "broken.nii.gz"), r"broken.nii.gz"),
    (lambda p: str(p / "broken.npy"), r"cannot read .*broken.npy as a .npy array"),
    (lambda p: str(p / "4d.nii.gz"), TAKES + r"4d.nii.gz is a 4D NIfTI of shape \(4, 4, 4, 2\) \(its last axis "
                                             r"holds channels or time points: pass one volume as an array"),
    (lambda p: str(p / "nan.nii.gz"), r"NIfTI nan.nii.gz has 1 NaN/inf voxel value\(s\)"),
    # 2D slices: were "expected a 3D NIfTI volume (X, Y, Z), slice2d.nii.gz has shape (16, 16)", and a slice
    # saved as (H, W, 1), or given as a (1, H, W) array, was classified as a volume of depth 1 (resized to a cube)
    (lambda p: str(p / "slice2d.nii.gz"), TAKES + r"slice2d.nii.gz is a 2D NIfTI of shape \(16, 16\) \(a 2D image "
                                                  r"needs a 2D classifier\)$"),
    (lambda p: str(p / "slab.nii.gz"), TAKES + r"slab.nii.gz is a 3D NIfTI of shape \(16, 16, 1\), a single 2D slice "
                                               r"\(a 2D image needs a 2D classifier\)$"),
    (lambda p: str(p / "slab4d.nii"), TAKES + r"slab4d.nii is a 4D NIfTI of shape \(16, 16, 1, 1\), a single 2D slice"),
    (lambda p: VOL[:1], TAKES + r"got a single 2D slice, shape \(1, 16, 16\) \(a 2D image needs a 2D classifier\)$"),
    (lambda p: VOL[None, :, :1], TAKES + r"got a single 2D slice, shape \(1, 16, 1, 16\)"),
]


@pytest.mark.parametrize("make, message", BAD, ids=[m.replace(TAKES, "")[:30] for _, m in BAD])
def test_bad_volumes_are_one_line_pipeline_errors(clf, tmp_path, make, message):
    _bad_files(tmp_path)
    with pytest.raises(PipelineInputError, match=message) as info:
        clf(make(tmp_path))
    assert "\n" not in str(info.value)


def test_a_2d_classifier_refuses_volumes_with_a_pointer_to_3d_ones(tmp_path):
    torch.manual_seed(0)
    two_d = ImageClassificationPipeline(ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=16),
                                                        3, "multi-class", NAMES))
    with pytest.raises(PipelineInputError, match=r"takes 2D images \(H, W\) or \(H, W, 3\), got an array of shape "
                                                 r"\(16, 16, 16\) \(a 3D volume needs a 3D classifier"):
        two_d(VOL)
    with pytest.raises(PipelineInputError, match=r"shape \(1, 16, 16, 16\) \(a 3D volume needs a 3D classifier"):
        two_d(VOL[None])
    nib.save(nib.Nifti1Image(VOL, np.eye(4)), str(tmp_path / "ct.nii.gz"))
    with pytest.raises(PipelineInputError, match=r"^ct\.nii\.gz is a 3D NIfTI of shape \(16, 16, 16\); this 2D "
                                                 r"classifier takes image files .* \(a 3D volume needs a 3D classifier"):
        two_d(str(tmp_path / "ct.nii.gz"))
    assert len(two_d(VOL[0])) == 3  # a 2D slice is still classified
