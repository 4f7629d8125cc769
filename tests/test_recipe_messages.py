"""A bad recipe value, as ``medfm pretrain|finetune|segment|vqa|fuse <recipe>`` reports it.

One line, exit 2, the recipe location once (it was doubled, ``r.yaml.data: data.scale ...``, or
missing, ``simclr: temperature must be > 0`` without the file or section), the key and the
value; and before any data are read (``$MEDFM_DATA`` is an empty folder: a recipe that passes
validation fails on the missing data instead).
"""
from __future__ import annotations

import pytest
import yaml

from medfm.config import ConfigError, from_dict
from tests.conftest import REPO_ROOT, cli_error


@pytest.mark.parametrize("command, recipe, section, change, key, value", [
    ("segment", "finetune/seg_unet_chase_db1.yaml", "data", {"scale": 9}, "data.scale", "got 9"),
    ("finetune", "finetune/families/full_resnet18.yaml", "data", {"label_fraction": 2}, "data.label_fraction", "got 2"),
    ("vqa", "finetune/vqa_resnet18_random.yaml", "data", {"in_chans": 2}, "data.in_chans", "got 2"),
    ("fuse", "finetune/fusion_lgg_missing.yaml", "data", {"img_size": 8}, "data.img_size", "8"),
    ("pretrain", "pretrain/simclr_resnet18_pneumoniamnist.yaml", "train", {"lr": -1}, "train.lr", "got -1"),
    # a value the registered component's constructor refuses: it used to lack the recipe location
    ("pretrain", "pretrain/simclr_resnet18_pneumoniamnist.yaml", "objective",
     {"args": {"temperature": -1}}, "temperature", "got -1.0"),
    # an encoder argument: it used to be found only after the data were read
    ("finetune", "finetune/families/full_resnet18.yaml", "encoder",
     {"name": "vmamba_tiny", "args": {"drop_path_rate": 5}}, "drop_path_rate", "got 5"),
    ("pretrain", "pretrain/simclr_resnet18_pneumoniamnist.yaml", "encoder",
     {"name": "groupmamba_tiny", "args": {"d_state": 0}}, "d_state", "got 0"),
    # the other runners' components: they lacked the location and (segment, vqa) came after the data
    ("segment", "finetune/seg_unet_chase_db1.yaml", "encoder",
     {"name": "vmamba_tiny", "args": {"drop_path_rate": 5}}, "drop_path_rate", "got 5"),
    ("segment", "finetune/seg_unet_chase_db1.yaml", "decoder", {"norm": "bogus"}, "norm", "'bogus'"),
    ("segment", "finetune/seg_text_chase_lgg.yaml", "encoder",
     {"name": "vmamba_tiny", "args": {"drop_path_rate": 5}}, "drop_path_rate", "got 5"),
    ("vqa", "finetune/vqa_resnet18_random.yaml", "encoder",
     {"name": "vmamba_tiny", "args": {"drop_path_rate": 5}}, "drop_path_rate", "got 5"),
    ("vqa", "finetune/vqa_resnet18_random.yaml", "head", {"dropout": 2}, "dropout", "got 2"),
    ("fuse", "finetune/fusion_lgg_missing.yaml", "models",
     {"3mat": {"fuser": "3mat", "args": {"modality_dropout": 2}}}, "modality_dropout", "got 2"),
    ("fuse", "finetune/fusion_lgg_segmentation.yaml", "models",
     {"fused_unet": {"fuser": "fused_unet", "args": {"modality_dropout": 2}}}, "modality_dropout", "got 2"),
    # a shared section's value: it was named as the first model using it (r.yaml.models.3mat)
    ("fuse", "finetune/fusion_lgg_missing.yaml", "image_encoder", {"args": {"drop_path_rate": 5}},
     "drop_path_rate", "got 5"),
    ("fuse", "finetune/fusion_lgg_segmentation.yaml", "image_encoder", {"args": {"drop_path_rate": 5}},
     "drop_path_rate", "got 5"),
    # heads that do not divide the (shared) dim: a bare AssertionError from torch; the one rule of
    # medfm.arg_checks.check_heads (it was written four ways: "heads must be >= 1 and divide dim" here)
    ("fuse", "finetune/fusion_lgg_missing.yaml", "models", {"3mat": {"fuser": "3mat", "args": {"heads": 3}}},
     "dim must be divisible by heads (both integers >= 1", "got dim=64, heads=3"),
    ("fuse", "finetune/fusion_lgg_missing.yaml", "models",
     {"channelvit": {"fuser": "channelvit", "args": {"patch_size": 8, "heads": 3}}},
     "dim must be divisible by heads (both integers >= 1", "got dim=64, heads=3"),
    # a 3D encoder is the encoder's fault: VQA named the head, then said "VQA takes 2D images; encoder ... is a
    # volume encoder" after building it; now the message of every runner, from the registration, before any build
    ("vqa", "finetune/vqa_resnet18_random.yaml", "encoder", {"name": "resnet3d_10"},
     "vqa_rad is a 2D set", "'resnet3d_10' is 3D; use a 2D encoder (e.g. resnet18)"),
    ("vqa", "finetune/vqa_resnet18_random.yaml", "encoder", {"name": "resnet3d_10", "args": {"layers": [1, 1]}},
     "vqa_rad is a 2D set", "'resnet3d_10' is 3D"),  # was the check build's "layers must be 4 integers"
    ("finetune", "finetune/lora_resnet18_pneumoniamnist.yaml", "encoder", {"name": "resnet3d_10"},
     "pneumoniamnist is a 2D set", "'resnet3d_10' is 3D"),
    ("finetune", "finetune/full_resnet3d_adrenalmnist3d.yaml", "encoder", {"name": "resnet18", "args": {}},
     "adrenalmnist3d is a 3D set", "'resnet18' is 2D"),
    # pretraining, the text-conditioned segmenter and fusion take 2D images: a 3D encoder failed after the
    # data were read (pretrain, fuse) or was named as inference.roi_size at the recipe root (segment tasks:)
    ("pretrain", "pretrain/simclr_resnet18_pneumoniamnist.yaml", "encoder", {"name": "resnet3d_10"},
     "pneumoniamnist is a 2D set", "'resnet3d_10' is 3D"),
    ("pretrain", "pretrain/simclr_resnet18_corpus.yaml", "encoder", {"name": "resnet3d_10"},
     "corpus is a 2D set", "'resnet3d_10' is 3D"),
    ("pretrain", "pretrain/simclr_resnet18_pneumoniamnist.yaml", "data", {"dataset": "adrenalmnist3d"},
     "adrenalmnist3d is a 3D set", "pretraining takes 2D images"),
    ("segment", "finetune/seg_text_chase_lgg.yaml", "encoder", {"name": "resnet3d_10", "args": {}},
     "chase_db1 is a 2D set", "'resnet3d_10' is 3D"),
    ("fuse", "finetune/fusion_lgg_missing.yaml", "image_encoder", {"name": "resnet3d_10"},
     "lgg_flair is a 2D set", "'resnet3d_10' is 3D"),
    ("fuse", "finetune/fusion_lgg_segmentation.yaml", "image_encoder", {"name": "resnet3d_10"},
     "lgg_flair is a 2D set", "'resnet3d_10' is 3D"),
    # a typo'd key of the shared image_encoder mapping was ignored
    ("fuse", "finetune/fusion_lgg_missing.yaml", "image_encoder", {"argz": {}}, "unknown key 'argz'",
     "did you mean 'args'?"),
    # the text-conditioned segmenter's decoder and head: named at the recipe root (``r.yaml: unknown norm``),
    # a typo'd decoder key as ``UNetDecoder.__init__() got an unexpected keyword argument``
    ("segment", "finetune/seg_text_chase_lgg.yaml", "decoder", {"norm": "bogus"}, "norm", "'bogus'"),
    ("segment", "finetune/seg_text_chase_lgg.yaml", "decoder", {"decoder_channels": [8]}, "decoder_channels needs",
     "got 1"),
    ("segment", "finetune/seg_text_chase_lgg.yaml", "decoder", {"stem_chanels": 8}, "unknown decoder option "
     "'stem_chanels'", "did you mean 'stem_channels'?"),
    ("segment", "finetune/seg_text_chase_lgg.yaml", "head", {"layers": 0}, "layers", "got 0"),
    ("segment", "finetune/seg_text_chase_lgg.yaml", "head", {"chanels": 8}, "unknown head option 'chanels'",
     "did you mean 'channels'?"),
    # the message gave the rule, not the values; now medfm.arg_checks.check_heads, as the fusers
    ("vqa", "finetune/vqa_resnet18_random.yaml", "head", {"dim": 64, "heads": 3},
     "dim must be divisible by heads (both integers >= 1", "got dim=64, heads=3"),
    ("vqa", "finetune/vqa_resnet18_random.yaml", "head", {"layers": 0}, "layers must be an integer >= 1", "got 0"),
])
def test_bad_recipe_value_is_one_line_with_its_location_once(tmp_path, monkeypatch, capsys, command, recipe, section,
                                                            change, key, value):
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "no_data"))
    r = yaml.safe_load((REPO_ROOT / recipe).read_text())
    r[section] = {**(r.get(section) or {}), **change}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    code, err = cli_error(capsys, [command, tmp_path / "r.yaml", "--output", tmp_path / "out"])
    assert code == 2 and err.startswith("medfm: error: r.yaml"), err
    assert err.count("r.yaml") == 1 and err.count(f"{section}.") + err.count(f"{section}:") == 1, err
    assert key in err and value in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, message", [
    ({"nme": "vessel"}, "r.yaml: tasks[1]: unknown key 'nme'; did you mean 'name'?"),
    ({"data": {"dataset": "lgg_flair", "patch": [128, 128], "scale": 9}},
     "r.yaml: tasks[1]: data.scale must be in (0, 4], got 9"),
    ({"loss_weight": -1}, "r.yaml: tasks[1]: loss_weight is -1; loss weights must be positive and finite"),
])
def test_a_text_segmentation_task_is_named_by_its_index(tmp_path, monkeypatch, capsys, change, message):
    """It was ``tasks[]`` (which task?), and a bad ``loss_weight`` was named as the list of all of them."""
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "no_data"))
    r = yaml.safe_load((REPO_ROOT / "finetune/seg_text_chase_lgg.yaml").read_text())
    r["tasks"][1].update(change)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    code, err = cli_error(capsys, ["segment", tmp_path / "r.yaml", "--output", tmp_path / "out"])
    assert code == 2 and err == f"medfm: error: {message}", err
    assert not (tmp_path / "out").exists()


def test_2d_views_on_volumes_are_named_as_the_augment_section_before_the_data(tmp_path, monkeypatch, capsys):
    """Also when the recipe leaves ``augment`` out (the default light views); it had no location."""
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "no_data"))
    r = yaml.safe_load((REPO_ROOT / "finetune/full_resnet3d_adrenalmnist3d.yaml").read_text())
    del r["augment"]
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    code, err = cli_error(capsys, ["finetune", tmp_path / "r.yaml", "--output", tmp_path / "out"])
    assert code == 2 and err.startswith("medfm: error: r.yaml.augment: adrenalmnist3d is a 3D set"), err
    assert "set `augment: null`" in err and not (tmp_path / "out").exists()


def test_component_error_of_a_recipe_made_in_python_names_its_section(tmp_path):
    """Without a recipe file the location is the section's name."""
    from medfm.training.recipes import ObjectiveConfig, PretrainRecipe
    from medfm.training.runs import run_pretrain

    recipe = PretrainRecipe(objective=ObjectiveConfig("simclr", {"temperature": -1}))
    with pytest.raises(ConfigError, match=r"^objective\.args: simclr: temperature must be > 0, got -1\.0$"):
        run_pretrain(recipe, tmp_path / "out", data_root=str(tmp_path / "no_data"))


def test_nested_section_built_in_post_init_gets_the_file_name(tmp_path):
    """A section a dataclass builds itself (a suite's ``datasets[i]``) was reported without the file."""
    from medfm.evaluation.suite_spec import load_suite

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "datasets": [{"flg": "pneumoniamnist"}]}))
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert str(err.value).startswith("s.yaml: datasets[0]: unknown key 'flg'"), err.value


def test_a_message_naming_its_section_is_not_prefixed_twice():
    from medfm.training.seg_tasks import SegDataConfig

    with pytest.raises(ConfigError) as err:
        from_dict(SegDataConfig, {"dataset": "chase_db1", "scale": 9}, where="r.yaml.data")
    assert str(err.value) == "r.yaml: data.scale must be in (0, 4], got 9"
    with pytest.raises(ConfigError) as err:  # a message that does not name the section keeps the location
        from_dict(SegDataConfig, {"dataset": "chase_db1", "scale": "x"}, where="r.yaml.data")
    assert str(err.value).startswith("r.yaml.data.scale must be a number")


def test_swav_local_crops_too_small_for_the_encoder_are_named_before_the_data(tmp_path, monkeypatch, capsys):
    """``local_size: 12`` with a ConvNeXt on timm's patch-4 stem (32 px at least) failed at the first
    training step, after the data had loaded, with the encoder's input error and no recipe location."""
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "no_data"))
    r = yaml.safe_load((REPO_ROOT / "pretrain/swav_resnet18_pneumoniamnist.yaml").read_text())
    r["data"]["size"] = 64
    r["encoder"] = {"name": "convnext_test", "args": {"patch_size": 4}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    code, err = cli_error(capsys, ["pretrain", tmp_path / "r.yaml", "--output", tmp_path / "out"])
    assert code == 2 and err == ("medfm: error: r.yaml.objective.args: swav: local_size 12 px is below the "
                                 "smallest input encoder 'convnext_test' takes (its min_input_size: 32 px); "
                                 "use local_size >= 32")
    assert not (tmp_path / "out").exists()
