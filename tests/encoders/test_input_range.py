"""Encoders take images in [0, 1] and normalise them themselves: values outside [0, 1] are refused.

Before this check, ImageNet-normalised tensors (about [-2.1, 2.6]) or float images on a 0-255
scale were normalised a second time and gave wrong features without any error.
"""
from __future__ import annotations

import re

import pytest
import torch

import medfm
from medfm.encoders.base import INPUT_RANGE_TOLERANCE, EncoderInputError
from medfm.registry import ENCODERS

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _images(b=2, c=3, side=28, dims=2, seed=0):
    """Random images in [0, 1] that hold an exact 0 and an exact 1."""
    x = torch.rand(b, c, *([side] * dims), generator=torch.Generator().manual_seed(seed))
    x.view(b, c, -1)[:, :, 0] = 0.0
    x.view(b, c, -1)[:, :, 1] = 1.0
    return x


def _range_text(x):
    return re.escape(f"got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]")


@pytest.fixture(scope="module")
def enc():
    torch.manual_seed(0)
    return medfm.create_encoder("resnet_test", in_chans=3, img_size=28).eval()


def test_imagenet_normalised_input_is_refused_naming_the_range_and_cause(enc):
    x = (_images() - IMAGENET_MEAN) / IMAGENET_STD  # [-2.118, 2.640]
    with pytest.raises(EncoderInputError, match=_range_text(x) + r": they look already normalised .*unnormalised "
                                                               r"images in \[0, 1\]$") as err:
        enc(x)
    assert "got values in [-2.118, 2.64]" in str(err.value) and "\n" not in str(err.value)


def test_float_0_255_input_is_refused_with_divide_by_255(enc):
    x = _images() * 255.0
    with pytest.raises(EncoderInputError, match=re.escape("got values in [0, 255]") + ": they look like 0-255 pixel "
                                                "values; divide them by 255"):
        enc(x)


def test_slightly_above_one_is_refused_with_rescale_hint(enc):
    with pytest.raises(EncoderInputError, match=re.escape("got values in [0, 1.2]: rescale them to [0, 1]")):
        enc(_images() * 1.2)


def test_exact_0_and_1_and_values_within_tolerance_are_accepted(enc):
    x = _images()
    with torch.no_grad():
        ref = enc(x)
        assert ref.shape == (2, enc.num_features) and torch.isfinite(ref).all()
        half = INPUT_RANGE_TOLERANCE / 2
        enc(x + half)   # max 1 + 5e-4
        enc(x - half)   # min -5e-4
        enc(torch.zeros(1, 3, 28, 28))
        enc(torch.ones(1, 3, 28, 28))


@pytest.mark.parametrize("shift", [2 * INPUT_RANGE_TOLERANCE, -2 * INPUT_RANGE_TOLERANCE])
def test_values_just_beyond_the_tolerance_are_refused(enc, shift):
    with pytest.raises(EncoderInputError, match="expected images in \\[0, 1\\]"):
        enc(_images() + shift)


def test_half_precision_inputs_get_one_unit_of_their_own_precision(enc):
    """bfloat16 cannot hold 1 + 1e-3: its next value above 1.0 is 1 + 2**-7; one such step is allowed."""
    with torch.no_grad():
        enc(_images().half())
        enc(_images().bfloat16())
        enc(torch.full((1, 3, 28, 28), 1 + 2 ** -7, dtype=torch.bfloat16))
        with pytest.raises(EncoderInputError, match=re.escape("got values in [1.016, 1.016]")):
            enc(torch.full((1, 3, 28, 28), 1 + 2 ** -6, dtype=torch.bfloat16))
        with pytest.raises(EncoderInputError, match="divide them by 255"):
            enc((_images() * 255).bfloat16())


def test_check_runs_under_bf16_autocast_for_2d_and_3d():
    torch.manual_seed(0)
    e2 = medfm.create_encoder("resnet_test", in_chans=1, img_size=16).eval()
    e3 = medfm.create_encoder("resnet3d_test", in_chans=1, img_size=16).eval()
    for e, dims in ((e2, 2), (e3, 3)):
        x = _images(c=1, side=16, dims=dims)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            assert e(x).shape == (2, e.num_features)
            assert e(x.bfloat16()).shape == (2, e.num_features)
            with pytest.raises(EncoderInputError, match=re.escape("got values in [0, 255]")):
                e(x * 255)
            with pytest.raises(EncoderInputError, match="already normalised"):
                e.forward_intermediates((x - 0.5) / 0.25)


def test_nan_is_still_reported_as_nan_not_as_a_range(enc):
    x = _images()
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(EncoderInputError, match="^resnet_test: input contains NaN or inf values$"):
        enc(x)
    x[0, 0, 3, 3] = float("inf")
    with pytest.raises(EncoderInputError, match="^resnet_test: input contains NaN or inf values$"):
        enc(x)


def test_input_range_none_turns_only_the_range_check_off():
    e = medfm.create_encoder("resnet_test", in_chans=1, img_size=16).eval()
    z = (_images(c=1, side=16) - 0.5) / 0.1
    with pytest.raises(EncoderInputError, match="already normalised"):
        e(z)
    e.input_range = None
    with torch.no_grad():
        assert torch.isfinite(e(z)).all()
    with pytest.raises(EncoderInputError, match="NaN or inf"):
        e(torch.full((1, 1, 16, 16), float("nan")))
    assert medfm.create_encoder("resnet_test", in_chans=1, img_size=16).input_range == (0.0, 1.0)  # per instance


ALL = ENCODERS.names()


def test_the_registry_is_what_this_file_covers():
    assert {"resnet_test", "vit_test", "convnext_test", "kan_resnet_test", "medvit_kan_test", "vmamba_test",
            "groupmamba_test", "resnet3d_test"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_every_registered_encoder_refuses_out_of_range_inputs_on_every_entry_point(name):
    dims = ENCODERS.tags(name).get("dims", 2)
    side = 16 if dims == 3 else 32
    torch.manual_seed(0)
    e = medfm.create_encoder(name, in_chans=1, img_size=side).eval()
    x = _images(b=1, c=1, side=side, dims=dims)
    with torch.no_grad():
        assert e(x).shape == (1, e.num_features)  # in range: accepted
        for entry in (e.forward, e.forward_features, e.forward_intermediates):
            with pytest.raises(EncoderInputError, match=re.escape("got values in [0, 255]")):
                entry(x * 255)
            with pytest.raises(EncoderInputError, match="already normalised"):
                entry((x - 0.5) / 0.25)


def test_objectives_refuse_a_0_255_raw_batch_before_their_views_clip_it():
    """The views clamp to [0, 1]: a 0-255 batch would become an all-white one without this check."""
    from medfm.registry import OBJECTIVES

    obj = OBJECTIVES.build("simclr", encoder=medfm.create_encoder("resnet_test", in_chans=1, img_size=16),
                           proj_dim=8, hidden_dim=16)
    with pytest.raises(EncoderInputError, match="divide them by 255"):
        obj({"image": _images(b=4, c=1, side=16) * 255}, torch.Generator().manual_seed(0))


def test_segmentation_models_with_channel_zscore_accept_z_scored_inputs_and_plain_ones_refuse_them():
    """``normalize: channel_zscore`` models (shipped CHASE_DB1 recipes) feed z-scores on purpose."""
    from medfm.adapters.segmentation import SegmentationModel
    from medfm.data.segmentation import channel_zscore

    z = channel_zscore(_images(b=1, c=3, side=32))
    torch.manual_seed(0)
    plain = SegmentationModel(medfm.create_encoder("resnet_test", in_chans=3, img_size=32), 2).eval()
    zmodel = SegmentationModel(medfm.create_encoder("resnet_test", in_chans=3, img_size=32), 2,
                               inference={"normalize": "channel_zscore"}).eval()
    with torch.no_grad():
        with pytest.raises(EncoderInputError, match="already normalised"):
            plain(z)
        assert zmodel(z).shape == (1, 2, 32, 32)
    assert plain.encoder.input_range == (0.0, 1.0) and zmodel.encoder.input_range is None


def test_text_segmenter_with_a_z_scored_target_accepts_z_scored_inputs():
    from medfm.adapters.text_seg import PromptedSegmenter, TextConditionedSegmenter
    from medfm.data.segmentation import channel_zscore

    targets = [{"name": "vessel", "modality": "fundus", "target": "vessels"},
               {"name": "lesion", "modality": "MRI", "target": "lesion"}]
    z = channel_zscore(_images(b=1, c=3, side=32))
    torch.manual_seed(0)
    plain = TextConditionedSegmenter(medfm.create_encoder("resnet_test", in_chans=3, img_size=32), targets, 8).eval()
    with torch.no_grad(), pytest.raises(EncoderInputError, match="already normalised"):
        PromptedSegmenter(plain, "vessel")(z)
    model = TextConditionedSegmenter(medfm.create_encoder("resnet_test", in_chans=3, img_size=32), targets, 8,
                                     target_inference={"vessel": {"normalize": "channel_zscore"}}).eval()
    with torch.no_grad():
        assert PromptedSegmenter(model, "vessel")(z).shape == (1, 2, 32, 32)


def test_check_false_skips_only_the_check_for_callers_that_ran_it():
    """``check=False`` (a fuser's select checked the rows, named by modality) gives the same
    outputs on valid images and does not refuse what the default call refuses."""
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28).eval()
    x = _images(c=1)
    with torch.no_grad():
        assert torch.equal(enc(x, check=False), enc(x))
        assert torch.equal(enc.forward_features(x, check=False), enc.forward_features(x))
        assert all(torch.equal(a, b) for a, b in zip(enc.forward_intermediates(x, check=False),
                                                     enc.forward_intermediates(x)))
        with pytest.raises(EncoderInputError, match="0-255"):
            enc(x * 255)
        assert enc(x * 255, check=False).shape == (2, enc.num_features)
