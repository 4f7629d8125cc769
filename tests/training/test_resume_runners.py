"""Every training runner, killed right after a mid-epoch checkpoint and resumed, ends with the
weights (and ``metrics.jsonl``) of an uninterrupted run with the same seed (DESIGN.md, "Runs").

One test over the runners not covered elsewhere (pretraining: ``test_resume.py``; LoRA fine-tune:
``test_runner_audit.py``; VQA: ``tests/adapters/test_vqa.py``): ``medfm segment`` 2D (random
patches, flips), 3D (random crops, foreground oversampling), 2.5D (slice context) and
text-conditioned (several tasks in mixed batches, missing-sequence dropout); ``medfm fuse``
classification (modality dropout, hierarchical channel sampling, MNAR training missingness,
natural missing sequences) and segmentation; full fine-tuning with augmentation and dropout.
Each recipe trains on tiny generated files in the real on-disk formats, 2 epochs of 4 steps with a
checkpoint every 3 steps, and with dropout or stochastic depth where the architecture has it, so a
resume must restore every random stream the training draws from (torch's global RNG for dropout,
the per-step generator of crops, flips, views and modality dropout, the sample order) to match.
(All of them matched before this file was written; a resume that does not restore the torch RNG
fails the dropout cases, one that reseeds the per-step generator fails all.) The kill is in-process: an
exception right after the checkpoint is written (disk state as after a SIGKILL there).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medfm.config import from_dict
from tests.conftest import Killed, kill_after_first_mid_epoch_checkpoint, logged_rows

TRAIN = {"epochs": 2, "batch_size": 2, "lr": 3e-3, "warmup_epochs": 0.5, "precision": "fp32", "seed": 5,
         "log_every": 1, "checkpoint_every": 3, "deterministic": True}  # bit for bit on a GPU too
SEG_EVAL = {"overlays": 0, "distances": False, "overlap": 0.25}


# -- tiny data in the real formats --------------------------------------------------------------
def _chase(root: Path) -> None:
    from tests.helpers.segmentation_data import write_chase

    write_chase(root)  # 2 training images of 36 x 40 px


def _hippocampus(root: Path) -> None:
    from tests.helpers.segmentation_data import write_hippocampus

    write_hippocampus(root, n=10)  # 8 training volumes of (10..12, 12, 9) voxels


def _text_seg_data(root: Path) -> None:
    from tests.conftest import save_tiny_bert
    from tests.helpers.segmentation_data import write_chase, write_lgg

    write_chase(root)
    write_lgg(root)  # 2 training patients of 3 slices, 16 x 16 px (padded to the 32 px patch)
    save_tiny_bert(root / "bert", "a fundus brain mri image of vessels abnormality".split())


def _lgg(root: Path) -> None:
    from tests.helpers.lgg_fusion import write_fake_lgg

    write_fake_lgg(root, slices=4)  # 2 training patients, 8 slices; one lacks pre and post, one post


def _medmnist(root: Path) -> None:
    from tests.training.runs_helpers import write_pneumoniamnist

    write_pneumoniamnist(root, 8, n_eval=4)


# -- the runners ----------------------------------------------------------------------------------
def _segment(spec):
    def run(output, root, resume):
        from medfm.training.segmentation import SegmentationRecipe, run_segmentation

        run_segmentation(from_dict(SegmentationRecipe, spec), output, data_root=str(root), resume=resume)
    return run


def _text_segment(output, root, resume):
    from medfm.training.text_segmentation import TextSegRecipe, run_text_segmentation

    recipe = {"tasks": [
        {"name": "vessel", "modality": "fundus", "target": "vessels",
         "data": {"dataset": "chase_db1", "patch": [32, 32], "repeats": 1, "flip_axes": [0, 1], "max_train": 2,
                  "max_test": 1}},
        {"name": "lesion", "modality": "brain MRI", "target": "abnormality",
         "data": {"dataset": "lgg_flair", "patch": [32, 32], "flip_axes": [1], "missing_sequence_p": 0.5, "max_test": 1}}],
        "text_encoder": {"name": "hf", "model_name_or_path": str(root / "bert"), "max_length": 16},
        "encoder": {"name": "resnet_test", "args": {"drop_path_rate": 0.2}},
        "decoder": {"stem_channels": 8}, "head": {"embed_dim": 16, "controller_hidden": 16},
        "train": TRAIN, "eval": SEG_EVAL}
    run_text_segmentation(from_dict(TextSegRecipe, recipe), output, data_root=str(root), resume=resume)


def _fuse(task, models):
    def run(output, root, resume):
        from medfm.training.fusion import FusionRecipe, run_fusion

        recipe = {"task": task, "data": {"img_size": 16}, "dim": 16, "models": models, "train": TRAIN,
                  "image_encoder": {"name": "resnet_test", "args": {"drop_path_rate": 0.2}}, "protocol": {"n_boot": 5}}
        if task == "segmentation":
            recipe["modalities"] = ["pre", "flair", "post"]
        run_fusion(from_dict(FusionRecipe, recipe), output, str(root), resume)
    return run


def _finetune(output, root, resume):
    from medfm.training.recipes import FinetuneRecipe
    from medfm.training.runs import run_finetune

    recipe = {"data": {"dataset": "pneumoniamnist", "verify_md5": False, "val_split": "val"},
              "encoder": {"name": "resnet_test"}, "mode": "full", "dropout": 0.3,
              "augment": {"scale": [0.5, 1.0], "hflip_p": 0.5, "rotate_deg": 15.0, "noise_std": 0.05}, "train": TRAIN}
    run_finetune(from_dict(FinetuneRecipe, recipe), output, data_root=str(root), resume=resume)


SEG_DEC = {"decoder_channels": [8, 8, 8, 8], "stem_channels": 8}
FUSION_CLS = {
    "channelvit": {"fuser": "channelvit", "args": {"patch_size": 8, "depth": 1, "heads": 2, "hcs": True}},
    "3mat": {"fuser": "3mat", "args": {"heads": 2, "layers": 1, "modality_dropout": 0.3}},
    "multimodn_mnar": {"fuser": "multimodn", "train_missing": "mnar", "args": {"modality_dropout": 0.25}},
}
FUSION_SEG = {"hemis": {"fuser": "fused_unet", "args": {"fusion": "hemis", "modality_dropout": 0.3, "decoder": SEG_DEC}},
              "zero_fill": {"fuser": "fused_unet", "args": {"fusion": "zero_fill", "modality_dropout": 0.3,
                                                            "decoder": SEG_DEC}}}

# name: (data writer, runner, the runs' folders under the output (metrics.jsonl, checkpoint/), final weights
#        under the output, the run the kill lands in (None: the only one))
RUNNERS = {
    "segment_2d_chase": (_chase, _segment({
        "data": {"dataset": "chase_db1", "patch": [32, 32], "repeats": 4, "flip_axes": [0, 1], "max_train": 2,
                 "max_test": 1, "normalize": "channel_zscore"},
        "encoder": {"name": "resnet_test", "args": {"drop_path_rate": 0.2}}, "decoder": {"stem_channels": 8},
        "train": TRAIN, "eval": SEG_EVAL}), ["."], ["model/model.safetensors"], None),
    "segment_3d_hippocampus": (_hippocampus, _segment({
        "data": {"dataset": "msd_hippocampus", "patch": [8, 8, 8], "flip_axes": [0, 1, 2], "foreground_p": 0.5,
                 "repeats": 2, "max_train": 4, "max_test": 1},
        "encoder": {"name": "resnet3d_test"}, "decoder": {"stem_channels": 8},
        "train": TRAIN, "eval": SEG_EVAL}), ["."], ["model/model.safetensors"], None),
    "segment_2_5d_hippocampus": (_hippocampus, _segment({
        "data": {"dataset": "msd_hippocampus", "context_slices": 1, "patch": [16, 16], "flip_axes": [0, 1],
                 "max_train": 1, "max_test": 1},
        "encoder": {"name": "resnet_test", "img_size": 16, "args": {"drop_path_rate": 0.2}},
        "decoder": {"stem_channels": 8}, "train": TRAIN, "eval": SEG_EVAL}), ["."], ["model/model.safetensors"], None),
    "segment_text": (_text_seg_data, _text_segment, ["."], ["model/model.safetensors"], None),
    "fuse_classification": (_lgg, _fuse("classification", FUSION_CLS), [f"models/{m}" for m in FUSION_CLS],
                            [f"models/{m}/model/model.safetensors" for m in FUSION_CLS], "3mat"),
    "fuse_segmentation": (_lgg, _fuse("segmentation", FUSION_SEG), [f"models/{m}" for m in FUSION_SEG],
                          [f"models/{m}/model/model.safetensors" for m in FUSION_SEG], "zero_fill"),
    "finetune_full_augment": (_medmnist, _finetune, ["."], ["model/model.safetensors"], None),
}


@pytest.mark.parametrize("name", list(RUNNERS))
def test_runner_killed_after_a_mid_epoch_checkpoint_resumes_bit_identically(tmp_path, monkeypatch, name):
    write, run, runs, finals, victim = RUNNERS[name]
    root = tmp_path / "data"
    write(root)
    run(tmp_path / "full", root, False)
    undo = kill_after_first_mid_epoch_checkpoint(monkeypatch, victim)
    with pytest.raises(Killed):
        run(tmp_path / "killed", root, False)
    undo()
    state = tmp_path / "killed" / (victim and f"models/{victim}" or ".") / "checkpoint" / "trainer_state.json"
    assert json.loads(state.read_text())["counters"] == {"epoch": 0, "step_in_epoch": 3, "global_step": 3}
    run(tmp_path / "killed", root, True)
    for sub in finals:
        a, b = load_file(str(tmp_path / "full" / sub)), load_file(str(tmp_path / "killed" / sub))
        assert a.keys() == b.keys()
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, f"{sub}: {len(differ)} of {len(a)} tensors differ after the resume, e.g. {differ[:3]}"
    for sub in runs:
        assert (logged_rows(tmp_path / "killed" / sub / "metrics.jsonl")
                == logged_rows(tmp_path / "full" / sub / "metrics.jsonl")), sub


# -- the CUDA generators (dropout on a GPU) -------------------------------------------------------
def test_the_training_state_saves_and_restores_every_cuda_generator(tmp_path, monkeypatch):
    """Dropout and stochastic depth on a GPU draw from the CUDA generators, which
    ``torch.get_rng_state`` leaves out; a resume used to keep them as the runner's reseed left them
    (the dropout masks of the first steps again). A fake two-GPU ``torch.cuda`` (this runs on the
    CPU) checks that the state saves every device's generator and sets each back."""
    from medfm.training.state import load_training_state, save_training_state

    states = [torch.arange(16, dtype=torch.uint8) * (i + 2) for i in range(2)]
    restored = {}
    fake = {"is_available": lambda: True, "is_initialized": lambda: True, "device_count": lambda: 2,
            "get_rng_state_all": lambda: [s.clone() for s in states],
            "set_rng_state": lambda state, device="cuda": restored.__setitem__(device, state.clone())}
    for name, fn in fake.items():
        monkeypatch.setattr(torch.cuda, name, fn)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    save_training_state(tmp_path, model, opt, {"step": 1})
    states[0].zero_()  # the generators move on after the checkpoint
    assert load_training_state(tmp_path, model, opt) == {"step": 1}
    assert sorted(restored) == [0, 1]
    assert torch.equal(restored[0], torch.arange(16, dtype=torch.uint8) * 2) and torch.equal(restored[1], states[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (dropout on a GPU uses the CUDA generator)")
def test_dropout_on_a_gpu_resumes_bit_identically(tmp_path, monkeypatch):
    from medfm.training.loop import Trainer
    from tests.conftest import TinyPairs, save_state_dict, tiny_train_config

    def tiny():  # as the runners do: reseed (CPU and CUDA generators), then build
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Dropout(0.5), torch.nn.ReLU(), torch.nn.Linear(64, 2))

    def step(model, batch, gen):
        return {"loss": torch.nn.functional.cross_entropy(model(batch["x"]), batch["y"])}

    def trainer(name):
        return Trainer(tiny(), step, TinyPairs(), tiny_train_config(), tmp_path / name, save_state_dict)

    full = trainer("full").fit()
    undo = kill_after_first_mid_epoch_checkpoint(monkeypatch)
    with pytest.raises(Killed):
        trainer("killed").fit()
    undo()
    resumed = trainer("killed").fit(resume=True)
    a, b = full.state_dict(), resumed.state_dict()
    assert next(iter(b.values())).is_cuda and all(torch.equal(a[k], b[k]) for k in a)
