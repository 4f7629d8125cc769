"""The ``finetune`` evaluation protocol: fine-tune a checkpoint's encoder on a label fraction, then score.

``medfm eval --suite S --protocol finetune --label-fraction 0.01,0.1,1`` complements the
frozen-feature protocols (``linear``, ``knn``): for each MedMNIST dataset of the suite and
each fraction, the checkpoint's encoder (any kind: pretraining objective, classifier,
image-text model) gets a fresh linear head and is trained with
:func:`medfm.training.runs.run_finetune` on a stratified seeded ``fraction`` of the
training labels (:func:`medfm.data.medmnist.label_fraction_indices`), then the trained
classifier is scored like an ``as-is`` checkpoint. This is the "fine-tuning" column of the
label-efficiency tables in SimCLR (Chen et al. 2020, section 6) and LVM-Med.

Settings (``protocol.finetune`` in the suite, a partial :class:`medfm.training.recipes.FinetuneRecipe`):
``mode`` (``full`` by default; ``lora``, ``linear``), ``lora``, ``augment``, ``dropout``,
``head_norm`` (MAE's parameter-free feature BatchNorm; use it with ``linear``) and ``train`` (AdamW, cosine schedule). ``run_finetune`` caps the batch at the number of training
labels (1 % of PneumoniaMNIST is 47 images, fewer than one batch of 64). Without ``train.epochs`` the epochs are
``min(60, ceil(2 / fraction))``: 2 epochs of all labels, 20 of 10 %, 60 of 1 %, so small
fractions still get enough optimizer steps (the schedule of medfm's supervised-only
baselines in ``docs/ssl_results.md``). The trained model of each fraction is kept under
``<output>/<dataset>/finetune-f<fraction>/train``.
"""
from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, Optional

import torch

AUTO_EPOCHS_CAP = 60


def auto_epochs(fraction: float) -> int:
    """Epochs for a label ``fraction`` in (0, 1]: ``min(60, ceil(2 / fraction))``.

    Raises:
        ValueError: a fraction outside (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    return int(min(AUTO_EPOCHS_CAP, math.ceil(2.0 / fraction - 1e-9)))


def finetune_recipe(encoder: torch.nn.Module, checkpoint: str, flag: str, size: int, fraction: float,
                    settings: Optional[Dict[str, Any]] = None, seed: int = 0) -> Any:
    """The :class:`FinetuneRecipe` of one (checkpoint, dataset, fraction) run.

    Args:
        encoder: the checkpoint's encoder (its ``config`` names the architecture).
        checkpoint: the checkpoint the encoder weights are loaded from.
        flag, size: MedMNIST dataset and released size.
        fraction: label fraction in (0, 1].
        settings: partial :class:`FinetuneRecipe`: any of its sections except ``data`` and
            ``encoder``, which the checkpoint and the run fix.

    Raises:
        ConfigError / ValueError: unknown or bad settings.
    """
    from medfm.config import from_dict
    from medfm.training.recipes import FinetuneRecipe

    settings = dict(settings or {"mode": "full"})
    settings.setdefault("mode", "full")
    known = [f.name for f in fields(FinetuneRecipe) if f.name not in ("data", "encoder")]  # set per checkpoint/run
    unknown = set(settings) - set(known)
    if unknown:
        raise ValueError(f"protocol.finetune: unknown key(s) {sorted(unknown)} (known: {', '.join(known)})")
    cfg = dict(getattr(encoder, "config", {}) or {})
    if "name" not in cfg:
        raise ValueError(f"the checkpoint's encoder {type(encoder).__name__} does not record its architecture")
    train = {"seed": seed, **dict(settings.get("train") or {})}
    train.setdefault("epochs", auto_epochs(fraction))
    data = {"dataset": flag, "size": size, "label_fraction": float(fraction), "val_split": None}
    enc = {"name": cfg["name"], "pretrained": str(checkpoint),
           "args": {k: v for k, v in cfg.items() if k not in ("name", "in_chans", "img_size")}}
    return from_dict(FinetuneRecipe, {**settings, "data": data, "encoder": enc, "train": train}, where="protocol.finetune")


def finetune_classifier(encoder: torch.nn.Module, checkpoint: str, flag: str, size: int, fraction: float,
                        workdir: Path, settings: Optional[Dict[str, Any]] = None, seed: int = 0,
                        data_root: Optional[str] = None) -> torch.nn.Module:
    """Fine-tune ``checkpoint``'s encoder on ``fraction`` of ``flag``'s training labels; returns the
    trained classifier (eval mode), images ``(B, C, H, W)`` float in [0, 1] -> logits ``(B, K)``.

    A finished run in ``workdir`` is reused (its ``model``/``adapter`` checkpoint) and a run
    killed mid-training resumes from its last checkpoint, so an interrupted suite continues
    where it stopped.

    Raises:
        MedFMDataError: the dataset is missing; ValueError: bad settings or a 3D dataset.
    """
    from medfm.hub import from_pretrained
    from medfm.training.runs import run_finetune

    workdir = Path(workdir)
    for done in ("model", "adapter"):
        if (workdir / done / "config.json").is_file():
            return from_pretrained(str(workdir / done)).eval()
    recipe = finetune_recipe(encoder, checkpoint, flag, size, fraction, settings, seed)
    final = run_finetune(recipe, workdir, data_root=data_root, resume=True)
    return from_pretrained(str(final)).eval()


__all__ = ["auto_epochs", "finetune_recipe", "finetune_classifier", "AUTO_EPOCHS_CAP"]
