"""``medfm fuse``: train missing-modality fusers and baselines on TCGA-LGG, then run the protocol.

A recipe (``finetune/fusion_lgg_*.yaml``, :class:`FusionRecipe`) names the modalities, the
shared image encoder, the models to train (``models: {label: {fuser, args, train_missing}}``)
and the protocol settings. Every model is trained with :class:`medfm.training.loop.Trainer`
(seeded, resumable, AdamW + cosine) on the LGG train patients, on slice-level "abnormality
present" (cross-entropy; MultiModN: mean over its per-step predictions), with random
horizontal flips applied to all image modalities of a sample together. ``train_missing``:

* ``natural``: the data's own missingness (FLAIR-copy sequences absent);
* ``mnar``: additionally, image modalities removed with probability ``protocol.p_high`` for
  positive and ``protocol.p_low`` for negative slices (drawn once, seeded), after MultiModN.

Single-modality baselines (one modality) train only on the samples that have it.

Then :func:`medfm.evaluation.fusion.run_fusion_protocol` runs on the test patients. Output:
``config.yaml``, ``models/<label>/`` (``metrics.jsonl``, ``training_curve.png``, ``checkpoint/``, final ``model/`` in
medfm.hub layout), ``results.json`` (``train_seconds`` per model; a model reused by ``--resume``
keeps the time its checkpoint recorded and is listed in ``reused_models``), ``report.md``, ``subsets.png``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from medfm.arg_checks import check_number, number_fits
from medfm.config import check_field_types
# the run folder's checks and config.yaml writer, importable from here as before
from medfm.training.fusion_run import recipe_writer, refuse_unrecorded_models, start_run
from medfm.training.loop import TrainConfig, check_seed
from medfm.training.run_folder import discards_failed_output

DATASETS = ("lgg_flair",)
TRAIN_MISSING = ("natural", "mnar")
TASKS = ("classification", "segmentation")
#: modalities of a recipe that leaves ``modalities`` out, per task
DEFAULT_MODALITIES = {"classification": ("pre", "flair", "post", "clinical"), "segmentation": ("pre", "flair", "post")}


@dataclass
class FusionDataConfig:
    """Data section: ``dataset`` ("lgg_flair"), slice side ``img_size``, optional array ``cache_dir``.

    Raises:
        ValueError: an unknown ``dataset``; ``img_size`` not an integer >= 16 (:func:`medfm.arg_checks.check_number`);
            ``cache_dir`` not a string or null.
    """

    dataset: str = "lgg_flair"
    img_size: int = 64
    cache_dir: Optional[str] = None

    def __post_init__(self) -> None:
        check_field_types(self, "data.")
        if self.dataset not in DATASETS:
            raise ValueError(f"data.dataset must be one of {DATASETS}, got {self.dataset!r}")
        check_number("data.img_size", self.img_size, ge=16, integer=True, hint=" (a slice side in px)")


@dataclass
class FusionModelConfig:
    """One model to train: a registered fuser, its arguments (over the recipe's shared ones) and
    the training missingness ("natural" or "mnar").

    Raises:
        ValueError: an unknown ``train_missing``; ``fuser`` not a string, ``args`` not a mapping
            (:func:`medfm.config.check_field_types`; the fuser is looked up when the models are built).
    """

    fuser: str = "3mat"
    args: Dict[str, Any] = field(default_factory=dict)
    train_missing: str = "natural"

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.train_missing not in TRAIN_MISSING:
            raise ValueError(f"train_missing must be one of {TRAIN_MISSING}, got {self.train_missing!r}")


@dataclass
class FusionProtocolConfig:
    """Protocol section (see :mod:`medfm.evaluation.fusion`).

    Raises:
        ValueError: an MCAR rate that is not a finite number in [0, 1), ``p_high``/``p_low`` not finite
            numbers in [0, 1], ``n_boot`` not an integer >= 1, ``seed`` not an integer in [0, 2**32 - 1]
            (:func:`medfm.training.train_config.check_seed`), ``mcar_rates``/``mnar_modalities`` not lists (a string was
            split into its letters; the shared rules of :mod:`medfm.arg_checks`; checked when the recipe is read:
            the protocol runs after every model has trained).
    """

    mcar_rates: List[float] = field(default_factory=lambda: [0.25, 0.5])
    mnar_modalities: List[str] = field(default_factory=lambda: ["pre", "flair", "post"])
    p_high: float = 0.8
    p_low: float = 0.1
    n_boot: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        check_field_types(self, "protocol.")
        if not all(number_fits(r, ge=0, lt=1) for r in self.mcar_rates):
            raise ValueError(f"protocol.mcar_rates must be fractions in [0, 1), got {list(self.mcar_rates)}")
        for key in ("p_high", "p_low"):
            check_number(f"protocol.{key}", getattr(self, key), ge=0, le=1, hint=" (a probability)")
        check_number("protocol.n_boot", self.n_boot, ge=1, integer=True)
        check_seed("protocol.seed", self.seed)


@dataclass
class FusionRecipe:
    """``medfm fuse`` recipe.

    Attributes:
        task: "classification" (slice-level abnormality, this module) or "segmentation"
            (abnormality masks, :mod:`medfm.training.fusion_seg`).
        data: :class:`FusionDataConfig`.
        modalities: all modalities (order = MultiModN's visiting order); default per task:
            classification ``[pre, flair, post, clinical]``, segmentation ``[pre, flair, post]``
            (the clinical table has no pixels to segment).
        image_encoder: ``{"name": encoder, "args": {...}}`` shared by all image modalities.
        dim: fusion width D (models may override in their args).
        models: ``{label: FusionModelConfig}``, each given as one or as a mapping of its settings.
        train: :class:`TrainConfig`.
        protocol: :class:`FusionProtocolConfig`.

    Raises:
        ValueError: an unknown ``task``, unknown or repeated ``modalities``, ``clinical`` for
            segmentation, ``dim`` not an integer >= 1 (:func:`medfm.arg_checks.check_number`),
            ``protocol.mnar_modalities`` outside ``modalities`` (classification), no ``models``, a model
            whose ``args.modalities`` are not among ``modalities``, a segmentation model with
            ``train_missing: mnar``, a field of the wrong type (``modalities="flair"`` was split into letters; each
            section is its dataclass or a mapping: :func:`medfm.config.check_field_types`);
            ConfigError: a ``models.<label>`` entry that is not a mapping of its settings (in a recipe file:
            ``r.yaml.models.a must be a mapping of its settings, got 5``, :func:`medfm.config.check_value_type`; given
            in Python, which takes a :class:`FusionModelConfig` too: ``models.a must be a FusionModelConfig or a
            mapping of its settings, got 5``, and None, no entry, as ``lora=None``) or holds a bad one.
    """

    task: str = "classification"
    data: FusionDataConfig = field(default_factory=FusionDataConfig)
    modalities: Optional[List[str]] = None
    image_encoder: Dict[str, Any] = field(default_factory=lambda: {"name": "resnet_test"})
    dim: int = 64
    models: Dict[str, FusionModelConfig] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    protocol: FusionProtocolConfig = field(default_factory=FusionProtocolConfig)

    def __post_init__(self) -> None:
        from medfm.config import check_value_type
        from medfm.data.lgg_fusion import MODALITIES

        check_field_types(self)
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.modalities is None:
            self.modalities = list(DEFAULT_MODALITIES[self.task])
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be distinct names from {list(MODALITIES)}, got {self.modalities}"
                             + (f" (unknown: {unknown})" if unknown else ""))
        if self.task == "segmentation" and "clinical" in self.modalities:
            raise ValueError("modalities: segmentation takes image modalities only; drop 'clinical' from "
                             f"{self.modalities}")
        check_number("dim", self.dim, ge=1, integer=True, hint=" (the fusion width)")
        if self.task == "classification":
            extra = [m for m in self.protocol.mnar_modalities if m not in self.modalities]
            if extra:
                raise ValueError(f"protocol.mnar_modalities {extra} are not among the recipe's modalities "
                                 f"{self.modalities}")
        if not self.models:
            raise ValueError("the recipe names no models (models: {label: {fuser: ..., args: ...}})")
        # each entry by the one rule of a recipe section given in Python (a recipe file's entries were built by
        # from_dict, in its words): a FusionModelConfig passes, a mapping is built
        self.models = {k: check_value_type(v, FusionModelConfig, f"models.{k}", from_file=False)
                       for k, v in self.models.items()}
        for label, spec in self.models.items():
            self._check_model(label, spec)

    def _check_model(self, label: str, spec: FusionModelConfig) -> None:
        """What one model's settings must agree on with the recipe (the fuser checks its own values when
        it is built, :func:`build_models`): its ``args.modalities`` among the recipe's ``modalities`` (the
        data and the protocol's subsets are the recipe's), natural missingness for segmentation."""
        own = spec.args.get("modalities")
        listed = isinstance(own, (list, tuple))
        extra = [m for m in own if m not in self.modalities] if listed else []
        if own is not None and (not listed or not own or extra):
            raise ValueError(f"models.{label}.args.modalities must be a non-empty list of the recipe's modalities "
                             f"{self.modalities}, got {own!r}" + (f" (not among them: {extra})" if extra else ""))
        if self.task == "segmentation" and spec.train_missing != "natural":
            raise ValueError(f"models.{label}.train_missing: segmentation models train with natural missingness only, "
                             f"got {spec.train_missing!r}")


class MissingnessView:
    """A dataset whose batches have extra modalities removed by fixed masks ``{m: (N,) bool}``."""

    def __init__(self, dataset: Any, drop: Dict[str, torch.Tensor]) -> None:
        self.dataset, self.drop = dataset, drop

    def __len__(self) -> int:
        return len(self.dataset)

    def get_batch(self, indices: torch.Tensor) -> Dict[str, Any]:
        """The wrapped dataset's batch at ``indices`` ``(B,)`` with ``drop[m][indices]`` rows made absent.

        Dropped rows become NaN and are marked absent (:func:`medfm.data.multimodal.drop_modalities`);
        the dataset's own batch is not changed.
        """
        from medfm.data.multimodal import drop_modalities

        idx = torch.as_tensor(indices, dtype=torch.long)
        return drop_modalities(self.dataset.get_batch(idx), {m: d[idx] for m, d in self.drop.items()})


def flip_images(batch: Dict[str, Any], modalities: Any, gen: torch.Generator) -> Tuple[Dict[str, Any], torch.Tensor]:
    """A shared random horizontal flip per sample (p = 0.5) of every image modality ``(B, 1, S, S)``.

    The flips ``(B,)`` bool are drawn on the CPU from ``gen`` (the same draws on any device) and
    applied on each tensor's device. Returns a new batch dict (``batch`` is not changed) and the
    flips, for targets that must follow the images (segmentation masks).
    """
    from medfm.data.multimodal import batch_size

    flip = torch.rand(batch_size(batch), generator=gen) < 0.5
    batch = dict(batch)
    for m in modalities:
        x = batch.get(m)
        if isinstance(x, torch.Tensor) and x.ndim == 4:
            batch[m] = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    return batch, flip


def fusion_step(model: torch.nn.Module, batch: Dict[str, Any], gen: torch.Generator) -> Dict[str, torch.Tensor]:
    """One training step: a shared random horizontal flip per sample (:func:`flip_images`), forward, the model's
    loss."""
    batch, _ = flip_images(batch, getattr(model, "modalities", []), gen)
    out = model(batch, gen)
    loss = model.loss(out, batch["label"])
    acc = (out["logits"].argmax(-1) == batch["label"].to(out["logits"].device)).float().mean()
    return {"loss": loss, "acc": acc.detach()}


def build_fuser(recipe: FusionRecipe, spec: FusionModelConfig, clinical_features: int, label_names: List[str]):
    """The registered fuser of ``spec`` with the recipe's shared arguments filled in (the shared
    ``image_encoder`` for every fuser but ChannelViT, which embeds the image channels itself and so
    refuses an ``image_encoder`` in its own ``args``: it used to be dropped silently), under the model's own
    ``args``; its ``modalities``: :func:`model_modalities`."""
    from medfm.registry import FUSERS

    shared: Dict[str, Any] = {"img_size": recipe.data.img_size, "clinical_features": clinical_features,
                              "dim": recipe.dim, "label_names": label_names}
    if spec.fuser != "channelvit":
        shared["image_encoder"] = dict(recipe.image_encoder)
    return FUSERS.build(spec.fuser, **{**shared, **spec.args, "modalities": model_modalities(recipe, spec)})


def check_image_encoder(recipe: "FusionRecipe") -> None:
    """Check the recipe's shared ``image_encoder`` section before the data are read: the spec rules every fuser
    applies (:func:`medfm.adapters.fusion.base.image_encoder_spec`: its keys, a string name, mapping args), a 2D
    encoder (the LGG slices are 2D, :func:`medfm.training.runs.check_encoder_dims`), and one build at random
    initialisation (:class:`medfm.adapters.fusion.ImageModalityEncoder`, its own checks).

    Raises:
        ConfigError: named as the section, e.g. ``r.yaml.image_encoder: unknown key 'argz' in image_encoder; did
            you mean 'args'?`` or ``r.yaml.image_encoder: lgg_flair is a 2D set but encoder 'resnet3d_10' is 3D; ...``;
        UnknownNameError: an unregistered encoder.
    """
    from medfm.adapters.fusion import ImageModalityEncoder
    from medfm.adapters.fusion.base import image_encoder_spec
    from medfm.config import mapping_location, recipe_args_errors
    from medfm.training.runs import check_encoder_dims

    where = mapping_location(recipe, "image_encoder")
    with recipe_args_errors(where):
        name, _ = image_encoder_spec(recipe.image_encoder)
    check_encoder_dims(name, 2, recipe.data.dataset, where)
    with recipe_args_errors(where):  # the models reseed: no effect on them
        ImageModalityEncoder(recipe.image_encoder, recipe.data.img_size, recipe.dim)


def build_models(recipe: "FusionRecipe", build: Callable[[FusionModelConfig],
                                                         torch.nn.Module]) -> Dict[str, torch.nn.Module]:
    """``{label: build(spec)}`` for every model of the recipe, each built after ``torch.manual_seed(train.seed)``.

    Called before the data are read, so that a bad fuser value fails in seconds, named with its
    recipe location (``r.yaml.models.3mat: modality_dropout must be in [0, 1), got 2``; the fuser
    takes the model's ``args`` over the recipe's shared ``modalities``, ``image_encoder``, ``dim``).
    The shared ``image_encoder`` is built once first (:class:`medfm.adapters.fusion.ImageModalityEncoder`),
    so that a bad value there is named as that section (``r.yaml.image_encoder: drop_path_rate ...``),
    not as the first model that uses it (:func:`check_image_encoder`: its keys and 2D encoder too).
    Fusers load no checkpoint, so the whole build is the component build.

    Raises:
        ConfigError: an unknown key, a 3D encoder or a ``ValueError``/``TypeError`` of the shared ``image_encoder``
            (its location) or of ``build`` (``models.<label>``'s location; :func:`medfm.config.recipe_args_errors`);
            UnknownNameError: an unregistered fuser or encoder.
    """
    from medfm.config import mapping_location, recipe_args_errors

    check_image_encoder(recipe)
    built = {}
    for label, spec in recipe.models.items():
        torch.manual_seed(recipe.train.seed)
        with recipe_args_errors(mapping_location(recipe, f"models.{label}")):
            built[label] = build(spec)
    return built


def model_modalities(recipe: "FusionRecipe", spec: FusionModelConfig) -> List[str]:
    """The modalities a model of the recipe takes: its ``args.modalities``, else the recipe's ``modalities``;
    the one source of the ``modalities`` that :func:`build_fuser` and the segmentation runner's build
    (:func:`medfm.training.fusion_seg.build_seg_fuser`) give the fuser."""
    return list(spec.args.get("modalities") or recipe.modalities)


def training_rows(modalities: Any, natural: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
    """The training samples of a model over ``modalities``: for a single-modality baseline the ``(n,)`` indices
    of the samples that have its modality (``natural[m]``, ``(N,)`` bool presence; it learns only from those),
    None (every sample) for a fuser of two or more."""
    modalities = list(modalities)
    return natural[modalities[0]].nonzero().flatten() if len(modalities) == 1 else None


def check_training_sets(recipe: "FusionRecipe", train: Any, natural: Dict[str, torch.Tensor]) -> None:
    """Every model's training set against ``train.batch_size`` (:func:`medfm.training.loop.steps_per_epoch`),
    before the first model trains: the whole ``train`` set, and the samples of each single-modality model
    (:func:`training_rows` of the set's natural presence ``natural``, ``{modality: (N,) bool}``,
    :meth:`medfm.data.lgg_fusion.LGGFusionSet.presence`; such a model was refused only when its turn came, after
    the recipe's earlier models had trained).

    Raises:
        ValueError: fewer training samples than a batch (``the training set has 3 samples, fewer than one
            batch of 4 (train.batch_size)``).
        ConfigError: a single-modality model with fewer, named by its recipe location: ``r.yaml.models.single_post:
            the training set has 294 samples, fewer than one batch of 300 (train.batch_size): a single-modality
            model trains on the training samples that have 'post' only; ...``.
    """
    from medfm.config import ConfigError, mapping_location
    from medfm.training.loop import steps_per_epoch

    batch = recipe.train.batch_size
    steps_per_epoch(len(train), batch)
    for label, spec in recipe.models.items():
        mods = model_modalities(recipe, spec)
        if len(mods) != 1:
            continue
        try:
            steps_per_epoch(len(training_rows(mods, natural)), batch)
        except ValueError as err:
            raise ConfigError(f"{mapping_location(recipe, f'models.{label}')}: {err}: a single-modality model "
                              f"trains on the training samples that have {mods[0]!r} only; lower train.batch_size "
                              "or drop the model") from None


def fit_or_reuse(model: torch.nn.Module, step_fn: Any, data: Any, train_cfg: TrainConfig, run_dir: Path,
                 resume: bool, natural: Dict[str, torch.Tensor], data_meta: Dict[str, Any],
                 training: Optional[Dict[str, Any]] = None, log_tag: str = "fuse",
                 before_write: Optional[Callable[[], None]] = None) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Train one fuser into ``run_dir/model`` (resumable), or reuse it there when ``resume``.

    ``before_write``: given to the fit (:meth:`medfm.training.loop.Trainer.fit`), called once a resumed state's
    counters fit the data, before anything is written (the runners:
    :func:`medfm.training.fusion_run.recipe_writer`); not called for a reused model.

    A single-modality model (``len(model.modalities) == 1``) learns only from the samples whose
    ``natural[m]`` (``(N,)`` bool presence) is set.
    The final checkpoint's config records ``{"training": {"data": data_meta, **training,
    "train_seconds": s}}`` (``training``: run label, fuser, settings, for its model card; ``s``:
    wall-clock seconds of this call's training) and the parameter count.

    Returns ``(model, fit)``: the model in eval mode and ``fit = {"train_seconds", "reused_from"}``:
    after training, the seconds just spent and None; when reused, the seconds the checkpoint's
    config recorded (None for a checkpoint saved before they were recorded) and the checkpoint
    path. Prints ``[<log_tag>] <label>: trained in <s> s`` or ``... reused from <path> (...)``.
    Raises: CheckpointError: a reused ``run_dir/model`` that is not a readable checkpoint.
    """
    from medfm.hub import from_pretrained, load_config, save_pretrained, write_checkpoint
    from medfm.training.loop import Trainer
    from medfm.training.runs import IndexedSubset

    final, label = run_dir / "model", run_dir.name
    if resume and final.is_dir():
        seconds = load_config(final).get("training", {}).get("train_seconds")
        when = f"trained in {seconds:.1f} s by the earlier run" if seconds is not None else "training time not recorded"
        print(f"[{log_tag}] {label}: reused from {final} ({when})", flush=True)
        return from_pretrained(final).eval(), {"train_seconds": seconds, "reused_from": str(final)}
    t0 = time.perf_counter()
    rows = training_rows(model.modalities, natural)  # a single-modality baseline: the samples that have it
    if rows is not None:
        data = IndexedSubset(data, rows)
    Trainer(model, step_fn, data, train_cfg, run_dir, lambda m, d: write_checkpoint(m, d)).fit(
        resume=resume, before_write=before_write)
    seconds = round(time.perf_counter() - t0, 1)
    extra = {"training": {"data": data_meta, **(training or {}), "train_seconds": seconds},
             "n_params": f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M"}
    save_pretrained(model.eval(), final, extra_config=extra)
    print(f"[{log_tag}] {label}: trained in {seconds:.1f} s", flush=True)
    return model.eval(), {"train_seconds": seconds, "reused_from": None}


def fit_timings(fits: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """The results.json timing keys of ``{label: fit}`` (:func:`fit_or_reuse`): ``train_seconds``
    ``{label: seconds or None}`` (a reused model keeps the seconds of the run that trained it) and
    ``reused_models`` ``{label: checkpoint path}`` for the models reused by ``--resume``."""
    return {"train_seconds": {k: f["train_seconds"] for k, f in fits.items()},
            "reused_models": {k: f["reused_from"] for k, f in fits.items() if f["reused_from"]}}


def fusion_data_record(train: Any, test: Any, data_root: Optional[str], train_missing: str) -> Dict[str, Any]:
    """What a fusion checkpoint records about its TCGA-LGG data (for its model card): data set,
    licence, source, md5 of ``SHA256SUMS`` (:func:`medfm.cards.data_provenance`), split rule,
    train patients and the train/test patient and slice counts."""
    from medfm.cards import data_provenance

    return {**data_provenance("lgg_flair", data_root), "dataset": "lgg_flair",
            "dataset_name": "TCGA-LGG (lgg_tcga_flair_seg_3ch)", "patients": train.patients,
            "split_rule": "sorted patient folders; i % 3 == 2 -> test", "n_train": len(train.patients),
            "n_test": len(test.patients), "unit": "patients", "n_train_slices": len(train), "n_test_slices": len(test),
            "train_missing": train_missing}


def fusion_training_record(recipe: "FusionRecipe", label: str, spec: "FusionModelConfig") -> Dict[str, Any]:
    """The run label, fuser and settings a fusion checkpoint records (its card finds its own
    row of the run's results.json by ``run_label``)."""
    from medfm.config import to_dict

    return {"run_label": label, "fuser": spec.fuser, "fuser_args": dict(spec.args),
            "modalities": list(recipe.modalities), "task": recipe.task, "train": to_dict(recipe.train)}


def write_fusion_cards(output: Path, labels: List[str], results: Dict[str, Any]) -> None:
    """Rewrite each trained model's card (``output/models/<label>/model``) with its test results."""
    from medfm.cards import write_card

    for label in labels:
        write_card(Path(output) / "models" / label / "model", results)


@discards_failed_output  # a failed run leaves no folder it created with nothing trained
def run_fusion(recipe: FusionRecipe, output: Path, data_root: Optional[str] = None,
               resume: bool = False) -> Dict[str, Any]:
    """Train every model of ``recipe`` and run the protocol; returns the results dict.

    Every model is built first (:func:`build_models`), so a bad fuser value fails before the data are read.

    Raises:
        MedFMDataError: LGG data missing; FileExistsError: ``output`` holds a run and not ``resume``;
        ConfigError: a resume with other settings or without a model of the run, of models without a readable
        ``config.yaml`` or beside a model folder it does not list (:func:`medfm.training.fusion_run.start_run`); a bad
        fuser value, with its recipe location;
        UnknownNameError: an unregistered fuser;
        ValueError / ConfigError: a model's training set smaller than ``train.batch_size``, before any model
        trains (:func:`check_training_sets`).
    """
    from medfm.data.lgg_fusion import CLINICAL_COLUMNS, EXCLUDED_COLUMNS
    from medfm.evaluation.fusion import mnar_drop, run_fusion_protocol
    from medfm.evaluation.fusion_report import write_fusion_report

    if recipe.task == "segmentation":
        from medfm.training.fusion_seg import run_fusion_segmentation

        return run_fusion_segmentation(recipe, output, data_root, resume)
    label_names = ["no_abnormality", "flair_abnormality"]
    built = build_models(recipe, lambda spec: build_fuser(recipe, spec, len(CLINICAL_COLUMNS), label_names))
    output, train, test, natural, t0 = start_run(recipe, output, data_root, resume)
    pcfg = recipe.protocol
    natural = {m: natural[m] for m in recipe.modalities}  # the recipe's: mnar_drop keeps one of them per sample
    mnar = mnar_drop(train.labels, natural, pcfg.mnar_modalities, pcfg.p_high, pcfg.p_low, False,
                     torch.Generator().manual_seed(pcfg.seed + 101))
    trained, trained_mnar, fits = {}, {}, {}
    write_config = recipe_writer(recipe, output)  # config.yaml, once: before the first trained model's fit writes
    for label, spec in recipe.models.items():
        model = built.pop(label)
        model.set_tabular_statistics(train.clinical)
        data = MissingnessView(train, mnar) if spec.train_missing == "mnar" else train
        model, fits[label] = fit_or_reuse(model, fusion_step, data, recipe.train, output / "models" / label, resume,
                                          natural, fusion_data_record(train, test, data_root, spec.train_missing),
                                          fusion_training_record(recipe, label, spec),
                                          before_write=write_config)
        (trained_mnar if spec.train_missing == "mnar" else trained)[label] = model.eval()
    write_config.clear_report()  # every model reused: the earlier report goes before the protocol (else gone already)
    test_batch = test.get_batch(torch.arange(len(test)))
    res = run_fusion_protocol(trained, test_batch, recipe.modalities, trained_mnar, pcfg.mcar_rates,
                              pcfg.mnar_modalities, pcfg.p_high, pcfg.p_low, pcfg.n_boot, pcfg.seed)
    extra = {"task": "slice-level FLAIR abnormality present (mask non-empty), TCGA-LGG",
             "split": {"rule": "sorted patient folders; i % 3 == 2 -> test", "train": train.patients,
                       "test": test.patients, "n_train_slices": len(train), "n_test_slices": len(test)},
             "missing_sequences": {**train.missing, **test.missing},
             "clinical_columns": list(CLINICAL_COLUMNS), "excluded_columns": EXCLUDED_COLUMNS,
             **fit_timings(fits), "wall_s": round(time.perf_counter() - t0, 1)}
    write_fusion_report(res, output, extra)
    write_fusion_cards(output, list(recipe.models), {**extra, **res})
    return {**extra, **res}


def fuse_from_recipe(path: Path, output: Path, epochs: Optional[int] = None, data_root: Optional[str] = None,
                     resume: bool = False) -> str:
    """Run a ``medfm fuse`` recipe file; returns a short summary (AUC of every model, single-modality
    baselines included, on the test patients with all modalities present; MNAR drops;
    for ``task: segmentation`` the per-subset Dice).

    Raises:
        ConfigError: unreadable or invalid recipe; and what :func:`run_fusion` raises.
    """
    from medfm.config import from_dict, load_yaml, with_overrides

    path = Path(path)
    data = load_yaml(path)
    data = with_overrides(data, {"train": {"epochs": epochs}})  # a non-mapping train: is reported by from_dict
    recipe = from_dict(FusionRecipe, data, where=path.name)
    res = run_fusion(recipe, Path(output), data_root, resume)
    if recipe.task == "segmentation":
        from medfm.training.fusion_seg import seg_summary

        return seg_summary(res, Path(output))
    full = "+".join(recipe.modalities)
    lines = [f"{r['model']}: AUC {r['auc']:.3f} ACC {r['acc']:.3f} (test patients with all modalities present, "
             f"n={r['n']})"
             for r in res["subsets"] if r["subset"] == full]
    lines += [f"MNAR {k}: AUC natural {v['natural']:.3f} -> flipped {v['mnar_flipped']:.3f} (drop {v['drop']:+.3f})"
              for k, v in res["checks"]["mnar_drop"].items()]
    lines.append(f"results: {Path(output) / 'results.json'}; report: {Path(output) / 'report.md'}")
    return "\n".join(lines)


__all__ = ["FusionRecipe", "FusionDataConfig", "FusionModelConfig", "FusionProtocolConfig", "MissingnessView",
           "fusion_step", "build_fuser", "build_models", "check_image_encoder", "check_training_sets", "start_run",
           "recipe_writer", "refuse_unrecorded_models", "model_modalities", "training_rows", "fit_or_reuse",
           "fit_timings",
           "run_fusion", "fuse_from_recipe", "fusion_data_record", "fusion_training_record", "write_fusion_cards"]
