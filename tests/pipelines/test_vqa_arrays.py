"""The VQA pipeline takes image arrays in the same forms as the 2D image-classification pipeline,
through the same check (:func:`medfm.pipelines.classification.uint8_image_array`).

Before, :func:`medfm.pipelines.vqa.vqa_image_tensor` had its own copy of the array check: it
refused an ``(H, W, 1)`` uint8 array that the classification pipeline takes, and named an
unsupported dtype differently ("arrays must be uint8 (H, W) or (H, W, 3), got uint16 (30, 40)").
Neither pipeline takes 16-bit or float arrays (the 2D classification pipeline never did: its
floats-in-[0, 1] check, ``check_unit_floats``, is for 3D volumes); both now say how to pass them.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medfm.pipelines.classification import PipelineInputError, image_to_tensor
from medfm.pipelines.vqa import vqa_image_tensor

RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, (30, 40), dtype=np.uint8)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_a_single_channel_last_axis_is_taken_like_the_plain_gray_array(in_chans):
    for to_tensor in (image_to_tensor, vqa_image_tensor):  # was (VQA): "arrays must be uint8 (H, W) or (H, W, 3)"
        assert torch.equal(to_tensor(GRAY[..., None], in_chans, 28), to_tensor(GRAY, in_chans, 28))


@pytest.mark.parametrize("array", [
    RNG.integers(0, 65535, (30, 40), dtype=np.uint16),
    RNG.random((30, 40), dtype=np.float32),
    RNG.random((30, 40, 3)),
    RNG.integers(0, 255, (30, 40), dtype=np.int64),
], ids=["uint16", "float32", "float64-rgb", "int64"])
def test_an_unsupported_dtype_is_one_line_naming_it_as_in_classification(array):
    messages = []
    for to_tensor in (image_to_tensor, vqa_image_tensor):
        with pytest.raises(PipelineInputError) as err:
            to_tensor(array, 1, 28)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "\n" not in messages[1]
    assert messages[1].startswith(f"arrays must be uint8 (as stored in MedMNIST), got {array.dtype}; ")


def test_the_suggested_conversion_of_unit_floats_is_taken():
    floats = GRAY.astype(np.float32) / 255.0
    x = vqa_image_tensor(np.round(floats * 255).astype(np.uint8), 1, 28)
    assert torch.equal(x, vqa_image_tensor(GRAY, 1, 28))


@pytest.mark.parametrize("shape", [(30, 40, 4), (30, 40, 2), (2, 30, 40, 3)])
def test_other_shapes_are_refused_by_the_same_check(shape):
    for to_tensor in (image_to_tensor, vqa_image_tensor):
        with pytest.raises(PipelineInputError, match="expected an \\(H, W\\) or \\(H, W, 3\\) array|takes 2D images"):
            to_tensor(np.zeros(shape, np.uint8), 1, 28)
