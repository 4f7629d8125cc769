"""The VQA pipeline takes image arrays in the same forms as the 2D image-classification pipeline,
through the same check (:func:`medfm.pipelines.inputs.uint8_image_array`).

Before, :func:`medfm.pipelines.vqa.vqa_image_tensor` had its own copy of the array check: it
refused an ``(H, W, 1)`` uint8 array that the classification pipeline takes, and named an
unsupported dtype differently ("arrays must be uint8 (H, W) or (H, W, 3), got uint16 (30, 40)").
Both refused float arrays too ("arrays must be uint8 ..."), which the segmentation pipeline and the
3D classifier take; now floats in [0, 1] are taken, rounded to 8 bits, so that ``u / 255.0`` gives
bit for bit what the uint8 ``u`` gives (tests/pipelines/test_float_images.py). 16-bit, integer and
bool arrays are still refused, with one message for both pipelines saying what to do.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from medfm.pipelines.classification import image_to_tensor
from medfm.pipelines.inputs import PipelineInputError
from medfm.pipelines.vqa import vqa_image_tensor

RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, (30, 40), dtype=np.uint8)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_a_single_channel_last_axis_is_taken_like_the_plain_gray_array(in_chans):
    for to_tensor in (image_to_tensor, vqa_image_tensor):  # was (VQA): "arrays must be uint8 (H, W) or (H, W, 3)"
        assert torch.equal(to_tensor(GRAY[..., None], in_chans, 28), to_tensor(GRAY, in_chans, 28))


@pytest.mark.parametrize("array, hint", [
    (RNG.integers(0, 65535, (30, 40), dtype=np.uint16), r"; scale other data to \[0, 1\] first, e\.g\. "),
    (RNG.integers(0, 255, (30, 40), dtype=np.int64), r"; scale other data to \[0, 1\] first, e\.g\. "),
    (GRAY > 128, r"; a mask\? pass mask\.astype\(np\.uint8\) \* 255$"),
    (GRAY.astype(np.complex64), r"$"),
], ids=["uint16", "int64", "bool", "complex64"])
def test_an_unsupported_dtype_is_one_line_naming_it_as_in_classification(array, hint):
    messages = []
    for to_tensor in (image_to_tensor, vqa_image_tensor):
        with pytest.raises(PipelineInputError) as err:
            to_tensor(array, 1, 28)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "\n" not in messages[1]
    assert re.match(rf"image arrays must be uint8 or float in \[0, 1\], got {array.dtype}{hint}", messages[1])


def test_the_suggested_conversion_of_unit_floats_is_taken():
    floats = GRAY.astype(np.float32) / 255.0
    x = vqa_image_tensor(np.round(floats * 255).astype(np.uint8), 1, 28)
    assert torch.equal(x, vqa_image_tensor(GRAY, 1, 28))


@pytest.mark.parametrize("shape", [(30, 40, 4), (30, 40, 2), (2, 30, 40, 3)])
def test_other_shapes_are_refused_by_the_same_check(shape):
    for to_tensor in (image_to_tensor, vqa_image_tensor):
        with pytest.raises(PipelineInputError,
                           match="expected an \\(H, W\\) or \\(H, W, 1\\|3\\) image|takes 2D images"):
            to_tensor(np.zeros(shape, np.uint8), 1, 28)
