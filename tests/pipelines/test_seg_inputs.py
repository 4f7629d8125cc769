"""``medfm.pipeline("image-segmentation")`` and :func:`predict_probs`: what each input turns into
(2.5D restacking, RGB for 1-channel models, per-channel percentiles) and how bad inputs are named.

A single-channel volume (3D or 2.5D model) with a NaN voxel used to pass: percentile scaling made
it all zeros (an all-background mask) and "unit" models failed inside the encoder; such volumes,
and non-numeric ones, are now refused as multi-channel volumes already were.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import medfm
from medfm.adapters.segmentation import SegmentationModel
from medfm.data.segmentation import percentile_unit, slice_stack
from medfm.pipelines.seg_inputs import read_brain_mask, read_channels
from medfm.pipelines.segmentation import SegmentationInputError, predict_labels, predict_probs

SHAPE = (20, 18, 13)


def _model(encoder="resnet3d_test", in_chans=1, classes=3, **inference):
    """A seeded tiny segmenter whose mask depends on the input (zeroed head bias, random weights)."""
    torch.manual_seed(0)
    model = SegmentationModel(medfm.create_encoder(encoder, in_chans=in_chans, img_size=16), classes,
                              decoder={"stem_channels": 4}, inference=inference).eval()
    with torch.no_grad():
        model.task_head.bias.zero_()
        model.task_head.weight.normal_()
    return model


def _volume(shape=SHAPE, seed=0):
    """Voxels in scanner-like units (about 100 +- 20): for "percentile" models."""
    return np.random.default_rng(seed).normal(100, 20, shape).astype(np.float32)


def _unit_volume(shape=SHAPE, seed=0):
    """Voxels already in [0, 1]: what a "unit" model takes."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.mark.parametrize("axis, shape", [(0, (5, 16, 16)), (2, (16, 16, 5))])
def test_2_5d_probabilities_are_restacked_along_the_slice_axis(axis, shape):
    model = _model("resnet_test", in_chans=3, classes=2, context_slices=1, slice_axis=axis)
    vol = np.random.default_rng(1).random(shape).astype(np.float32)
    probs = predict_probs(model, vol)
    assert probs.shape == (2, *shape) and probs.dtype == torch.float32
    with torch.no_grad():  # 16 x 16 slices = the window: one forward per slice stack
        per_slice = model(torch.from_numpy(slice_stack(vol, 1, axis))).softmax(1)  # (n, K, a, b)
    assert torch.allclose(probs, torch.movedim(per_slice, 0, 1 + axis), atol=1e-5)
    with pytest.raises(SegmentationInputError, match=r"2.5D model segments \(X, Y, Z\) volumes, got shape \(1, "):
        predict_probs(model, vol[None])


def test_3d_model_names_the_input_it_expects():
    with pytest.raises(SegmentationInputError, match=r"model expects \(1, X, Y, Z\) input, got shape \(2, 20, 18, 13\)"):
        predict_probs(_model(), np.stack([_volume()] * 2))


@pytest.mark.parametrize("inference", [{"intensity": "percentile"}, {"intensity": "unit"},
                                       {"intensity": "percentile", "context_slices": 1}])
def test_single_channel_volume_with_nan_or_inf_is_refused(tmp_path, inference):
    encoder, chans = ("resnet_test", 3) if inference.get("context_slices") else ("resnet3d_test", 1)
    pipe = medfm.pipeline("image-segmentation", model=_model(encoder, chans, **inference))
    vol = _unit_volume() if inference["intensity"] == "unit" else _volume()
    assert pipe(vol)["mask"].shape == SHAPE
    vol[3, 4, 5] = np.nan
    with pytest.raises(SegmentationInputError, match=r"the volume has 1 NaN/inf voxel"):
        pipe(vol)
    vol[3, 4, 5], vol[0, 0, 0] = np.inf, -np.inf
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "v.nii.gz"))
    with pytest.raises(SegmentationInputError, match=r"v\.nii\.gz has 2 NaN/inf voxel"):
        pipe(str(tmp_path / "v.nii.gz"))


@pytest.mark.parametrize("encoder, chans, inference", [("resnet3d_test", 1, {}),
                                                      ("resnet_test", 3, {"context_slices": 1})])
def test_single_channel_unit_volume_outside_0_1_is_refused(tmp_path, encoder, chans, inference):
    """A 1-channel 3D or 2.5D model recording ``inference.intensity == "unit"`` clipped its input to
    [0, 1]: a raw NIfTI (MSD Hippocampus voxels are 2-139) or a uint8 volume became almost all 1s
    and the mask was garbage, no error. Such volumes are now refused, as multi-channel ones were."""
    model = _model(encoder, chans, **inference)
    assert model.inference["intensity"] == "unit"
    pipe = medfm.pipeline("image-segmentation", model=model)
    raw = np.random.default_rng(0).integers(2, 140, SHAPE).astype(np.float32)
    nib.save(nib.Nifti1Image(raw, np.eye(4)), str(tmp_path / "raw.nii.gz"))
    refused = r"already scaled to \[0, 1\] \(inference.intensity 'unit'\), got values in \[{}, {}\]; scale them to " \
              r"\[0, 1\].*or use a model trained with percentile normalisation"
    with pytest.raises(SegmentationInputError, match=refused.format(2, 139)):
        pipe(str(tmp_path / "raw.nii.gz"))
    with pytest.raises(SegmentationInputError, match=refused.format(0, 255)):
        pipe(np.linspace(0, 255, np.prod(SHAPE)).reshape(SHAPE).astype(np.uint8))
    unit = _unit_volume()
    below = unit.copy()
    below[3, 4, 5] = -0.5  # one voxel out of range is enough
    with pytest.raises(SegmentationInputError, match=refused.format(r"-0\.5", r"0\.9\d*")):
        pipe(below)
    # in range: segmented as given
    want = predict_labels(model, unit if inference else unit[None])
    assert np.array_equal(pipe(unit)["mask"], want)
    # float rounding past 1 (within the encoders' 1e-3 tolerance) is clipped, not refused
    rounded = unit.copy()
    rounded[unit == unit.max()] = np.float32(1.0000001)
    clipped = np.clip(rounded, 0, 1)
    assert np.array_equal(pipe(rounded)["mask"], predict_labels(model, clipped if inference else clipped[None]))


@pytest.mark.parametrize("dtype", [bool, np.complex64, "U1", object])
def test_non_numeric_volumes_are_refused(dtype):
    pipe = medfm.pipeline("image-segmentation", model=_model(intensity="percentile"))
    with pytest.raises(SegmentationInputError, match="volumes must be numeric, got dtype"):
        pipe(np.zeros(SHAPE, dtype=dtype))
    with pytest.raises(SegmentationInputError, match="volumes must be numeric, got dtype"):
        read_channels(np.zeros((2, *SHAPE), dtype=dtype), 2)


def test_rgb_for_a_1_channel_2d_model_is_its_luminance():
    model = _model("resnet_test", in_chans=1, classes=2)
    rgb = np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    out = medfm.pipeline("image-segmentation", model=model)(rgb)
    gray = (rgb.astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    expected = predict_labels(model, gray[None])
    assert len(np.unique(expected)) > 1 and np.array_equal(out["mask"], expected)
    assert out["mask"].shape == (30, 40) and out["mask"].dtype == np.uint8


def test_multichannel_percentile_model_scales_each_channel():
    model = _model(in_chans=2, intensity="percentile")
    vol = np.stack([_volume(seed=0), _volume(seed=1) * 3 - 50])
    out = medfm.pipeline("image-segmentation", model=model)(vol)
    expected = predict_labels(model, np.stack([percentile_unit(c) for c in vol]))
    assert len(np.unique(expected)) > 1 and np.array_equal(out["mask"], expected)


def test_unreadable_and_misshaped_inputs_are_named(tmp_path):
    pipe2d = medfm.pipeline("image-segmentation", model=_model("resnet_test", in_chans=1, classes=2))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(SegmentationInputError, match=r"cannot read image .*bad\.png"):
        pipe2d(str(tmp_path / "bad.png"))
    with pytest.raises(SegmentationInputError, match=r"\(H, W\) or \(H, W, 1\|3\) image, got shape \(30, 40, 4\)"):
        pipe2d(np.zeros((30, 40, 4), np.uint8))
    pipe3d = medfm.pipeline("image-segmentation", model=_model(intensity="percentile"))
    with pytest.raises(SegmentationInputError, match=r"cannot read NIfTI .*bad\.nii\.gz"):
        pipe3d(str(tmp_path / "bad.nii.gz"))
    with pytest.raises(SegmentationInputError, match=r"^this 3D segmentation model takes one \(X, Y, Z\) volume per "
                                                     r"input: .*; got a 2D PIL image of size \(40, 30\) \(a 2D image "
                                                     r"needs a 2D segmentation model\)$"):
        pipe3d(Image.fromarray(np.zeros((30, 40), np.uint8)))
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), str(tmp_path / "v.nii.gz"))
    with pytest.raises(SegmentationInputError, match="NIfTI output paths end in .nii or .nii.gz, got m.png"):
        pipe3d(str(tmp_path / "v.nii.gz"), output_path=tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()
    with pytest.raises(SegmentationInputError, match="Linear is not a medfm segmentation model"):
        medfm.pipeline("image-segmentation", model=torch.nn.Linear(2, 2))


def test_bad_channel_files_and_brain_masks_are_named(tmp_path):
    vol = _volume()
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "a.nii.gz"))
    nib.save(nib.Nifti1Image(np.stack([vol] * 2, -1), np.eye(4)), str(tmp_path / "4d.nii.gz"))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    a = str(tmp_path / "a.nii.gz")
    for files, message in [([vol, a], "each channel must be a NIfTI file path, got ndarray"),
                           ([str(tmp_path / "missing.nii.gz"), a], "no such input file: .*missing.nii.gz"),
                           ([str(tmp_path / "x.png"), a], r"each channel must be a NIfTI file \(.nii / .nii.gz\), got x.png"),
                           ([str(tmp_path / "bad.nii.gz"), a], "cannot read NIfTI .*bad.nii.gz"),
                           ([str(tmp_path / "4d.nii.gz"), a], r"each channel file must be a 3D volume, .*4d.nii.gz has shape \(20, 18, 13, 2\)"),
                           (5, r"a list of per-channel NIfTI paths, a 4D NIfTI path or a \(2, X, Y, Z\) array, got int")]:
        with pytest.raises(SegmentationInputError, match=message):
            read_channels(files, 2)
    with pytest.raises(SegmentationInputError, match="brain mask must be a bool or numeric array, got dtype <U1"):
        read_brain_mask(np.full(SHAPE, "a"), SHAPE)
    with pytest.raises(SegmentationInputError, match="brain mask has NaN/inf values"):
        read_brain_mask(np.where(vol > 100, 1.0, np.nan), SHAPE)
    nib.save(nib.Nifti1Image((vol > 100).astype(np.float32), np.diag([2.0, 1, 1, 1])), str(tmp_path / "brain.nii.gz"))
    with pytest.raises(SegmentationInputError, match="brain.nii.gz and the image differ in affine"):
        read_brain_mask(str(tmp_path / "brain.nii.gz"), SHAPE, np.eye(4))
    assert np.array_equal(read_brain_mask(str(tmp_path / "brain.nii.gz"), SHAPE), vol > 100)  # array image: no affine to compare


def test_text_conditioned_query_errors_are_input_errors():
    from medfm.adapters.text_seg import build_text_segmenter

    class FixedEncoder:  # encode(list[str]) -> (N, dim), the same vector for every text
        spec = {"name": "fixed-test"}

        def __init__(self, dim):
            self.dim = dim

        def encode(self, texts):
            return torch.ones(len(texts), self.dim)

    torch.manual_seed(0)
    targets = [{"name": "vessel", "modality": "fundus photograph", "target": "vessels"},
               {"name": "lesion", "modality": "brain MRI", "target": "glioma"}]
    model = build_text_segmenter(medfm.create_encoder("resnet_test", in_chans=3, img_size=16), targets, FixedEncoder(16),
                                 head={"embed_dim": 16, "controller_hidden": 16}).eval()
    img = np.zeros((20, 20, 3), np.uint8)
    pipe = medfm.pipeline("image-segmentation", model=model, text_encoder=FixedEncoder(16))
    with pytest.raises(SegmentationInputError, match="query must be a non-empty string"):
        pipe(img, query="   ")
    with pytest.raises(SegmentationInputError, match="8-d embeddings; this model was trained with 16-d"):
        medfm.pipeline("image-segmentation", model=model, text_encoder=FixedEncoder(8))(img, query="vessels")


@pytest.mark.parametrize("model_args, image, named", [
    ((("resnet_test", 1, 2), {}), np.zeros((0, 30), np.float32), r"the image is empty: shape \(0, 30\)"),
    ((("resnet_test", 1, 2), {}), np.zeros((30, 0), np.uint8), r"the image is empty: shape \(30, 0\)"),
    ((("resnet_test", 1, 2), {}), np.zeros((0, 30, 3), np.uint8), r"the image is empty: shape \(0, 30, 3\)"),
    (((), {"intensity": "percentile"}), np.zeros((0, 18, 13), np.float32), r"the volume is empty: shape \(0, 18, 13\)"),
    (((), {"intensity": "unit"}), np.zeros((20, 0, 13), np.float32), r"the volume is empty: shape \(20, 0, 13\)"),
    ((("resnet_test", 3, 2), {"context_slices": 1}), np.zeros((20, 18, 0), np.float32),
     r"the volume is empty: shape \(20, 18, 0\)"),
    ((("resnet3d_test", 2), {"intensity": "percentile"}), np.zeros((2, 20, 0, 13), np.float32),
     r"the array is empty: shape \(2, 20, 0, 13\)"),
])
def test_empty_images_and_volumes_are_refused(model_args, image, named):
    """An image or volume with a zero-length axis used to come back as an empty mask, no error
    (the classification pipeline refuses empty images)."""
    args, inference = model_args
    pipe = medfm.pipeline("image-segmentation", model=_model(*args, **inference))
    with pytest.raises(SegmentationInputError, match=named + " has a zero-length axis"):
        pipe(image)


def test_predict_probs_refuses_an_empty_input():
    with pytest.raises(SegmentationInputError, match=r"the input is empty: shape \(1, 0, 30\)"):
        predict_probs(_model("resnet_test", in_chans=1, classes=2), np.zeros((1, 0, 30), np.float32))


def test_pil_to_array_raises_the_pipeline_error_class_it_is_given(tmp_path):
    """pil_to_array takes the pipeline's error class, as read_image_file does (read_input no longer catches
    PipelineInputError to raise it again as a SegmentationInputError)."""
    from medfm.pipelines.inputs import pil_to_array

    frames = [Image.fromarray(np.full((30, 40), v, np.uint8)) for v in (0, 100, 200)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    with Image.open(tmp_path / "stack.tif") as im, pytest.raises(SegmentationInputError, match=r"3 frames"):
        pil_to_array(im, 1, SegmentationInputError)
