"""``--resume`` with another recipe than the run was started with is refused, writing nothing;
operational settings (threads, logging, checkpoint frequency, data location) may change."""
from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path

import pytest
import torch

from medfm.config import ConfigError, dump_yaml, from_dict
from tests.conftest import Killed, fake_medmnist_arrays, kill_after_first_mid_epoch_checkpoint, write_medmnist_npz
from tests.training.runs_helpers import folder_snapshot

PRETRAIN = {"data": {"dataset": "pneumoniamnist", "verify_md5": False}, "encoder": {"name": "resnet_test"},
            "objective": {"name": "simclr", "args": {"hidden_dim": 16, "proj_dim": 8}},
            "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "precision": "fp32", "seed": 0, "log_every": 1,
                      "deterministic": True}}


def _merge(base, change):
    out = copy.deepcopy(base)
    for key, value in change.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) and value else value
    return out


def _write_data(root: Path) -> Path:
    for flag in ("pneumoniamnist", "breastmnist"):
        write_medmnist_npz(root, flag, arrays=fake_medmnist_arrays(flag, counts=(16, 8, 8)))
    return root


def _pretrain(root, output, change=None, resume=False):
    from medfm.training.recipes import PretrainRecipe
    from medfm.training.runs import run_pretrain

    recipe = from_dict(PretrainRecipe, _merge(PRETRAIN, change or {}))
    return run_pretrain(recipe, output, data_root=str(root), resume=resume)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A finished 1-epoch pretraining run (not modified by the tests; copy it to change it)."""
    tmp = tmp_path_factory.mktemp("pre")
    root = _write_data(tmp / "data")
    _pretrain(root, tmp / "run")
    return root, tmp / "run"


@pytest.mark.parametrize("change,shown", [
    ({"train": {"lr": 2e-3}}, "train.lr: 0.001 -> 0.002"),
    ({"train": {"epochs": 2}}, "train.epochs: 1 -> 2"),  # the cosine schedule's length
    ({"train": {"batch_size": 4}}, "train.batch_size: 8 -> 4"),
    ({"train": {"seed": 3}}, "train.seed: 0 -> 3"),
    ({"encoder": {"name": "vit_test"}}, "encoder.name: 'resnet_test' -> 'vit_test'"),
    ({"objective": {"args": {"temperature": 0.2}}}, "objective.args.temperature: (not set) -> 0.2"),
    ({"data": {"dataset": "breastmnist"}}, "data.dataset: 'pneumoniamnist' -> 'breastmnist'"),
])
def test_pretrain_resume_with_other_settings_is_refused_and_writes_nothing(pretrained, change, shown):
    root, run = pretrained
    before = folder_snapshot(run)
    with pytest.raises(ConfigError, match=re.escape(shown)) as err:
        _pretrain(root, run, change, resume=True)
    assert "started with other settings" in str(err.value) and "--output" in str(err.value)
    assert folder_snapshot(run) == before  # config.yaml (and everything else) byte for byte as it was


def test_cli_lists_at_most_six_differences_and_exits_2(pretrained, tmp_path, capsys):
    from medfm.cli import main

    root, run = pretrained
    before = folder_snapshot(run)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(dump_yaml(_merge(PRETRAIN, {"encoder": {"img_size": 32},
                                                  "objective": {"args": {"hidden_dim": 32, "proj_dim": 4}},
                                                  "train": {"lr": 1e-2, "seed": 1, "weight_decay": 0.0,
                                                            "warmup_epochs": 0.5}})))
    assert main(["pretrain", str(recipe), "--output", str(run), "--resume", "--epochs", "2",
                 "--data-root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"medfm: error: cannot resume {run}: the run was started with other settings (")
    assert len(err.splitlines()) == 1 and err.count(" -> ") == 6 and "; and 2 more)" in err
    assert folder_snapshot(run) == before


def test_operational_changes_resume_bit_identically(tmp_path, monkeypatch):
    """Threads, deterministic kernels, log/checkpoint frequency and the data's location may change on resume
    (the run starts with deterministic kernels and ends without: on a CPU the weights stay the same)."""
    from safetensors.torch import load_file

    root = _write_data(tmp_path / "data")
    (tmp_path / "moved").symlink_to(root)
    first = {"train": {"epochs": 2, "checkpoint_every": 1}}
    _pretrain(root, tmp_path / "full", first)
    revive = kill_after_first_mid_epoch_checkpoint(monkeypatch)
    with pytest.raises(Killed):
        _pretrain(root, tmp_path / "killed", first)
    revive()
    state = json.loads((tmp_path / "killed" / "checkpoint" / "trainer_state.json").read_text())
    assert state["counters"] == {"epoch": 0, "step_in_epoch": 1, "global_step": 1}
    later = {"data": {"data_root": str(tmp_path / "moved")},
             "train": {"epochs": 2, "checkpoint_every": 0, "log_every": 3, "num_threads": 1,
                       "deterministic": torch.cuda.is_available()}}  # CPU: on -> off
    _pretrain(tmp_path / "moved", tmp_path / "killed", later, resume=True)
    a = load_file(str(tmp_path / "full" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "log_every: 3" in (tmp_path / "killed" / "config.yaml").read_text()  # the recipe it finished with


# -- finetune ------------------------------------------------------------------------------------
def _finetune(root, output, change=None, resume=False):
    from medfm.training.recipes import FinetuneRecipe
    from medfm.training.runs import run_finetune

    base = {"data": {"dataset": "pneumoniamnist", "verify_md5": False, "val_split": None, "label_fraction": 0.25},
            "encoder": {"name": "resnet_test"}, "mode": "lora", "lora": {"rank": 2}, "augment": None,
            "train": {"epochs": 1, "batch_size": 8, "precision": "fp32", "log_every": 1}}
    return run_finetune(from_dict(FinetuneRecipe, _merge(base, change or {})), output, data_root=str(root), resume=resume)


def test_finetune_resume_with_other_settings_is_refused_and_writes_nothing(tmp_path):
    root = _write_data(tmp_path / "data")
    run = tmp_path / "run"
    _finetune(root, run)  # 4 of 16 labels: one batch of 4 (config.yaml records batch_size 4)
    _finetune(root, run, {"train": {"batch_size": 16}}, resume=True)  # resolves to the same batch of 4
    before = folder_snapshot(run)
    for change, shown in [({"lora": {"rank": 4}}, "lora.rank: 2 -> 4"), ({"mode": "full"}, "mode: 'lora' -> 'full'"),
                          ({"dropout": 0.2}, "dropout: 0.0 -> 0.2"),
                          ({"data": {"label_fraction": 0.5}}, "data.label_fraction: 0.25 -> 0.5")]:
        with pytest.raises(ConfigError, match=re.escape(shown)):
            _finetune(root, run, change, resume=True)
        assert folder_snapshot(run) == before


# -- segment / text segment / vqa / fuse: refused before their data are read ---------------------
def _seg(tmp, recipe, resume):
    from medfm.training.segmentation import SegmentationRecipe, run_segmentation

    run_segmentation(from_dict(SegmentationRecipe, recipe), tmp / "run", data_root=str(tmp / "nodata"), resume=resume)


def _text_seg(tmp, recipe, resume):
    from medfm.training.text_segmentation import TextSegRecipe, run_text_segmentation

    run_text_segmentation(from_dict(TextSegRecipe, recipe), tmp / "run", data_root=str(tmp / "nodata"), resume=resume)


def _vqa(tmp, recipe, resume):
    from medfm.training.vqa import VQARecipe, run_vqa

    run_vqa(from_dict(VQARecipe, recipe), tmp / "run", data_root=str(tmp / "nodata"), resume=resume)


def _fuse(tmp, recipe, resume):
    from medfm.training.fusion import FusionRecipe, run_fusion

    run_fusion(from_dict(FusionRecipe, recipe), tmp / "run", str(tmp / "nodata"), resume)


SEG = {"data": {"patch": [32, 32]}, "train": {"lr": 1e-3}}
TEXT = {"tasks": [{"data": {"patch": [32, 32]}}], "train": {"lr": 1e-3}}
FUSE = {"models": {"a": {"fuser": "3mat"}}, "train": {"lr": 1e-3}}


@pytest.mark.parametrize("runner,recipe,state,change,shown,allowed", [
    (_seg, SEG, "checkpoint", {"data": {"patch": [48, 48]}}, "data.patch[0]: 32 -> 48",
     {"eval": {"overlays": 0}, "train": {"num_threads": 1}}),
    (_text_seg, TEXT, "checkpoint", {"tasks": [{"data": {"patch": [32, 32]}, "loss_weight": 2.0}]},
     "tasks[0].loss_weight: 1.0 -> 2.0", {"tasks": [{"data": {"patch": [32, 32], "data_root": "/elsewhere"}}]}),
    (_vqa, {"train": {"lr": 1e-3}}, "train_state", {"head": {"dim": 64}}, "head.dim: 128 -> 64",
     {"top_k": 3, "train": {"log_every": 5}}),
    # fuse: a changed model is refused; an added one is not a difference (models train independently:
    # --resume reuses the finished ones and trains the new one)
    (_fuse, FUSE, "models/a/checkpoint", {"models": {"a": {"fuser": "multimodn"}}}, "models.a.fuser: '3mat' -> 'multimodn'",
     {"data": {"cache_dir": "/tmp/x"}, "train": {"checkpoint_every": 9}, "models": {"b": {"fuser": "3mat"}}}),
])
def test_other_runners_refuse_a_changed_recipe_before_reading_data(tmp_path, runner, recipe, state, change, shown,
                                                                     allowed):
    from medfm.data.errors import MedFMDataError

    from medfm.training.fusion import FusionRecipe
    from medfm.training.segmentation import SegmentationRecipe
    from medfm.training.text_segmentation import TextSegRecipe
    from medfm.training.vqa import VQARecipe

    recipe_cls = {_seg: SegmentationRecipe, _text_seg: TextSegRecipe, _vqa: VQARecipe, _fuse: FusionRecipe}[runner]
    run = tmp_path / "run"
    (run / state).mkdir(parents=True)
    (run / state / "trainer_state.json").write_text("{}")
    (run / "config.yaml").write_text(dump_yaml(from_dict(recipe_cls, recipe)))  # as the runner wrote it
    before = folder_snapshot(run)
    with pytest.raises(ConfigError, match=re.escape(shown)):
        runner(tmp_path, _merge(recipe, _merge(change, {"train": {"lr": 2e-3}})), True)
    assert folder_snapshot(run) == before
    with pytest.raises(ConfigError, match=re.escape("train.lr: 0.001 -> 0.002")):
        runner(tmp_path, _merge(recipe, {"train": {"lr": 2e-3}}), True)
    with pytest.raises(MedFMDataError):  # operational changes pass the check; the (missing) data is read next
        runner(tmp_path, _merge(recipe, allowed), True)


# -- the comparison itself -------------------------------------------------------------------------
def _recipe_from(data):
    from medfm.training.recipes import PretrainRecipe

    return from_dict(PretrainRecipe, data)


def _recipe(change=None):
    return _recipe_from(_merge(PRETRAIN, change or {}))


def test_missing_or_unreadable_config_resumes_with_a_warning(tmp_path, caplog):
    from medfm.training.resume import check_resume_recipe

    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "trainer_state.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="medfm.training.resume"):
        check_resume_recipe(run, _recipe(), resume=True)  # a run from before config.yaml was written
        assert "no config.yaml" in caplog.text
        caplog.clear()
        (run / "config.yaml").write_bytes(b"\xff\xfe train: [")
        check_resume_recipe(run, _recipe({"train": {"lr": 5e-3}}), resume=True)
        assert "cannot compare the recipe" in caplog.text
    assert (run / "config.yaml").read_bytes() == b"\xff\xfe train: ["
    check_resume_recipe(tmp_path / "new", _recipe(), resume=True)  # nothing to resume: nothing to compare
    (run / "config.yaml").write_text(dump_yaml(_recipe()))
    check_resume_recipe(run, _recipe({"train": {"lr": 5e-3}}), resume=False)  # not a resume (refused elsewhere)


def test_config_of_an_older_medfm(tmp_path, caplog):
    """A field the saved recipe lacks is fine at its default; a field it has that the recipe no
    longer knows is ignored with a warning."""
    import yaml

    from medfm.training.resume import check_resume_recipe

    saved = yaml.safe_load(dump_yaml(_recipe()))
    del saved["train"]["grad_clip"], saved["encoder"]["args"]
    saved["train"]["retired_option"] = 3
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    with caplog.at_level(logging.WARNING, logger="medfm.training.resume"):
        check_resume_recipe(tmp_path, _recipe(), resume=True)
    assert "train.retired_option" in caplog.text
    with pytest.raises(ConfigError, match=re.escape("train.grad_clip: (not set) -> 1.0")):
        check_resume_recipe(tmp_path, _recipe({"train": {"grad_clip": 1.0}}), resume=True)
    with pytest.raises(ConfigError, match=re.escape("encoder.args.depth: (not set) -> 2")):
        check_resume_recipe(tmp_path, _recipe({"encoder": {"args": {"depth": 2}}}), resume=True)


def test_a_removed_objective_argument_counts_as_a_difference(tmp_path):
    from medfm.training.resume import check_resume_recipe

    (tmp_path / "config.yaml").write_text(dump_yaml(_recipe()))
    fewer = {**PRETRAIN, "objective": {"name": "simclr", "args": {"hidden_dim": 16}}}
    with pytest.raises(ConfigError, match=re.escape("objective.args.proj_dim: 8 -> (not set)")):
        check_resume_recipe(tmp_path, _recipe_from(fewer), resume=True)
