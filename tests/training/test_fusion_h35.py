"""``medfm fuse``: the run-folder checks in their own module, a bad ``models`` entry and a dropped model named.

- ``start_run`` and its checks moved to :mod:`medfm.training.fusion_run` (``medfm.training.fusion`` re-exports them).
- A recipe file's ``models: {a: 5}`` was told ``models.a must be a FusionModelConfig or a mapping of its settings``
  (a Python class name in a YAML message); now the file wording of :func:`medfm.config.check_value_type`.
- A ``--resume`` whose recipe drops a model listed each of its settings as ``-> (not set)``; now ``the recipe leaves
  out models 'x' of the run`` (:func:`medfm.training.resume.check_resume_recipe`, for any ``may_add`` mapping).
"""
from __future__ import annotations

import pytest

from medfm.config import ConfigError, dump_yaml
from tests.training.runs_helpers import folder_snapshot, fusion_recipe


def _run_folder(tmp_path, recipe):
    """A run folder whose config.yaml is ``recipe`` (what a started run leaves before its models train)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text(dump_yaml(recipe))
    return out


def _without(recipe, *labels):
    recipe.models = {k: v for k, v in recipe.models.items() if k not in labels}
    return recipe


def test_the_run_checks_live_in_fusion_run_and_are_importable_from_fusion():
    """Guard: the names tests and medfm.training.fusion_seg import from medfm.training.fusion are fusion_run's."""
    import medfm.training.fusion as fusion
    import medfm.training.fusion_run as fusion_run

    for name in ("start_run", "recipe_writer", "refuse_unrecorded_models"):
        assert getattr(fusion, name) is getattr(fusion_run, name)
        assert name in fusion.__all__


@pytest.mark.parametrize("entry", ["5", "[fuser, late]", "late_fusion_zero_fill"])
def test_a_models_entry_that_is_no_mapping_is_named_in_the_recipe_files_words(tmp_path, entry):
    from medfm.training.fusion import fuse_from_recipe

    path = tmp_path / "r.yaml"
    path.write_text(f"models:\n  a: {entry}\n")
    with pytest.raises(ConfigError) as info:
        fuse_from_recipe(path, tmp_path / "out")
    assert str(info.value).startswith("r.yaml.models.a must be a mapping of its settings, got ")
    assert not (tmp_path / "out").exists()


def test_a_models_entry_of_settings_or_none_is_still_built(tmp_path):
    """Guard: a mapping builds the model's config (its unknown keys named), an empty entry means the defaults."""
    from medfm.config import from_dict
    from medfm.training.fusion import FusionModelConfig, FusionRecipe

    recipe = from_dict(FusionRecipe, {"models": {"a": {"fuser": "late_fusion_zero_fill"}, "b": None}}, where="r.yaml")
    assert recipe.models == {"a": FusionModelConfig(fuser="late_fusion_zero_fill"), "b": FusionModelConfig()}
    with pytest.raises(ConfigError, match=r"models\.a: unknown key 'fusr'; did you mean 'fuser'"):
        from_dict(FusionRecipe, {"models": {"a": {"fusr": "late"}}}, where="r.yaml")


@pytest.mark.parametrize("dropped", [("single_pre",), ("late", "single_pre")])
def test_a_resume_that_drops_models_names_them_and_leaves_the_folder_as_it_was(tmp_path, dropped):
    from medfm.training.fusion import start_run

    full = fusion_recipe("classification", 4)
    out = _run_folder(tmp_path, full)
    recipe = _without(fusion_recipe("classification", 4), *dropped)
    if not recipe.models:  # every model dropped: the recipe trains another one
        recipe.models = {"other": full.models["late"]}
    before = folder_snapshot(out)
    with pytest.raises(ConfigError) as info:
        start_run(recipe, out, str(tmp_path / "no_data"), resume=True)
    names = ", ".join(repr(label) for label in dropped)
    assert str(info.value) == (f"cannot resume {out}: the recipe leaves out models {names} of the run (its models: "
                               f"'late', 'single_pre'; a resume cannot drop one); put "
                               f"{'them' if len(dropped) > 1 else 'it'} back, or choose a new --output for the new set "
                               f"of models (the run's recipe: {out / 'config.yaml'})")
    assert folder_snapshot(out) == before


def test_a_resume_with_the_runs_models_and_other_settings_is_refused_by_the_recipe_check(tmp_path):
    """Guard: the dropped-model check leaves every other difference to check_resume_recipe (saved -> new)."""
    from medfm.training.fusion import start_run

    out = _run_folder(tmp_path, fusion_recipe("classification", 4))
    recipe = fusion_recipe("classification", 4)
    recipe.train.lr = recipe.train.lr * 2
    with pytest.raises(ConfigError, match=r"^cannot resume .*: the run was started with other settings \(train\.lr: "):
        start_run(recipe, out, str(tmp_path / "no_data"), resume=True)


def test_the_dropped_model_check_passes_a_new_run_an_unreadable_config_and_an_added_model(tmp_path):
    """Guard: nothing to compare without --resume or a readable config.yaml (check_resume_recipe warns on the
    latter); a model added to the run's is no drop."""
    from medfm.training.resume import check_resume_recipe

    full = fusion_recipe("classification", 4)
    out = _run_folder(tmp_path, _without(fusion_recipe("classification", 4), "single_pre"))
    assert check_resume_recipe(out, full, True, may_add=("models",)) == ["models.single_pre"]  # added
    late_dropped = _without(fusion_recipe("classification", 4), "late")
    assert check_resume_recipe(out, late_dropped, False, may_add=("models",)) == []
    (out / "config.yaml").write_text("models: [unclosed\n")
    assert check_resume_recipe(out, late_dropped, True, may_add=("models",)) == []
    assert check_resume_recipe(tmp_path / "none", full, True, may_add=("models",)) == []
