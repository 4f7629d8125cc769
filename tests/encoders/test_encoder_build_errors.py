"""Bad constructor overrides are refused when the encoder is built, in one line naming the encoder,
the argument, the value and what is allowed (:mod:`medfm.encoders.checks`), never later in forward
and never as a torch/timm traceback (the encoder build audit).

Each row of the tables is ``(encoder, overrides, expected message)``; the comment says what the
override did before: built and failed in forward, built and ran wrong, or failed deep in torch/timm.
"""
from __future__ import annotations

import re

import pytest
import torch

from medfm.encoders import EncoderArgumentError, create_encoder
from medfm.registry import UnknownArgumentError

S = 28

# (encoder, overrides, message after "<encoder>: "); the whole message is matched
BAD_OVERRIDES = [
    # -- timm ResNet / KAN ResNet -----------------------------------------------------------------
    ("resnet_test", {"layers": [1, 1]},  # built; forward: 'ResNet' object has no attribute 'layer3'
     "layers must be 4 integers >= 1 (blocks per stage), got [1, 1]"),
    ("resnet18", {"layers": [1, 1]}, "layers must be 4 integers >= 1 (blocks per stage), got [1, 1]"),
    ("kan_resnet_test", {"layers": [1, 1, 1, 0]},  # ran: 48-d embeddings, num_features 96
     "layers must be 4 integers >= 1 (blocks per stage), got [1, 1, 1, 0]"),
    ("resnet18", {"layers": [1, -1, 1, 1]},  # ran with an empty stage 2
     "layers must be 4 integers >= 1 (blocks per stage), got [1, -1, 1, 1]"),
    ("resnet_test", {"layers": [1.5, 1, 1, 1]},  # TypeError inside timm
     "layers must be 4 integers >= 1 (blocks per stage), got [1.5, 1, 1, 1]"),
    ("resnet_test", {"channels": [32, 48, 0, 96]},  # built; forward: conv weight of size [0, 48, 1, 1]
     "channels must be 4 integers >= 1 (stage widths), got [32, 48, 0, 96]"),
    ("resnet_test", {"stem_width": 0}, "stem_width must be an integer >= 1, got 0"),  # built; failed in forward
    ("resnet50", {"base_width": 0}, "base_width must be an integer >= 1, got 0"),  # built; failed in forward
    ("resnet18", {"stem_width": 16},  # built a 64-wide stem: the 2.5D hippocampus recipe's stem_width did nothing
     "stem_width=16 has no effect on timm 'resnet18': its stem is one 64-channel conv; stem_width sets a deep "
     "stem's width (stem_type 'deep' or 'deep_tiered')"),
    # timm's rates (TIMM_RATE_ARGS): a plain ValueError without the encoder name, True/False taken as numbers
    ("resnet_test", {"drop_path_rate": 5}, "drop_path_rate must be in [0, 1), got 5.0"),
    ("resnet_test", {"drop_path_rate": False},  # ran with rate 0
     "drop_path_rate must be a finite number in [0, 1), got False (bool)"),
    ("resnet18", {"drop_rate": "0.1"},  # "must be in [0, 1), got '0.1'": neither the type nor the encoder
     "drop_rate must be a finite number in [0, 1), got '0.1' (str)"),
    ("resnet50", {"channels": [16, 32, 64, 128], "base_width": 2},  # zero-width bottleneck convs
     "the arguments {'channels': [16, 32, 64, 128], 'base_width': 2} of timm 'resnet50' give a zero-width layer "
     "(layer1.0.conv1.weight of shape (0, 64, 1, 1)); every width and width x ratio must be >= 1"),
    # -- timm ConvNeXt ----------------------------------------------------------------------------
    ("convnext_test", {"depths": [1, 1]},  # IndexError inside timm
     "depths must be 4 integers >= 1 (blocks per stage), got [1, 1]"),
    ("convnext_atto", {"depths": [1, 0, 1, 1]},  # ran with a stage of no blocks
     "depths must be 4 integers >= 1 (blocks per stage), got [1, 0, 1, 1]"),
    ("convnext_test", {"dims": 32}, "dims must be 4 integers >= 1 (stage widths), got 32"),  # TypeError in timm
    ("convnext_test", {"kernel_sizes": 0},  # built; forward: negative padding
     "kernel_sizes must be an odd integer >= 1 (or 4 of them, one per stage), got 0"),
    ("convnext_test", {"kernel_sizes": [7, 7]},  # IndexError inside timm
     "kernel_sizes must be 4 odd integers >= 1 (one per stage) or one odd integer, got [7, 7]"),
    ("convnext_test", {"drop_path_rate": 1}, "drop_path_rate must be in [0, 1), got 1.0"),  # no encoder name
    # timm's stem patch: checked by the ConvNeXt class now that patch_size is not a TIMM_SIZE_ARG (a ResNet has none)
    ("convnext_test", {"patch_size": 2.5}, "patch_size must be an integer >= 1, got 2.5"),
    # an explicit patch_size is timm's patch stem now (tests/encoders/test_timm_stems.py); at 28 px these were ignored
    ("convnext_test", {"patch_size": 4},  # ran medfm's 3x3 stride-1 stem: patch_size did nothing
     "patch_size=4 needs img_size >= 32 (the stem and the stages' stride-2 downsampling leave no pixel at the last "
     "stage below that), got img_size=28; leave patch_size unset for medfm's small-image stem"),
    ("convnext_atto", {"patch_size": 8},  # ran with a 3x3 stride-1 stem and a dilated (not downsampled) last stage
     "patch_size must divide img_size=28, got 8"),
    ("convnext_test", {"patch_size": 2, "stem_type": "overlap"},  # timm ignores patch_size for its overlapping stems
     "patch_size=2 has no effect with stem_type='overlap': only timm's 'patch' stem has a patch size (its "
     "overlapping stems are 3x3 stride-2 convolutions)"),
    # -- timm ViT ---------------------------------------------------------------------------------
    ("vit_test", {"depth": 0}, "depth must be an integer >= 1, got 0"),  # built; forward: feature index 0 out of range
    ("vit_test", {"depth": 1.5}, "depth must be an integer >= 1, got 1.5"),  # TypeError inside timm
    ("vit_test", {"num_heads": 0}, "num_heads must be an integer >= 1, got 0"),  # ZeroDivisionError inside timm
    ("vit_small", {"num_heads": -2}, "num_heads must be an integer >= 1, got -2"),  # built; forward: invalid shape
    ("vit_tiny", {"patch_size": 5},  # ran on a 5x5 grid: the last 3 pixel rows/columns cropped silently
     "patch_size must divide img_size=28 (the default for it is 4), got 5"),
    ("vit_test", {"patch_size": 56}, "patch_size must divide img_size=28 (the default for it is 4), got 56"),
    ("vit_tiny", {"patch_size": 0}, "patch_size must be an integer >= 1, got 0"),  # was taken as "default"
    ("vit_test", {"patch_size": 2.5}, "patch_size must be an integer >= 1, got 2.5"),  # TypeError inside torch
    ("vit_test", {"mlp_ratio": 0}, "mlp_ratio must be > 0, got 0.0"),  # ran with ratio 1 (timm: 0 -> dim)
    ("vit_test", {"attn_drop_rate": float("nan")}, "attn_drop_rate must be a finite number in [0, 1), got nan"),
    ("vit_test", {"drop_rate": -0.1}, "drop_rate must be in [0, 1), got -0.1"),  # no encoder name
    ("vit_test", {"mlp_ratio": 0.001},  # ran with ratio 1 (hidden int(64 * 0.001) = 0 -> dim)
     "mlp_ratio must be >= 0.01562 (at least 1 hidden channel at embed_dim 64), got 0.001"),
    # -- MedViT-KAN -------------------------------------------------------------------------------
    ("medvit_kan_test", {"dims": [16.0, 16, 32, 32]},  # TypeError inside torch
     "dims must be 4 integers >= 1 (stage widths), got (16.0, 16, 32, 32)"),
    ("medvit_kan_tiny", {"dims": 16},  # "unknown MedViT-KAN option: object of type 'int' has no len()"
     "dims must be 4 integers >= 1 (stage widths), got 16"),
    ("medvit_kan_test", {"blocks": "LLGG"},  # ran: each letter taken as a stage
     "blocks must be 4 non-empty strings of 'L' (LFP) / 'G' (GFP) blocks, one per stage, e.g. "
     "['LL', 'LL', 'LGLG', 'GG'], got 'LLGG'"),
    ("medvit_kan_test", {"head_dim": 12.5}, "head_dim must be an integer >= 1, got 12.5"),  # ran with 1.0 heads
    ("medvit_kan_test", {"head_dim": 5},  # "dim=16 is not divisible by num_heads=3": neither is an argument
     "head_dim must give a head count (width // head_dim) that divides every stage width of dims "
     "(16, 16, 32, 32), got 5 (3 heads at width 16)"),
    ("medvit_kan_test", {"mlp_ratio": 0.01},  # ran with MLP ratio 1 (timm's Mlp takes 0 hidden as "same as input")
     "mlp_ratio must be >= 0.0625 (at least 1 hidden channel at stage width 16), got 0.01"),
    ("medvit_kan_small", {"kan_ratio": 0.001},  # ran with zero-width KAN feed-forwards (GFP stages: 384, 768)
     "kan_ratio must be >= 0.002604 (at least 1 hidden channel at stage width 384), got 0.001"),
    ("medvit_kan_test", {"drop_path_rate": "0.1"},  # TypeError: '<=' not supported between 'float' and 'str'
     "drop_path_rate must be a finite number in [0, 1), got '0.1' (str)"),
    ("medvit_kan_tiny", {"drop_path_rate": 1.5}, "drop_path_rate must be in [0, 1), got 1.5"),  # no encoder name
    ("medvit_kan_test", {"attn_backend": "sdp"},  # no encoder name, "choose one of ('auto', 'sdpa', 'natten')"
     "unknown attn_backend 'sdp'; did you mean 'sdpa'?"),
    # the KAN basis (``kan``, both KAN families; create_basis): was a plain ValueError without the encoder's name,
    # and Python's own TypeError text for an unknown basis argument
    ("kan_resnet18", {"kan": "chebyshv"},
     "kan: unknown KAN basis 'chebyshv'; did you mean 'chebyshev'? (known: chebyshev, rbf)"),
    ("kan_resnet_test", {"kan": {"name": "rbf", "num_grid": 6}},  # "... __init__() got an unexpected keyword argument"
     "kan: the 'rbf' KAN basis takes no argument 'num_grid'; did you mean 'num_grids'? (it takes: num_grids, "
     "grid_range)"),
    ("kan_resnet_test", {"kan": {"name": "rbf", "grid_range": (2, -2)}},
     "kan: RBF grid_range must be two finite numbers (min, max) with min < max, got (2, -2)"),
    ("kan_resnet_test", {"kan": 3},  # "unknown KAN basis 3 (known: chebyshev, rbf)"
     "kan must be a KAN basis name (chebyshev, rbf) or a mapping {'name': ..., **arguments}, got 3"),
    ("kan_resnet_test", {"kan": {"name": "rbf", "num_grids": 1}}, "kan: RBF num_grids must be an integer >= 2, got 1"),
    ("medvit_kan_tiny", {"kan": "rfb"}, "kan: unknown KAN basis 'rfb'; did you mean 'rbf'? (known: chebyshev, rbf)"),
    ("medvit_kan_test", {"kan": {"name": "chebyshev", "degre": 2}},
     "kan: the 'chebyshev' KAN basis takes no argument 'degre'; did you mean 'degree'? (it takes: degree)"),
    ("medvit_kan_test", {"kan": {"name": "rbf", "grid_range": 5}},  # "'int' object is not iterable"
     "kan: RBF grid_range must be two finite numbers (min, max) with min < max, got 5"),
    ("medvit_kan_test", {"kan": {"num_grids": 6}},  # an RBF argument without a name: the default basis is Chebyshev
     "kan: the 'chebyshev' KAN basis (the default: no 'name' given) takes no argument 'num_grids' (it takes: degree)"),
    # -- VMamba / GroupMamba ----------------------------------------------------------------------
    ("vmamba_test", {"dims": [16.0, 32, 32, 48]},  # TypeError inside torch
     "dims must be 4 integers >= 1 (stage widths), got (16.0, 32, 32, 48)"),
    ("groupmamba_tiny", {"dims": 16}, "dims must be 4 integers >= 1 (stage widths), got 16"),  # TypeError: no len()
    ("vmamba_test", {"depths": [1.0, 1, 1, 1]},  # multi-line torch.linspace TypeError
     "depths must be 4 integers >= 1 (blocks per stage), got (1.0, 1, 1, 1)"),
    ("groupmamba_test", {"d_state": 2.0}, "d_state must be an integer >= 1, got 2.0"),  # TypeError inside torch
    ("vmamba_test", {"mlp_ratios": [0.01, 2, 2, 2]},  # built; forward: conv weight of size [0, 16, 1, 1]
     "mlp_ratios must be >= 0.0625 (at least 1 hidden channel at stage width 16), got (0.01, 2, 2, 2)"),
    ("groupmamba_test", {"mlp_ratios": [0.01, 2, 2, 2]},  # "groups must be a positive integer" from torch
     "mlp_ratios must be >= 0.0625 (at least 1 hidden channel at stage width 16), got (0.01, 2, 2, 2)"),
    ("vmamba_test", {"ssm_ratio": 0.01},  # "groups must be a positive integer" from torch
     "ssm_ratio must be > 0.03125 (at least 1 inner channel at stage width 16), got 0.01"),
    ("vmamba_tiny", {"chunk_size": 2.5},  # refused before too, without the encoder name
     "chunk_size must be an integer >= 1 or None (automatic), got 2.5"),
    ("vmamba_test", {"drop_path_rate": "0.1"},  # TypeError: '<=' not supported between 'float' and 'str'
     "drop_path_rate must be a finite number in [0, 1), got '0.1' (str)"),
    ("groupmamba_test", {"drop_path_rate": -0.1}, "drop_path_rate must be in [0, 1), got -0.1"),  # no encoder name
    ("vmamba_test", {"mixer": "vmambaa"},  # no encoder name, "choose one of ('vmamba', 'groupmamba')"
     "unknown Mamba mixer 'vmambaa'; did you mean 'vmamba'?"),
    ("groupmamba_test", {"dims": [16, 32, 30, 48]},  # no encoder name
     "dims must be stage widths divisible by 4 for GroupMamba, got (16, 32, 30, 48)"),
    # -- 3D ResNet --------------------------------------------------------------------------------
    ("resnet3d_test", {"layers": [1, 1]},  # "does not take that argument: ... got multiple values for 'layers'"
     "layers must be 4 integers >= 1 (blocks per stage), got [1, 1]"),
]


def _build(name, overrides):
    torch.manual_seed(0)
    return create_encoder(name, in_chans=1, img_size=S, **overrides)


@pytest.mark.parametrize("name, overrides, message", BAD_OVERRIDES,
                         ids=[f"{n}-{'-'.join(o)}" for n, o, _ in BAD_OVERRIDES])
def test_bad_override_is_one_line_naming_encoder_and_argument_at_build(name, overrides, message):
    with pytest.raises(EncoderArgumentError) as info:
        _build(name, overrides)
    assert str(info.value) == f"{name}: {message}"


@pytest.mark.parametrize("name, overrides, match", [
    # timm's own refusal, caught: was a ZeroDivisionError traceback from timm's attention
    ("vit_test", {"embed_dim": 0}, r"^timm cannot build 'test_vit' with \{'embed_dim': 0\}: "),
    # unknown options: was "unknown MedViT-KAN option: MedViTKANConfig.__init__() got an unexpected keyword ..."
    ("medvit_kan_test", {"widths": (8, 8, 8, 8)},
     r"^unknown MedViT-KAN option 'widths' \(valid: dims, blocks, head_dim, kernel_size, mlp_ratio, "),
    ("medvit_kan_test", {"head_dims": 8}, r"^unknown MedViT-KAN option 'head_dims'; did you mean 'head_dim'\?$"),
    # a timm ResNet has no patch_size: a bad one got the integer rule ("resnet_test: patch_size must be an
    # integer >= 1, got 0"), a good one "does not take that argument"; now the latter for both
    ("resnet_test", {"patch_size": 0},
     r"^encoder 'resnet_test' does not take that argument: .*unexpected keyword argument 'patch_size'$"),
    ("resnet18", {"patch_size": 2.5},
     r"^encoder 'resnet18' does not take that argument: .*unexpected keyword argument 'patch_size'$"),
])
def test_other_build_errors_are_one_line(name, overrides, match):
    with pytest.raises(ValueError, match=match) as info:
        _build(name, overrides)
    assert "\n" not in str(info.value)
    if "unknown" in match or "does not take" in match:
        assert isinstance(info.value, UnknownArgumentError)


# overrides the checks must keep accepting: shipped recipes' and boundary values
GOOD_OVERRIDES = [
    ("resnet18", {"layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128]}, 128),
    ("resnet18", {"stem_type": "deep", "stem_width": 16}, 512),  # a deep stem takes its width
    ("convnext_test", {"kernel_sizes": [7, 5, 5, 3]}, 64),
    ("vit_test", {"patch_size": 7, "mlp_ratio": 1 / 64}, 64),
    ("medvit_kan_test", {"dims": [20, 20, 36, 36], "blocks": ["L", "L", "LG", "G"]}, 36),
    ("vmamba_test", {"ssm_ratio": 0.0313, "depths": (1, 1, 2, 1)}, 48),
    ("groupmamba_test", {"ssm_ratio": 0.01}, 48),  # GroupMamba keeps one inner channel per group
    ("medvit_kan_test", {"dims": [8, 8, 32, 32], "kan_ratio": 1 / 32}, 32),  # KAN only in the width-32 stages
]


@pytest.mark.parametrize("name, overrides, dim", GOOD_OVERRIDES, ids=[n for n, _, _ in GOOD_OVERRIDES])
def test_valid_overrides_still_build_and_run(name, overrides, dim):
    enc = _build(name, overrides).eval()
    with torch.no_grad():
        assert enc(torch.rand(2, 1, S, S)).shape == (2, dim) and enc.num_features == dim


def test_resnet3d_layers_can_be_overridden():
    # was "does not take that argument": the builder passed its own layers as well
    enc = create_encoder("resnet3d_test", in_chans=1, img_size=16, layers=[2, 1, 1, 1])
    assert len(enc.model.layer1) == 2 and len(enc.model.layer2) == 1
    assert enc.config["layers"] == [2, 1, 1, 1]


def test_direct_construction_gets_the_message_without_the_encoder_name():
    from medfm.encoders.mamba import MambaConfig

    with pytest.raises(EncoderArgumentError, match=re.escape("depths must be 4 integers >= 1 (blocks per stage), "
                                                             "got (1, 1)")):
        MambaConfig(mixer="vmamba", dims=(8, 8, 8, 8), depths=(1, 1))


# neighbourhood attention's width and heads: medfm.arg_checks.check_heads, the rule of the fusers and VQA
# (it was ``dim=10 is not divisible by num_heads=3``, a plain ValueError, and a separate check per argument)
BAD_ATTENTION_WIDTHS = [
    (10, 3, "got dim=10, num_heads=3"),
    (8, 0, "got dim=8, num_heads=0"),  # was "num_heads must be an integer >= 1, got 0": dim not given
    (8, 2.0, "got dim=8, num_heads=2.0"),
    (0, 2, "got dim=0, num_heads=2"),
]


@pytest.mark.parametrize("dim, heads, values", BAD_ATTENTION_WIDTHS,
                         ids=[f"{d}-{h}" for d, h, _ in BAD_ATTENTION_WIDTHS])
def test_neighborhood_attention_width_and_heads_one_sentence_with_both_values(dim, heads, values):
    from medfm.encoders.layers.neighborhood_attention import NeighborhoodAttention2D

    with pytest.raises(EncoderArgumentError) as info:
        NeighborhoodAttention2D(dim, num_heads=heads)
    assert str(info.value) == ("dim must be divisible by num_heads (both integers >= 1: the attention heads split "
                               f"the width), {values}")
