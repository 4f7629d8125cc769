"""Runner audit: in-process kill + resume is bit-identical, refused runs write nothing,
cut-off log lines, non-finite losses, bf16 autocast, clipping under LoRA, label fractions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medfm.config import from_dict
from medfm.training.loop import Trainer
from tests.training.runs_helpers import finetune_recipe, write_pneumoniamnist
from tests.conftest import (TinyPairs, Killed, kill_after_first_mid_epoch_checkpoint, fake_medmnist_arrays,
                            logged_rows, noisy_step, save_state_dict, tiny_net, tiny_train_config)


# -- the loop on a tiny model ---------------------------------------------------------------------
def test_resume_survives_a_log_line_cut_off_by_the_kill(tmp_path, monkeypatch):
    full = Trainer(tiny_net(), noisy_step, TinyPairs(), tiny_train_config(), tmp_path / "full", save_state_dict).fit()
    restore = kill_after_first_mid_epoch_checkpoint(monkeypatch)
    with pytest.raises(Killed):
        Trainer(tiny_net(), noisy_step, TinyPairs(), tiny_train_config(), tmp_path / "killed", save_state_dict).fit()
    restore()
    with open(tmp_path / "killed" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "epoch": 1, "lo')  # SIGKILL in the middle of the next append
    resumed = Trainer(tiny_net(), noisy_step, TinyPairs(), tiny_train_config(), tmp_path / "killed",
                      save_state_dict).fit(resume=True)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert logged_rows(tmp_path / "killed" / "metrics.jsonl") == logged_rows(tmp_path / "full" / "metrics.jsonl")


def test_resume_after_a_kill_inside_the_checkpoint_rename_window(tmp_path, monkeypatch):
    """Disk state of a kill between atomic_dir's renames: no checkpoint/, the previous one at
    .checkpoint.old-<id>, the next one (maybe partial) at .checkpoint.tmp-<id>."""
    full = Trainer(tiny_net(), noisy_step, TinyPairs(), tiny_train_config(), tmp_path / "full", save_state_dict).fit()
    restore = kill_after_first_mid_epoch_checkpoint(monkeypatch)
    with pytest.raises(Killed):
        Trainer(tiny_net(), noisy_step, TinyPairs(), tiny_train_config(), tmp_path / "killed", save_state_dict).fit()
    restore()
    run = tmp_path / "killed"
    (run / "checkpoint").rename(run / ".checkpoint.old-0123456789ab")
    (run / ".checkpoint.tmp-partial").mkdir()
    (run / ".checkpoint.tmp-partial" / "model.safetensors").write_bytes(b"\x00" * 8)
    steps = []
    resumed = Trainer(tiny_net(), lambda m, b, g: steps.append(1) or noisy_step(m, b, g), TinyPairs(),
                      tiny_train_config(), run, save_state_dict).fit(resume=True)
    assert len(steps) == 8 - 3  # continued after the restored step-3 checkpoint, not from scratch
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert logged_rows(run / "metrics.jsonl") == logged_rows(tmp_path / "full" / "metrics.jsonl")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_autocasts_and_nan_loss_is_a_clear_error(tmp_path, precision):
    seen = []

    def step(model, batch, gen):
        out = noisy_step(model, batch, gen)
        seen.append(model(batch["x"]).dtype)
        if len(seen) == 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    with pytest.raises(ValueError, match=r"loss became nan at epoch 1, step 2; lower train.lr"):
        Trainer(tiny_net(), step, TinyPairs(), tiny_train_config(precision=precision), tmp_path / "r",
                save_state_dict).fit()
    assert seen == [torch.bfloat16 if precision == "bf16" else torch.float32] * 3
    assert not (tmp_path / "r" / "checkpoint").exists()  # nothing saved from the diverged steps


def test_grad_clip_under_lora_sees_trainable_gradients_only(tmp_path, monkeypatch):
    from medfm.adapters.classification import ImageClassifier
    from medfm.adapters.lora import LoraSettings, apply_lora
    from medfm.encoders import create_encoder

    torch.manual_seed(0)
    model = apply_lora(ImageClassifier(create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2,
                                       task="multi-class"), LoraSettings(rank=2), head_modules=("task_head",))
    real, norms = torch.nn.utils.clip_grad_norm_, []

    def clip(params, max_norm, *a, **k):
        params = list(params)
        assert all(p.requires_grad for p in params if p.grad is not None)  # frozen weights carry no gradient
        real(params, max_norm, *a, **k)
        norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    g = torch.Generator().manual_seed(0)
    data = {"image": torch.rand(8, 1, 28, 28, generator=g), "label": torch.randint(0, 2, (8,), generator=g)}

    class DS:
        def __len__(self):
            return 8

        def get_batch(self, idx):
            return {k: v[idx] for k, v in data.items()}

    step = lambda m, b, gen: {"loss": m.base_model.model.loss(m(b["image"]), b["label"])}  # noqa: E731
    Trainer(model, step, DS(), tiny_train_config(epochs=1, grad_clip=1e-3, checkpoint_every=0), tmp_path / "r",
            lambda m, d: None).fit()
    assert len(norms) == 2 and max(norms) <= 1e-3 * 1.0001


# -- runners: refused runs write nothing ----------------------------------------------------------
def test_refused_lora_run_leaves_the_existing_adapter_and_config_untouched(tmp_path):
    from medfm.hub import from_pretrained
    from medfm.training.runs import run_finetune

    root = write_pneumoniamnist(tmp_path / "data", 16)
    out = run_finetune(finetune_recipe(root), tmp_path / "run")
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    before, config = from_pretrained(out).eval()(x), (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(FileExistsError, match="--resume"):
        run_finetune(finetune_recipe(root, seed=1, epochs=3), tmp_path / "run")  # LoRA over a different random base
    assert torch.equal(from_pretrained(out).eval()(x), before)  # base/ was overwritten before the refusal
    assert (tmp_path / "run" / "config.yaml").read_text() == config


def _fake_state(output: Path, sub: str = "checkpoint") -> Path:
    (output / sub).mkdir(parents=True)
    (output / sub / "trainer_state.json").write_text("{}")
    return output


def _seg_run(tmp, resume=False):
    from medfm.training.segmentation import SegmentationRecipe, run_segmentation

    run_segmentation(from_dict(SegmentationRecipe, {"data": {"patch": [32, 32]}}), tmp / "run",
                     data_root=str(tmp / "nodata"), resume=resume)


def _text_seg_run(tmp, resume=False):
    from medfm.training.text_segmentation import TextSegRecipe, run_text_segmentation

    run_text_segmentation(from_dict(TextSegRecipe, {"tasks": [{"data": {"patch": [32, 32]}}]}), tmp / "run",
                          data_root=str(tmp / "nodata"), resume=resume)


def _fusion_run(tmp, resume=False, task="classification"):
    from medfm.training.fusion import FusionRecipe, run_fusion

    models = {"a": {"fuser": "3mat"}} if task == "classification" else {"a": {"fuser": "fused_unet"}}
    run_fusion(from_dict(FusionRecipe, {"task": task, "models": models}), tmp / "run", str(tmp / "nodata"), resume)


def _vqa_run(tmp, resume=False):
    from medfm.training.vqa import VQARecipe, run_vqa

    run_vqa(VQARecipe(), tmp / "run", data_root=str(tmp / "nodata"), resume=resume)


def _pretrain_run(tmp, resume=False):
    from medfm.training.recipes import PretrainRecipe
    from medfm.training.runs import run_pretrain

    write_pneumoniamnist(tmp / "data", 16)
    recipe = from_dict(PretrainRecipe, {"data": {"verify_md5": False}, "encoder": {"name": "resnet_test"},
                                        "train": {"batch_size": 8}})
    run_pretrain(recipe, tmp / "run", data_root=str(tmp / "data"), resume=resume)


@pytest.mark.parametrize("runner,state", [
    (_seg_run, "checkpoint"), (_text_seg_run, "checkpoint"), (_fusion_run, "models/a/checkpoint"),
    (lambda t, resume=False: _fusion_run(t, resume, "segmentation"), "models/a/checkpoint"),
    (_vqa_run, "train_state"), (_pretrain_run, "checkpoint")])
def test_runners_refuse_an_existing_run_before_writing_anything(tmp_path, runner, state):
    _fake_state(tmp_path / "run", state)
    with pytest.raises(FileExistsError, match="--resume"):
        runner(tmp_path)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [state.split("/")[0]]


def test_bad_encoder_args_in_pretraining_leave_no_output(tmp_path):
    from medfm.training.recipes import PretrainRecipe
    from medfm.training.runs import run_pretrain

    root = write_pneumoniamnist(tmp_path / "data", 16)
    recipe = from_dict(PretrainRecipe, {"data": {"verify_md5": False}, "encoder": {"name": "resnet_test", "args": {"depthh": 3}}})
    with pytest.raises(Exception):
        run_pretrain(recipe, tmp_path / "run", data_root=str(root))
    assert not (tmp_path / "run").exists()


# -- resume of a label-fraction LoRA fine-tune ----------------------------------------------------
def test_lora_finetune_with_label_fraction_resumes_bit_identically(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from medfm.data import label_fraction_indices
    from medfm.hub import load_config
    from medfm.training.runs import run_finetune

    root = write_pneumoniamnist(tmp_path / "data", 48)
    recipe = finetune_recipe(root, seed=3, epochs=2, dropout=0.3, data={"label_fraction": 0.5, "val_split": "val"},
                       train={"checkpoint_every": 2, "deterministic": True})
    full = run_finetune(recipe, tmp_path / "full")
    restore = kill_after_first_mid_epoch_checkpoint(monkeypatch)
    with pytest.raises(Killed):
        run_finetune(recipe, tmp_path / "killed")
    restore()
    counters = json.loads((tmp_path / "killed" / "checkpoint" / "trainer_state.json").read_text())["counters"]
    assert counters == {"epoch": 0, "step_in_epoch": 2, "global_step": 2}
    resumed = run_finetune(recipe, tmp_path / "killed", resume=True)
    for sub, name in ((full, "adapter_model.safetensors"), (Path(full).parent / "base", "model.safetensors")):
        a = load_file(str(Path(sub) / name))
        b = load_file(str(Path(resumed).parent / Path(sub).name / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert logged_rows(tmp_path / "killed" / "metrics.jsonl") == logged_rows(tmp_path / "full" / "metrics.jsonl")
    assert any("val_acc" in r for r in logged_rows(tmp_path / "full" / "metrics.jsonl"))
    # the subset: stratified, at least one per class, the same every run, from the train split only
    labels = fake_medmnist_arrays("pneumoniamnist", counts=(48, 8, 8))["train_labels"][:, 0]
    idx = label_fraction_indices(labels, 0.5, seed=3)
    assert np.array_equal(idx, label_fraction_indices(labels, 0.5, seed=3)) and idx.max() < 48
    for c in (0, 1):
        assert (labels[idx] == c).sum() == max(1, int(np.floor(0.5 * (labels == c).sum() + 0.5)))
    assert load_config(full)["training"]["data"]["n_train"] == len(idx)
    rare = np.array([0] * 40 + [1])
    assert (rare[label_fraction_indices(rare, 0.01, seed=0)] == 1).sum() == 1  # a rare class is never dropped


def test_vqa_nan_loss_is_a_clear_error(tmp_path, monkeypatch):
    from medfm.adapters.vqa import VQAModel
    from medfm.training.vqa import VQARecipe, run_vqa
    from tests.helpers.vqa_rad import WORDS, write_tiny_vqa_rad
    from tests.conftest import save_tiny_bert

    write_tiny_vqa_rad(tmp_path / "data")
    spec = {"name": "hf", "model_name_or_path": str(save_tiny_bert(tmp_path / "bert", WORDS)), "max_length": 16}
    recipe = from_dict(VQARecipe, {"encoder": {"name": "resnet_test"}, "text_encoder": spec, "n_boot": 5,
                                   "head": {"dim": 16, "heads": 2, "layers": 1},
                                   "train": {"epochs": 2, "batch_size": 4, "precision": "fp32"}})
    real = VQAModel.loss
    monkeypatch.setattr(VQAModel, "loss", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(ValueError, match=r"loss became nan at epoch 1, step 0; lower train.lr"):
        run_vqa(recipe, tmp_path / "run", data_root=str(tmp_path / "data"))
    assert not (tmp_path / "run" / "checkpoint").exists() and not (tmp_path / "run" / "train_state").exists()
