"""Float image arrays in the 2D classification and VQA pipelines, and the other arrays users pass
(torch tensors, RGBA, gray + alpha, channels first).

Before, both refused every float array ("arrays must be uint8 (as stored in MedMNIST), got
float64; convert floats ..."), while the segmentation pipeline and the 3D classifier took floats
in [0, 1], the form timm / transformers / MONAI users hold their images in. Now floats in [0, 1]
are rounded to 8 bits (:func:`medfm.pipelines.inputs.uint8_image_array`), the form of the
training data, so ``u / 255.0`` gives bit for bit what the uint8 ``u`` gives; 0-255 floats and
NaN/inf are refused with the segmentation pipeline's messages. A ``(H, W, 2)`` array said "a 3D
volume needs a 3D classifier", RGBA and channels-first arrays in the segmentation pipeline had no
hint, and torch tensors were refused without saying how to pass them. Float rounding just past
[0, 1] (``x / x.max()`` giving 1.0000001) was refused by the 2D pipelines and the 3D classifier
but clipped for "unit" segmentation volumes; every pipeline now clips within 1e-3 and refuses beyond.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import medfm
from medfm.adapters.segmentation import SegmentationModel
from medfm.pipelines.classification import image_to_tensor, volume_to_tensor
from medfm.pipelines.inputs import PipelineInputError
from medfm.pipelines.seg_inputs import check_unit_volume, read_input
from medfm.pipelines.segmentation import ImageSegmentationPipeline, SegmentationInputError
from medfm.pipelines.vqa import vqa_image_tensor

RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
RGB = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
GRAY[0, 0], GRAY[0, 1] = 0, 255  # both ends of the range
TO_TENSOR = [image_to_tensor, vqa_image_tensor]
Q = "is there a mass ?"


@pytest.fixture(scope="module")
def seg():
    torch.manual_seed(0)
    return ImageSegmentationPipeline(SegmentationModel(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), 2))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("to_tensor", TO_TENSOR, ids=["classification", "vqa"])
def test_unit_floats_give_bit_for_bit_what_the_uint8_image_gives(to_tensor, in_chans, dtype):
    for u in (GRAY, GRAY[..., None], RGB):
        want = to_tensor(u, in_chans, 28)
        assert torch.equal(to_tensor((u / 255.0).astype(dtype), in_chans, 28), want)


def test_the_pipelines_answer_a_float_image_as_its_uint8_original(pneumonia_pipeline, vqa_model):
    assert pneumonia_pipeline(GRAY / 255.0) == pneumonia_pipeline(GRAY)
    assert pneumonia_pipeline([RGB / 255.0, GRAY.astype(np.float32) / 255]) == pneumonia_pipeline([RGB, GRAY])
    vqa = medfm.pipeline("visual-question-answering", model=vqa_model, top_k=4)
    assert vqa(GRAY / 255.0, Q) == vqa(GRAY, Q)
    assert vqa(np.stack([GRAY, GRAY[::-1]]) / 255.0, [Q, Q]) == vqa([GRAY, GRAY[::-1].copy()], [Q, Q])


@pytest.mark.parametrize("to_tensor", TO_TENSOR, ids=["classification", "vqa"])
def test_continuous_floats_are_rounded_to_the_nearest_8_bit_level(to_tensor):
    x = RNG.random((30, 40))
    x[0, 0], x[0, 1], x[0, 2] = 0.0, 1.0, 0.5 / 255  # a half step rounds to even (0), as np.rint does
    assert torch.equal(to_tensor(x, 1, 28), to_tensor(np.rint(x * 255).astype(np.uint8), 1, 28))
    assert not torch.equal(to_tensor(x, 1, 28), to_tensor(np.floor(x * 255).astype(np.uint8), 1, 28))


@pytest.mark.parametrize("to_tensor", TO_TENSOR, ids=["classification", "vqa"])
def test_floats_outside_the_unit_range_are_refused_as_by_segmentation(to_tensor, seg):
    bad = GRAY / 255.0
    bad[3, 4] = np.nan
    cases = [(GRAY.astype(np.float32), r"^float images must be in \[0, 1\], got values in \[0, 255\] \(divide 0-255 "
                                       r"data by 255, or pass it as uint8\)$"),
             (GRAY / 255.0 - 0.1, r"^float images must be in \[0, 1\], got values in \[-0\.1, 0\.9\]"),
             (bad, r"^image has 1 NaN/inf pixel value\(s\)$")]
    for arr, message in cases:
        with pytest.raises(PipelineInputError, match=message):
            to_tensor(arr, 1, 28)
        with pytest.raises(SegmentationInputError, match=message):
            seg(arr)  # the same check (check_unit_floats) and words in every 2D pipeline


#: one float input per pipeline path that takes floats in [0, 1]: (name, reader, unit-range input, error, message)
UNIT = (0.002 + 0.996 * RNG.random((16, 16, 16))).astype(np.float32)  # inside (0, 1), away from both ends
UNIT_INPUTS = [
    ("2D classification", lambda x: image_to_tensor(x, 1, 28), UNIT[0], PipelineInputError, r"^float images must"),
    ("VQA", lambda x: vqa_image_tensor(x, 1, 28), UNIT[0], PipelineInputError, r"^float images must"),
    ("2D segmentation", lambda x: read_input(x, 1, False)["array"], UNIT[0], SegmentationInputError,
     r"^float images must"),
    ("3D classification", lambda x: volume_to_tensor(x, 1, 16), UNIT, PipelineInputError,
     r"^volume float values must"),
    ("unit segmentation volume", check_unit_volume, UNIT, SegmentationInputError,
     r"^this model takes volumes already scaled to \[0, 1\] \(inference\.intensity 'unit'\)"),
]


@pytest.mark.parametrize("name, read, unit, error, refused", UNIT_INPUTS, ids=[c[0] for c in UNIT_INPUTS])
def test_float_rounding_just_past_0_or_1_is_clipped_by_every_pipeline_and_more_is_refused(name, read, unit, error,
                                                                                             refused):
    """A float image normalised as ``x / x.max()`` can hold 1.0000001 (float32 rounding). The 2D
    pipelines and the 3D classifier refused it ("float images must be in [0, 1], got values in
    [0.00274616, 1]": no tolerance, and a message showing 1), while volumes of "unit" segmentation
    models allowed 1e-3 and clipped. One rule now
    (:func:`medfm.pipelines.inputs.clip_unit_range`): within the encoders' 1e-3 outside
    [0, 1], clipped (the result is that of the clipped input); beyond, refused as before, the
    range shown to 7 digits."""
    want = read(unit)
    for low, high in ((0.25, np.float32(1.0000001)), (-5e-4, 1 + 5e-4), (-9e-4, 1 + 9e-4)):
        x = unit.copy()
        x.flat[:2] = low, high  # one pixel / voxel a hair below 0, one a hair above 1
        clipped = np.clip(x, 0, 1)
        got = read(x)
        assert type(got) is type(want) and got.dtype == want.dtype
        assert np.array_equal(np.asarray(got), np.asarray(read(clipped))), name
    for low, high, shown in ((0.5, 1 + 2e-3, r"\[0\.\d+, 1\.002\]"), (-2e-3, 0.5, r"\[-0\.002, 0\.\d+\]")):
        x = unit.copy()
        x.flat[:2] = low, high
        with pytest.raises(error, match=refused + rf".*got values in {shown}"):
            read(x)


def test_the_pipelines_answer_an_input_a_hair_past_the_range_as_the_clipped_one(pneumonia_pipeline, seg):
    """End to end (3D and 2D classification, 2D segmentation): the clipped input is used, not only accepted."""
    from medfm.adapters.classification import ImageClassifier

    x = UNIT.copy()
    x[0, 0, 0] = np.float32(1.0000001)
    torch.manual_seed(0)
    clf3d = medfm.pipeline("image-classification", model=ImageClassifier(
        medfm.create_encoder("resnet3d_test", in_chans=1, img_size=16), 2, "binary-class", ["a", "b"]))
    assert clf3d(x) == clf3d(np.clip(x, 0, 1))
    image = x[0] * 0.999 + 5e-4  # in (0, 1); then one pixel past each end
    image.flat[:2] = -5e-4, 1 + 5e-4
    assert np.array_equal(seg(image)["mask"], seg(np.clip(image, 0, 1))["mask"])
    assert pneumonia_pipeline(image) == pneumonia_pipeline(np.clip(image, 0, 1))


def test_float_arrays_of_the_wrong_layout_get_the_shape_hint_not_a_dtype_error():
    for to_tensor in TO_TENSOR:
        with pytest.raises(PipelineInputError, match=r"got shape \(1, 30, 40\) \(channels first\? pass "
                                                     r"array\.transpose\(1, 2, 0\)"):
            to_tensor(GRAY[None] / 255.0, 1, 28)
        with pytest.raises(PipelineInputError, match=r"^empty image of shape \(0, 40\)$"):
            to_tensor(np.zeros((0, 40)), 1, 28)


def test_gray_alpha_rgba_and_channels_first_arrays_say_what_they_probably_are(pneumonia_pipeline, seg):
    la = np.zeros((30, 40, 2), np.uint8)  # was (classification): "... (a 3D volume needs a 3D classifier ...)"
    with pytest.raises(PipelineInputError, match=r"^expected an \(H, W\) or \(H, W, 1\|3\) image, got shape "
                                                 r"\(30, 40, 2\) "
                                                 r"\(gray \+ alpha\? keep the gray channel, array\[\.\.\., 0\]\)$"):
        pneumonia_pipeline(la)
    with pytest.raises(PipelineInputError, match=r"\(RGBA\? drop the alpha channel, array\[\.\.\., :3\]\)$"):
        vqa_image_tensor(np.zeros((30, 40, 4)), 1, 28)
    for arr, hint in ((np.zeros((30, 40, 4), np.uint8), r"\(RGBA\? drop the alpha channel"),
                      (np.stack([GRAY] * 3), r"\(channels first\? pass array\.transpose\(1, 2, 0\)"),
                      (GRAY[None] / 255.0, r"\(channels first\? pass array\.transpose\(1, 2, 0\)")):
        with pytest.raises(SegmentationInputError, match=rf"^expected an \(H, W\) or \(H, W, 1\|3\) image, got shape "
                                                         rf"\({arr.shape[0]}, .* {hint}"):
            seg(arr)  # was: no hint
    pneumonia_pipeline(RGB[..., :3])  # what the hints say to pass is taken
    seg(np.stack([GRAY] * 3).transpose(1, 2, 0))


def test_torch_tensors_are_refused_with_how_to_pass_them(pneumonia_pipeline, seg):
    chw = torch.rand(3, 30, 40)
    to_array = (r"got Tensor \(a torch tensor: pass tensor\.detach\(\)\.cpu\(\)\.numpy\(\), channels last: a "
                r"\(C, H, W\) tensor needs \.permute\(1, 2, 0\) first\)$")
    with pytest.raises(PipelineInputError, match=r"^expected an image file path, a PIL image or a numpy array \(uint8, "
                                                 r"or float in \[0, 1\]\), " + to_array):
        pneumonia_pipeline(chw)
    with pytest.raises(PipelineInputError, match=to_array):
        vqa_image_tensor(chw, 1, 28)
    with pytest.raises(SegmentationInputError, match=to_array):
        seg(chw)
    x = chw.requires_grad_()  # what the message says works, also for a tensor that requires grad
    assert pneumonia_pipeline(x.detach().cpu().numpy().transpose(1, 2, 0)) == \
        pneumonia_pipeline(np.rint(chw.detach().numpy().transpose(1, 2, 0) * 255).astype(np.uint8))
