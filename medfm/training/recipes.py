"""Recipe dataclasses: what a ``pretrain/*.yaml`` or ``finetune/*.yaml`` file may say.

Each component has its own section (data, encoder, objective, lora, train), validated in
``__post_init__``; :func:`medfm.config.from_dict` rejects unknown keys with "did you mean".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from medfm.adapters.lora import LoraSettings
from medfm.data.views import ViewConfig
from medfm.training.loop import TrainConfig

FINETUNE_MODES = ("linear", "full", "lora")
#: MedMNIST's official splits
SPLITS = ("train", "val", "test")


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

    Raises:
        ValueError: ``label_fraction`` outside (0, 1], ``size`` < 1, an unknown ``val_split``.
    """

    dataset: str = "pneumoniamnist"
    size: int = 28
    data_root: Optional[str] = None
    verify_md5: bool = True
    label_fraction: float = 1.0
    val_split: Optional[str] = "val"

    def __post_init__(self) -> None:
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"data.label_fraction must be in (0, 1], got {self.label_fraction}")
        if self.size < 1:
            raise ValueError(f"data.size must be a side in px (e.g. 28), got {self.size}")
        if self.val_split is not None and self.val_split not in SPLITS:
            # checked here: the val split is first read after the first epoch, hours into a run
            raise ValueError(f"data.val_split must be one of {SPLITS} or null (no validation), got {self.val_split!r}")


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
        ValueError: ``img_size`` < 1 (0 used to mean "the data's size" silently).
    """

    name: str = "resnet18"
    img_size: Optional[int] = None
    pretrained: Optional[str] = None
    args: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.img_size is not None and self.img_size < 1:
            raise ValueError(f"encoder.img_size must be a side in px, or left out for the data's size; got {self.img_size}")


@dataclass
class ObjectiveConfig:
    """Objective section: a registered objective (``OBJECTIVES``) and its arguments."""

    name: str = "simclr"
    args: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PretrainRecipe:
    """``medfm pretrain`` recipe."""

    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


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

    Raises:
        ValueError: an unknown ``mode``, ``dropout`` outside [0, 1).
    """

    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    mode: str = "lora"
    lora: LoraSettings = field(default_factory=LoraSettings)
    dropout: float = 0.0
    head_norm: bool = False
    augment: Optional[ViewConfig] = field(default_factory=ViewConfig.light)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.mode not in FINETUNE_MODES:
            raise ValueError(f"mode must be one of {FINETUNE_MODES}, got {self.mode!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
