"""Running recipes: ``pretrain`` and ``finetune`` (the library side of the CLI).

Both write into one output directory: ``config.yaml`` (the resolved recipe),
``metrics.jsonl``, ``training_curve.png`` (drawn from it when the run ends), ``checkpoint/``
(latest, atomic, resumable) and, for fine-tuning, the
final ``adapter/`` (LoRA, adapter-only) or ``model/`` (linear/full) checkpoint. A call that fails (Ctrl-C
included) removes the output directory it created unless it holds a training state or a logged step, as every
runner does (:func:`medfm.training.run_folder.discards_failed_output`).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

import torch

from medfm.checkpoint_ids import is_hub_id
from medfm.config import (
    ConfigError,
    dump_yaml,
    located_error,
    mapping_location,
    recipe_args_errors,
    recipe_location,
    to_dict,
)
from medfm.data import MedMNISTDataset, dataset_info
from medfm.data.views import RandomViews
from medfm.encoders import create_encoder
from medfm.io import atomic_write_text
from medfm.objectives.inputs import check_objective_args
from medfm.registry import OBJECTIVES
from medfm.training.loop import Trainer, refuse_existing_run, steps_per_epoch
from medfm.training.recipes import CORPUS_DATASET, EncoderConfig, FinetuneRecipe, PretrainRecipe
from medfm.training.resume import check_resume_init, check_resume_recipe, record_init
from medfm.training.run_folder import discards_failed_output


class IndexedSubset:
    """A fixed subset of a dataset that keeps the fast ``get_batch`` path."""

    def __init__(self, dataset: Any, indices: Any) -> None:
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitem__(self, i: int) -> Dict[str, Any]:
        return self.dataset[int(self.indices[i])]

    def get_batch(self, idx: torch.Tensor) -> Dict[str, Any]:
        """The dataset's batch for subset positions ``idx`` ``(B,)`` int64 in ``[0, len(self))``."""
        return self.dataset.get_batch(self.indices[idx])


def data_metadata(ds: MedMNISTDataset) -> Dict[str, Any]:
    """What a checkpoint records about its training data."""
    info = dataset_info(ds.flag)
    return {
        "flag": ds.flag, "size": ds.size, "task": ds.task, "label_names": ds.label_names,
        "license": ds.license, "license_id": "cc-by-4.0" if "CC BY 4.0" in ds.license else "other",
        "description": info["description"], "md5": ds.md5, "splits": "official MedMNIST v2 train/val/test",
        "n_train": len(ds),
    }


def check_recipe_args(recipe: Union[PretrainRecipe, FinetuneRecipe]) -> None:
    """Run the encoder's (and a pretraining objective's) own argument checks before any data are read.

    The encoder is built once at random initialisation (``encoder.pretrained`` is not loaded:
    :func:`check_init_checkpoint` and the real build see to it) for the recipe's input:
    the data set's channels from its metadata (:func:`medfm.data.dataset_info`, no file is read;
    1 for the corpus) and side ``encoder.img_size`` or ``data.size``, as the runners build it; the
    objective is checked without an encoder (:func:`medfm.objectives.inputs.check_objective_args`),
    then against that encoder's input geometry (e.g. swav's ``local_size`` against its ``min_input_size``).
    A fine-tuning recipe's encoder and ``augment`` must suit the set's 2D/3D data (:func:`_check_finetune_dims`);
    pretraining takes a 2D set (or the corpus) and a 2D encoder (:func:`_check_pretrain_dims`). A LoRA
    fine-tuning recipe's ``lora.target_modules`` are matched against that encoder under its classifier
    (:func:`medfm.training.adaptation.check_lora_targets`; a pattern matching no layer was named after
    the data were read, without a location). Costs one encoder build (milliseconds for the small encoders,
    about a second for a ViT-B).

    Raises:
        ConfigError: a bad value, named with its recipe location (:func:`medfm.config.recipe_args_errors`),
            e.g. ``p.yaml.objective.args: simclr: temperature must be > 0, got -1.0``, or
            ``f.yaml.lora: LoRA target pattern 'x' matches no Linear/Conv2d/Conv3d layer ...``.
        UnknownNameError: an unknown encoder or objective, with its section's recipe location;
            UnknownDatasetError: an unknown data set.
    """
    objective = getattr(recipe, "objective", None)
    if objective is not None:
        with recipe_args_errors(recipe_location(objective, "objective")):  # an unknown name: the section's
            OBJECTIVES.get(objective.name)
        with recipe_args_errors(f"{recipe_location(objective, 'objective')}.args"):
            check_objective_args(objective.name, objective.args)
    info = None if recipe.data.dataset == CORPUS_DATASET else dataset_info(recipe.data.dataset)
    if isinstance(recipe, FinetuneRecipe) and info is not None:  # before the check build: the clearer message
        _check_finetune_dims(recipe, info)
    elif isinstance(recipe, PretrainRecipe):
        _check_pretrain_dims(recipe, info)
    encoder = check_encoder_args(recipe.encoder, 1 if info is None else info["n_channels"], recipe.data.size)
    if objective is not None:  # the checks that read the encoder's input geometry (swav's local_size)
        with recipe_args_errors(f"{recipe_location(objective, 'objective')}.args"):
            check_objective_args(objective.name, objective.args, encoder=encoder)
    if isinstance(recipe, FinetuneRecipe) and recipe.mode == "lora":  # (a fine-tuning set is a MedMNIST flag)
        from medfm.adapters.classification import ImageClassifier
        from medfm.training.adaptation import check_lora_targets

        model = ImageClassifier(encoder, info["num_classes"], info["task"], info["label_names"],
                                head_norm=recipe.head_norm)
        check_lora_targets(model, recipe, model.head_modules)


def check_encoder_args(encoder: EncoderConfig, in_chans: int, img_size: Optional[int]) -> torch.nn.Module:
    """Build recipe section ``encoder`` once at random initialisation, to run its own argument checks
    before any data are read (the check build of every runner: :func:`check_recipe_args`, ``medfm
    segment``, ``medfm vqa``).

    ``encoder.pretrained`` is not loaded (a checkpoint error is not a recipe value error; the real
    build loads it). The input is ``in_chans`` channels of side ``encoder.img_size or img_size``.
    Returns the encoder, for a check build of the adapter on top of it.

    Raises:
        ConfigError: a bad ``encoder.args`` value, named with the section's recipe location
            (:func:`medfm.config.recipe_args_errors`), e.g.
            ``r.yaml.encoder: resnet18: drop_path_rate must be in [0, 1), got 5.0``.
        UnknownNameError: an unknown encoder.
    """
    with recipe_args_errors(recipe_location(encoder, "encoder")):
        return create_encoder(encoder.name, in_chans=in_chans, img_size=encoder.img_size or img_size, **encoder.args)


def check_init_checkpoint(init: Optional[str], encoder: EncoderConfig) -> None:
    """Refuse a missing local starting checkpoint before any data are read: ``init`` (``--init``) when
    given, else recipe section ``encoder``'s ``pretrained``, as the runners load them (``init or pretrained``).

    A bad ``encoder.pretrained`` is named with its recipe location, its class kept
    (:func:`medfm.config.located_error`): ``r.yaml.encoder.pretrained: no checkpoint directory at
    '/nonexistent/ckpt' ...``. ``None``, ``"timm"`` and ``hf-hub:`` ids pass (:func:`medfm.hub.check_local_checkpoint`).

    Raises:
        CheckpointError: the path is missing or a file, a folder without config.json, or a LoRA adapter
            (:func:`medfm.hub.check_local_checkpoint`).
    """
    from medfm.hub import CheckpointError, check_local_checkpoint

    if init:
        check_local_checkpoint(init)
        return
    try:
        check_local_checkpoint(encoder.pretrained)
    except CheckpointError as err:
        raise located_error(err, f"{recipe_location(encoder, 'encoder')}.pretrained") from None


def check_run_start(output: Path, recipe: Any, init: Optional[str], resume: bool,
                    state_dirs: Sequence[str] = ("checkpoint",), deferred: Sequence[str] = ()) -> None:
    """What a runner that takes ``--init`` and ``--resume`` checks before it writes or reads anything
    (``medfm finetune``, ``medfm segment``, text-conditioned included, and ``medfm vqa``): no run's
    training state in ``output`` unless ``resume`` (:func:`medfm.training.loop.refuse_existing_run`,
    over ``state_dirs``), a resume with the recipe and ``init`` the run was started with
    (:func:`medfm.training.resume.check_resume_recipe`, leaving out the keys in ``deferred``, which
    the runner compares once its data have settled them; :func:`medfm.training.resume.check_resume_init`),
    and a local starting checkpoint that exists (:func:`check_init_checkpoint`).

    Raises:
        FileExistsError: ``output`` holds a training state and ``resume`` is False.
        ConfigError: ``resume`` with another recipe or ``init`` than the run's.
        CheckpointError: a missing local ``init`` (or ``encoder.pretrained``, named with its recipe location).
    """
    refuse_existing_run(output, resume, state_dirs)  # before anything is written (config.yaml, a LoRA base/)
    check_resume_recipe(output, recipe, resume, deferred=deferred)
    check_resume_init(output, init, resume)
    check_init_checkpoint(init, recipe.encoder)


def build_recipe_text_encoder(recipe: Any) -> Any:
    """The frozen text encoder of a recipe's ``text_encoder`` section (a spec ``{"name": ..., **args}``,
    :func:`medfm.text.create_text_encoder`), loaded before the data are read (``medfm segment`` with
    text-conditioned tasks, ``medfm vqa``): a bad spec, a model folder that is missing or cannot be
    loaded, or a hub id that cannot be fetched is named with the section's location.

    Raises:
        ConfigError: ``r.yaml.text_encoder: ...``: a bad spec (:func:`medfm.text.encoders.check_text_encoder_spec`,
            checked before any model is looked up) or a :class:`medfm.text.TextEncoderError` from loading.
    """
    from medfm.text import create_text_encoder
    from medfm.text.encoders import check_text_encoder_spec

    with recipe_args_errors(mapping_location(recipe, "text_encoder")):
        return create_text_encoder(check_text_encoder_spec(recipe.text_encoder, frozen_only=True))


def _load(recipe_data, split: str, data_root: Optional[str]) -> MedMNISTDataset:
    return MedMNISTDataset(recipe_data.dataset, split=split, size=recipe_data.size,
                           data_root=data_root or recipe_data.data_root, verify=recipe_data.verify_md5)


def write_run_record(output: Path, recipe: Any, init: Optional[str] = None, resume: bool = False,
                     takes_init: bool = True, write_base: Optional[Callable[[], None]] = None) -> None:
    """Create ``output`` and write the run's record there: ``config.yaml`` (the resolved recipe) and, for a runner
    that takes ``--init`` (``takes_init``), ``init.json`` (:func:`medfm.training.resume.record_init`; a resume keeps
    the run's own). Every runner calls it through its trainer's ``before_write``
    (:meth:`medfm.training.loop.Trainer.fit`: once a resumed state's counters are checked against the data, before
    the fit writes anything), or ``medfm vqa`` at the same point of its own loop, so that a refused resume (another
    ``--data-root``, another training set size) leaves the run folder as it was; written before the fit, the two
    files were rewritten first.

    Args:
        output: the run folder.
        recipe: the resolved recipe dataclass (:func:`medfm.config.dump_yaml`).
        init: the run's ``--init`` as given (None: none); ``resume``: whether the run continues.
        takes_init: False for the runners without ``--init`` (``pretrain``, ``fuse``): no ``init.json``.
        write_base: called after the two files: a LoRA run's ``<output>/base``, its model's starting weights
            (the writer of :func:`medfm.training.adaptation.lora_base`; written here, a run refused by the fit's
            checks leaves none behind). None: nothing more.

    Raises:
        OSError: ``output`` cannot be created or written; CheckpointError: ``<output>/base`` is a file or a
        folder that is not a checkpoint (``write_base``).
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "config.yaml", dump_yaml(recipe))
    if takes_init:
        record_init(output, init, resume)
    if write_base is not None:
        write_base()


def _n_params(module: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M"


@discards_failed_output  # a failed run leaves no folder it created with nothing trained
def run_pretrain(recipe: PretrainRecipe, output: Path, data_root: Optional[str] = None, resume: bool = False) -> Path:
    """Self-supervised pretraining of ``recipe.encoder`` with ``recipe.objective``.

    Labels are never read. Returns the checkpoint directory (``<output>/checkpoint``).
    An existing run in ``output`` (without ``resume``) or a resume with another recipe is refused
    first, then the encoder's and objective's arguments are checked (:func:`check_recipe_args`), all
    before the data are loaded (the corpus is built in seconds on its first use; the refusals used to
    come after it); nothing is written to ``output`` before the encoder and objective are built, nor before a
    resumed state's counters are checked against the data (``config.yaml`` is written by the trainer's
    ``before_write``: :meth:`medfm.training.loop.Trainer.fit`).

    Raises:
        ConfigError: a bad ``encoder`` or ``objective.args`` value or key, a 3D set or encoder, with its recipe
        location (before any data are read); medfm data errors, UnknownNameError (encoder/objective), ConfigError;
        FileExistsError: ``output`` holds a checkpoint and ``resume`` is False (checked first: before anything is
        read or written);
        ConfigError: ``resume`` with a recipe other than the run's ``config.yaml``
        (:func:`medfm.training.resume.check_resume_recipe`, checked first too).
        CheckpointError: a missing local ``encoder.pretrained``, with its recipe location, before the data are
        read (:func:`check_init_checkpoint`).
        ValueError: a training set smaller than ``train.batch_size`` (:func:`medfm.training.loop.steps_per_epoch`),
        named once the data are read, before anything is written; a resumed state whose counters do not fit
        the data (:func:`medfm.training.loop.check_resume_counters`), before ``config.yaml`` is written;
        NotADirectoryError: ``output`` is a file (:func:`medfm.training.loop.check_output_folder`, first).
    """
    from medfm.hub import write_checkpoint

    output = Path(output)
    refuse_existing_run(output, resume)  # first, as every runner (was: after the data load)
    check_resume_recipe(output, recipe, resume)  # (pretrain has no --init to compare: not check_run_start)
    check_recipe_args(recipe)  # seconds before the data are loaded
    check_init_checkpoint(None, recipe.encoder)  # was: named after the data load, by the encoder build
    if recipe.data.dataset == CORPUS_DATASET:  # the multi-source image-text corpus (medfm.data.corpus)
        from medfm.data.corpus import PretrainCorpus

        ds = PretrainCorpus(size=recipe.data.size, data_root=data_root or recipe.data.data_root)
        data_meta = ds.metadata()
    else:
        ds = _load(recipe.data, "train", data_root)  # a 2D set: check_recipe_args refused 3D ones
        data_meta = data_metadata(ds)
    steps_per_epoch(len(ds), recipe.train.batch_size)  # a set smaller than a batch, before anything is written
    torch.manual_seed(recipe.train.seed)
    encoder = create_encoder(recipe.encoder.name, in_chans=ds.n_channels, img_size=recipe.encoder.img_size or ds.size,
                             pretrained=recipe.encoder.pretrained, **recipe.encoder.args)
    objective = OBJECTIVES.build(recipe.objective.name, encoder=encoder, **recipe.objective.args)
    if callable(getattr(objective, "prepare_data", None)):  # e.g. clip embeds the corpus texts once
        objective.prepare_data(ds)
    extra = {"training": {"data": data_meta, "pretraining": {"objective": to_dict(recipe.objective),
                                                                   "train": to_dict(recipe.train)}},
             "family": encoder.family, "n_params": _n_params(encoder),
             "summary": f"`{recipe.encoder.name}` encoder pretrained with `{recipe.objective.name}` on {ds.flag} "
                        "(labels unused)."}

    def save(model, directory):
        write_checkpoint(model, directory, extra_config=extra)

    trainer = Trainer(objective, lambda m, b, g: m(b, g), ds, recipe.train, output, save)
    # config.yaml after the builds and a resumed state's checks: a bad section or a refused resume writes nothing
    trainer.fit(resume=resume, before_write=lambda: write_run_record(output, recipe, takes_init=False))
    return trainer.checkpoint_dir


def _finetune_step(augment: Optional[RandomViews], frozen: bool):
    def step(model, batch, gen):
        core = model.base_model.model if hasattr(model, "base_model") else model
        if frozen:
            core.encoder.eval()
        images = batch["image"]
        if augment is not None:
            images = augment(images, gen)
        logits = model(images)
        return {"loss": core.loss(logits, batch["label"])}
    return step


def build_classifier(recipe: FinetuneRecipe, ds: MedMNISTDataset, init: Optional[str]) -> torch.nn.Module:
    """Classifier for ``ds``'s task (classes, label names, channels from its metadata)."""
    from medfm.adapters.classification import ImageClassifier

    pretrained = init or recipe.encoder.pretrained
    encoder = create_encoder(recipe.encoder.name, in_chans=ds.n_channels, img_size=recipe.encoder.img_size or ds.size,
                             pretrained=pretrained, **recipe.encoder.args)
    return ImageClassifier(encoder, num_classes=ds.num_classes, task=ds.task, label_names=ds.label_names,
                           dropout=recipe.dropout, head_norm=recipe.head_norm)


def check_encoder_dims(name: str, data_dims: int, data: str, where: str) -> None:
    """Refuse encoder ``name`` when its spatial dims differ from the data's, before anything is built or read.

    The dims are the encoder's registration tag (``dims=3`` for the volume encoders, e.g.
    ``resnet3d_10``; 2 otherwise), so no encoder is built. Used by every runner whose data have
    fixed dims: ``medfm pretrain`` and ``finetune`` (:func:`check_recipe_args`), ``medfm segment``
    with ``tasks:`` (2D) and ``medfm fuse`` (2D slices).

    Args:
        name: registered encoder name.
        data_dims: 2 or 3, the data's spatial dims.
        data: the data's name for the message (``"pneumoniamnist"``).
        where: the encoder section's recipe location (``"r.yaml.encoder"``, :func:`medfm.config.recipe_location`).

    Raises:
        UnknownNameError: unknown encoder (with close matches), named with ``where``
            (``r.yaml.encoder: unknown encoder 'resnet19'; did you mean 'resnet18' ...``).
        ConfigError: dims mismatch, one line saying what to use, e.g. ``r.yaml.encoder: pneumoniamnist is a
            2D set but encoder 'resnet3d_10' is 3D; use a 2D encoder (e.g. resnet18)``.
    """
    from medfm.registry import ENCODERS

    with recipe_args_errors(where):  # an unknown name, with the section's location
        dims = int(ENCODERS.tags(name).get("dims", 2))
    if dims == data_dims:
        return
    examples = (", ".join(n for n in ENCODERS.names(dims=3) if not ENCODERS.tags(n).get("test"))
                if data_dims == 3 else "resnet18")
    raise ConfigError(f"{where}: {data} is a {data_dims}D set but encoder {name!r} is {dims}D; use a {data_dims}D "
                      f"encoder (e.g. {examples})" + (" or the 2D slices of the volumes" if data_dims == 3 else ""))


def _check_finetune_dims(recipe: FinetuneRecipe, info: Dict[str, Any]) -> None:
    """Refuse an encoder whose spatial dims differ from the data's (:func:`check_encoder_dims`), and
    2D augmentation on volumes.

    A 3D set (AdrenalMNIST3D, VesselMNIST3D, ...) fine-tunes a 3D encoder (registered with
    ``dims=3``, e.g. ``resnet3d_10``) and a 2D set a 2D one. The training views
    (:class:`medfm.data.views.RandomViews`: crops, flips, rotation of ``(B, C, H, W)``) are 2D
    only, so a 3D run needs ``augment: null``. ``info``: :func:`medfm.data.dataset_info` of the
    recipe's set (no file is read).

    Raises:
        UnknownNameError: unknown encoder (with close matches).
        ConfigError: dims mismatch (``r.yaml.encoder: ...``), or ``augment`` set for a 3D set
            (``r.yaml.augment: ...``), one line saying what to change.
    """
    flag = info["flag"]
    check_encoder_dims(recipe.encoder.name, 3 if info["is_3d"] else 2, flag, recipe_location(recipe.encoder, "encoder"))
    if info["is_3d"] and recipe.augment is not None:  # (also when augment is the default)
        raise ConfigError(f"{mapping_location(recipe, 'augment')}: {flag} is a 3D set and the training views (augment) "
                          "are 2D only; set `augment: null` in the recipe")


def _check_pretrain_dims(recipe: PretrainRecipe, info: Optional[Dict[str, Any]]) -> None:
    """Refuse a 3D set (the pretraining views are 2D) and a 3D encoder, before the data are read.

    ``info``: :func:`medfm.data.dataset_info` of the recipe's set, None for the corpus (2D images:
    :mod:`medfm.data.corpus`, which also holds 2D slices of the 3D sets).

    Raises:
        ConfigError: a 3D set (``r.yaml.data: ...``) or a 3D encoder (``r.yaml.encoder: ...``,
        :func:`check_encoder_dims`).
        UnknownNameError: unknown encoder.
    """
    name = CORPUS_DATASET if info is None else info["flag"]
    if info is not None and info["is_3d"]:
        raise ConfigError(f"{recipe_location(recipe.data, 'data')}: {name} is a 3D set and pretraining takes 2D "
                          "images; use a 2D set or `dataset: corpus` (it holds 2D slices of the 3D sets)")
    check_encoder_dims(recipe.encoder.name, 2, name, recipe_location(recipe.encoder, "encoder"))


def finetune_label_indices(recipe: FinetuneRecipe, labels: Any) -> Any:
    """Indices of the training labels a fine-tuning run of ``recipe`` trains on: the stratified,
    seeded ``recipe.data.label_fraction`` of them (:func:`medfm.data.label_fraction_indices` with
    ``recipe.train.seed``), all of them at fraction 1.

    The one rule :func:`run_finetune` and the suite's ``finetune`` protocol (which reports the
    per-class counts as ``train_labels``) both apply, so the two cannot drift apart.

    Args:
        recipe: the run's recipe (fraction and seed).
        labels: ``(N,)`` / ``(N, 1)`` class indices or ``(N, L)`` 0/1 multi-label labels of the train split.

    Returns:
        Sorted int64 numpy array of indices into ``[0, N)``.

    Raises:
        ValueError: an empty label set or non-0/1 multi-label labels (:func:`label_fraction_indices`).
    """
    from medfm.evaluation.protocols import subset_indices

    return subset_indices(labels, recipe.data.label_fraction, recipe.train.seed)


@discards_failed_output  # a failed run leaves no folder it created with nothing trained
def run_finetune(recipe: FinetuneRecipe, output: Path, init: Optional[str] = None, data_root: Optional[str] = None,
                 resume: bool = False) -> Path:
    """Fine-tune a classifier (linear probe, full, or LoRA) on a MedMNIST flag.

    A training set smaller than ``train.batch_size`` (a small ``data.label_fraction``) trains
    with one batch of all its images; the checkpoint records the batch size used.

    With a ``data.val_split``, each epoch logs ``<split>_acc`` and ``<split>_auc`` on it (``metrics.jsonl``); the AUC
    ranks the model's logits (:func:`medfm.evaluation.predict.predict_outputs`), as ``medfm eval`` does, so a
    confident model's saturated float32 probabilities do not tie.

    Returns the final checkpoint: ``<output>/adapter`` for LoRA, else ``<output>/model``.

    Raises:
        ConfigError: a bad ``encoder`` value, an encoder or ``augment`` that does not suit the set's 2D/3D
        data, with its recipe location (:func:`check_recipe_args`, before any data are read); medfm data
        errors, UnknownNameError, CheckpointError (``init``, or ``encoder.pretrained`` named with its recipe
        location: :func:`check_init_checkpoint`); FileExistsError:
        ``output`` holds a checkpoint and ``resume`` is False (checked before anything is written);
        ConfigError: ``resume`` with a recipe other than the run's ``config.yaml``
        (:func:`medfm.training.resume.check_resume_recipe`),
        or with another ``init`` than the run was started with (:func:`medfm.training.resume.check_resume_init`;
        checked first, with ``FileExistsError`` and a missing local ``init`` directory: :func:`check_run_start`).
        Only a changed ``train.batch_size`` is named after the training set is read, as the fit to a small
        set decides it.
        ValueError: a resumed state whose counters do not fit the training set (another ``--data-root``:
        :func:`medfm.training.loop.check_resume_counters`), checked before ``config.yaml`` and ``init.json``
        are written (the trainer's ``before_write``: a refused resume leaves the run folder as it was), and
        before a LoRA run's ``<output>/base`` (:func:`medfm.training.adaptation.lora_base`).
    """
    from medfm.training.adaptation import adapt, checkpoint_writer, lora_base, save_final
    from medfm.evaluation.metrics import classification_metrics
    from medfm.evaluation.predict import predict_outputs
    from medfm.hub import load_config

    output = Path(output)
    # before anything is read or written (config.yaml, a LoRA base/); --init is not in the recipe: <output>/init.json
    check_run_start(output, recipe, init, resume, deferred=("train.batch_size",))  # fitted to the data below
    check_recipe_args(recipe)  # before the data are loaded
    ds = _load(recipe.data, "train", data_root)
    keep = finetune_label_indices(recipe, ds.labels)
    train_ds: Any = ds if len(keep) == len(ds) else IndexedSubset(ds, keep)
    if len(train_ds) < recipe.train.batch_size:  # e.g. 1 % of PneumoniaMNIST: 47 labels, one batch of all of them
        recipe = replace(recipe, train=replace(recipe.train, batch_size=len(train_ds)))
    # the batch size too, after its fit (needs the data), as config.yaml records it
    check_resume_recipe(output, recipe, resume)
    val = _load(recipe.data, recipe.data.val_split, data_root) if recipe.data.val_split else None  # before writing too
    torch.manual_seed(recipe.train.seed)
    model = build_classifier(recipe, ds, init)
    given = init or recipe.encoder.pretrained
    base, write_base = lora_base(model, recipe.mode, given, output, resume)  # before LoRA wraps the model
    # a LoRA run's own base/ (written by the fit) records no pretraining
    pretraining = (load_config(base).get("training", {}).get("pretraining")
                   if base and base == given and not is_hub_id(base) else None)
    lora = to_dict(recipe.lora) if recipe.mode == "lora" else None
    meta = {"training": {"data": {**data_metadata(ds), "n_train": len(train_ds),
                                  "label_fraction": recipe.data.label_fraction},
                         "pretraining": pretraining,
                         "finetuning": {"mode": recipe.mode, "init": base, "lora": lora,
                                        "train": to_dict(recipe.train)}},
            "family": model.encoder.family, "n_params": _n_params(model),
            "summary": f"`{recipe.encoder.name}` classifier for {ds.flag} ({ds.task}), fine-tuned ({recipe.mode}) from "
                       f"{'a medfm checkpoint' if given is not None else 'random initialisation'}."}
    trained = adapt(model, recipe.mode, recipe.lora, head_modules=model.head_modules)
    save = checkpoint_writer(recipe.mode, base, meta)

    def epoch_end(m, epoch):
        if val is None:
            return {}
        scores, logits = predict_outputs(m, val)  # the AUC ranks the logits, as medfm eval and the suites do
        res = classification_metrics(val.labels, scores, ds.task, logits=logits)
        m.train()
        return {f"{recipe.data.val_split}_acc": res["acc"], f"{recipe.data.val_split}_auc": res["auc"]}

    augment = RandomViews(recipe.augment) if recipe.augment is not None else None
    trainer = Trainer(trained, _finetune_step(augment, recipe.mode == "linear"), train_ds, recipe.train, output, save,
                      epoch_end_fn=epoch_end)
    # once a resumed state's counters fit the data: a refused resume writes nothing (a LoRA base/ included)
    trainer.fit(resume=resume,
                before_write=lambda: write_run_record(output, recipe, init, resume, write_base=write_base))
    trained.eval()
    return save_final(trained, recipe.mode, base, meta, output)
