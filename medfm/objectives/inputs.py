"""Input checks shared by the self-supervised objectives' ``forward(batch, gen)``.

The objectives draw random views of ``batch["image"]`` before the encoder sees them, so the
encoder's own check (:meth:`medfm.encoders.base.Encoder.check_input`) runs on the views:
a NaN pixel that a random crop leaves out passed unnoticed, an empty batch failed inside
``F.affine_grid`` and a missing ``"image"`` key was a bare ``KeyError``. The raw batch is
checked here first, with the encoder's check (without the size part: the views resize).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from medfm.encoders.base import EncoderInputError


def check_image_batch(batch: Any, encoder: nn.Module, objective: str, min_batch: int = 1,
                      noun: str = "images", why: str = "") -> torch.Tensor:
    """Return ``batch["image"]`` after checking it is a usable ``(B, C, H, W)`` batch for ``encoder``.

    Args:
        batch: the objective's batch, a mapping with ``"image"``: float ``(B, C, H, W)`` in [0, 1]
            (``(B, C, D, H, W)`` for volume encoders).
        encoder: the objective's medfm encoder (its ``check_input`` checks rank, channels,
            dtype, B > 0 and finite values; the spatial size is left to the views and the encoder).
        objective: the objective's name, for messages.
        min_batch: the smallest batch the objective can use.
        noun / why: how the message names the samples and why ``min_batch`` is needed.

    Returns:
        The image tensor ``(B, C, H, W)``.

    Raises:
        ValueError: ``batch`` is not a mapping with ``"image"``, or ``B < min_batch``.
        EncoderInputError: not a tensor, wrong rank or channel count, not float, B=0, NaN/inf.
    """
    if not isinstance(batch, Mapping) or "image" not in batch:
        got = sorted(map(str, batch)) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(f"{objective} needs a batch dict with 'image' (a (B, C, H, W) float tensor in [0, 1]), "
                         f"got {got}")
    images = batch["image"]
    check = getattr(encoder, "check_input", None)
    if check is not None:
        check(images, check_size=False)
    elif not isinstance(images, torch.Tensor):
        raise EncoderInputError(f"{objective}: batch['image'] must be a torch.Tensor, got {type(images).__name__}")
    b = int(images.shape[0])
    if b < min_batch:
        raise ValueError(f"{objective} needs a batch of at least {min_batch} {noun}{why}, got {b}")
    return images
