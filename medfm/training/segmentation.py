"""``medfm segment``: train a segmentation adapter from a recipe, then evaluate it on the test split.

The run trains :class:`medfm.adapters.segmentation.SegmentationModel` (encoder frozen,
LoRA, or full fine-tuning) with :class:`medfm.training.loop.Trainer`: each step takes
seeded random crops (``data.patch``) inside each image's unpadded region and random flips,
and minimises Dice + cross-entropy. Evaluation runs MONAI sliding-window inference at the
original resolution and writes into the output directory:

* ``config.yaml`` (resolved recipe), ``metrics.jsonl``, ``training_curve.png``, ``checkpoint/`` (resumable);
* ``model/`` (frozen/full) or ``adapter/`` (LoRA, adapter-only) final checkpoint;
* ``results.json`` (split rule and ids, per-case and summary Dice / HD95 / surface Dice,
  for CHASE_DB1 also the second observer's scores, the report's ``"files"``; first the header of every medfm
  result, :func:`medfm.versions.result_header`: ``"schema_version"``, ``"kind": "segmentation"``, ``"created"`` and
  the installed ``"versions"``) and ``results.md`` (which shows the header's line,
  :func:`medfm.versions.provenance_text`);
* ``overlays/<case>.png`` (prediction vs reference: yellow TP, red FP, green FN).

An earlier report's files (``results.json`` first, its ``"files"``, ``results.md`` and every test case's overlay:
:func:`seg_report_files`) are removed when the run starts writing, with ``config.yaml``
(:func:`medfm.evaluation.report.start_report_dir`): a resume with fewer ``eval.overlays`` kept the old PNGs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from medfm.adapters.lora import LoraSettings
from medfm.arg_checks import check_number, number_fits, shown
from medfm.config import check_field_types
from medfm.training.loop import TrainConfig, Trainer
from medfm.training.recipes import EncoderConfig
from medfm.training.run_folder import discards_failed_output
from medfm.training.seg_tasks import SegDataConfig, SegTask, build_task

SEG_MODES = ("frozen", "lora", "full")


@dataclass
class SegEvalConfig:
    """Evaluation section.

    Attributes:
        overlap: sliding-window overlap fraction.
        sw_batch_size: windows per forward pass.
        overlays: number of test cases written as PNG overlays.
        tolerance: surface Dice tolerance (voxel spacing units: mm for NIfTI, else pixels).
        distances: compute HD95 and surface Dice (slower on large 2D images).
        roi_size: sliding-window size recorded in the model for inference (default:
            ``data.patch``). A window larger than the image is zero-padded, which the model
            never saw in training: on MSD Hippocampus a 48x64x48 window (one per volume)
            dropped anterior Dice from 0.89 to 0.53 against 32x48x32 windows, so keep the
            training patch unless the images are larger than the window.

    Raises:
        ValueError: a value out of range or of the wrong kind (overlap outside [0, 1),
            sw_batch_size not an integer >= 1, overlays not an integer >= 0, tolerance not a
            finite number >= 0, roi_size sides not integers >= 1; ``True`` is not taken as 1), ``distances``
            not true/false (:func:`medfm.config.check_field_types`).
    """

    overlap: float = 0.5
    sw_batch_size: int = 4
    overlays: int = 4
    tolerance: float = 1.0
    distances: bool = True
    roi_size: Optional[List[int]] = None

    def __post_init__(self) -> None:
        # checked when the recipe is read: these settings are first used after training
        from medfm.adapters.segmentation import check_overlap

        check_field_types(self, "eval.")  # (distances="no" was taken as true)
        self.overlap = check_overlap(self.overlap, "eval.overlap")
        check_number("eval.sw_batch_size", self.sw_batch_size, ge=1, integer=True)
        check_number("eval.overlays", self.overlays, ge=0, integer=True, hint=" (0: none)")
        check_number("eval.tolerance", self.tolerance, ge=0, hint=" (spacing units)")
        if self.roi_size is not None and (not isinstance(self.roi_size, (list, tuple)) or not self.roi_size
                                          or not all(number_fits(r, ge=1, integer=True) for r in self.roi_size)):
            raise ValueError(f"eval.roi_size must be a list of integer sides >= 1, got {shown(self.roi_size)}")

    def check_dims(self, dims: int, data: str) -> None:
        """Check that ``roi_size`` (if set) has one side per spatial dimension of the ``dims``-D windows of ``data``.

        Raises:
            ValueError: ``eval.roi_size has 3 values for 2-D chase_db1 windows, got [64, 64, 64]``.
        """
        if self.roi_size is not None and len(self.roi_size) != dims:
            raise ValueError(f"eval.roi_size has {len(self.roi_size)} values for {dims}-D {data} windows, "
                             f"got {self.roi_size}")


@dataclass
class SegmentationRecipe:
    """``medfm segment`` recipe (``finetune/seg_*.yaml``).

    Attributes:
        data: :class:`SegDataConfig`.
        encoder: encoder name/size/init; ``img_size`` defaults to ``data.patch[0]``.
        decoder: :class:`medfm.adapters.segmentation.UNetDecoder` options.
        mode: "frozen" (decoder only), "lora" or "full".
        lora: LoRA settings (mode "lora").
        train: optimisation (:class:`TrainConfig`).
        eval: :class:`SegEvalConfig`.

    Raises:
        ValueError: an unknown ``mode``; ``eval.roi_size`` of the wrong length for the data; a section of the
            wrong type (each is its dataclass or a mapping of its settings: :func:`medfm.config.check_field_types`).
        ConfigError: a bad mapping section.
    """

    data: SegDataConfig = field(default_factory=SegDataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: Dict[str, Any] = field(default_factory=dict)
    mode: str = "full"
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: SegEvalConfig = field(default_factory=SegEvalConfig)

    def __post_init__(self) -> None:
        check_field_types(self)  # (a data mapping was an AttributeError, encoder="resnet18" passed)
        if self.mode not in SEG_MODES:
            raise ValueError(f"mode must be one of {SEG_MODES}, got {self.mode!r}")
        self.eval.check_dims(self.data.spatial_dims, self.data.dataset)


# -- augmentation ----------------------------------------------------------------------------------
def random_crop(images: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, patch: Optional[List[int]],
                gen: torch.Generator, foreground_p: float = 0.0):
    """Seeded random crops of size ``patch`` inside each item's valid (unpadded) region.

    With probability ``foreground_p`` per item (and when the item has foreground), the crop
    is instead centred, as far as the valid region allows, on a uniformly drawn foreground
    voxel (label > 0): nnU-Net's foreground oversampling (Isensee et al., Nature Methods
    2021), for small structures in large volumes such as brain tumours. ``foreground_p == 0``
    draws exactly the random numbers it always did.

    Shape: images ``(B, C, *S)``, masks ``(B, *S)``, valid ``(B, dims)`` -> images
    ``(B, C, *patch)``, masks ``(B, *patch)``. Items smaller than ``patch`` along an
    axis are zero-padded (label 0).
    """
    if patch is None:
        return images, masks
    dims = masks.ndim - 1
    if len(patch) != dims:
        raise ValueError(f"data.patch has {len(patch)} values for {dims}-D data")
    pad = [max(0, p - s) for p, s in zip(patch, masks.shape[1:])]
    if any(pad):
        spec = [v for p in reversed(pad) for v in (0, p)]
        images = torch.nn.functional.pad(images, spec)
        masks = torch.nn.functional.pad(masks, spec)
    out_i, out_m = [], []
    for b in range(images.shape[0]):
        starts = [int(torch.randint(0, max(0, int(v) - p) + 1, (1,), generator=gen)) for v, p in zip(valid[b], patch)]
        if foreground_p > 0 and float(torch.rand((), generator=gen)) < foreground_p:
            fg = (masks[(b, *[slice(0, int(v)) for v in valid[b]])] > 0).nonzero()
            if len(fg):
                centre = fg[int(torch.randint(0, len(fg), (1,), generator=gen))]
                starts = [min(max(0, int(c) - p // 2), max(0, int(v) - p)) for c, v, p in zip(centre, valid[b], patch)]
        region = tuple(slice(s, s + p) for s, p in zip(starts, patch))
        out_i.append(images[(b, slice(None), *region)])
        out_m.append(masks[(b, *region)])
    return torch.stack(out_i), torch.stack(out_m)


def random_flips(images: torch.Tensor, masks: torch.Tensor, axes: List[int], gen: torch.Generator):
    """Flip each item along each spatial axis in ``axes`` with probability 0.5 (seeded)."""
    if not axes:
        return images, masks
    images, masks = images.clone(), masks.clone()
    for b in range(images.shape[0]):
        for ax in axes:
            if torch.rand((), generator=gen) < 0.5:
                images[b] = images[b].flip(1 + ax)
                masks[b] = masks[b].flip(ax)
    return images, masks


def random_missing_sequences(images: torch.Tensor, p: float, fill: int, gen: torch.Generator) -> torch.Tensor:
    """Modality dropout for multi-sequence inputs: each channel except ``fill`` is replaced by
    a copy of channel ``fill`` with probability ``p`` (independently per item and channel, seeded).

    This is how TCGA-LGG (Buda et al. 2019) stores a missing MR sequence (FLAIR copied in its
    place), so training sees the same kind of input as its missing-sequence patients.

    Shape: ``(B, C, *S)`` -> ``(B, C, *S)`` (a new tensor when ``p > 0``).

    Raises:
        ValueError: ``fill`` is not a channel of ``images``.
    """
    if p <= 0:
        return images
    if not 0 <= fill < images.shape[1]:
        raise ValueError(f"missing_sequence_fill={fill} is not a channel of {images.shape[1]}-channel inputs")
    drop = torch.rand(images.shape[:2], generator=gen) < p
    drop[:, fill] = False
    out = images.clone()
    b, c = drop.nonzero(as_tuple=True)
    out[b, c] = images[b, fill]
    return out


def seg_step(patch: Optional[List[int]], flip_axes: List[int], frozen: bool, missing_sequence_p: float = 0.0,
             missing_sequence_fill: int = 1, foreground_p: float = 0.0):
    """The Trainer ``step_fn``: crop (foreground-oversampled with ``foreground_p``), flip,
    (missing-sequence dropout), forward, Dice + CE."""
    def step(model, batch, gen):
        from medfm.pipelines.segmentation import seg_core

        core = seg_core(model)
        if frozen:
            core.encoder.eval()
        images, masks = random_crop(batch["image"], batch["mask"], batch["valid"].cpu(), patch, gen, foreground_p)
        images, masks = random_flips(images, masks, flip_axes, gen)
        images = random_missing_sequences(images, missing_sequence_p, missing_sequence_fill, gen)
        logits = model(images)
        return {"loss": core.loss(logits, masks)}
    return step


# -- building ------------------------------------------------------------------------------------
def _encoder_img_size(recipe: SegmentationRecipe) -> int:
    """The encoder's input side: ``encoder.img_size``, else ``data.patch[0]``; ValueError if neither is set."""
    patch = recipe.data.patch
    img_size = recipe.encoder.img_size or (patch[0] if patch else None)
    if img_size is None:
        raise ValueError("set encoder.img_size or data.patch")
    return img_size


def build_segmenter(recipe: SegmentationRecipe, task: SegTask, init: Optional[str] = None,
                    encoder: Optional[torch.nn.Module] = None) -> torch.nn.Module:
    """A :class:`SegmentationModel` for ``task`` as the recipe describes it (not yet LoRA-wrapped).

    ``encoder``: one already built from ``recipe.encoder`` (the check build of
    :func:`check_segmenter_args`); default: built here with ``init`` (or ``encoder.pretrained``) loaded.

    Raises:
        ValueError: bad ``decoder`` options; neither ``encoder.img_size`` nor ``data.patch`` set.
        ConfigError: an encoder of the wrong dimensionality for the task, with the ``encoder`` location.
    """
    from medfm.adapters.segmentation import SegmentationModel
    from medfm.config import ConfigError, recipe_location
    from medfm.encoders import create_encoder

    patch = recipe.data.patch
    if encoder is None:
        encoder = create_encoder(recipe.encoder.name, in_chans=task.in_chans, img_size=_encoder_img_size(recipe),
                                 pretrained=init or recipe.encoder.pretrained, **recipe.encoder.args)
    if getattr(encoder, "spatial_dims", 2) != task.spatial_dims:
        raise ConfigError(f"{recipe_location(recipe.encoder, 'encoder')}: {task.name} with context_slices="
                          f"{recipe.data.context_slices} needs a {task.spatial_dims}D encoder; {recipe.encoder.name!r} "
                          f"is {getattr(encoder, 'spatial_dims', 2)}D")
    inference = {"scale": recipe.data.scale, "intensity": task.intensity, "context_slices": recipe.data.context_slices,
                 "slice_axis": recipe.data.slice_axis, "normalize": recipe.data.normalize,
                 "overlap": recipe.eval.overlap}
    roi = recipe.eval.roi_size or patch
    if roi:
        inference["roi_size"] = list(roi)
    return SegmentationModel(encoder, len(task.label_names), task.label_names, decoder=recipe.decoder,
                             inference=inference)


def check_segmenter_args(recipe: SegmentationRecipe, task: SegTask) -> None:
    """Build the segmenter once at random initialisation before the data are read, so that a bad
    ``encoder`` or ``decoder`` value fails in seconds with its recipe location.

    ``task`` comes from :func:`medfm.training.seg_tasks.build_task` (which reads no data); nothing
    is loaded (:func:`medfm.training.runs.check_encoder_args`).

    Raises:
        ConfigError: ``r.yaml.encoder: ...`` or ``r.yaml.decoder: ...`` (a bad value) or an encoder of
            the wrong dimensionality; ``r.yaml.lora: ...`` (:func:`medfm.training.adaptation.check_lora_targets`);
            ValueError: neither ``encoder.img_size`` nor ``data.patch``; UnknownNameError: an unknown encoder.
    """
    from medfm.adapters.segmentation import SEG_HEAD_MODULES
    from medfm.config import mapping_location, recipe_args_errors
    from medfm.training.adaptation import check_lora_targets
    from medfm.training.runs import check_encoder_args

    encoder = check_encoder_args(recipe.encoder, task.in_chans, _encoder_img_size(recipe))
    with recipe_args_errors(mapping_location(recipe, "decoder")):
        model = build_segmenter(recipe, task, encoder=encoder)
    check_lora_targets(model, recipe, SEG_HEAD_MODULES)


def evaluate_task(model: torch.nn.Module, task: SegTask, cfg: SegEvalConfig,
                  output: Optional[Path] = None) -> Dict[str, Any]:
    """Per-case and summary metrics of ``model`` on the task's test split (+ overlays), with a
    tqdm bar (stderr) over the test cases.

    Returns:
        ``{"per_case": {id: {class: {dice, hd95, surface_dice}}}, "summary": ...,
        "human_reference": ... (CHASE_DB1 only), "regions": {"definition": {region: labels},
        "per_case": ..., "summary": ...} (tasks with :attr:`SegTask.regions`, e.g. BraTS),
        "seconds": ...}``.
    """
    from tqdm.auto import tqdm

    from medfm.evaluation.segmentation import case_metrics, save_overlay, summarize_cases

    model.eval()
    per_case: Dict[str, Any] = {}
    human: Dict[str, Any] = {}
    regions: Dict[str, Any] = {}
    t0 = time.perf_counter()
    for n, cid in enumerate(tqdm(task.test_cases(), desc=f"{task.name} test cases", unit="case", leave=False)):
        case = task.load_case(cid)
        pred = task.predict(model, case, cfg.overlap, cfg.sw_batch_size)
        per_case[cid] = case_metrics(pred, case.reference, task.label_names, case.spacing, cfg.tolerance, cfg.distances)
        if "second_observer" in case.extra:
            human[cid] = case_metrics(case.extra["second_observer"].astype(np.uint8), case.reference, task.label_names,
                                      case.spacing, cfg.tolerance, cfg.distances)
        if task.regions:
            regions[cid] = case_metrics(pred, case.reference, task.label_names, case.spacing, cfg.tolerance,
                                        cfg.distances, regions=task.regions)
        if output is not None and n < cfg.overlays:
            save_overlay(output / overlay_name(cid), *task.overlay(case, pred))
    res: Dict[str, Any] = {"per_case": per_case, "summary": summarize_cases(per_case),
                           "seconds": round(time.perf_counter() - t0, 1)}
    if human:
        res["human_reference"] = {"what": "second observer scored against the first observer",
                                  "per_case": human, "summary": summarize_cases(human)}
    if regions:
        res["regions"] = {"definition": {k: list(v) for k, v in task.regions.items()}, "per_case": regions,
                          "summary": summarize_cases(regions)}
    return res


def overlay_name(case_id: str) -> str:
    """The file of test case ``case_id``'s overlay relative to the folder of its task's report:
    ``overlays/<case_id>.png``; the one name :func:`evaluate_task` writes and :func:`seg_report_files` lists."""
    return f"overlays/{case_id}.png"


def seg_report_files(tasks: Mapping[str, SegTask], count: Optional[int] = None) -> List[str]:
    """The files of a segmentation run's report besides ``results.json``, relative to the run folder: ``results.md``
    and, for each ``folder -> task`` of ``tasks`` (``""``: :func:`run_segmentation`; ``"tasks/<name>/"``: a
    text-conditioned run), ``<folder>overlays/<case>.png`` (:func:`overlay_name`) of the task's first ``count`` test
    cases (None: every test case, the names a run may write, cleared when it starts; ``eval.overlays``: those
    :func:`evaluate_task` writes, the ``"files"`` of its ``results.json``).

    Raises:
        medfm data errors of :meth:`SegTask.test_cases` (a missing data set).
    """
    return ["results.md", *(folder + overlay_name(cid) for folder, task in tasks.items()
                            for cid in task.test_cases()[:count])]


def seg_data_record(task: SegTask) -> Dict[str, Any]:
    """What a segmentation checkpoint records about its data (for its model card).

    :meth:`SegTask.metadata` (data set id, split rule, train/test ids, label names) plus the
    data set's name, licence, source and the md5 of its ``SHA256SUMS`` list
    (:func:`medfm.cards.data_provenance`), the train/test case counts and, for 2.5D, the slice
    context and the task's ``input_preprocessing`` (if any). JSON-serialisable.

    Raises:
        DataFileMissingError: the data set's folder is missing (from :meth:`SegTask.metadata`).
    """
    from medfm.cards import data_provenance

    meta = task.metadata()
    record = {**meta, **data_provenance(task.name, task.data_root),
              "n_train": len(meta["train_ids"]), "n_test": len(meta["test_ids"]), "unit": "cases"}
    if task.cfg.context_slices:
        record["context_slices"] = task.cfg.context_slices
    if task.input_preprocessing:
        record["input_preprocessing"] = task.input_preprocessing
    return record


def results_markdown(results: Dict[str, Any]) -> str:
    """A short Markdown table of the summary (and human reference) metrics."""
    from medfm.evaluation.report import markdown_table

    rows = []
    for label, summ in (("model", results["summary"]),
                        ("second observer", results.get("human_reference", {}).get("summary")),
                        ("model, region", results.get("regions", {}).get("summary"))):
        if not summ:
            continue
        for cls, metrics in summ["per_class"].items():
            rows.append({"scored": label, "class": cls, **{m: metrics[m]["mean"] for m in metrics}})
    head = (f"# {results['task']['dataset']} test results\n\nSplit: {results['task']['split_rule']}. "
            f"{results['summary']['n_cases']} test cases; mean Dice over classes "
            f"{results['summary']['mean']['dice']:.4f}.\n\n")
    cols = {"scored": "scored", "class": "class", "dice": "Dice", "hd95": "HD95", "surface_dice": "surface Dice"}
    return head + markdown_table(rows, cols) + "\n"


def fit_and_report(trainer: Trainer, recipe: Any, output: Path, init: Optional[str], resume: bool,
                   base: Optional[str], write_base: Optional[Callable[[], None]], meta: Dict[str, Any],
                   folders: Mapping[str, SegTask], evaluate: Callable[[Path, float], Tuple[Dict[str, Any], str]]
                   ) -> Dict[str, Any]:
    """The end of a segmentation run, once its checks passed and its model is built (:func:`run_segmentation` and
    :func:`medfm.training.text_segmentation.run_text_segmentation`; their recipes differ, their report does not).

    1. ``trainer.fit(resume)``; in its ``before_write`` (a resumed state's counters checked: a refused resume writes
       nothing) the run's record (``config.yaml``, ``init.json``, then ``write_base``, a LoRA run's ``base/``:
       :func:`medfm.training.runs.write_run_record`), then an earlier report's files are removed
       (:func:`medfm.evaluation.report.start_report_dir` with :func:`seg_report_files` of ``folders``: a resume
       with fewer ``eval.overlays`` kept the old PNGs);
    2. the final checkpoint, ``<output>/model`` or ``<output>/adapter`` with ``meta``
       (:func:`medfm.training.adaptation.save_final` from ``base``);
    3. ``evaluate(final checkpoint, training seconds)`` -> ``(results, results.md text)``: the runner's scoring;
    4. the report: ``results`` under the header of every result (:func:`medfm.versions.result_header` of its
       ``"kind"``), ``results["files"]`` (:func:`seg_report_files` of ``folders`` with ``eval.overlays``, and
       ``results.json``), ``results.md`` with the header's line after its text, ``results.json`` last (a complete
       report), each atomically, then the final checkpoint's model card with these test metrics
       (:func:`medfm.cards.write_card`).

    Args:
        trainer: the run's :class:`medfm.training.loop.Trainer` (its ``model``: the trained, maybe LoRA-wrapped,
            segmenter); recipe: the run's recipe (``mode``, ``eval.overlays``; written as ``config.yaml``).
        output: the run folder; init, resume: the run's ``--init`` and ``--resume``.
        base, write_base: what :func:`medfm.training.adaptation.lora_base` returned.
        meta: the final checkpoint's extra config (:func:`medfm.training.adaptation.checkpoint_writer`'s).
        folders: ``folder -> task`` of the report's overlays, as :func:`seg_report_files` takes them.

    Returns:
        ``results`` with its ``"files"`` (also ``<output>/results.json``).

    Raises:
        ValueError: a resumed state whose counters do not fit the run's data (another ``--data-root``:
            :func:`medfm.training.loop.check_resume_counters`), before ``config.yaml``, ``init.json`` and a LoRA
            ``base/`` are written (:meth:`medfm.training.loop.Trainer.fit`'s ``before_write``); and what else the fit
            or ``evaluate`` raises; OSError from the writes.
    """
    from medfm.cards import write_card
    from medfm.evaluation.report import start_report_dir
    from medfm.io import atomic_write_json, atomic_write_text
    from medfm.training.adaptation import save_final
    from medfm.training.runs import write_run_record
    from medfm.versions import provenance_text, result_header

    def start_run() -> None:
        write_run_record(output, recipe, init, resume, write_base=write_base)
        start_report_dir(output, seg_report_files(folders))

    t0 = time.perf_counter()
    trainer.fit(resume=resume, before_write=start_run)
    train_s = time.perf_counter() - t0
    trainer.model.eval()
    final = save_final(trainer.model, recipe.mode, base, meta, output)
    results, markdown = evaluate(final, train_s)
    results = {**result_header(results.pop("kind")), **results}  # as every results.json: what trained and scored it
    results["files"] = [*seg_report_files(folders, recipe.eval.overlays), "results.json"]
    atomic_write_text(output / "results.md", f"{markdown}\n{provenance_text(results)}\n")
    atomic_write_json(output / "results.json", results)  # last: a complete report (start_report_dir)
    write_card(final, results)  # the final checkpoint's card with these test metrics
    return results


@discards_failed_output  # a failed run leaves no folder it created with nothing trained
def run_segmentation(recipe: SegmentationRecipe, output: Path, init: Optional[str] = None,
                     data_root: Optional[str] = None, resume: bool = False) -> Dict[str, Any]:
    """Train and evaluate a segmentation recipe; returns the results dict (also ``results.json``).

    Raises:
        medfm data errors, ConfigError/ValueError (bad recipe), FileExistsError (output holds a
        checkpoint and ``resume`` is False); ConfigError: ``resume`` with a recipe other than the run's ``config.yaml``
        (:func:`medfm.training.resume.check_resume_recipe`), or with another ``init`` than the run was started
        with (:func:`medfm.training.resume.check_resume_init`); CheckpointError: a missing local ``init``
        (or ``encoder.pretrained``) directory; ConfigError: a bad ``encoder`` or ``decoder`` value, with its
        recipe location (:func:`check_segmenter_args`). These are checked before the data set is read.
        ValueError: fewer training items than ``train.batch_size`` (:func:`medfm.training.loop.steps_per_epoch`),
        once the data are read, before anything is written; a resumed state whose counters do not fit the data
        (another ``--data-root``), before the run's record and a LoRA run's ``base/`` are written
        (:func:`fit_and_report`).
    """
    from medfm.training.adaptation import adapt, checkpoint_writer, lora_base
    from medfm.adapters.segmentation import SEG_HEAD_MODULES
    from medfm.config import to_dict
    from medfm.training.loop import steps_per_epoch
    from medfm.training.runs import check_run_start

    output = Path(output)
    check_run_start(output, recipe, init, resume)  # before anything is written or the data set is read
    task = build_task(recipe.data, data_root)
    check_segmenter_args(recipe, task)  # a bad encoder/decoder value, before the data set is read
    train_set = task.training_arrays()
    steps_per_epoch(len(train_set), recipe.train.batch_size)  # fewer items than a batch: before anything is written
    torch.manual_seed(recipe.train.seed)
    model = build_segmenter(recipe, task, init)
    # before LoRA wraps the model
    base, write_base = lora_base(model, recipe.mode, init or recipe.encoder.pretrained, output, resume)
    meta = {"training": {"data": seg_data_record(task), "mode": recipe.mode, "init": base,
                         "lora": to_dict(recipe.lora) if recipe.mode == "lora" else None,
                         "train": to_dict(recipe.train)},
            "family": model.encoder.family, "task": "image-segmentation",
            "n_params": f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M",
            "summary": f"`{recipe.encoder.name}` U-Net segmenter for {task.name} ({recipe.mode})."}
    trained = adapt(model, recipe.mode, recipe.lora, head_modules=SEG_HEAD_MODULES)
    save = checkpoint_writer(recipe.mode, base, meta)

    step = seg_step(recipe.data.patch, recipe.data.flip_axes, recipe.mode == "frozen", recipe.data.missing_sequence_p,
                    recipe.data.missing_sequence_fill, recipe.data.foreground_p)
    trainer = Trainer(trained, step, train_set, recipe.train, output, save)

    def evaluate(final: Path, train_s: float):
        results = evaluate_task(trained, task, recipe.eval, output)
        results.update({"kind": "segmentation", "task": task.metadata(), "checkpoint": str(final),
                        "mode": recipe.mode, "encoder": recipe.encoder.name, "train_seconds": round(train_s, 1),
                        "n_train_items": train_set.n_items,
                        "trainable_params": sum(p.numel() for p in trained.parameters() if p.requires_grad)})
        return results, results_markdown(results)

    # config.yaml and init.json after the data, the model and a resumed state's checks: missing data, a bad
    # encoder/decoder section or a refused resume (another --data-root) writes nothing (a LoRA base/ included)
    return fit_and_report(trainer, recipe, output, init, resume, base, write_base, meta, {"": task}, evaluate)


def segment_from_recipe(path: Path, output: Path, epochs: Optional[int] = None, init: Optional[str] = None,
                        data_root: Optional[str] = None, resume: bool = False) -> str:
    """Run a ``medfm segment`` recipe file and return a one-line summary.

    A recipe with a ``tasks:`` list is a text-conditioned multi-task recipe
    (:func:`medfm.training.text_segmentation.run_text_segmentation`); otherwise a single
    data set U-Net recipe (:func:`run_segmentation`).

    Raises:
        ConfigError: unreadable or invalid recipe; and what the runners raise.
    """
    from medfm.config import from_dict, load_yaml, with_overrides

    path, output = Path(path), Path(output)
    data = load_yaml(path)
    data = with_overrides(data, {"train": {"epochs": epochs}})  # a non-mapping train: is reported by from_dict
    if "tasks" in data:
        from medfm.training.text_segmentation import TextSegRecipe, run_text_segmentation

        res = run_text_segmentation(from_dict(TextSegRecipe, data, where=path.name), output, init, data_root, resume)
        parts = [f"{name}: Dice {r['summary']['mean']['dice']:.4f}" for name, r in res["tasks"].items()]
        return f"text-conditioned test {'; '.join(parts)}; results: {output / 'results.json'}"
    res = run_segmentation(from_dict(SegmentationRecipe, data, where=path.name), output, init, data_root, resume)
    dice = {c: round(m["dice"]["mean"], 4) for c, m in res["summary"]["per_class"].items()}
    regions = {c: round(m["dice"]["mean"], 4) for c, m in res.get("regions",
                                                                  {}).get("summary", {}).get("per_class", {}).items()}
    return (f"{res['task']['dataset']} test Dice {dice} (mean {res['summary']['mean']['dice']:.4f}); "
            + (f"region Dice {regions}; " if regions else "") + f"results: {output / 'results.json'}")


__all__ = ["seg_data_record", "seg_report_files", "overlay_name", "fit_and_report", "segment_from_recipe",
           "SegmentationRecipe", "SegEvalConfig", "SegDataConfig", "run_segmentation", "evaluate_task",
           "build_segmenter", "check_segmenter_args", "random_crop", "random_flips", "random_missing_sequences",
           "seg_step", "SEG_MODES"]
