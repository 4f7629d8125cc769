"""Follow-ups of the objectives' Python-API audit (tests/objectives/test_objective_api_audit.py): an encoder that
is not a medfm Encoder is refused when the objective is built, CLIP's ``text_ids`` are checked, and CLIP's
batch-count message starts with ``clip:`` as every other objective message does (the comment on each case
says what the old code did).
"""
import pytest
import torch
from torch import nn

import medfm
from medfm.objectives import MoCo, clip_loss
from medfm.objectives.inputs import check_objective_args
from medfm.registry import OBJECTIVES
from tests.helpers.small_objectives import SMALL

ENCODER_MESSAGE = r"^{name}: encoder must be a medfm Encoder \(medfm\.encoders\.base\.Encoder\), got "
#: one argument out of its range per objective: refused before the encoder is looked at
BAD_ARG = {"simclr": ("proj_dim", 0), "moco": ("proj_dim", 0), "swav": ("proj_dim", 0),
           "graph_matching": ("proj_dim", 0), "clip": ("embed_dim", 0)}


def _encoder():
    return medfm.create_encoder("resnet_test", in_chans=1, img_size=16)


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_an_encoder_name_is_refused_with_what_to_pass(name):
    """was: ``AttributeError: 'str' object has no attribute 'num_features'`` (swav: ``... 'img_size'``)."""
    with pytest.raises(ValueError, match=ENCODER_MESSAGE.format(name=name) + r"str 'resnet18'; build one with "
                       r"medfm\.create_encoder\('resnet18', in_chans=\.\.\., img_size=\.\.\.\)$") as info:
        OBJECTIVES.build(name, encoder="resnet18", **SMALL[name])
    assert "\n" not in str(info.value)


def test_an_unknown_encoder_name_gets_the_close_names():
    with pytest.raises(ValueError, match=r"^simclr: encoder must be .* got str 'resnet_18'; build one with "
                                         r"medfm\.create_encoder\(name, in_chans=\.\.\., img_size=\.\.\.\), a name from "
                                         r"medfm\.list_encoders\(\); did you mean 'resnet18'"):
        OBJECTIVES.build("simclr", encoder="resnet_18")


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_a_timm_model_is_refused_at_construction(name):
    """was: built, then the first step failed inside the projection head with ``mat1 and mat2 shapes cannot be
    multiplied (8x10 and 512x512)`` (a timm model's forward returns class logits, not pooled features)."""
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1)
    with pytest.raises(ValueError, match=ENCODER_MESSAGE.format(name=name) + r"timm\.models\.resnet\.ResNet; build one "
                       r"with medfm\.create_encoder\(name, in_chans=\.\.\., img_size=\.\.\.\) \(medfm\.list_encoders\(\) "
                       r"names them; a timm model returns class logits, not an encoder's pooled features\)$"):
        OBJECTIVES.build(name, encoder=model, **SMALL[name])


@pytest.mark.parametrize("encoder, got", [(None, "NoneType"), (nn.Linear(4, 4), r"torch\.nn\.modules\.linear\.Linear")],
                         ids=["none", "torch_module"])
def test_other_objects_are_named_by_their_type(encoder, got):
    with pytest.raises(ValueError, match=ENCODER_MESSAGE.format(name="moco") + got + r"; build one with "
                       r"medfm\.create_encoder\(name, in_chans=\.\.\., img_size=\.\.\.\) \(medfm\.list_encoders\(\) "
                       r"names them\)$"):
        MoCo(encoder, **SMALL["moco"])  # (OBJECTIVES.build drops None arguments)


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_the_argument_checks_still_come_before_the_encoder_check(name):
    """Guard of the order ``check_objective_args`` relies on (passes on the old code too): a bad number is named
    first even with a bad encoder, and ``check_objective_args`` (a stand-in encoder) still runs the checks."""
    arg, value = BAD_ARG[name]
    message = rf"^{name}: {arg} must be an integer >= 1, got 0$"
    with pytest.raises(ValueError, match=message):
        OBJECTIVES.build(name, encoder="resnet18", **{**SMALL[name], arg: value})
    with pytest.raises(ValueError, match=message):
        check_objective_args(name, {**SMALL[name], arg: value})
    check_objective_args(name, SMALL[name])  # the stand-in passes the encoder check
    check_objective_args(name, SMALL[name], _encoder())


@pytest.mark.parametrize("name", ["simclr", "swav", "graph_matching"])
def test_a_peft_wrapped_medfm_encoder_is_still_accepted(name):
    """Guard against an over-strict check (passes on the old code too): ``peft.get_peft_model(encoder, ...)``
    forwards the encoder contract to the medfm Encoder inside."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    enc = _encoder()
    convs = [n for n, m in enc.named_modules() if isinstance(m, nn.Conv2d)][:2]
    model = OBJECTIVES.build(name, encoder=get_peft_model(enc, LoraConfig(r=2, target_modules=convs)), **SMALL[name])
    loss = model({"image": torch.rand(4, 1, 16, 16)}, torch.Generator().manual_seed(0))["loss"]
    assert torch.isfinite(loss)


Z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
IDS = r"^clip_loss: text_ids must be \(3,\) integer ids, equal for identical texts " \
      r"\(medfm\.objectives\.clip\.text_ids_of\(texts\) makes them\), got "


@pytest.mark.parametrize("text_ids, got", [
    (["a", "b", "a"], "strings"),  # was: "too many dimensions 'str'"
    ("aba", "strings"),  # was: TypeError "new(): invalid data type 'str'"
    ([0.5, 1.5, 0.5], r"a torch\.float32 tensor"),  # was: a loss (float ids compared for equality)
    (torch.tensor([0.0, float("nan"), 0.0]), r"a torch\.float32 tensor"),  # was: a NaN loss
    ([True, False, True], r"a torch\.bool tensor"),  # was: a loss
    ({"a": 0}, "dict"),  # was: RuntimeError "Could not infer dtype of dict"
], ids=["str_list", "str", "floats", "nan", "bools", "dict"])
def test_clip_loss_refuses_text_ids_that_are_not_integer_ids(text_ids, got):
    with pytest.raises(ValueError, match=IDS + got + "$") as info:
        clip_loss(Z, Z.flip(0), 10.0, text_ids)
    assert "\n" not in str(info.value)


def test_clip_loss_text_ids_shape_message_names_clip_loss_and_integer_ids_still_work():
    with pytest.raises(ValueError, match=r"^clip_loss: text_ids must have shape \(3,\), got \(2,\)$"):  # no prefix
        clip_loss(Z, Z.flip(0), 10.0, [0, 1])
    same = clip_loss(Z, Z.flip(0), 10.0, torch.tensor([0, 1, 2]))
    assert clip_loss(Z, Z.flip(0), 10.0, [0, 1, 2]).item() == pytest.approx(same.item())
    assert clip_loss(Z, Z.flip(0), 10.0).item() == pytest.approx(same.item())  # distinct ids: plain CLIP


def test_clip_batch_count_message_starts_with_clip():
    """was: ``batch has 4 images but 2 texts`` (every other objective message starts with its name)."""
    torch.manual_seed(0)
    model = OBJECTIVES.build("clip", encoder=_encoder(), **SMALL["clip"])
    with pytest.raises(ValueError, match=r"^clip: batch has 4 images but 2 texts$"):
        model({"image": torch.rand(4, 1, 16, 16), "text": ["a", "b"]}, torch.Generator().manual_seed(0))
