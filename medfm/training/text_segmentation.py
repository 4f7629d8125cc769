"""``medfm segment`` with a ``tasks:`` recipe: one text-conditioned model (MulModSeg) on several data sets.

Each task names a data set (:class:`medfm.training.seg_tasks.SegDataConfig`) and the
target it annotates, ``{name, modality, target}``; the prompt of a target is
``"A {modality} image of {target}"`` embedded by the frozen text encoder. Every epoch
covers all data sets (each item cropped/flipped, and for multi-sequence MR optionally
given copied-FLAIR channels (``data.missing_sequence_p``), with its own task's settings)
in mixed batches, so each task gets the same number of sample visits as its single-task
recipe. ``alternate: true`` gives one task per batch (MulModSeg's alternating training),
which needs norm layers without shared running statistics: with shared BatchNorm the
eval-time running averages mix both modalities (measured on CHASE_DB1 + TCGA-LGG: vessel
Dice 0.63 -> 0.28, LGG 0.37 -> 0.00). ``domain_norm: true`` keeps one BatchNorm per
modality (:class:`medfm.adapters.domain_layers.DomainBatchNorm`, DSBN), each image normalised
with its own modality's statistics; even with DSBN, alternating did not beat mixed batches
there (two seeds: vessel 0.696 / 0.747 against 0.758 / 0.735, LGG 0.544 / 0.654 against
0.694 / 0.669), so mixed batches stay the default. ``domain_stem: true`` also gives each
modality its own input convolutions (:class:`medfm.adapters.domain_layers.DomainConv`); it did
not help there either (vessel 0.743 / 0.751, LGG 0.600 / 0.565 on the same two seeds).
Each image supervises its own task's target, and the
other tasks' targets as known absent (no glioma in a fundus photograph, no retinal vessel
in a brain MRI), as binary masks with BCE + per-target soft Dice; with
``cross_task_targets: unlabelled`` an image supervises only its own task's target
(partial labels, as MulModSeg trains on data sets that each annotate some targets). Evaluation segments
each task's test split by prompting its target
(:class:`medfm.adapters.text_seg.PromptedSegmenter`, with the task's own input scale and
modality), and, for referring segmentation, by each task's free-text ``query`` embedded
as is (LSMS-style), reporting which known target the query matched (whose modality then
selects the norms).

Outputs as :mod:`medfm.training.segmentation`, with per-task results under
``results.json["tasks"][name]`` and overlays in ``tasks/<name>/overlays/`` (``"kind": "text_segmentation"``; an
earlier report's files, each task's overlays included, removed when the run starts writing).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from medfm.adapters.lora import LoraSettings
from medfm.adapters.text_seg import check_target_weights
from medfm.arg_checks import number_fits, shown
from medfm.config import check_field_types
from medfm.training.loop import TrainConfig
from medfm.training.recipes import EncoderConfig
from medfm.training.run_folder import discards_failed_output
from medfm.training.seg_tasks import SegDataConfig, build_task
from medfm.training.segmentation import SEG_MODES, SegEvalConfig, random_crop, random_flips, random_missing_sequences


@dataclass
class TextTaskConfig:
    """One task of a text-conditioned recipe.

    Attributes:
        data: the data set and its crop/scale/flip settings.
        name: target id (e.g. "vessel"); also the folder of its results (``tasks/<name>/``).
        modality, target: the prompt parts ("A {modality} image of {target}").
        query: a free-text referring query evaluated besides the prompt (None: skip).
        loss_weight: this target's weight in the BCE and Dice terms
            (:meth:`medfm.adapters.text_seg.TextConditionedSegmenter.loss`); default 1.

    Raises:
        ValueError: ``loss_weight`` not positive and finite; an empty ``name``, ``modality`` or
            ``target``, a ``name`` that is not a plain folder name; an empty or blank ``query`` (a blank
            one was refused when embedded, after training; an empty one skipped the referring evaluation); a field of
            the wrong type (:func:`medfm.config.check_field_types`).
    """

    data: SegDataConfig = field(default_factory=SegDataConfig)
    name: str = "target"
    modality: str = "medical"
    target: str = "target"
    query: Optional[str] = None
    loss_weight: float = 1.0

    def __post_init__(self) -> None:
        check_field_types(self)
        if not number_fits(self.loss_weight, gt=0):  # (also NaN, inf, True, "1")
            raise ValueError(f"loss_weight is {shown(self.loss_weight)}; loss weights must be positive and finite")
        for key, what in (("name", "the target's id"), ("modality", "a prompt part"), ("target", "a prompt part")):
            if not (isinstance(getattr(self, key), str) and getattr(self, key).strip()):
                raise ValueError(f"{key} must be a non-empty string ({what}), got {shown(getattr(self, key))}")
        if "/" in self.name or "\\" in self.name or self.name in (".", ".."):
            raise ValueError(f"name must be a plain folder name (the results go to tasks/<name>/), got {self.name!r}")
        if self.query is not None and not (isinstance(self.query, str) and self.query.strip()):
            raise ValueError(f"query must be a non-empty text, or left out for none, got {shown(self.query)}")


CROSS_TASK_TARGETS = ("absent", "unlabelled")


@dataclass
class TextSegRecipe:
    """Text-conditioned multi-task segmentation recipe (``finetune/seg_text_*.yaml``).

    Attributes:
        tasks: :class:`TextTaskConfig` per data set (all with the same ``data.patch``).
        text_encoder: spec of the frozen text encoder (:func:`medfm.text.create_text_encoder`).
        encoder, decoder, mode, lora, train, eval: as :class:`SegmentationRecipe`.
        head: :class:`medfm.adapters.text_seg.TextConditionedSegmenter` head options.
        alternate: one task per batch (MulModSeg's alternating training, see
            :class:`MultiTaskArrays`); default False (mixed batches), see the module
            docstring for why alternating hurts BatchNorm encoders.
        domain_norm: one BatchNorm per modality
            (:class:`medfm.adapters.domain_layers.DomainBatchNorm`); see the module docstring.
        domain_stem: also one copy per modality of the input convolutions
            (:class:`medfm.adapters.domain_layers.DomainConv`); needs ``domain_norm``.
        cross_task_targets: how an image supervises the targets of the *other* tasks:
            ``"absent"`` (default) as known all-background masks; ``"unlabelled"`` not at
            all (partial-label training as in MulModSeg / the Universal Model: each image's
            loss covers only the target its data set annotates).

    Raises:
        ValueError: no tasks, duplicate task names, tasks with different ``data.patch``, tasks that
            are not 2D (2.5D slices count as 2D) or that differ in input channels (one encoder reads
            them all; this was found after the data sets were opened, without a location), an
            ``eval.roi_size`` that is not 2-D, an unknown ``mode`` or ``cross_task_targets``,
            ``domain_stem`` without ``domain_norm``, bad loss weights; a field of the wrong type (``tasks`` not a list,
            ``alternate="no"``; each section is its dataclass or a mapping: :func:`medfm.config.check_field_types`).
    """

    tasks: List[TextTaskConfig] = field(default_factory=list)
    text_encoder: Dict[str, Any] = field(default_factory=lambda: {"name": "minilm"})
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: Dict[str, Any] = field(default_factory=dict)
    head: Dict[str, Any] = field(default_factory=dict)
    mode: str = "full"
    alternate: bool = False
    domain_norm: bool = False
    domain_stem: bool = False
    cross_task_targets: str = "absent"
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: SegEvalConfig = field(default_factory=SegEvalConfig)

    def __post_init__(self) -> None:
        check_field_types(self)
        self.tasks = [t if isinstance(t, TextTaskConfig) else _task_from_dict(t, i) for i, t in enumerate(self.tasks)]
        if not self.tasks:
            raise ValueError("a text-conditioned recipe needs at least one entry under tasks:")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        if len({tuple(t.data.patch or ()) for t in self.tasks}) != 1 or self.tasks[0].data.patch is None:
            raise ValueError("all tasks need the same data.patch (one batch mixes their crops)")
        volumes = [f"tasks[{i}] ({t.data.dataset})" for i, t in enumerate(self.tasks) if t.data.spatial_dims != 2]
        if volumes:
            raise ValueError(f"{', '.join(volumes)}: a text-conditioned recipe trains on 2D images "
                             f"(a volume data set as 2.5D slices: data.context_slices > 0)")
        if len({t.data.in_chans for t in self.tasks}) != 1:
            got = ", ".join(f"tasks[{i}] {t.data.dataset}: {t.data.in_chans}" for i, t in enumerate(self.tasks))
            raise ValueError(f"all tasks need one input channel count (one encoder reads every task's images), "
                             f"got {got}")
        self.eval.check_dims(2, "text-conditioned")
        if self.mode not in SEG_MODES:
            raise ValueError(f"mode must be one of {SEG_MODES}, got {self.mode!r}")
        if self.domain_stem and not self.domain_norm:
            raise ValueError("domain_stem: true needs domain_norm: true")
        check_target_weights([t.loss_weight for t in self.tasks], len(self.tasks))
        if self.cross_task_targets not in CROSS_TASK_TARGETS:
            raise ValueError(f"cross_task_targets must be one of {CROSS_TASK_TARGETS}, got {self.cross_task_targets!r}")


def _task_from_dict(data: Dict[str, Any], index: int) -> TextTaskConfig:
    """Entry ``index`` of ``tasks:``; its errors name it as :func:`medfm.config.from_dict` names list items
    (``tasks[1]``)."""
    from medfm.config import from_dict

    return from_dict(TextTaskConfig, data, where=f"tasks[{index}]")


class MultiTaskArrays:
    """Several :class:`SegmentationArrays` as one training set; items keep their task index.

    Args:
        parts: one training set per task.
        alternate: MulModSeg's alternating training: every batch holds images of one task
            only (batch statistics never mix modalities; suits norms without running
            statistics, see the module docstring). The task of a batch is the
            task of its first (uniformly shuffled) index, i.e. chosen with probability
            proportional to the task's size, so each task gets the share of steps it would
            get in a mixed batch; the other indices are mapped into that task
            (``index mod size``). Deterministic given the indices, hence resumable.

    ``get_batch(indices)`` returns ``{"image_<k>", "mask_<k>", "valid_<k>"}`` for each task
    ``k`` present in the batch.
    """

    def __init__(self, parts: List[Any], alternate: bool = False) -> None:
        self.parts = parts
        self.alternate = alternate
        self.offsets = torch.tensor([0] + [len(p) for p in parts]).cumsum(0)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def get_batch(self, indices: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Items at global ``indices`` ``(B,)`` int, grouped by task.

        Returns ``{"image_<k>": (B_k, C_k, H, W), "mask_<k>": ..., "valid_<k>": ...}`` as the
        task's :meth:`SegmentationArrays.get_batch` gives them, for each task ``k`` with items
        in the batch (with ``alternate``: only the first index's task, ``B_k = B``).
        """
        idx = torch.as_tensor(indices, dtype=torch.long)
        part = torch.bucketize(idx, self.offsets[1:], right=True)
        if self.alternate:
            k = int(part[0])
            idx = self.offsets[k] + torch.remainder(idx - self.offsets[k], len(self.parts[k]))
            part = torch.full_like(part, k)
        out: Dict[str, torch.Tensor] = {}
        for k in part.unique().tolist():
            sub = self.parts[k].get_batch(idx[part == k] - self.offsets[k])
            out.update({f"{key}_{k}": v for key, v in sub.items()})
        return out


def text_seg_step(recipe: TextSegRecipe):
    """Trainer ``step_fn``: per-task crops (foreground-oversampled with the task's ``data.foreground_p``,
    which was ignored) and flips (and missing-sequence dropout), per-target binary masks, each image's
    modality for modality-specific norms, BCE + Dice."""
    n_targets = len(recipe.tasks)
    modalities = list(dict.fromkeys(t.modality for t in recipe.tasks))
    weights = [t.loss_weight for t in recipe.tasks]

    def step(model, batch, gen):
        core = model.base_model.model if hasattr(model, "base_model") else model
        if recipe.mode == "frozen":
            core.encoder.eval()
        images, masks, domains, known = [], [], [], []
        for k, task in enumerate(recipe.tasks):
            if f"image_{k}" not in batch:
                continue
            im, m = random_crop(batch[f"image_{k}"], batch[f"mask_{k}"], batch[f"valid_{k}"].cpu(), task.data.patch,
                                gen, task.data.foreground_p)
            im, m = random_flips(im, m, task.data.flip_axes, gen)
            im = random_missing_sequences(im, task.data.missing_sequence_p, task.data.missing_sequence_fill, gen)
            target = torch.zeros(m.shape[0], n_targets, *m.shape[1:], device=m.device)
            target[:, k] = (m > 0).float()  # other targets: known absent, or unlabelled
            seen = torch.ones(m.shape[0], n_targets, dtype=torch.bool)
            if recipe.cross_task_targets == "unlabelled":
                seen[:] = False
                seen[:, k] = True
            known.append(seen)
            images.append(im)
            masks.append(target)
            domains.append(torch.full((m.shape[0],), modalities.index(task.modality), dtype=torch.long))
        domain = torch.cat(domains) if core.domain_norm else None
        logits = model(torch.cat(images), domain=domain)
        return {"loss": core.loss(logits, torch.cat(masks), known=torch.cat(known).to(logits.device),
                                    weights=weights)}
    return step


def text_segmenter_args(recipe: TextSegRecipe) -> Dict[str, Any]:
    """The :class:`medfm.adapters.text_seg.TextConditionedSegmenter` keyword arguments the recipe sets
    (targets, decoder, head, inference per target, domain layers): all but the encoder and text width."""
    roi = recipe.eval.roi_size or recipe.tasks[0].data.patch  # (eval.roi_size was ignored)
    return {"targets": [{"name": t.name, "modality": t.modality, "target": t.target} for t in recipe.tasks],
            "decoder": recipe.decoder, "head": recipe.head, "inference": {"roi_size": list(roi)},
            "domain_norm": recipe.domain_norm, "domain_stem": recipe.domain_stem,
            "target_inference": {t.name: {"roi_size": list(roi), "scale": t.data.scale, "normalize": t.data.normalize,
                                          "overlap": recipe.eval.overlap} for t in recipe.tasks}}


def check_text_segmenter_args(recipe: TextSegRecipe, in_chans: int) -> None:
    """Build the text-conditioned segmenter once at random initialisation before the data are read, so
    that a bad ``encoder``, ``decoder``, ``head``, ``text_encoder`` or ``lora`` value fails in seconds
    named with its section.

    The tasks are 2D: a 3D encoder is refused first (:func:`medfm.training.runs.check_encoder_dims`).
    Then the encoder (:func:`medfm.training.runs.check_encoder_args`, nothing loaded), its decoder
    (:func:`medfm.adapters.segmentation.unet_decoder_for`, as :func:`medfm.training.segmentation.check_segmenter_args`
    names ``decoder``), the head options (:func:`medfm.adapters.text_seg.check_head_options`) and the text
    encoder spec (:func:`medfm.text.encoders.check_text_encoder_spec`, no model loaded) are checked each
    under its own location, then the whole model under the recipe's (targets, inference, domain layers)
    and, with ``mode: lora``, its LoRA targets (:func:`medfm.training.adaptation.check_lora_targets`).
    ``in_chans``: the tasks' channels (``data.in_chans``, no data read).

    Raises:
        ConfigError: ``r.yaml.encoder: ...``, ``r.yaml.decoder: ...``, ``r.yaml.head: ...``,
        ``r.yaml.text_encoder: ...``, ``r.yaml: ...`` or ``r.yaml.lora: ...``; UnknownNameError: an unknown encoder.
    """
    from medfm.adapters.segmentation import unet_decoder_for
    from medfm.adapters.text_seg import TEXT_SEG_HEAD_MODULES, TextConditionedSegmenter, check_head_options
    from medfm.config import mapping_location, recipe_args_errors, recipe_location
    from medfm.text.encoders import check_text_encoder_spec
    from medfm.training.adaptation import check_lora_targets
    from medfm.training.runs import check_encoder_args, check_encoder_dims

    check_encoder_dims(recipe.encoder.name, 2, recipe.tasks[0].data.dataset, recipe_location(recipe.encoder, "encoder"))
    encoder = check_encoder_args(recipe.encoder, in_chans, recipe.tasks[0].data.patch[0])
    with recipe_args_errors(mapping_location(recipe, "decoder")):
        unet_decoder_for(encoder, recipe.decoder)
    with recipe_args_errors(mapping_location(recipe, "head")):
        check_head_options(recipe.head)
    with recipe_args_errors(mapping_location(recipe, "text_encoder")):
        check_text_encoder_spec(recipe.text_encoder, frozen_only=True)
    with recipe_args_errors(recipe_location(recipe, "recipe")):
        # (the text width only sizes a projection)
        model = TextConditionedSegmenter(encoder, text_dim=1, **text_segmenter_args(recipe))
    check_lora_targets(model, recipe, TEXT_SEG_HEAD_MODULES)


@discards_failed_output  # a failed run leaves no folder it created with nothing trained
def run_text_segmentation(recipe: TextSegRecipe, output: Path, init: Optional[str] = None,
                          data_root: Optional[str] = None, resume: bool = False) -> Dict[str, Any]:
    """Train one text-conditioned model on all tasks, then evaluate each task (prompt and query).

    Returns the results dict (also written to ``results.json``).

    Raises:
        medfm data errors; FileExistsError: ``output`` holds a checkpoint and ``resume`` is False.
        ConfigError: ``resume`` with a recipe other than the run's ``config.yaml``
        (:func:`medfm.training.resume.check_resume_recipe`), or with another ``init`` than the run was
        started with (:func:`medfm.training.resume.check_resume_init`); CheckpointError: a missing local
        ``init`` (or ``encoder.pretrained``) directory; ConfigError: a 3D encoder or a bad ``encoder`` value
        (``r.yaml.encoder: ...``), a bad ``decoder``, ``head``, ``text_encoder`` or ``lora`` value
        (``r.yaml.decoder: ...``, ...), from a check build at random initialisation
        (:func:`check_text_segmenter_args`), or a text model that cannot be loaded (``r.yaml.text_encoder: ...``,
        :func:`medfm.training.runs.build_recipe_text_encoder`). These are checked before anything is written or read.
        ValueError: fewer training items than ``train.batch_size`` (:func:`medfm.training.loop.steps_per_epoch`),
        once the data are read, before anything is written; a resumed state whose counters do not fit the data
        (another ``--data-root``), before the run's record and a LoRA run's ``base/`` are written
        (:func:`medfm.training.segmentation.fit_and_report`).
    """
    from medfm.training.adaptation import adapt, checkpoint_writer, lora_base
    from medfm.adapters.text_seg import TEXT_SEG_HEAD_MODULES, PromptedSegmenter, build_text_segmenter
    from medfm.config import to_dict
    from medfm.encoders import create_encoder
    from medfm.training.loop import Trainer, steps_per_epoch
    from medfm.training.runs import build_recipe_text_encoder, check_run_start
    from medfm.training.segmentation import evaluate_task, fit_and_report, results_markdown, seg_data_record

    output = Path(output)
    check_run_start(output, recipe, init, resume)  # before anything is written or read
    tasks = [build_task(t.data, data_root) for t in recipe.tasks]  # a missing data set leaves no files behind
    in_chans, patch = tasks[0].in_chans, recipe.tasks[0].data.patch  # (one for all tasks: TextSegRecipe)
    seg_args = text_segmenter_args(recipe)
    check_text_segmenter_args(recipe, in_chans)  # before anything is written or read
    text_encoder = build_recipe_text_encoder(recipe)  # loads the model: a missing one, before the data
    train_set = MultiTaskArrays([t.training_arrays() for t in tasks], alternate=recipe.alternate)
    steps_per_epoch(len(train_set), recipe.train.batch_size)  # fewer items than a batch: before anything is written
    torch.manual_seed(recipe.train.seed)
    encoder = create_encoder(recipe.encoder.name, in_chans=in_chans, img_size=recipe.encoder.img_size or patch[0],
                             pretrained=init or recipe.encoder.pretrained, **recipe.encoder.args)
    task_inference = seg_args["target_inference"]
    model = build_text_segmenter(encoder, text_encoder=text_encoder, text_encoder_spec=recipe.text_encoder, **seg_args)
    # before LoRA wraps the model
    base, write_base = lora_base(model, recipe.mode, init or recipe.encoder.pretrained, output, resume)
    meta = {"training": {"tasks": {t.name: seg_data_record(task) for t, task in zip(recipe.tasks, tasks)},
                         "mode": recipe.mode, "init": base, "train": to_dict(recipe.train),
                         "loss_weights": {t.name: t.loss_weight for t in recipe.tasks}},
            "task_inference": task_inference, "family": model.encoder.family, "task": "text-conditioned-segmentation",
            "n_params": f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M",
            "summary": f"`{recipe.encoder.name}` text-conditioned (MulModSeg) segmenter for "
                       f"{', '.join(t.name for t in recipe.tasks)}."}
    trained = adapt(model, recipe.mode, recipe.lora, head_modules=TEXT_SEG_HEAD_MODULES)
    save = checkpoint_writer(recipe.mode, base, meta)

    trainer = Trainer(trained, text_seg_step(recipe), train_set, recipe.train, output, save)
    folders = {f"tasks/{t.name}/": task for t, task in zip(recipe.tasks, tasks)}  # each task's report folder

    def evaluate(final: Path, train_s: float):
        results: Dict[str, Any] = {"kind": "text_segmentation", "tasks": {}, "checkpoint": str(final),
                                   "mode": recipe.mode, "encoder": recipe.encoder.name,
                                   "train_seconds": round(train_s, 1), "prompts": model.prompts}
        md = []
        for cfg, (folder, task) in zip(recipe.tasks, folders.items()):
            view = PromptedSegmenter(trained, cfg.name, inference=task_inference[cfg.name])
            res = evaluate_task(view, task, recipe.eval, output / folder)
            res["task"] = task.metadata()
            if cfg.query:
                q, matched, sim = model.embed_query(cfg.query, text_encoder)
                qres = evaluate_task(PromptedSegmenter(trained, q, inference=task_inference[cfg.name]), task,
                                     SegEvalConfig(**{**to_dict(recipe.eval), "overlays": 0, "distances": False}))
                res["referring"] = {"query": cfg.query, "matched_target": matched, "cosine": sim,
                                    "dice": qres["summary"]["mean"]["dice"]}
            results["tasks"][cfg.name] = res
            md.append(results_markdown(res))
        return results, "\n".join(md)

    # config.yaml, init.json (a LoRA base/) once a resumed state's counters fit the data: a refused resume writes
    # nothing
    return fit_and_report(trainer, recipe, output, init, resume, base, write_base, meta, folders, evaluate)


__all__ = ["TextSegRecipe", "TextTaskConfig", "MultiTaskArrays", "run_text_segmentation", "check_text_segmenter_args",
           "text_seg_step", "text_segmenter_args"]
