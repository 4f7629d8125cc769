"""A ``models`` entry of a ``medfm fuse`` recipe that is no mapping, named in the words of where it was given.

A :class:`medfm.training.fusion.FusionRecipe` built in Python takes a :class:`~medfm.training.fusion.FusionModelConfig`
or a mapping of its settings; it was told only "a mapping of its settings" (a recipe file's words). A recipe file's
entry keeps the file wording (no Python class name), now located as every other section's
(``r.yaml.models.a ...``, as ``r.yaml.models.a: unknown fuser ...``; it read ``r.yaml: models.a ...``).
"""
from __future__ import annotations

import pytest

from medfm.config import ConfigError, from_dict


@pytest.mark.parametrize("entry, got", [(5, "5"), ("late_fusion_zero_fill", "'late_fusion_zero_fill' (str)"),
                                        (["late"], "['late']"), (None, "None (NoneType)")])
def test_a_python_models_entry_that_is_no_config_names_both_kinds(entry, got):
    """None is no entry in Python (as ``FinetuneRecipe(lora=None)``); it was taken as the defaults."""
    from medfm.training.fusion import FusionRecipe

    with pytest.raises(ConfigError) as info:
        FusionRecipe(models={"a": entry})
    assert str(info.value) == f"models.a must be a FusionModelConfig or a mapping of its settings, got {got}"


def test_a_python_models_entry_may_be_a_config_or_a_mapping():
    """Guard: both kinds are built into a FusionModelConfig, a mapping's unknown keys named."""
    from medfm.training.fusion import FusionModelConfig, FusionRecipe

    recipe = FusionRecipe(models={"a": FusionModelConfig(fuser="late_fusion_zero_fill"),
                                  "b": {"train_missing": "mnar"}})
    assert recipe.models == {"a": FusionModelConfig(fuser="late_fusion_zero_fill"),
                             "b": FusionModelConfig(train_missing="mnar")}
    with pytest.raises(ConfigError, match=r"^models\.b: unknown key 'fusr'; did you mean 'fuser'\?"):
        FusionRecipe(models={"b": {"fusr": "3mat"}})


@pytest.mark.parametrize("entry, message", [
    (5, "r.yaml.models.a must be a mapping of its settings, got 5"),
    ("late", "r.yaml.models.a must be a mapping of its settings, got 'late' (str)"),
    ({"fusr": "3mat"}, "r.yaml.models.a: unknown key 'fusr'; did you mean 'fuser'?"),
    ({"train_missing": "x"}, "r.yaml.models.a: train_missing must be one of ('natural', 'mnar'), got 'x'")])
def test_a_recipe_files_models_entry_keeps_the_file_wording_at_its_location(entry, message):
    from medfm.training.fusion import FusionRecipe

    with pytest.raises(ConfigError) as info:
        from_dict(FusionRecipe, {"models": {"a": entry}}, where="r.yaml")
    assert str(info.value) == message
    recipe = from_dict(FusionRecipe, {"models": {"a": None}}, where="r.yaml")  # an empty entry: the defaults
    assert recipe.models["a"].fuser == "3mat"
