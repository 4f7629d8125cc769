"""The one numeric-argument rule (:mod:`medfm.arg_checks`) behind the objectives' ``check_arg`` and
the encoders' ``check_int``/``check_positive``/``check_stage_*``: types, bounds, messages, return types.

Each row is ``(value, rules, expected message)`` with the whole message matched; ``name`` is ``"x"``.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from medfm.arg_checks import check_bool, check_heads, check_number, is_finite_number, is_integer, number_fits, range_text, shown
from medfm.encoders import EncoderArgumentError, create_encoder
from medfm.encoders.checks import check_int, check_positive, check_stage_ints, check_stage_positive
from medfm.objectives.inputs import check_arg

NAN, INF = float("nan"), float("inf")

REFUSED = [
    # integers: bool is not 1, 2.5/16.0 are not truncated, strings are not parsed
    (True, {"integer": True, "ge": 1}, "x must be an integer >= 1, got True (bool)"),
    (False, {"integer": True, "ge": 0}, "x must be an integer >= 0, got False (bool)"),
    (2.5, {"integer": True, "ge": 1}, "x must be an integer >= 1, got 2.5"),
    (16.0, {"integer": True, "ge": 1}, "x must be an integer >= 1, got 16.0"),
    (np.float64(3.0), {"integer": True, "ge": 1}, "x must be an integer >= 1, got 3.0"),  # plain number shown
    ("3", {"integer": True, "ge": 1}, "x must be an integer >= 1, got '3' (str)"),
    (NAN, {"integer": True, "ge": 1}, "x must be an integer >= 1, got nan"),
    (None, {"integer": True}, "x must be an integer, got None (NoneType)"),
    # finite numbers: nan/inf, strings, bools refused
    (NAN, {"gt": 0}, "x must be a finite number > 0, got nan"),
    (INF, {"ge": 0}, "x must be a finite number >= 0, got inf"),
    (-INF, {}, "x must be a finite number, got -inf"),
    ("0.5", {"ge": 0, "lt": 1}, "x must be a finite number in [0, 1), got '0.5' (str)"),
    (True, {"gt": 0}, "x must be a finite number > 0, got True (bool)"),
    (np.bool_(True), {"gt": 0}, "x must be a finite number > 0, got np.True_ (bool)"),
    (10 ** 400, {"gt": 0}, "x must be a finite number > 0, got " + str(10 ** 400)),  # was an OverflowError
    # bounds: strict ones refuse the bound itself, inclusive ones the next value out
    (0, {"gt": 0}, "x must be > 0, got 0.0"),
    (-1, {"gt": 0}, "x must be > 0, got -1.0"),
    (1.0, {"ge": 0, "lt": 1}, "x must be in [0, 1), got 1.0"),
    (-0.1, {"ge": 0, "le": 1}, "x must be in [0, 1], got -0.1"),
    (0.0, {"gt": 0, "le": 1}, "x must be in (0, 1], got 0.0"),
    (0, {"integer": True, "ge": 1}, "x must be an integer >= 1, got 0"),
    (np.int64(0), {"integer": True, "ge": 1}, "x must be an integer >= 1, got 0"),
    (4, {"integer": True, "ge": 1, "le": 3}, "x must be an integer in [1, 3], got 4"),
    (3, {"integer": True, "lt": 3}, "x must be an integer < 3, got 3"),
    (4, {"odd": True, "ge": 1}, "x must be an odd integer >= 1, got 4"),
    (3.0, {"odd": True, "ge": 1}, "x must be an odd integer >= 1, got 3.0"),
    (2.5, {"integer": True, "ge": 1, "hint": " (graph_size - 1)"},
     "x must be an integer >= 1 (graph_size - 1), got 2.5"),
]


@pytest.mark.parametrize("value, rules, message", REFUSED, ids=[f"{v!r}-{r}" for v, r, _ in REFUSED])
def test_refused_with_one_line_naming_rule_and_value(value, rules, message):
    with pytest.raises(ValueError) as info:
        check_number("x", value, **rules)
    assert str(info.value) == message
    fit_rules = {k: v for k, v in rules.items() if k != "hint"}
    assert not number_fits(value, **fit_rules)


ACCEPTED = [
    (3, {"integer": True, "ge": 1}, 3, int),
    (np.int64(3), {"integer": True, "ge": 3}, 3, int),  # inclusive bound: the bound itself passes
    (3, {"integer": True, "le": 3}, 3, int),
    (0, {"integer": True, "ge": 0}, 0, int),
    (5, {"odd": True, "ge": 1}, 5, int),
    (2, {"gt": 0}, 2.0, float),  # an int for a float argument becomes a float
    (0.0, {"ge": 0, "lt": 1}, 0.0, float),
    (np.float32(0.5), {"gt": 0, "lt": 1}, 0.5, float),
    (Fraction(1, 4), {"gt": 0}, 0.25, float),
    (-7.5, {}, -7.5, float),
    (10 ** 400, {"integer": True, "ge": 1}, 10 ** 400, int),  # integers have no float range
]


@pytest.mark.parametrize("value, rules, expected, kind", ACCEPTED, ids=[f"{v!r}-{r}" for v, r, _, _ in ACCEPTED])
def test_accepted_values_come_back_as_int_or_float(value, rules, expected, kind):
    out = check_number("x", value, **rules)
    assert type(out) is kind and out == expected
    assert number_fits(value, **rules)


def test_type_predicates_and_shown():
    assert [is_integer(v) for v in (3, np.int8(3), True, np.bool_(True), 3.0, "3", None)] == \
        [True, True, False, False, False, False, False]
    assert [is_finite_number(v) for v in (0.5, 2, np.float16(1), True, NAN, -INF, "1", 10 ** 400)] == \
        [True, True, True, False, False, False, False, False]
    assert [shown(v) for v in (-1, np.int64(2), 3.0, np.float64(0.5), NAN, [1, 1], (1.5, 2), "3", True, None)] == \
        ["-1", "2", "3.0", "0.5", "nan", "[1, 1]", "(1.5, 2)", "'3' (str)", "True (bool)", "None (NoneType)"]
    assert [range_text(gt=0), range_text(ge=1), range_text(lt=1), range_text(le=2), range_text(ge=0, lt=1),
            range_text(gt=0, le=1), range_text()] == ["> 0", ">= 1", "< 1", "<= 2", "in [0, 1)", "in (0, 1]", ""]


def test_caller_exception_class_and_prefix():
    class MyError(ValueError):
        pass

    with pytest.raises(MyError, match=r"^x must be > 0, got -1\.0$"):
        check_number("x", -1, gt=0, error=MyError)
    # the two wrappers: the objective's name first, the encoder's own error class (no prefix)
    with pytest.raises(ValueError, match=r"^simclr: temperature must be > 0, got -1\.0$"):
        check_arg("simclr", "temperature", -1, gt=0)
    with pytest.raises(EncoderArgumentError, match=r"^mlp_ratio must be > 0, got -1\.0$"):
        check_positive("mlp_ratio", -1)
    with pytest.raises(EncoderArgumentError, match=r"^kernel_size must be an odd integer >= 1, got 4$"):
        check_int("kernel_size", 4, odd=True)


def _outcome(check, *args, **kwargs):
    try:
        out = check(*args, **kwargs)
    except ValueError as err:
        return type(err), str(err)
    return type(out), out


@pytest.mark.parametrize("value", [True, 2.5, "3", NAN, INF, 0, -1, 3, np.float64(3.0), np.int64(0)])
def test_objective_and_encoder_checks_give_the_same_verdict_and_message(value):
    """One rule: an objective's integer/positive argument and an encoder's pass or fail alike, with the
    same words after the objective's prefix and the same return type."""
    for obj_rules, enc_check in (({"integer": True, "ge": 1}, check_int), ({"gt": 0}, check_positive)):
        obj_kind, obj = _outcome(check_arg, "obj", "x", value, **obj_rules)
        enc_kind, enc = _outcome(enc_check, "x", value)
        if enc_kind is EncoderArgumentError:
            assert obj_kind is ValueError and obj == "obj: " + enc
        else:
            assert (obj_kind, obj) == (enc_kind, enc)


def test_stage_checks_use_the_same_item_rules():
    assert check_stage_ints("layers", [1, np.int64(2), 1, 1]) == (1, 2, 1, 1)
    assert check_stage_positive("mlp_ratios", (2, 0.5, 1, 4)) == (2.0, 0.5, 1.0, 4.0)
    for bad in ([1, True, 1, 1], [1, 1.0, 1, 1], [1, "1", 1, 1], [1, 0, 1, 1]):
        with pytest.raises(EncoderArgumentError, match=r"^layers must be 4 integers >= 1, got \["):
            check_stage_ints("layers", bad)
    with pytest.raises(EncoderArgumentError, match=r"^k must be 4 odd integers >= 1, got \[7, 7, 4, 7\]$"):
        check_stage_ints("k", [7, 7, 4, 7], odd=True)
    for bad in ([1, NAN, 1, 1], [1, 0, 1, 1], [1, True, 1, 1], (1, "2", 1, 1)):
        with pytest.raises(EncoderArgumentError, match=r"^r must be 4 finite numbers > 0, got "):
            check_stage_positive("r", bad)


def test_create_encoder_prefixes_the_shared_message():
    with pytest.raises(EncoderArgumentError, match=r"^vit_test: mlp_ratio must be a finite number > 0, got nan$"):
        create_encoder("vit_test", in_chans=1, img_size=28, mlp_ratio=NAN)


# -- an attention width and its heads (check_heads): one sentence with both values, whatever is wrong --------

HEADS_RULE = "dim must be divisible by heads (both integers >= 1: the attention heads split the width), got "

REFUSED_HEADS = [
    (64, 3, "dim=64, heads=3"),
    (64, 0, "dim=64, heads=0"),  # the VQA fusion's dim % heads: ZeroDivisionError
    (64, -4, "dim=64, heads=-4"),  # the VQA fusion's dim % heads: accepted (64 % -4 == 0)
    (64, 4.0, "dim=64, heads=4.0"),
    (64, True, "dim=64, heads=True (bool)"),
    (64, "4", "dim=64, heads='4' (str)"),
    (0, 4, "dim=0, heads=4"),  # 0 % 4 == 0: accepted by every copy
    (64.0, 4, "dim=64.0, heads=4"),
    (NAN, 4, "dim=nan, heads=4"),
]


@pytest.mark.parametrize("dim, heads, values", REFUSED_HEADS, ids=[f"{d!r}-{h!r}" for d, h, _ in REFUSED_HEADS])
def test_heads_refused_in_one_sentence_giving_both_values(dim, heads, values):
    with pytest.raises(ValueError) as info:
        check_heads(dim, heads)
    assert str(info.value) == HEADS_RULE + values


def test_heads_accepted_as_ints_with_the_callers_names_and_error():
    assert check_heads(64, 4) == (64, 4) and check_heads(np.int64(48), np.int64(3)) == (48, 3)
    assert all(type(v) is int for v in check_heads(np.int64(48), np.int64(3)))
    assert check_heads(7, 1) == (7, 1) and check_heads(1, 1) == (1, 1)
    with pytest.raises(EncoderArgumentError, match=r"^dim must be divisible by num_heads \(both integers >= 1: "
                                                   r"the attention heads split the width\), got dim=10, num_heads=3$"):
        check_heads(10, 3, heads_name="num_heads", error=EncoderArgumentError)


def _heads_sites():
    """The four places that check an attention width against its heads, each called with dim=64, heads=3."""
    import torch

    from medfm.adapters.vqa import VQAModel
    from medfm.encoders.layers.neighborhood_attention import NeighborhoodAttention2D
    from medfm.registry import FUSERS
    from medfm.training.vqa import VQAHeadConfig

    torch.manual_seed(0)
    encoder = create_encoder("resnet_test", in_chans=1, img_size=28)
    return {
        "fuser 3mat": lambda: FUSERS.build("3mat", modalities=["pre", "flair"], image_encoder={"name": "resnet_test"},
                                           img_size=28, dim=64, heads=3),
        "fuser channelvit": lambda: FUSERS.build("channelvit", modalities=["pre", "flair"], img_size=28, patch_size=7,
                                                 dim=64, heads=3),
        "VQAModel": lambda: VQAModel(encoder, ["no", "yes"], 8, dim=64, heads=3),
        "VQA recipe head": lambda: VQAHeadConfig(dim=64, heads=3),
        "neighbourhood attention": lambda: NeighborhoodAttention2D(64, num_heads=3),
    }


def test_the_width_and_heads_sites_share_one_rule():
    """It was written four ways: "heads must be >= 1 and divide dim" (fusers), "VQA fusion dim=64 is not
    divisible by heads=3", "head.dim/heads/layers must be >= 1 and dim divisible by heads" (VQA recipe),
    "dim=64 is not divisible by num_heads=3" (neighbourhood attention)."""
    for site, build in _heads_sites().items():
        with pytest.raises(ValueError) as info:
            build()
        heads = "num_heads" if site == "neighbourhood attention" else "heads"
        assert str(info.value) == HEADS_RULE.replace("by heads", f"by {heads}") + f"dim=64, {heads}=3", site
        assert isinstance(info.value, EncoderArgumentError) == (site == "neighbourhood attention"), site


@pytest.mark.parametrize("value, message", [
    ("no", "input_skip must be true or false, got 'no' (str)"),  # bool("no") is True
    ("false", "input_skip must be true or false, got 'false' (str)"),
    (1, "input_skip must be true or false, got 1"),
    (0.0, "input_skip must be true or false, got 0.0"),
    (None, "input_skip must be true or false, got None (NoneType)"),
])
def test_a_switch_is_a_bool_never_its_truth_value(value, message):
    with pytest.raises(ValueError) as info:
        check_bool("input_skip", value)
    assert str(info.value) == message


def test_switches_accept_python_and_numpy_bools_with_the_callers_note_and_error():
    assert check_bool("x", True) is True and check_bool("x", np.bool_(False)) is False
    with pytest.raises(KeyError, match=r"hcs must be true or false \(hierarchical channel sampling\), got 'yes'"):
        check_bool("hcs", "yes", note="hierarchical channel sampling", error=KeyError)


def test_every_switch_site_uses_the_shared_rule():
    """The five hand-written copies said the same thing in three wordings (``got 'no'``,
    ``got 'no' (str)``); VQA's ``type_mask`` took ``"no"`` as true from Python."""
    from medfm.adapters.fusion import channelvit
    from medfm.adapters.segmentation import check_decoder_options
    from medfm.adapters.text_seg import check_head_options
    from medfm.objectives.inputs import check_flag
    from medfm.text.encoders import TextEncoderError, check_text_options
    from medfm.training.vqa import VQAHeadConfig

    cases = [
        (lambda: check_decoder_options({"input_skip": "no"}), ValueError, "input_skip"),
        (lambda: check_head_options({"image_conditioning": "no"}), ValueError, "image_conditioning"),
        (lambda: check_flag("moco", "symmetric", "no"), ValueError, "moco: symmetric"),
        (lambda: VQAHeadConfig(type_mask="no"), ValueError, "type_mask"),
        (lambda: channelvit.ChannelViT(modalities=("a", "b"), img_size=32, hcs="no"), ValueError,
         "hcs must be true or false (hierarchical channel sampling)"),
    ]
    for call, error, name in cases:
        with pytest.raises(error) as info:
            call()
        assert str(info.value).endswith(f"{name if 'must' in name else name + ' must be true or false'}, "
                                        "got 'no' (str)"), str(info.value)
    with pytest.raises(TextEncoderError, match=r"^frozen must be true or false, got 'no' \(str\)$"):
        check_text_options("mean", 128, "no")
