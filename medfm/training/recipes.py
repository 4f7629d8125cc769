"""Recipe dataclasses: what a ``pretrain/*.yaml`` or ``finetune/*.yaml`` file may say.

Each component has its own section (data, encoder, objective, lora, train), validated in
``__post_init__``; :func:`medfm.config.from_dict` rejects unknown keys with "did you mean".

Torch-free: the sections the training code also uses are in torch-free modules (:mod:`medfm.training.train_config`,
:mod:`medfm.data.view_config`, :mod:`medfm.lora_settings`), so a recipe, and a suite's ``protocol.finetune``
(:func:`medfm.suite_protocols.check_finetune_settings`), are checked before torch is imported.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Optional

from medfm.arg_checks import check_label_fraction, check_number
from medfm.config import check_field_types
from medfm.data.errors import UnsupportedSizeError
from medfm.data.medmnist_info import (CORPUS_DATASET, MEDMNIST_FLAGS, available_sizes, check_medmnist_split,
                                       check_recipe_dataset, check_split)
from medfm.data.view_config import ViewConfig
from medfm.lora_settings import LoraSettings
from medfm.training.train_config import TrainConfig

FINETUNE_MODES = ("linear", "full", "lora")


@dataclass
class DataConfig:
    """Which data a run reads.

    Attributes:
        dataset: MedMNIST flag (e.g. ``pneumoniamnist``), or ``corpus`` (pretraining only: the
            multi-source image-text corpus of :mod:`medfm.data.corpus`, sizes 28/64).
        size: image side in px (28/64/128/224).
        data_root: overrides ``$MEDFM_DATA`` (the CLI's ``--data-root`` overrides both).
        verify_md5: check the file's md5 before use.
        label_fraction: fraction of training labels used (fine-tuning; stratified, seeded).
        val_split: split evaluated at the end of each fine-tuning epoch (None: skip).

    A plain :class:`DataConfig` made in Python is the section of either recipe: the recipe that takes it checks
    ``dataset`` as a name of its kind (:class:`PretrainRecipe`: a MedMNIST flag or the corpus;
    :class:`FinetuneRecipe`: a MedMNIST flag), so a misspelt name is refused in that recipe's words
    (``FinetuneRecipe(data=DataConfig(dataset="typo"))`` said "unknown MedMNIST data set or corpus", a name it
    refuses). A :class:`FinetuneDataConfig` (a fine-tuning recipe file's section) checks it itself.

    Raises:
        ValueError: ``label_fraction`` not a number in (0, 1] (:func:`medfm.arg_checks.check_label_fraction`,
            the rule and words of ``--label-fraction``: ``data.label_fraction must be in (0, 1], got 1.5``; NaN and
            ``True`` too), ``size`` not an integer >= 1 (:func:`medfm.arg_checks.check_number`: ``True``, ``2.5``,
            NaN are refused).
        UnknownSplitError: an unknown ``val_split`` (:func:`medfm.data.medmnist_info.check_medmnist_split`:
            ``data.val_split: unknown split 'tset' for MedMNIST 'pneumoniamnist'; did you mean 'test'?``; the
            corpus's too; for another name, the recipe's refusal of the name comes first).
        UnknownDatasetError: (raised by the recipe for a plain DataConfig, see above) ``dataset`` neither a
            MedMNIST flag nor ``corpus`` (with close matches, in the words of ``medfm pretrain``'s early check:
            ``data.dataset: unknown MedMNIST data set or corpus 'pneumonimnist'; did you mean 'pneumoniamnist' or
            'dermamnist'?``; :class:`FinetuneDataConfig`, the fine-tuning section, and ``medfm eval --data``:
            without "or corpus");
        UnsupportedSizeError: a MedMNIST flag at a ``size`` it is not released at, the corpus at a size it is not
            built at (28/64; all named when the recipe is read, not after the imports and the encoder's check build).
        ValueError: a field of the wrong type (:func:`medfm.config.check_field_types`: ``verify_md5="no"`` was
            taken as true).
    """

    #: whether ``dataset`` may be the pretraining corpus (:class:`FinetuneDataConfig`: no); None: not known yet
    #: (a plain DataConfig: the recipe that takes it checks ``dataset``)
    takes_corpus: ClassVar[Optional[bool]] = None

    dataset: str = "pneumoniamnist"
    size: int = 28
    data_root: Optional[str] = None
    verify_md5: bool = True
    label_fraction: float = 1.0
    val_split: Optional[str] = "val"

    def __post_init__(self) -> None:
        if self.takes_corpus is not None:  # else the recipe that takes this section checks the name
            check_recipe_dataset(self.dataset, "data.dataset", finetuning=not self.takes_corpus)
        check_field_types(self, "data.")
        check_label_fraction(self.label_fraction, "data.label_fraction")  # --label-fraction's rule and words
        check_number("data.size", self.size, ge=1, integer=True, hint=" (a side in px, e.g. 28)")
        if self.dataset == CORPUS_DATASET:  # (was named when the corpus was built, after the check builds)
            from medfm.data.corpus import check_corpus_size

            check_corpus_size(self.size, "data.size")
        if self.dataset in MEDMNIST_FLAGS and self.size not in available_sizes(self.dataset):
            raise UnsupportedSizeError(f"data.size: MedMNIST {self.dataset!r} is not released at {self.size} px; "
                                       f"available: {list(available_sizes(self.dataset))}")
        if self.val_split is not None:  # checked here: the val split is first read after the first epoch
            if self.dataset in MEDMNIST_FLAGS:
                check_medmnist_split(self.dataset, self.val_split, "data.val_split")
            elif self.dataset == CORPUS_DATASET:  # another name: the recipe refuses it first, named as the data set
                check_split(self.val_split, repr(self.dataset), "data.val_split")


@dataclass
class FinetuneDataConfig(DataConfig):
    """The ``data`` section of a fine-tuning recipe: a :class:`DataConfig` whose ``dataset`` is a MedMNIST flag,
    never the corpus. A misspelt name is an "unknown MedMNIST data set" whose close matches are MedMNIST flags
    (a recipe read by :func:`medfm.config.from_dict` and the ``medfm finetune`` command say the same).

    Raises:
        ValueError: ``dataset: corpus`` (:func:`medfm.data.medmnist_info.check_recipe_dataset`:
            :data:`medfm.data.medmnist_info.CORPUS_NOT_FOR_FINETUNING`); and what :class:`DataConfig` raises.
    """

    takes_corpus: ClassVar[bool] = False


@dataclass
class EncoderConfig:
    """Encoder section: a registered name plus builder overrides.

    Attributes:
        name: registered encoder (``medfm.list_encoders()``).
        img_size: input side; default: the data's size.
        pretrained: None, "timm", or a medfm checkpoint (dir or ``hf-hub:``); for fine-tuning
            the CLI's ``--init`` takes precedence.
        args: extra builder keyword arguments.

    Raises:
        ValueError: ``img_size`` not an integer >= 1 (0 used to mean "the data's size" silently;
            :func:`medfm.arg_checks.check_number`); ``name``, ``pretrained`` or ``args`` of the wrong type
            (:func:`medfm.config.check_field_types`; the name is looked up when a run checks its recipe).
    """

    name: str = "resnet18"
    img_size: Optional[int] = None
    pretrained: Optional[str] = None
    args: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_field_types(self, "encoder.")
        if self.img_size is not None:
            check_number("encoder.img_size", self.img_size, ge=1, integer=True,
                         hint=" (a side in px), or left out for the data's size")


@dataclass
class ObjectiveConfig:
    """Objective section: a registered objective (``OBJECTIVES``) and its arguments.

    Raises:
        ValueError: ``name`` not a string, ``args`` not a mapping (:func:`medfm.config.check_field_types`; the name is
            looked up when a run checks its recipe).
    """

    name: str = "simclr"
    args: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_field_types(self, "objective.")


@dataclass
class PretrainRecipe:
    """``medfm pretrain`` recipe. Each section is its dataclass, or a mapping of its settings
    (:func:`medfm.config.check_field_types`).

    Raises:
        ValueError: a section of the wrong type (``objective must be an ObjectiveConfig or a mapping ...``);
            ConfigError: a bad mapping section.
        UnknownDatasetError: ``data.dataset`` neither a MedMNIST flag nor the corpus
            (:func:`medfm.data.medmnist_info.check_recipe_dataset`: ``data.dataset: unknown MedMNIST data set or
            corpus 'corpsu'; did you mean 'corpus'?``).
    """

    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_field_types(self)
        check_recipe_dataset(self.data.dataset, "data.dataset", finetuning=False)  # a pretraining data set


@dataclass
class FinetuneRecipe:
    """``medfm finetune`` recipe.

    Attributes:
        mode: "linear" (frozen encoder, BatchNorm statistics frozen), "full", or "lora".
        lora: LoRA settings (mode "lora").
        dropout: dropout before the linear head.
        head_norm: parameter-free BatchNorm on the features before the head (MAE's linear
            probing; see :class:`medfm.adapters.classification.ImageClassifier`).
        augment: training-time views (None: no augmentation; default: light crops/flips).
        data: :class:`FinetuneDataConfig` (a plain :class:`DataConfig` made in Python is taken as one).

    Each section is its dataclass or a mapping of its settings (:func:`medfm.config.check_field_types`).

    Raises:
        ValueError: an unknown ``mode``, ``dropout`` not a finite number in [0, 1)
            (:func:`medfm.arg_checks.check_number`), ``data.dataset: corpus`` (it has no class labels:
            :data:`medfm.data.medmnist_info.CORPUS_NOT_FOR_FINETUNING`), a field of the wrong type
            (``head_norm="no"`` was taken as true); ConfigError: a bad mapping section.
    """

    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    mode: str = "lora"
    lora: LoraSettings = field(default_factory=LoraSettings)
    dropout: float = 0.0
    head_norm: bool = False
    augment: Optional[ViewConfig] = field(default_factory=ViewConfig.light)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if type(self.data) is DataConfig:  # made in Python: checked again as a fine-tuning set (the corpus refused)
            fields = dataclasses.fields(DataConfig)
            self.data = FinetuneDataConfig(**{f.name: getattr(self.data, f.name) for f in fields})
        check_field_types(self)
        if self.mode not in FINETUNE_MODES:
            raise ValueError(f"mode must be one of {FINETUNE_MODES}, got {self.mode!r}")
        check_number("dropout", self.dropout, ge=0, lt=1)
