"""Every training runner on tiny generated data in the real on-disk formats (:data:`RUNNERS`): each recipe trains
2 epochs of 4 steps with a checkpoint every 3 steps, with dropout or stochastic depth where the architecture has it,
for the resume and run-record tests (tests/training/test_resume_runners.py, test_thread_record.py)."""
from __future__ import annotations

from pathlib import Path

from medfm.config import from_dict

#: the training settings of every recipe: 2 epochs of 4 steps (batch 2), a checkpoint every 3 steps, seed 5
TRAIN = {"epochs": 2, "batch_size": 2, "lr": 3e-3, "warmup_epochs": 0.5, "precision": "fp32", "seed": 5,
         "log_every": 1, "checkpoint_every": 3, "deterministic": True}  # bit for bit on a GPU too
#: a segmentation run's evaluation, cut to what these tests need (no overlays, no surface distances)
SEG_EVAL = {"overlays": 0, "distances": False, "overlap": 0.25}


# -- tiny data in the real formats --------------------------------------------------------------
def _chase(root: Path) -> None:
    """A generated CHASE_DB1 under the data root ``root``."""
    from tests.helpers.segmentation_data import write_chase

    write_chase(root)  # 2 training images of 36 x 40 px


def _hippocampus(root: Path) -> None:
    """A generated MSD hippocampus of 10 volumes under the data root ``root``."""
    from tests.helpers.segmentation_data import write_hippocampus

    write_hippocampus(root, n=10)  # 8 training volumes of (10..12, 12, 9) voxels


def _text_seg_data(root: Path) -> None:
    """A generated CHASE_DB1 and LGG FLAIR set under ``root``, and a tiny BERT knowing their prompts' words at
    ``root/bert``."""
    from tests.conftest import save_tiny_bert
    from tests.helpers.segmentation_data import write_chase, write_lgg

    write_chase(root)
    write_lgg(root)  # 2 training patients of 3 slices, 16 x 16 px (padded to the 32 px patch)
    save_tiny_bert(root / "bert", "a fundus brain mri image of vessels abnormality".split())


def _lgg(root: Path) -> None:
    """A generated TCGA-LGG multimodal set of 4 slices per patient under the data root ``root``."""
    from tests.helpers.lgg_fusion import write_fake_lgg

    write_fake_lgg(root, slices=4)  # 2 training patients, 8 slices; one lacks pre and post, one post


def _medmnist(root: Path) -> None:
    """A generated PneumoniaMNIST (8 training, 4 validation, 4 test images) under the data root ``root``."""
    from tests.training.runs_helpers import write_pneumoniamnist

    write_pneumoniamnist(root, 8, n_eval=4)


# -- the runners ----------------------------------------------------------------------------------
def _segment(spec):
    """A runner ``run(output, root, resume)`` of ``medfm segment`` with the recipe ``spec`` (a dict)."""
    def run(output, root, resume):
        from medfm.training.segmentation import SegmentationRecipe, run_segmentation

        run_segmentation(from_dict(SegmentationRecipe, spec), output, data_root=str(root), resume=resume)
    return run


def _text_segment(output, root, resume):
    """A text-conditioned ``medfm segment`` run (CHASE_DB1 vessels, LGG FLAIR lesions) into ``output``."""
    from medfm.training.text_segmentation import TextSegRecipe, run_text_segmentation

    recipe = {"tasks": [
        {"name": "vessel", "modality": "fundus", "target": "vessels",
         "data": {"dataset": "chase_db1", "patch": [32, 32], "repeats": 1, "flip_axes": [0, 1], "max_train": 2,
                  "max_test": 1}},
        {"name": "lesion", "modality": "brain MRI", "target": "abnormality",
         "data": {"dataset": "lgg_flair", "patch": [32, 32], "flip_axes": [1], "missing_sequence_p": 0.5,
                  "max_test": 1}}],
        "text_encoder": {"name": "hf", "model_name_or_path": str(root / "bert"), "max_length": 16},
        "encoder": {"name": "resnet_test", "args": {"drop_path_rate": 0.2}},
        "decoder": {"stem_channels": 8}, "head": {"embed_dim": 16, "controller_hidden": 16},
        "train": TRAIN, "eval": SEG_EVAL}
    run_text_segmentation(from_dict(TextSegRecipe, recipe), output, data_root=str(root), resume=resume)


def _fuse(task, models):
    """A runner ``run(output, root, resume)`` of ``medfm fuse`` for ``task`` (classification or segmentation)
    training ``models`` (``{label: model settings}``)."""
    def run(output, root, resume):
        from medfm.training.fusion import FusionRecipe, run_fusion

        recipe = {"task": task, "data": {"img_size": 16}, "dim": 16, "models": models, "train": TRAIN,
                  "image_encoder": {"name": "resnet_test", "args": {"drop_path_rate": 0.2}}, "protocol": {"n_boot": 5}}
        if task == "segmentation":
            recipe["modalities"] = ["pre", "flair", "post"]
        run_fusion(from_dict(FusionRecipe, recipe), output, str(root), resume)
    return run


def _finetune(output, root, resume):
    """``medfm finetune`` (full, with augmentation and dropout) of resnet_test on PneumoniaMNIST into ``output``."""
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
FUSION_SEG = {"hemis": {"fuser": "fused_unet", "args": {"fusion": "hemis", "modality_dropout": 0.3,
                                                        "decoder": SEG_DEC}},
              "zero_fill": {"fuser": "fused_unet", "args": {"fusion": "zero_fill", "modality_dropout": 0.3,
                                                            "decoder": SEG_DEC}}}

#: name: (data writer, runner, the runs' folders under the output (metrics.jsonl, checkpoint/), final weights
#:       under the output, the run the kill lands in (None: the only one))
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
