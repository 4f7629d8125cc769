"""timm stem arguments do what timm says at every image size (medfm.encoders.timm_encoders.TIMM_STEM_ARGS).

medfm's small-image stem (3x3 stride 1 at <= 32 px, stride 2 at <= 64 px) used to replace timm's stem
whatever the arguments said: a ConvNeXt ``patch_size`` did nothing to the stem at <= 64 px (and only
shifted timm's stage strides: ``patch_size=2`` at 28 px gave 14/7/3/1 maps from a stride-1 stem), and a
ResNet ``stem_type='deep'`` became one 3x3 conv. An explicit stem argument now keeps timm's stem, as an
explicit ViT ``patch_size`` replaces the automatic one; without one, the models are what they were.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from medfm.encoders import create_encoder


def _maps(enc, side):
    with torch.no_grad():
        return [tuple(m.shape[-2:]) for m in enc.eval().forward_intermediates(torch.rand(1, 1, side, side))]


@pytest.mark.parametrize("size, patch, kernel, maps", [
    (28, 1, 1, [(28, 28), (14, 14), (7, 7), (3, 3)]),  # was the 3x3 stride-1 stem (kernel 3)
    (64, 4, 4, [(16, 16), (8, 8), (4, 4), (2, 2)]),    # was the 2x2 stride-2 stem, maps 32/16/8/4
    (64, 2, 2, [(16, 16), (8, 8), (4, 4), (2, 2)]),    # timm: a patch-2 stem makes stage 1 downsample too
    (96, 4, 4, [(24, 24), (12, 12), (6, 6), (3, 3)]),  # > 64 px: timm's stem, as before
])
def test_convnext_patch_size_is_timms_patch_stem_at_every_size(size, patch, kernel, maps):
    torch.manual_seed(0)
    enc = create_encoder("convnext_test", in_chans=1, img_size=size, patch_size=patch)
    stem = enc.model.stem[0]
    assert (stem.kernel_size, stem.stride) == ((kernel, kernel), (kernel, kernel))
    assert _maps(enc, size) == maps


@pytest.mark.parametrize("size, kernel, stride, maps, min_side", [
    (28, 3, 1, [(28, 28), (14, 14), (7, 7), (3, 3)], 8),
    (64, 2, 2, [(32, 32), (16, 16), (8, 8), (4, 4)], 16),
    (224, 4, 4, [(56, 56), (28, 28), (14, 14), (7, 7)], 32),
])
def test_convnext_default_stems_are_unchanged(size, kernel, stride, maps, min_side):
    torch.manual_seed(0)
    enc = create_encoder("convnext_test", in_chans=1, img_size=size)
    stem = enc.model.stem[0]
    assert (stem.kernel_size, stem.stride) == ((kernel, kernel), (stride, stride))
    assert _maps(enc, size) == maps
    assert enc.min_input_size == min_side  # the product of the unpadded stem and downsampling strides


def test_resnet_stem_type_keeps_timms_deep_stem_at_small_sizes():
    torch.manual_seed(0)
    enc = create_encoder("resnet_test", in_chans=1, img_size=28, stem_type="deep")
    assert isinstance(enc.model.conv1, nn.Sequential)  # was replaced by one 3x3 stride-1 conv
    assert not isinstance(enc.model.maxpool, nn.Identity)
    plain = create_encoder("resnet_test", in_chans=1, img_size=28)  # no stem argument: the small-image stem
    assert isinstance(plain.model.conv1, nn.Conv2d) and plain.model.conv1.kernel_size == (3, 3)
    assert plain.model.conv1.stride == (1, 1) and isinstance(plain.model.maxpool, nn.Identity)
