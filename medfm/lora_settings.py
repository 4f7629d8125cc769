"""LoRA hyper-parameters (:class:`LoraSettings`, a fine-tuning recipe's ``lora`` section): pure Python, so that a
recipe (:mod:`medfm.training.recipes`) is read and checked without importing torch (``medfm eval --suite``'s early
check of a suite's ``protocol.finetune`` settings imported torch, timm and torchvision for this dataclass).

A top-level module, not one of :mod:`medfm.adapters`: importing any module of that package first runs its
``__init__``, which imports the task adapters (torch, timm, torchvision). :mod:`medfm.adapters.lora`, which wires
LoRA with peft, re-exports the class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from medfm.arg_checks import check_number


@dataclass
class LoraSettings:
    """LoRA hyper-parameters.

    Attributes:
        rank: LoRA rank r, an integer >= 1.
        alpha: scaling numerator, a finite number > 0 (the update is scaled by alpha / r).
        dropout: dropout on the LoRA branch input, in [0, 1).
        target_modules: regex over module names *inside the encoder*; None uses the
            encoder family's default (``encoder.lora_target_modules``).
        train_norm: keep BatchNorm layers trainable and saved (``modules_to_save``). When
            off, their weights stay frozen but their running statistics still follow the
            training batches (train mode) and are saved with the adapter's buffers.

    Raises:
        ValueError: a value out of range or of the wrong kind (``lora.rank must be an integer >= 1,
            got 8.0``; ``True`` is refused, not taken as 1; NaN/inf are refused), or a
            ``target_modules`` that is not a non-empty string or does not compile as a regex.
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: Optional[str] = None
    train_norm: bool = True

    def __post_init__(self) -> None:
        check_number("lora.rank", self.rank, ge=1, integer=True)
        check_number("lora.alpha", self.alpha, gt=0)
        check_number("lora.dropout", self.dropout, ge=0, lt=1)
        if self.target_modules is not None:
            import re

            if not isinstance(self.target_modules, str) or not self.target_modules:
                raise ValueError(f"lora.target_modules must be a non-empty regex string over encoder module "
                                 f"names (or omitted for the encoder's default), got {self.target_modules!r}")
            try:
                re.compile(self.target_modules)
            except re.error as err:
                raise ValueError(f"lora.target_modules is not a valid regex: {err} "
                                 f"(in {self.target_modules!r})") from None
