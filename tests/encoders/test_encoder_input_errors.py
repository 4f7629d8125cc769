"""Forward-time input errors of every encoder: one line that starts with the encoder's name, says what it
takes (``float (B, C, H, W) images in [0, 1] with C = 1 and H, W >= 8``) and what it got, with the likely
fix; never a torch traceback (the encoder bad-input audit). The checks live in one place,
:meth:`medfm.encoders.base.Encoder.check_input`, so the registry's ``*_test`` variants (every family, 2D
and 3D) cover them; the table says what each case gave before.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import medfm
from medfm.encoders import EncoderInputError
from medfm.registry import ENCODERS

TEST_ENCODERS = medfm.list_encoders(test=True)
VOLUME_ENCODERS = ", ".join(n for n in medfm.list_encoders(dims=3) if not ENCODERS.tags(n).get("test"))


def _dims(name):
    return ENCODERS.tags(name).get("dims", 2)


def _side(name):
    return 28 if _dims(name) == 2 else 16


@pytest.fixture(scope="module")
def encoders():
    torch.manual_seed(0)
    return {n: medfm.create_encoder(n, in_chans=1, img_size=_side(n)).eval() for n in TEST_ENCODERS}


def _spec(enc):
    if enc.spatial_dims == 3:
        return "float (B, C, D, H, W) volumes in [0, 1] with C = 1 and D, H, W >= 8"
    sides = f"H = W = {enc.img_size}" if enc.fixed_size else "H, W >= 8"
    return f"float (B, C, H, W) images in [0, 1] with C = 1 and {sides}"


# (case, input maker (encoder name, spatial sides) -> input, what follows "got " (a regex); 2D/3D forms)
CASES = [
    # was "expected a torch.Tensor of shape (B, C, H, W), got ndarray": how to convert it was not said
    ("numpy_channels_last", lambda n, sp: np.random.rand(2, *sp, 1).astype(np.float32),
     {2: r"a numpy\.ndarray of shape \(2, 28, 28, 1\), not a torch\.Tensor: convert it with "
         r"torch\.from_numpy\(x\)\.permute\(0, 3, 1, 2\) \(it looks channels-last\)",
      3: r"a numpy\.ndarray of shape \(2, 16, 16, 16, 1\), not a torch\.Tensor: convert it with "
         r"torch\.from_numpy\(x\)\.permute\(0, 4, 1, 2, 3\) \(it looks channels-last\)"}),
    ("numpy_uint8", lambda n, sp: np.zeros((2, 1, *sp), np.uint8),
     {d: r"a numpy\.ndarray of shape .*: convert it with torch\.from_numpy\(x\)\.float\(\) / 255" for d in (2, 3)}),
    ("list", lambda n, sp: [torch.rand(1, *sp)] * 2,  # was "... got list"
     {d: r"a list of 2 items, not a torch\.Tensor: stack the images with torch\.stack\(x\)" for d in (2, 3)}),
    # was "encoder expects 1 input channel(s), got 28 (shape (2, 28, 28, 1))"
    ("channels_last_tensor", lambda n, sp: torch.rand(2, *sp, 1),
     {2: r"28 input channels \(shape \(2, 28, 28, 1\)\): channels last\? use x\.permute\(0, 3, 1, 2\)",
      3: r"16 input channels \(shape \(2, 16, 16, 16, 1\)\): channels last\? use x\.permute\(0, 4, 1, 2, 3\)"}),
    ("rgb_into_grey", lambda n, sp: torch.rand(2, 3, *sp),
     {d: r"3 input channels \(shape .*\): convert the images to 1 channel\(s\), or create the encoder with "
         r"in_chans=3" for d in (2, 3)}),
    # was "expected a (B, C, H, W) tensor, got shape (1, 28, 28) (3 dims)"
    ("no_batch_axis", lambda n, sp: torch.rand(1, *sp),
     {2: r"shape \(1, 28, 28\) \(3 dims\): a single image\? add the batch axis with x\.unsqueeze\(0\)",
      3: r"shape \(1, 16, 16, 16\) \(4 dims\): a single volume\? add the batch axis with x\.unsqueeze\(0\)"}),
    # a volume into a 2D encoder and 2D images into a 3D one: was the bare rank message
    ("other_rank", lambda n, sp: torch.rand(2, 1, *([sp[0]] * (5 - len(sp)))),
     {2: r"shape \(2, 1, 28, 28, 28\) \(5 dims\): volumes \(B, C, D, H, W\)\? this is a 2D encoder: use a 3D one "
         rf"\({re.escape(VOLUME_ENCODERS)}\), or pass 2D slices",
      3: r"shape \(2, 1, 16, 16\) \(4 dims\): 2D images \(B, C, H, W\)\? this is a 3D \(volume\) encoder: use a "
         r"2D encoder, or pass volumes"}),
    # was "expected float inputs in [0, 1], got dtype torch.uint8"
    ("uint8", lambda n, sp: torch.zeros(2, 1, *sp, dtype=torch.uint8),
     {d: r"non-float inputs \(dtype torch\.uint8\): divide them by 255 \(x\.float\(\) / 255\)" for d in (2, 3)}),
    ("int16", lambda n, sp: torch.zeros(2, 1, *sp, dtype=torch.int16),
     {d: r"non-float inputs \(dtype torch\.int16\): convert them to float and rescale them to \[0, 1\] \(e\.g\. "
         r"16-bit images: x\.float\(\) / 65535\)" for d in (2, 3)}),
    # was "inputs must be at least 8 pixels per side, got 7x7" (fixed size: "encoder was built for 28x28 ...")
    ("too_small", lambda n, sp: torch.rand(2, 1, *([7] * len(sp))),
     {2: r"7x7 inputs(: resize them to at least 8 pixels per side| \(it was built for 28x28\): resize the inputs "
         r"or create the encoder with img_size=7)",
      3: r"7x7x7 inputs: resize them to at least 8 voxels per side"}),
]


@pytest.mark.parametrize("case, make, got", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("name", TEST_ENCODERS)
def test_bad_input_is_one_line_naming_the_encoder_what_it_takes_and_the_fix(encoders, name, case, make, got):
    enc = encoders[name]
    x = make(name, (_side(name),) * _dims(name))
    with pytest.raises(EncoderInputError) as info:
        enc(x)
    message = str(info.value)
    assert "\n" not in message
    assert re.fullmatch(re.escape(f"{name} takes {_spec(enc)}; got ") + got[_dims(name)], message), message
    if not isinstance(x, (list, np.ndarray)):  # forward_intermediates (dense heads) goes through the same check
        with pytest.raises(EncoderInputError, match=f"^{re.escape(name)} takes "):
            enc.forward_intermediates(x)


@pytest.mark.parametrize("name", TEST_ENCODERS)
def test_nan_and_range_errors_name_the_encoder(encoders, name):
    x = torch.rand(2, 1, *(_side(name),) * _dims(name))
    x.view(-1)[3] = float("nan")
    with pytest.raises(EncoderInputError, match=f"^{re.escape(name)}: input contains NaN or inf values$"):
        encoders[name](x)
    with pytest.raises(EncoderInputError, match=f"^{re.escape(name)}: expected images in \\[0, 1\\].*divide them by "
                                                "255"):
        encoders[name](torch.rand(2, 1, *(_side(name),) * _dims(name)) * 255)


@pytest.mark.parametrize("img_size, side, minimum", [(64, 15, 16), (64, 8, 16), (224, 31, 32)])
def test_convnext_input_too_small_for_its_stages_is_refused_naming_the_minimum(img_size, side, minimum):
    # was RuntimeError from torch's conv: "Calculated padded input size per channel: (1 x 1). Kernel size:
    # (2 x 2). Kernel size can't be greater than actual input size" (the unpadded 2x2 stride-2 downsampling
    # ran out of pixels)
    torch.manual_seed(0)
    enc = medfm.create_encoder("convnext_test", in_chans=1, img_size=img_size).eval()
    with pytest.raises(EncoderInputError) as info:
        enc(torch.rand(2, 1, side, side))
    assert str(info.value) == (f"convnext_test takes float (B, C, H, W) images in [0, 1] with C = 1 and H, W >= "
                               f"{minimum}; got {side}x{side} inputs: resize them to at least {minimum} pixels per "
                               "side")
    with torch.no_grad():  # the smallest accepted side runs
        assert enc(torch.rand(2, 1, minimum, minimum)).shape == (2, enc.num_features)


def test_an_encoder_built_directly_is_named_by_its_class():
    from medfm.encoders.cnn3d import ResNet3D

    enc = ResNet3D(layers=(1, 1, 1, 1), base_width=4, in_chans=1, img_size=16)
    with pytest.raises(EncoderInputError, match=r"^ResNet3D takes float \(B, C, D, H, W\) volumes"):
        enc(torch.rand(2, 1, 16, 16))
