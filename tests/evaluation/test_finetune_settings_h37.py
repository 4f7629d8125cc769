"""A suite's ``protocol.finetune`` keys: one unknown-key rule (:func:`medfm.suite_protocols.check_finetune_keys`)
for the suite reader / early check (:func:`~medfm.suite_protocols.check_finetune_settings`) and the fine-tuning
runs (:func:`medfm.evaluation.finetune_protocol.finetune_recipe`), with one wording and one error type, and a hint
that helps: a section's setting is told where it belongs (``lr`` is no misspelt ``lora``).

Old code: two copies of the rule, ``"unknown key(s) ['lr'] (known: ...)"`` as a ConfigError on one path and a plain
ValueError, worded differently, on the other; no hint at all."""
import pytest

from medfm.config import ConfigError
from medfm.suite_protocols import check_finetune_settings, check_protocol_section

VALID = "(valid keys: mode, lora, dropout, head_norm, augment, train)"


@pytest.fixture(scope="module")
def encoder():
    from medfm.encoders import create_encoder

    return create_encoder("resnet_test", in_chans=1, img_size=28)


def _paths(encoder):
    from medfm.evaluation.finetune_protocol import finetune_recipe

    return {"suite reader": check_finetune_settings,
            "fine-tuning run": lambda s: finetune_recipe(encoder, "ckpt", "pneumoniamnist", 28, 0.1, s)}


def _error(call, settings):
    with pytest.raises(ValueError) as info:
        call(settings)
    return info.value


@pytest.mark.parametrize("settings, message", [
    ({"lr": 0.1}, "protocol.finetune: unknown key 'lr'; it is a train setting: write train: {lr: ...}"),
    ({"mode": "full", "epochs": 3},
     "protocol.finetune: unknown key 'epochs'; it is a train setting: write train: {epochs: ...}"),
    ({"batch_size": 8},
     "protocol.finetune: unknown key 'batch_size'; it is a train setting: write train: {batch_size: ...}"),
    ({"mode": "lora", "rank": 4},
     "protocol.finetune: unknown key 'rank'; it is a lora setting: write lora: {rank: ...}"),
    ({"hflip_p": 0.5},
     "protocol.finetune: unknown key 'hflip_p'; it is an augment setting: write augment: {hflip_p: ...}"),
])
@pytest.mark.parametrize("path", ["suite reader", "fine-tuning run"])
def test_a_section_setting_is_told_where_it_belongs(encoder, path, settings, message):
    err = _error(_paths(encoder)[path], settings)
    assert type(err) is ConfigError and str(err) == message
    assert "did you mean" not in str(err)  # 'lr' looks like 'lora', which would mislead


@pytest.mark.parametrize("settings, message", [
    ({"mdoe": "full"}, "protocol.finetune: unknown key 'mdoe'; did you mean 'mode'?"),
    ({"head_nrom": True}, "protocol.finetune: unknown key 'head_nrom'; did you mean 'head_norm'?"),
    ({"xyz": 1}, f"protocol.finetune: unknown key 'xyz' {VALID}"),
])
@pytest.mark.parametrize("path", ["suite reader", "fine-tuning run"])
def test_another_unknown_key_gets_the_close_match_hint(encoder, path, settings, message):
    err = _error(_paths(encoder)[path], settings)
    assert type(err) is ConfigError and str(err) == message


@pytest.mark.parametrize("settings, message", [
    ({"data": {"size": 28}}, f"protocol.finetune: unknown key 'data'; data and encoder are set by each run {VALID}"),
    ({"encoder": {}}, f"protocol.finetune: unknown key 'encoder'; data and encoder are set by each run {VALID}"),
    ({"pretrained": "x"}, "protocol.finetune: unknown key 'pretrained'; it is an encoder setting, and data and "
                          f"encoder are set by each run {VALID}"),
    ({"label_fraction": 0.5}, "protocol.finetune: unknown key 'label_fraction'; it is a data setting, and data and "
                              f"encoder are set by each run {VALID}"),
])
@pytest.mark.parametrize("path", ["suite reader", "fine-tuning run"])
def test_a_per_run_key_is_named_as_set_by_each_run(encoder, path, settings, message):
    err = _error(_paths(encoder)[path], settings)
    assert type(err) is ConfigError and str(err) == message


@pytest.mark.parametrize("settings", [{"lr": 1, "xyz": 2}, {"xyz": 2, "lr": 1}, {"data": {}, "mdoe": "x"},
                                      {"mode": "full", "train": {"lr": 0.1}, "epochs": 2}])
def test_both_paths_name_the_same_first_key_in_the_same_words(encoder, settings):
    reader, run = (_error(call, settings) for call in _paths(encoder).values())
    assert (type(reader), str(reader)) == (type(run), str(run))
    first = next(k for k in settings if k not in ("mode", "train"))
    assert str(reader).startswith(f"protocol.finetune: unknown key {first!r}")


def test_the_suite_file_is_named_first_once():
    with pytest.raises(ConfigError) as info:
        check_protocol_section({"name": "finetune", "finetune": {"epochs": 5}}, "s.yaml", settings=True)
    assert str(info.value) == ("s.yaml: protocol.finetune: unknown key 'epochs'; it is a train setting: write "
                               "train: {epochs: ...}")


def test_valid_settings_still_pass_on_both_paths(encoder):
    """A guard: the known keys, sections included, are still taken."""
    settings = {"mode": "linear", "head_norm": True, "dropout": 0.1, "lora": {"rank": 4}, "augment": None,
                "train": {"lr": 0.01, "batch_size": 8}}
    paths = _paths(encoder)
    assert paths["suite reader"](settings) is None
    recipe = paths["fine-tuning run"](settings)
    assert recipe.mode == "linear" and recipe.train.lr == 0.01 and recipe.train.epochs == 20 and recipe.augment is None


def test_a_recipe_file_is_told_where_a_section_key_belongs():
    """from_dict, the one reader of recipe files, gives the same section hint (it said "did you mean 'lora'?")."""
    from medfm.config import from_dict
    from medfm.training.recipes import FinetuneRecipe

    with pytest.raises(ConfigError) as info:
        from_dict(FinetuneRecipe, {"data": {"dataset": "pneumoniamnist"}, "lr": 0.1}, where="r.yaml")
    assert str(info.value) == "r.yaml: unknown key 'lr'; it is a train setting: write train: {lr: ...}"
    with pytest.raises(ConfigError) as info:  # not a section's key: the close match, as before
        from_dict(FinetuneRecipe, {"data": {"dataset": "pneumoniamnist"}, "mdoe": "full"}, where="r.yaml")
    assert str(info.value) == "r.yaml: unknown key 'mdoe'; did you mean 'mode'?"
