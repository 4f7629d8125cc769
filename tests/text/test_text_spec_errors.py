"""A text encoder spec's errors as the rest of medfm raises them.

* An unknown text encoder name is the registry's ``UnknownNameError`` (as an unknown encoder, objective or
  fuser name) and a ``TextEncoderError`` (as every other bad text encoder spec), from every entry point: it
  was a plain ``TextEncoderError`` from the spec check (a ``ConfigError`` in a recipe) and a plain
  ``UnknownNameError`` from the build.
* An argument given as null (YAML ``pooler:``) means its default, as ``Registry.build`` reads every
  builder's arguments: the spec check refused what the build accepted (``unknown pooler None``).
"""
from __future__ import annotations

import pytest

from medfm.config import ConfigError, from_dict, parse_recipe_yaml
from medfm.registry import UnknownNameError
from medfm.text import TextEncoderError, UnknownTextEncoderError, create_text_encoder, text_encoder_dim
from medfm.text.encoders import check_text_encoder_spec
from tests.conftest import save_tiny_bert

UNKNOWN = "unknown text encoder 'minlm'; did you mean 'minilm'? (known: hf, minilm)"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return str(save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), ["a", "chest"]))


def _vqa_recipe(text_encoder):
    from medfm.training.vqa import VQARecipe

    return from_dict(VQARecipe, {"mode": "frozen", "text_encoder": text_encoder}, where="r.yaml")


@pytest.mark.parametrize("call", [check_text_encoder_spec, create_text_encoder, text_encoder_dim],
                         ids=lambda f: f.__name__)
def test_an_unknown_name_is_the_registry_error_and_a_text_encoder_error(call):
    with pytest.raises(UnknownNameError) as info:
        call({"name": "minlm"})
    assert isinstance(info.value, TextEncoderError) and isinstance(info.value, ValueError)
    assert type(info.value) is UnknownTextEncoderError and str(info.value) == UNKNOWN  # not KeyError's quotes


def test_an_unknown_name_in_a_recipe_keeps_its_class_with_the_location():
    """As an unknown ``encoder`` name (``r.yaml.encoder: unknown encoder ...``), not a ``ConfigError``."""
    from medfm.training.runs import build_recipe_text_encoder

    with pytest.raises(UnknownNameError) as info:
        build_recipe_text_encoder(_vqa_recipe({"name": "minlm"}))
    assert isinstance(info.value, TextEncoderError) and not isinstance(info.value, ConfigError)
    assert str(info.value) == f"r.yaml.text_encoder: {UNKNOWN}"


def test_other_bad_specs_are_still_text_encoder_errors_only():
    with pytest.raises(TextEncoderError) as info:
        check_text_encoder_spec({"name": "minilm", "poolr": "mean"})
    assert not isinstance(info.value, UnknownNameError)


def test_null_arguments_mean_their_defaults():
    spec = parse_recipe_yaml("name: minilm\npooler:\nmax_length: null\nfrozen:\n")
    assert spec == {"name": "minilm", "pooler": None, "max_length": None, "frozen": None}
    assert check_text_encoder_spec(spec, frozen_only=True) == {"name": "minilm"}
    # a required argument left null is missing, as the build finds (it was "model_name_or_path must be ..., got None")
    with pytest.raises(TextEncoderError, match=r"^text encoder 'hf' needs model_name_or_path$"):
        check_text_encoder_spec({"name": "hf", "model_name_or_path": None})
    with pytest.raises(TextEncoderError, match=r"^a text encoder spec is a mapping with a string name"):
        check_text_encoder_spec({"name": None})  # the name has no null default: as an encoder's name


def test_a_recipe_with_a_null_option_builds_with_the_default(tiny_bert):
    """The recipe check and the build agree: ``pooler:`` (null) builds the default mean pooler."""
    from medfm.training.runs import build_recipe_text_encoder

    enc = build_recipe_text_encoder(_vqa_recipe({"name": "hf", "model_name_or_path": tiny_bert, "pooler": None,
                                                 "max_length": None}))
    assert enc.pooler == "mean" and enc.frozen  # (max_length: the default 128, lowered to the tiny model's 64)
