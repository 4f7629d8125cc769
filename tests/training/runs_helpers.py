"""Helpers shared by the training tests: tiny data sets written on disk, tiny recipes, and a folder's snapshot (what a
refused run must leave as it was)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict

from medfm.config import from_dict
from tests.conftest import fake_medmnist_arrays, save_tiny_bert, write_medmnist_npz

#: a segmentation run's evaluation, cut to what a test needs (no overlays, no surface distances)
SEG_EVAL = {"overlays": 0, "distances": False}

#: the fusion models of :func:`fusion_recipe` by task: a baseline over every modality and one over 'pre' only
FUSION_MODELS = {
    "classification": {"late": {"fuser": "late_fusion_zero_fill"},
                       "single_pre": {"fuser": "late_fusion_zero_fill", "args": {"modalities": ["pre"]}}},
    "segmentation": {"unet": {"fuser": "fused_unet"},
                     "single_pre": {"fuser": "fused_unet", "args": {"modalities": ["pre"]}}},
}


def folder_snapshot(folder: Path) -> Dict[str, bytes]:
    """Every file under ``folder`` (its path relative to ``folder``) with its bytes: what a refused run must leave
    as it was. Compare two snapshots with ``==``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def write_vqa_data(root: Path, copies: int) -> str:
    """The tiny VQA-RAD of tests/helpers/vqa_rad.py under ``root`` with its 16 training questions ``copies`` times
    (new question ids); returns ``str(root)``, a data root."""
    from tests.helpers.vqa_rad import write_tiny_vqa_rad

    write_tiny_vqa_rad(root)
    train = root / "vqa_rad" / "trainset.json"
    records = json.loads(train.read_text())
    train.write_text(json.dumps([dict(r, qid=r["qid"] + 1000 * i) for i in range(copies) for r in records]))
    return str(root)


def write_pneumoniamnist(root: Path, n_train: int, n_eval: int = 8) -> str:
    """A generated ``<root>/medmnist/pneumoniamnist.npz`` of ``n_train`` training, ``n_eval`` validation and
    ``n_eval`` test images (28 px); returns ``str(root)``, a data root (recipes here use ``verify_md5: False``)."""
    counts = (n_train, n_eval, n_eval)
    write_medmnist_npz(root, "pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=counts))
    return str(root)


def finetune_recipe(root, seed=0, epochs=1, **kw):
    """A LoRA (rank 2) fine-tuning recipe of resnet_test on the pneumoniamnist under ``root`` (no validation split),
    batch 8; ``data`` and ``train`` in ``kw`` add to those sections, other keys are recipe keys."""
    from medfm.training.recipes import FinetuneRecipe

    data = {"dataset": "pneumoniamnist", "verify_md5": False, "data_root": str(root), "val_split": None}
    data.update(kw.pop("data", {}))
    return from_dict(FinetuneRecipe, {"data": data, "encoder": {"name": "resnet_test"}, "mode": "lora",
                                      "lora": {"rank": 2}, **kw,
                                      "train": {"epochs": epochs, "batch_size": 8, "precision": "fp32", "seed": seed,
                                                "log_every": 1, **kw.pop("train", {})}})


def pretrain_recipe(root, **train):
    """A SimCLR pretraining recipe (16-d hidden layer, 8-d projection) of resnet_test on the pneumoniamnist under
    ``root``: one epoch of batch 8 in fp32, a log row every step; ``train`` adds to or replaces those settings."""
    from medfm.training.recipes import PretrainRecipe

    data = {"dataset": "pneumoniamnist", "verify_md5": False, "data_root": str(root)}
    return from_dict(PretrainRecipe, {"data": data, "encoder": {"name": "resnet_test"},
                                      "objective": {"name": "simclr", "args": {"hidden_dim": 16, "proj_dim": 8}},
                                      "train": {"epochs": 1, "batch_size": 8, "precision": "fp32", "log_every": 1,
                                                **train}})


def fusion_recipe(task: str, batch_size: int):
    """A ``medfm fuse`` recipe of :data:`FUSION_MODELS` for ``task`` ("classification" or "segmentation"): 16 px,
    dim 16, one epoch of ``batch_size``, one thread."""
    from medfm.training.fusion import FusionRecipe

    recipe = {"task": task, "data": {"img_size": 16}, "dim": 16, "models": FUSION_MODELS[task],
              "protocol": {"n_boot": 2},
              "train": {"epochs": 1, "batch_size": batch_size, "warmup_epochs": 0, "num_threads": 1}}
    if task == "segmentation":
        recipe["modalities"] = ["pre", "flair", "post"]
    return from_dict(FusionRecipe, recipe)


def vqa_recipe(folder: Path, data_root=None, **train):
    """A tiny ``medfm vqa`` recipe of resnet_test (a 16-d head of one layer, 5 bootstrap resamples) whose text encoder
    is a tiny BERT knowing the words of tests/helpers/vqa_rad.py, saved at ``<folder>/bert`` on first use: 2 epochs
    of batch 4 in fp32; ``train`` adds to or replaces those settings; ``data_root`` (None: none) is its
    ``data.data_root``."""
    from medfm.training.vqa import VQARecipe
    from tests.helpers.vqa_rad import WORDS

    bert = Path(folder) / "bert"
    if not bert.exists():
        save_tiny_bert(bert, WORDS)
    recipe = {"encoder": {"name": "resnet_test"}, "n_boot": 5, "head": {"dim": 16, "heads": 2, "layers": 1},
              "text_encoder": {"name": "hf", "model_name_or_path": str(bert), "max_length": 16},
              "train": {"epochs": 2, "batch_size": 4, "precision": "fp32", **train}}
    if data_root is not None:
        recipe["data"] = {"data_root": data_root}
    return from_dict(VQARecipe, recipe)


def segment_recipe(train: Dict, **kw):
    """A ``medfm segment`` recipe of resnet3d_test on 8-voxel MSD hippocampus patches (one repeat, one test volume,
    :data:`SEG_EVAL`) with the ``train`` section; other recipe keys in ``kw`` (``mode``, ``lora``)."""
    from medfm.training.segmentation import SegmentationRecipe

    recipe = {"data": {"dataset": "msd_hippocampus", "patch": [8, 8, 8], "repeats": 1, "max_test": 1},
              "encoder": {"name": "resnet3d_test"}, "decoder": {"stem_channels": 8}, "train": train, "eval": SEG_EVAL}
    return from_dict(SegmentationRecipe, {**recipe, **kw})


def text_segment_recipe(root: Path, train: Dict, **kw):
    """A text-conditioned ``medfm segment`` recipe of resnet_test on 32-px LGG FLAIR patches (the "lesion" task, one
    test case, :data:`SEG_EVAL`) whose text encoder is the tiny BERT :func:`lgg_slices_writer` saves next to the data
    root ``root``, with the ``train`` section; other recipe keys in ``kw`` (``mode``, ``lora``)."""
    from medfm.training.text_segmentation import TextSegRecipe

    recipe = {"tasks": [{"name": "lesion", "modality": "brain MRI", "target": "abnormality",
                         "data": {"dataset": "lgg_flair", "patch": [32, 32], "max_test": 1}}],
              "text_encoder": {"name": "hf", "model_name_or_path": str(Path(root).parent / "bert"), "max_length": 16},
              "encoder": {"name": "resnet_test"}, "decoder": {"stem_channels": 8},
              "head": {"embed_dim": 16, "controller_hidden": 16}, "train": train, "eval": SEG_EVAL}
    return from_dict(TextSegRecipe, {**recipe, **kw})


def hippocampus_writer(n: int) -> Callable[[Path], None]:
    """A writer of a data root holding a generated MSD hippocampus of ``n`` volumes."""
    from tests.helpers.segmentation_data import write_hippocampus

    return lambda root: write_hippocampus(root, n=n)


def lgg_slices_writer(slices) -> Callable[[Path], None]:
    """A writer of a data root holding a generated LGG FLAIR set of ``slices`` (and, next to the root, a tiny BERT
    ``<root>/../bert`` knowing the words of the prompt "a brain mri image of abnormality")."""
    from tests.helpers.segmentation_data import write_lgg

    def write(root):
        write_lgg(root, slices=slices)
        if not (root.parent / "bert").exists():
            save_tiny_bert(root.parent / "bert", "a brain mri image of abnormality".split())
    return write
