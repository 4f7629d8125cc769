"""Helpers shared by the training tests: tiny data sets written on disk, tiny recipes, and a folder's snapshot (what a
refused run must leave as it was)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict

import numpy as np

from medfm.config import from_dict
from tests.conftest import fake_medmnist_arrays, save_tiny_bert

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
    """The tiny VQA-RAD of tests/adapters/test_vqa.py under ``root`` with its 16 training questions ``copies`` times
    (new question ids); returns ``str(root)``, a data root."""
    from tests.adapters.test_vqa import write_tiny_vqa_rad

    write_tiny_vqa_rad(root)
    train = root / "vqa_rad" / "trainset.json"
    records = json.loads(train.read_text())
    train.write_text(json.dumps([dict(r, qid=r["qid"] + 1000 * i) for i in range(copies) for r in records]))
    return str(root)


def write_pneumoniamnist(root: Path, n_train: int) -> str:
    """A generated ``<root>/medmnist/pneumoniamnist.npz`` of ``n_train`` training, 8 validation and 8 test images
    (28 px); returns ``str(root)``, a data root (recipes here use ``verify_md5: False``)."""
    (root / "medmnist").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / "medmnist" / "pneumoniamnist.npz",
                        **fake_medmnist_arrays("pneumoniamnist", counts=(n_train, 8, 8)))
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


def hippocampus_writer(n: int) -> Callable[[Path], None]:
    """A writer of a data root holding a generated MSD hippocampus of ``n`` volumes."""
    from tests.data.test_segmentation_data import write_hippocampus

    return lambda root: write_hippocampus(root, n=n)


def lgg_slices_writer(slices) -> Callable[[Path], None]:
    """A writer of a data root holding a generated LGG FLAIR set of ``slices`` (and, next to the root, a tiny BERT
    ``<root>/../bert`` knowing the words of the prompt "a brain mri image of abnormality")."""
    from tests.data.test_segmentation_data import write_lgg

    def write(root):
        write_lgg(root, slices=slices)
        if not (root.parent / "bert").exists():
            save_tiny_bert(root.parent / "bert", "a brain mri image of abnormality".split())
    return write
