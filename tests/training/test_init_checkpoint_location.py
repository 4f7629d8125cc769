"""A missing ``encoder.pretrained`` is named with its recipe location, before any data are read.

Before, ``medfm finetune r.yaml`` with ``encoder: {pretrained: /nonexistent/ckpt}`` said only
``no checkpoint directory at '/nonexistent/ckpt' ...`` (which file? which key?), while every other
recipe error reads ``r.yaml.encoder...: ...``; ``medfm pretrain`` said the same only after the
training set had been read (the encoder build found it). Now
:func:`medfm.training.runs.check_init_checkpoint` names ``r.yaml.encoder.pretrained`` and keeps the
error's class (a ``CheckpointError``, as ``--init`` gives), before the data.
"""
from __future__ import annotations

import re

import pytest
import yaml

import medfm.training.runs as runs
from medfm.config import from_dict
from medfm.hub import CheckpointError
from medfm.training.recipes import EncoderConfig, FinetuneRecipe, PretrainRecipe
from tests.conftest import REPO_ROOT, cli_error

TRAIN = {"epochs": 1, "batch_size": 8, "precision": "fp32"}
RECIPES = {
    "pretrain": (PretrainRecipe, runs.run_pretrain, {
        "data": {"dataset": "pneumoniamnist", "verify_md5": False}, "encoder": {"name": "resnet_test"},
        "objective": {"name": "simclr", "args": {"proj_dim": 8, "hidden_dim": 16}}, "train": TRAIN}),
    "finetune": (FinetuneRecipe, runs.run_finetune, {
        "data": {"dataset": "pneumoniamnist", "verify_md5": False, "val_split": None},
        "encoder": {"name": "resnet_test"}, "mode": "full", "augment": None, "train": TRAIN}),
}


class DataRead(Exception):
    """Raised by the stub data loader: the runner went on to the data."""


@pytest.fixture
def no_data(monkeypatch):
    def read(*a, **k):
        raise DataRead

    monkeypatch.setattr(runs, "_load", read)


@pytest.mark.parametrize("kind", list(RECIPES))
def test_a_missing_pretrained_names_its_recipe_key_before_the_data(tmp_path, no_data, kind):
    cls, run, data = RECIPES[kind]
    missing = tmp_path / "nope"
    recipe = from_dict(cls, {**data, "encoder": {"name": "resnet_test", "pretrained": str(missing)}}, where="r.yaml")
    expected = f"r.yaml.encoder.pretrained: no checkpoint directory at '{missing}'"
    with pytest.raises(CheckpointError, match="^" + re.escape(expected)):  # pretrain: was DataRead
        run(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_init_is_checked_instead_of_the_recipes_pretrained(tmp_path, no_data):
    """``init`` replaces ``encoder.pretrained`` (the runners load ``init or pretrained``): a stale recipe
    path does not matter then, and a missing ``init`` is not named as the recipe's key."""
    cls, run, data = RECIPES["finetune"]
    recipe = from_dict(cls, {**data, "encoder": {"name": "resnet_test", "pretrained": str(tmp_path / "stale")}},
                       where="r.yaml")
    (tmp_path / "init").mkdir()
    (tmp_path / "init" / "config.json").write_text("{}")
    with pytest.raises(DataRead):
        run(recipe, tmp_path / "run", init=str(tmp_path / "init"))
    with pytest.raises(CheckpointError, match=re.escape(f"no checkpoint directory at '{tmp_path / 'gone'}'")) as err:
        run(recipe, tmp_path / "run", init=str(tmp_path / "gone"))
    assert "r.yaml" not in str(err.value)


def test_a_recipe_made_in_python_names_the_section_and_a_file_is_named_too(tmp_path):
    with pytest.raises(CheckpointError, match=r"^encoder\.pretrained: no checkpoint directory at "):
        runs.check_init_checkpoint(None, EncoderConfig(name="resnet_test", pretrained=str(tmp_path / "nope")))
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text("{}")  # its folder is a checkpoint: suggested (not when it is none)
    with pytest.raises(CheckpointError, match=r"^encoder\.pretrained: .*model\.safetensors' is a file; .*pass "):
        runs.check_init_checkpoint(None, EncoderConfig(name="resnet_test",
                                                       pretrained=str(tmp_path / "model.safetensors")))
    for remote in (None, "timm", "hf-hub:org/name"):  # fetched by the build, not checked as folders
        runs.check_init_checkpoint(None, EncoderConfig(name="resnet_test", pretrained=remote))


@pytest.mark.parametrize("command, recipe", [
    ("pretrain", "pretrain/simclr_resnet18_pneumoniamnist.yaml"),
    ("finetune", "finetune/lora_resnet18_pneumoniamnist.yaml"),
    ("segment", "finetune/seg_unet_chase_db1.yaml"),
    ("segment", "finetune/seg_unet3d_hippocampus.yaml"),
    ("segment", "finetune/seg_text_chase_lgg.yaml"),
    ("vqa", "finetune/vqa_resnet18_random.yaml"),
])
def test_cli_names_the_recipe_key(tmp_path, monkeypatch, capsys, command, recipe):
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "no_data"))
    r = yaml.safe_load((REPO_ROOT / recipe).read_text())
    r["encoder"]["pretrained"] = "/nonexistent/ckpt"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    code, err = cli_error(capsys, [command, tmp_path / "r.yaml", "--output", tmp_path / "out"])
    assert code == 2 and err == ("medfm: error: r.yaml.encoder.pretrained: no checkpoint directory at "
                                 "'/nonexistent/ckpt' (hub ids need the prefix 'hf-hub:')"), err
    assert not (tmp_path / "out").exists()
