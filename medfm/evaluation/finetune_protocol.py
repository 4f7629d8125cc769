"""The ``finetune`` evaluation protocol: fine-tune a checkpoint's encoder on a label fraction, then score.

``medfm eval --suite S --protocol finetune --label-fraction 0.01,0.1,1`` complements the
frozen-feature protocols (``linear``, ``knn``): for each MedMNIST dataset of the suite and
each fraction, the checkpoint's encoder (any kind: pretraining objective, classifier,
image-text model) gets a fresh linear head and is trained with
:func:`medfm.training.runs.run_finetune` on a stratified seeded ``fraction`` of the
training labels (:func:`medfm.training.runs.finetune_label_indices`, which the suite's reported
``train_labels`` counts use too), then the trained
classifier is scored like an ``as-is`` checkpoint. Runs train on MedMNIST's train split: a suite
dataset with another ``train_split`` is refused (:func:`medfm.evaluation.suites.run_suite`). This is the "fine-tuning"
column of the label-efficiency tables in SimCLR (Chen et al. 2020, section 6) and LVM-Med.

Settings (``protocol.finetune`` in the suite, a partial :class:`medfm.training.recipes.FinetuneRecipe`):
``mode`` (``full`` by default; ``lora``, ``linear``), ``lora``, ``augment``, ``dropout``,
``head_norm`` (MAE's parameter-free feature BatchNorm; use it with ``linear``) and ``train`` (AdamW, cosine schedule).
``run_finetune`` caps the batch at the number of training labels (1 % of PneumoniaMNIST is 47 images, fewer than
one batch of 64). Without ``train.epochs`` the epochs are ``min(60, ceil(2 / fraction))``: 2 epochs of all labels,
20 of 10 %, 60 of 1 %, so small fractions still get enough optimizer steps (the schedule of medfm's supervised-only
baselines in ``docs/ssl_results.md``). The trained model of each fraction is kept under
``<output>/<dataset>/finetune-f<fraction>/train``; a rerun into the same ``--output`` reuses it
only when ``eval_source.json`` there names the same checkpoint weights (sha256) and settings, and
refuses otherwise (it used to score the old model under the new checkpoint's name).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from medfm.arg_checks import check_label_fraction

AUTO_EPOCHS_CAP = 60


def auto_epochs(fraction: float) -> int:
    """Epochs for a label ``fraction`` in (0, 1]: ``min(60, ceil(2 / fraction))``.

    Raises:
        ValueError: a fraction that is not a number in (0, 1] (``True`` is refused, not taken as 1):
            ``label fraction must be in (0, 1], got True (bool)`` (:func:`medfm.arg_checks.check_label_fraction`).
    """
    fraction = check_label_fraction(fraction, "label fraction")
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
        ValueError: ``settings`` not a mapping (a string such as ``"full"`` failed in ``dict()``), an encoder
            without a recorded architecture.
        ConfigError: an unknown key (:func:`medfm.suite_protocols.check_finetune_keys`, the rule and words of the
            suite reader: ``"protocol.finetune: unknown key 'lr'; it is a train setting: write train:
            {lr: ...}"``), a bad setting.
    """
    from collections.abc import Mapping

    from medfm.config import from_dict
    from medfm.suite_protocols import check_finetune_keys
    from medfm.training.recipes import FinetuneRecipe

    if settings is not None and not isinstance(settings, Mapping):
        raise ValueError(f"protocol.finetune must be a mapping of FinetuneRecipe sections (e.g. {{'mode': 'full'}}), "
                         f"got {settings!r}")
    settings = dict(settings or {"mode": "full"})
    settings.setdefault("mode", "full")
    check_finetune_keys(settings)  # the suite reader's rule: data and encoder are set here, per checkpoint/run
    cfg = dict(getattr(encoder, "config", {}) or {})
    if "name" not in cfg:
        raise ValueError(f"the checkpoint's encoder {type(encoder).__name__} does not record its architecture")
    train = {"seed": seed, **dict(settings.get("train") or {})}
    train.setdefault("epochs", auto_epochs(fraction))
    data = {"dataset": flag, "size": size, "label_fraction": float(fraction), "val_split": None}
    enc = {"name": cfg["name"], "pretrained": str(checkpoint),
           "args": {k: v for k, v in cfg.items() if k not in ("name", "in_chans", "img_size")}}
    return from_dict(FinetuneRecipe, {**settings, "data": data, "encoder": enc, "train": train},
                     where="protocol.finetune")


#: file in each fine-tuning run folder naming the checkpoint (by weights hash) and settings it was started from
SOURCE_JSON = "eval_source.json"


def _source(checkpoint: str, checkpoint_sha256: Optional[str], recipe: Any) -> Dict[str, Any]:
    """What identifies a fine-tuning run: the checkpoint's weights hash and the recipe without
    ``encoder.pretrained`` (the same checkpoint may be named by another path)."""
    from medfm.config import to_dict
    from medfm.io import to_jsonable

    settings = to_jsonable(to_dict(recipe))
    settings["encoder"] = {k: v for k, v in settings["encoder"].items() if k != "pretrained"}
    return {"checkpoint": str(checkpoint), "checkpoint_sha256": checkpoint_sha256, "recipe": settings}


def _check_source(workdir: Path, source: Dict[str, Any]) -> None:
    """Refuse to reuse or resume the run in ``workdir`` unless it was started from the same checkpoint
    weights and settings (a rerun into an existing ``--output`` used to score the old fine-tuned model
    under the new checkpoint's name and hash).

    Raises:
        ValueError: ``workdir`` holds a run from other weights or settings, or a run without
            :data:`SOURCE_JSON` (one cannot tell what it was fine-tuned from).
    """
    import json

    from medfm.training.resume import setting_differences

    started = any((workdir / f).exists() for f in ("config.yaml", "model", "adapter", "checkpoint"))
    path = workdir / SOURCE_JSON
    if not path.is_file():
        if started:
            raise ValueError(f"{workdir} holds a fine-tuning run without {SOURCE_JSON}, so which checkpoint it was "
                             "fine-tuned from is unknown; choose another --output or delete that folder")
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} cannot be read ({err}); choose another --output or delete {workdir}") from None
    diffs = []
    if saved.get("checkpoint_sha256") != source["checkpoint_sha256"]:
        diffs.append(f"checkpoint {saved.get('checkpoint')} (sha256 {str(saved.get('checkpoint_sha256'))[:12]}) -> "
                     f"{source['checkpoint']} (sha256 {str(source['checkpoint_sha256'])[:12]})")
    diffs += setting_differences(saved.get("recipe") or {}, source["recipe"])
    if diffs:
        raise ValueError(f"{workdir} holds a fine-tuning run of another checkpoint or other settings ("
                         + "; ".join(diffs[:3]) + "); choose another --output or delete that folder")


def finetune_classifier(encoder: torch.nn.Module, checkpoint: str, flag: str, size: int, fraction: float,
                        workdir: Path, settings: Optional[Dict[str, Any]] = None, seed: int = 0,
                        data_root: Optional[str] = None, checkpoint_sha256: Optional[str] = None) -> torch.nn.Module:
    """Fine-tune ``checkpoint``'s encoder on ``fraction`` of ``flag``'s training labels; returns the
    trained classifier (eval mode), images ``(B, C, H, W)`` float in [0, 1] -> logits ``(B, K)``.

    A finished run in ``workdir`` is reused (its ``model``/``adapter`` checkpoint) and a run
    killed mid-training resumes from its last checkpoint, so an interrupted suite continues
    where it stopped; both only when ``workdir/eval_source.json`` shows the run was started from
    the same weights (``checkpoint_sha256``, computed from ``checkpoint`` when None) and settings.

    Raises:
        MedFMDataError: the dataset is missing; ValueError: bad settings, a 3D dataset, or a
        ``workdir`` holding a run of other weights or settings (:func:`_check_source`).
    """
    from medfm.hub import from_pretrained
    from medfm.io import atomic_write_json
    from medfm.training.runs import run_finetune

    workdir = Path(workdir)
    recipe = finetune_recipe(encoder, checkpoint, flag, size, fraction, settings, seed)
    if checkpoint_sha256 is None:
        from medfm.evaluation.report import checkpoint_hash
        from medfm.hub import resolve_checkpoint

        checkpoint_sha256 = checkpoint_hash(resolve_checkpoint(checkpoint))
    source = _source(checkpoint, checkpoint_sha256, recipe)
    _check_source(workdir, source)
    for done in ("model", "adapter"):
        if (workdir / done / "config.json").is_file():
            return from_pretrained(str(workdir / done)).eval()
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(workdir / SOURCE_JSON, source)
    final = run_finetune(recipe, workdir, data_root=data_root, resume=True)
    return from_pretrained(str(final)).eval()


__all__ = ["auto_epochs", "finetune_recipe", "finetune_classifier", "AUTO_EPOCHS_CAP", "SOURCE_JSON"]
