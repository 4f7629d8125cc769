"""``medfm fuse`` with ``task: segmentation``: missing-modality FLAIR-abnormality segmentation on TCGA-LGG.

The recipe is a :class:`medfm.training.fusion.FusionRecipe` (``finetune/fusion_lgg_segmentation.yaml``)
whose ``modalities`` are image sequences and whose ``models`` are segmentation fusers
(``fused_unet``: HeMIS fusion, or ``fusion: zero_fill`` for the late-fusion baseline; one
modality = single-modality U-Net). Every model is trained with
:class:`medfm.training.loop.Trainer` on the LGG train patients (natural missingness: FLAIR-copy
sequences absent; single-modality models only on the slices that have their sequence) with
MONAI Dice + cross-entropy on the slice masks and a random horizontal flip shared by a
sample's images and mask. Then :func:`medfm.evaluation.fusion_seg.run_seg_fusion_protocol`
computes per-patient Dice on the test patients for every modality subset. Output: as
:func:`medfm.training.fusion.run_fusion` (``config.yaml``, ``models/<label>/``, ``results.json``,
``report.md``, ``subsets.png``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from medfm.training.run_folder import discards_failed_output

LABEL_NAMES = ["background", "flair_abnormality"]


def seg_fusion_step(model: torch.nn.Module, batch: Dict[str, Any], gen: torch.Generator) -> Dict[str, torch.Tensor]:
    """Trainer step: shared random horizontal flip of a sample's images and mask
    (:func:`medfm.training.fusion.flip_images`), forward, Dice + CE.

    ``batch["mask"]`` ``(B, S, S)`` bool/int; image modalities ``(B, 1, S, S)``, on any device
    (the flips are drawn on the CPU from ``gen``, then moved to the batch's device). Returns
    ``{"loss", "fg_frac"}`` (predicted foreground fraction).
    """
    from medfm.training.fusion import flip_images

    batch, flip = flip_images(batch, model.modalities, gen)
    mask = batch["mask"].long()
    flip = flip.to(mask.device)
    mask = torch.where(flip[:, None, None], mask.flip(-1), mask)
    out = model(batch, gen)
    return {"loss": model.loss(out, mask), "fg_frac": (out["logits"].argmax(1) == 1).float().mean().detach()}


def build_seg_fuser(recipe: Any, spec: Any) -> torch.nn.Module:
    """The registered segmentation fuser of ``spec``: the recipe's encoder and size under the model's own ``args``,
    and the model's modalities (:func:`medfm.training.fusion.model_modalities`)."""
    from medfm.registry import FUSERS
    from medfm.training.fusion import model_modalities

    if FUSERS.tags(spec.fuser).get("task") != "segmentation":
        raise ValueError(f"fuser {spec.fuser!r} is not a segmentation fuser (known: "
                         f"{FUSERS.names(task='segmentation')})")
    shared: Dict[str, Any] = {"image_encoder": dict(recipe.image_encoder), "img_size": recipe.data.img_size,
                              "label_names": LABEL_NAMES}
    return FUSERS.build(spec.fuser, **{**shared, **spec.args, "modalities": model_modalities(recipe, spec)})


@discards_failed_output  # a failed run leaves no folder it created with nothing trained
def run_fusion_segmentation(recipe: Any, output: Path, data_root: Optional[str] = None,
                            resume: bool = False) -> Dict[str, Any]:
    """Train every model of a ``task: segmentation`` recipe and run the Dice protocol.

    Every model is built first, so a non-segmentation or unknown fuser, or bad fuser arguments,
    fail before the data are read and before any model trains (``train_missing: mnar`` is refused
    when the recipe is read, :class:`medfm.training.fusion.FusionRecipe`).

    Raises:
        ConfigError: a non-segmentation fuser or bad fuser arguments, with the model's recipe location
        (:func:`medfm.training.fusion.build_models`);
        UnknownNameError: an unregistered fuser; MedFMDataError: LGG missing.
    """
    from medfm.evaluation.fusion_seg import run_seg_fusion_protocol, write_seg_fusion_report
    from medfm.training.fusion import (build_models, fit_or_reuse, fit_timings, fusion_data_record,
                                       fusion_training_record, write_fusion_cards)
    from medfm.training.fusion_run import recipe_writer, start_run

    built = build_models(recipe, lambda spec: build_seg_fuser(recipe, spec))  # checked before the data are read
    output, train, test, natural, t0 = start_run(recipe, output, data_root, resume)  # natural: read once there
    trained, fits = {}, {}
    write_config = recipe_writer(recipe, output)  # config.yaml, once: before the first trained model's fit writes
    for label, spec in recipe.models.items():
        model, fits[label] = fit_or_reuse(built.pop(label), seg_fusion_step, train, recipe.train,
                                          output / "models" / label,
                                          resume, natural, fusion_data_record(train, test, data_root, "natural"),
                                          fusion_training_record(recipe, label, spec), log_tag="fuse-seg",
                                          before_write=write_config)
        trained[label] = model.eval()
    write_config.clear_report()  # every model reused: the earlier report goes before the protocol (else gone already)
    res = run_seg_fusion_protocol(trained, test.get_batch(torch.arange(len(test))), recipe.modalities, LABEL_NAMES,
                                  recipe.protocol.n_boot, recipe.protocol.seed)
    extra = {"task": f"FLAIR-abnormality segmentation, TCGA-LGG, {recipe.data.img_size} px slices; Dice per patient",
             "split": {"rule": "sorted patient folders; i % 3 == 2 -> test", "train": train.patients,
                       "test": test.patients, "n_train_slices": len(train), "n_test_slices": len(test)},
             "missing_sequences": {**train.missing, **test.missing}, **fit_timings(fits),
             "wall_s": round(time.perf_counter() - t0, 1)}
    write_seg_fusion_report(res, output, extra)
    write_fusion_cards(output, list(recipe.models), {**extra, **res})
    return {**extra, **res}


def seg_summary(res: Dict[str, Any], output: Path) -> str:
    """Lines printed by ``medfm fuse``: Dice per subset and model, then where the reports are (intervals as the
    report writes them: :func:`medfm.evaluation.fusion_report.format_ci`, ``n/a`` without a bootstrap)."""
    from medfm.evaluation.fusion_report import format_ci

    lines = [f"{r['subset']:>16} {r['model']:>16}: Dice {r['dice']:.3f} ({r['n_patients']} patients, {r['n']} slices)"
             for r in res["subsets"]]
    lines += [f"{'natural':>16} {r['model']:>16}: Dice {r['dice']:.3f} (95% CI {format_ci(r['dice_ci95'])})"
              for r in res["natural"]]
    lines.append(f"results: {Path(output) / 'results.json'}; report: {Path(output) / 'report.md'}")
    return "\n".join(lines)


__all__ = ["seg_fusion_step", "build_seg_fuser", "run_fusion_segmentation", "seg_summary", "LABEL_NAMES"]
