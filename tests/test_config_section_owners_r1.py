""":func:`medfm.config.from_dict`'s hint for a section's key written at the top level
(:func:`medfm.config.unknown_key_hint`) names only real sections: fields whose type is a dataclass or ``Optional`` of
one. A mapping or a list of sections is not one (``FusionRecipe.models``, ``TextSegRecipe.tasks``): a top-level
``fuser:`` was told "write models: {fuser: ...}", which makes a model named ``fuser``.
"""
import pytest

from medfm.config import ConfigError, from_dict, section_owners
from medfm.training.fusion import FusionRecipe
from medfm.training.recipes import FinetuneRecipe
from medfm.training.text_segmentation import TextSegRecipe


def _message(cls, data):
    with pytest.raises(ConfigError) as info:
        from_dict(cls, data, "r.yaml")
    return str(info.value)


@pytest.mark.parametrize("cls, key", [(FusionRecipe, "fuser"), (FusionRecipe, "train_missing"),
                                      (TextSegRecipe, "query"), (TextSegRecipe, "loss_weight")])
def test_a_key_of_a_mapping_or_list_of_sections_is_not_told_to_go_in_it(cls, key):
    assert section_owners(cls, key) == ()
    message = _message(cls, {key: 1})
    assert message.startswith(f"r.yaml: unknown key {key!r}")
    assert "setting: write" not in message, message


def test_a_key_shared_with_a_list_of_sections_names_the_real_section_only():
    """``name`` is a field of TextSegRecipe's ``encoder`` section and of each of its ``tasks`` entries."""
    assert _message(TextSegRecipe, {"name": "x"}) == (
        "r.yaml: unknown key 'name'; it is an encoder setting: write encoder: {name: ...}")


def test_a_section_and_an_optional_section_still_get_the_hint():
    """Guard: ``train`` (a dataclass) and ``augment`` (``Optional`` of one) are sections."""
    assert section_owners(FinetuneRecipe, "lr") == ("train",)
    assert section_owners(FinetuneRecipe, "scale") == ("augment",)
    assert _message(FinetuneRecipe, {"lr": 0.1}) == (
        "r.yaml: unknown key 'lr'; it is a train setting: write train: {lr: ...}")
