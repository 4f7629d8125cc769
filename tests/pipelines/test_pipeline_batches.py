"""Three things the pipelines did differently from what their inputs meant.

- The 2D segmentation pipeline took float images as given, while the classification and VQA
  pipelines round them to 8 bits: ``u / 255.0`` and the uint8 ``u`` gave different probabilities
  (float16 inputs, RGB for 1-channel models; continuous floats were never rounded). The 2D
  segmentation models were trained on uint8 / 255 images (CHASE_DB1, TCGA-LGG), so they now round
  too, through the classifier's helper (:func:`medfm.pipelines.inputs.uint8_image_array`).
- A bad input in a list was refused without saying which ("image has 1200 NaN/inf pixel value(s)");
  every pipeline now names it, "image at index 3 of 5: ..." (one helper,
  :func:`medfm.pipelines.inputs.each_input`).
- An ``(H, W, 3)`` array given to a 3D or 2.5D segmentation model was segmented as a volume of 3
  slices, while it is also medfm's RGB image form; it is now refused with how to pass either.
"""
from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
import torch

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.segmentation import SegmentationModel
from medfm.pipelines.inputs import PipelineInputError
from medfm.pipelines.seg_inputs import read_input
from medfm.pipelines.segmentation import (ImageSegmentationPipeline, SegmentationInputError, predict_labels,
                                          predict_probs)

RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
RGB = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
Q = "is there a mass ?"


def _seg_model(encoder="resnet_test", in_chans=1, **inference):
    """A seeded tiny segmenter whose output depends on the input (random head, zero bias)."""
    torch.manual_seed(0)
    model = SegmentationModel(medfm.create_encoder(encoder, in_chans=in_chans, img_size=16), 2,
                              decoder={"stem_channels": 4}, inference=inference).eval()
    with torch.no_grad():
        model.task_head.bias.zero_()
        model.task_head.weight.normal_()
    return model


# -- 1. float images in the 2D segmentation pipeline --------------------------------------------------
@pytest.mark.parametrize("in_chans", [1, 3])
def test_2d_segmentation_of_a_float_image_is_bit_for_bit_that_of_its_uint8_original(in_chans):
    """Was: float16 images and RGB images for 1-channel models gave other probabilities (up to 1e-5)."""
    model = _seg_model(in_chans=in_chans)
    pipe = ImageSegmentationPipeline(model)
    for u in (GRAY, GRAY[..., None], RGB):
        want = read_input(u, in_chans, False)["array"]
        probs, mask = predict_probs(model, want), pipe(u)["mask"]
        for dtype in (np.float16, np.float32, np.float64):
            f = (u / 255.0).astype(dtype)
            got = read_input(f, in_chans, False)["array"]
            assert got.dtype == np.float32 and np.array_equal(got, want), (u.shape, dtype)
            assert torch.equal(predict_probs(model, got), probs)
            assert np.array_equal(pipe(f)["mask"], mask)


def test_2d_segmentation_rounds_continuous_floats_to_8_bits_as_classification_does(pneumonia_pipeline):
    from medfm.pipelines.classification import image_to_tensor

    x = RNG.random((30, 40))
    x[0, 0], x[0, 1], x[0, 2] = 0.0, 1.0, 0.5 / 255  # a half step rounds to even (0), as np.rint does
    rounded = np.rint(x * 255).astype(np.uint8)
    model = _seg_model()
    got = read_input(x, 1, False)["array"]
    assert np.array_equal(got, read_input(rounded, 1, False)["array"])  # was: x itself, as float32
    assert torch.equal(predict_probs(model, got), predict_probs(model, rounded[None] / np.float32(255)))
    assert torch.equal(image_to_tensor(x, 1, 28), image_to_tensor(rounded, 1, 28))  # the classifier's rule


def test_2d_segmentation_of_an_rgb_array_for_a_1_channel_model_is_that_of_its_png(tmp_path):
    """Was: an RGB array was made grey in float (0.299/0.587/0.114 unrounded) while the same image as
    a file was read through PIL's 8-bit "L", as the classifier does for arrays too."""
    from PIL import Image

    path = tmp_path / "rgb.png"
    Image.fromarray(RGB).save(path)
    want = np.asarray(Image.fromarray(RGB).convert("L")).astype(np.float32)[None] / 255.0
    got_array, got_file = read_input(RGB, 1, False)["array"], read_input(str(path), 1, False)["array"]
    assert np.array_equal(got_array, want) and np.array_equal(got_file, want)


# -- 2. a bad input of a batch is named ---------------------------------------------------------------
def _nan_image():
    bad = GRAY / 255.0
    bad[3, 4] = np.nan
    return bad


#: (bad input, its message when given alone) for 2D pipelines: wrong shape, NaN, out of range
BAD_2D = [(np.zeros((30, 40, 4), np.uint8), r"expected an \(H, W\) or \(H, W, 1\|3\) image, got shape \(30, 40, 4\)"),
          (_nan_image(), r"image has 1 NaN/inf pixel value\(s\)"),
          (GRAY * 2.0, r"float images must be in \[0, 1\], got values in \[0, 510\]")]


def _check_named(one, batch, bad, alone, error, noun="image"):
    """``one(bad)`` refuses with ``alone`` (no index); ``batch()``, a list of 5 with ``bad`` at
    index 3, refuses with the same words after "<noun> at index 3 of 5: "."""
    with pytest.raises(error, match=f"^{alone}") as single:
        one(bad)
    with pytest.raises(error, match=rf"^{noun} at index 3 of 5: {alone}") as named:
        batch()
    assert str(named.value) == f"{noun} at index 3 of 5: {single.value}"


@pytest.mark.parametrize("bad, alone", BAD_2D, ids=["shape", "nan", "range"])
def test_2d_classification_names_the_bad_image_of_a_batch(pneumonia_pipeline, bad, alone):
    _check_named(pneumonia_pipeline, lambda: pneumonia_pipeline([GRAY, RGB, GRAY, bad, GRAY]), bad, alone,
                 PipelineInputError)
    with pytest.raises(PipelineInputError, match=rf"^image at index 0 of 1: {alone}"):
        pneumonia_pipeline([bad])  # a list of one is a batch too


@pytest.mark.parametrize("bad, alone", BAD_2D, ids=["shape", "nan", "range"])
def test_2d_segmentation_names_the_bad_image_of_a_batch(bad, alone):
    pipe = ImageSegmentationPipeline(_seg_model())
    _check_named(pipe, lambda: pipe([GRAY, RGB, GRAY, bad, GRAY]), bad, alone, SegmentationInputError)


@pytest.mark.parametrize("bad, alone", BAD_2D, ids=["shape", "nan", "range"])
def test_vqa_names_the_bad_image_of_a_batch(vqa_model, bad, alone):
    vqa = medfm.pipeline("visual-question-answering", model=vqa_model)
    _check_named(lambda x: vqa(x, Q), lambda: vqa([GRAY, RGB, GRAY, bad, GRAY], [Q] * 5), bad, alone,
                 PipelineInputError)


def test_volumetric_pipelines_name_the_bad_volume_of_a_batch():
    vol = RNG.random((16, 16, 16), dtype=np.float32)
    nan = vol.copy()
    nan[1, 2, 3] = np.nan
    torch.manual_seed(0)
    clf3d = medfm.pipeline("image-classification", model=ImageClassifier(
        medfm.create_encoder("resnet3d_test", in_chans=1, img_size=16), 2, "binary-class", ["a", "b"]))
    _check_named(clf3d, lambda: clf3d([vol, vol, vol, vol * 3, vol]), vol * 3,
                 r"volume float values must be in \[0, 1\]", PipelineInputError, noun="volume")
    seg3d = ImageSegmentationPipeline(_seg_model("resnet3d_test", intensity="percentile"))
    _check_named(seg3d, lambda: seg3d([vol, vol, vol, nan, vol]), nan, r"the volume has 1 NaN/inf voxel value\(s\)",
                 SegmentationInputError, noun="volume")


# -- 3. an (H, W, 3) array for a volumetric segmentation model ----------------------------------------
AMBIGUOUS = (r"got an array of shape \(30, 40, 3\): an RGB image \(H, W, 3\) or a volume of 3 slices along axis 2\?")


MOVED = (r", or as np\.moveaxis\(array, 2, 1\) \(the slices on the middle axis{}; the mask comes back in that axis "
         r"order\)")


@pytest.mark.parametrize("encoder, chans, inference, moved", [
    ("resnet_test", 3, {"context_slices": 1, "slice_axis": 0}, ""),  # (3, X, Y) is channels-first RGB: NIfTI only
    ("resnet_test", 3, {"context_slices": 1, "slice_axis": 1}, MOVED.format(", this model's slice axis")),
    ("resnet_test", 3, {"context_slices": 1, "slice_axis": 2}, ""),  # the last axis is the slice axis: NIfTI only
    ("resnet3d_test", 1, {}, MOVED.format("")),
])
def test_an_hw3_array_for_a_volumetric_model_is_refused_as_ambiguous(tmp_path, encoder, chans, inference, moved):
    """Was: segmented as 3 slices, an (H, W, 3) mask back, whether the array was an RGB image or not.
    The slices moved first, (3, H, W), were offered as the unambiguous form: that is a channels-first
    RGB image, now refused too (:func:`medfm.pipelines.inputs.rgb_like_axis`); the middle axis is offered."""
    model = _seg_model(encoder, chans, intensity="percentile", **inference)
    pipe = ImageSegmentationPipeline(model)
    refused = (rf"^{re.escape(pipe.takes)}; {AMBIGUOUS} Not guessed: pass a volume as a NIfTI file \(NIfTI files are "
               rf"always volumes\), nib\.save\(nib\.Nifti1Image\(array, affine\), 'volume\.nii\.gz'\){moved}; "
               r"a 2D image needs a 2D segmentation model$")
    for arr in (RGB, RGB / 255.0):
        with pytest.raises(SegmentationInputError, match=refused):
            pipe(arr)
        with pytest.raises(SegmentationInputError, match=r"^volume at index 1 of 2: .*" + AMBIGUOUS):
            pipe([RGB[..., :1].repeat(5, -1), arr])  # a (30, 40, 5) volume, then the ambiguous one
    # the unambiguous forms the message names are taken
    vol = RGB.astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "volume.nii.gz"))
    assert pipe(tmp_path / "volume.nii.gz")["mask"].shape == (30, 40, 3)
    with pytest.raises(SegmentationInputError, match=r"a channels-first RGB image \(3, H, W\) or a volume of 3 slices"):
        pipe(np.moveaxis(vol, -1, 0))  # was taken: the form this message used to offer
    if moved:
        moved_vol = np.moveaxis(vol, -1, 1)
        assert np.array_equal(pipe(moved_vol)["mask"], pipe({"image": moved_vol})["mask"])
        assert pipe(moved_vol)["mask"].shape == (30, 3, 40)


def test_a_2d_model_still_takes_an_rgb_array():
    pipe = ImageSegmentationPipeline(_seg_model(in_chans=3))
    assert np.array_equal(pipe(RGB)["mask"], predict_labels(pipe.model, RGB.transpose(2, 0, 1) / np.float32(255)))
