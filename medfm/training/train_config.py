"""The ``train`` section of a pretraining or fine-tuning recipe (:class:`TrainConfig`) and the seed rule
(:func:`check_seed`): pure Python, so that a recipe (:mod:`medfm.training.recipes`) is read and checked without
importing torch (``medfm eval --suite``'s early check of a suite's ``protocol.finetune`` settings imported it, 3-6 s,
for these dataclasses alone). :mod:`medfm.training.loop`, which trains with them, re-exports all four names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from medfm.arg_checks import check_number

PRECISIONS = ("auto", "bf16", "fp32")
#: the largest ``train.seed``: the loop seeds a generator with ``seed * 1_000_003 + step``, which must fit
#: torch's 64-bit seeds (a larger seed failed at the first step, with an overflow, after the run folder was written)
MAX_SEED = 2**32 - 1


def check_seed(name: str, value: Any) -> int:
    """``value`` as a seed: an integer in ``[0, MAX_SEED]`` (``train.seed``, ``protocol.seed``).

    Raises:
        ValueError: ``train.seed must be an integer >= 0, got 1.5`` (:func:`medfm.arg_checks.check_number`),
            ``train.seed must be <= 2**32 - 1, got 1152921504606846976``.
    """
    seed = check_number(name, value, ge=0, integer=True)
    if seed > MAX_SEED:
        raise ValueError(f"{name} must be <= 2**32 - 1, got {seed}")
    return seed


@dataclass
class TrainConfig:
    """Optimisation settings shared by pretraining and fine-tuning.

    Attributes:
        epochs: passes over the training set.
        batch_size: images per step (the last incomplete batch of an epoch is dropped).
        lr: peak AdamW learning rate, reached after ``warmup_epochs`` (linear warm-up),
            then cosine decay to ``lr * min_lr_ratio``.
        weight_decay: AdamW decoupled weight decay (not applied to biases and norms).
        precision: "auto", "bf16" or "fp32".
        seed: seeds weights, sample order and augmentations.
        checkpoint_every: also checkpoint every N optimizer steps (0: epoch ends only).
        log_every: write a ``metrics.jsonl`` line every N steps.
        grad_clip: max gradient norm (None: no clipping).
        num_threads: torch CPU threads, set when training starts (:func:`~medfm.training.loop.set_train_threads`;
            None: torch's default, the machine's core count); the count trained with is recorded in
            ``metrics.jsonl`` (``host``).
        deterministic: deterministic kernels for the run (:mod:`medfm.training.determinism`): what a
            GPU run needs for a resume to match an uninterrupted run bit for bit (PyTorch warns that
            deterministic kernels can be slower; the one case measured, a ResNet-18 on an H200, was
            not). No effect measured on a CPU.

    Raises:
        ValueError: an unknown precision, or a value out of range or of the wrong kind, e.g.
            ``train.epochs must be an integer >= 1, got 2.5`` or ``train.warmup_epochs must be a
            finite number >= 0, got nan`` (``True`` is refused, not taken as 1); ``seed`` above :data:`MAX_SEED`.
    """

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    precision: str = "auto"
    seed: int = 0
    checkpoint_every: int = 0
    log_every: int = 20
    grad_clip: Optional[float] = None
    num_threads: Optional[int] = None
    deterministic: bool = False

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "log_every"):
            check_number(f"train.{key}", getattr(self, key), ge=1, integer=True)
        check_number("train.checkpoint_every", self.checkpoint_every, ge=0, integer=True, hint=" (0: epoch ends only)")
        check_number("train.lr", self.lr, gt=0)
        check_number("train.warmup_epochs", self.warmup_epochs, ge=0)
        check_number("train.weight_decay", self.weight_decay, ge=0)
        check_number("train.min_lr_ratio", self.min_lr_ratio, ge=0, le=1)
        check_seed("train.seed", self.seed)
        if self.grad_clip is not None:
            check_number("train.grad_clip", self.grad_clip, gt=0, hint=" (null: no clipping)")
        if self.num_threads is not None:
            check_number("train.num_threads", self.num_threads, ge=1, integer=True, hint=" (null: torch's default)")
        if not isinstance(self.deterministic, bool):
            raise ValueError(f"train.deterministic must be true or false, got {self.deterministic!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
