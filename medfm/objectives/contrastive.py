"""Contrastive objectives: NT-Xent loss and SimCLR.

NT-Xent is the normalised temperature-scaled cross-entropy of SimCLR (Chen et al.,
"A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from medfm.config import to_dict
from medfm.data.views import RandomViews
from medfm.encoders.base import Encoder
from medfm.objectives.heads import ProjectionHead
from medfm.objectives.inputs import (check_arg, check_encoder, check_float_tensors, check_image_batch, check_sizes,
                                     check_views, encode_views)
from medfm.registry import OBJECTIVES


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent loss between two batches of projections.

    For 2B projections (both views), each one's positive is the other view of the same
    image and its negatives are the remaining 2B - 2; the loss is the mean over all 2B
    anchors of the cross-entropy of cosine similarity / temperature.

    Shape:
        z1, z2: (B, D), B >= 2, any float dtype. Returns a float32 scalar, computed in float32
        also under ``torch.autocast``.
        NaN/inf values in ``z1``/``z2`` give a NaN loss (not looked for: see :mod:`medfm.objectives.inputs`).

    Raises:
        ValueError: not float tensors (:func:`~medfm.objectives.inputs.check_float_tensors`), mismatched
            shapes, B < 2, or a temperature that is not a finite number > 0.
    """
    check_float_tensors("nt_xent_loss", z1=z1, z2=z2)
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent_loss expects two (B, D) tensors of equal shape, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"nt_xent_loss needs a batch of at least 2 images, got {z1.shape[0]}")
    temperature = check_arg("nt_xent_loss", "temperature", temperature, gt=0)
    b = z1.shape[0]
    # fp32 even under bf16 autocast (which would run the matmul in bf16 despite .float())
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        logits = z @ z.t() / temperature
        logits.fill_diagonal_(float("-inf"))
        targets = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
        return F.cross_entropy(logits, targets)


@OBJECTIVES.register("simclr")
class SimCLR(nn.Module):
    """SimCLR (Chen et al. 2020): two random views per image, an MLP projection head and NT-Xent.

    Args:
        encoder: any medfm :class:`Encoder`; images ``(B, C, H, W)`` in [0, 1].
        proj_dim / hidden_dim / proj_layers: projection head sizes, integers >= 1.
        temperature: NT-Xent temperature, finite and > 0 (0.1-0.2 suits batches of a few hundred).
        views: augmentation parameters (dict of :class:`ViewConfig` fields, or a :class:`ViewConfig`).

    ``forward(batch, gen)`` takes ``{"image": (B, C, H, W)}`` and a ``torch.Generator`` and
    returns ``{"loss": scalar}``.

    Raises:
        ValueError: an argument out of its range or of the wrong type (one line naming it, its
            range and the value, e.g. ``simclr: temperature must be > 0, got -1.0``); unknown
            ``views`` keys; an ``encoder`` that is not a medfm Encoder (:func:`~medfm.objectives.inputs.check_encoder`).
    """

    def __init__(self, encoder: Encoder, proj_dim: int = 128, hidden_dim: int = 512, proj_layers: int = 2,
                 temperature: float = 0.1, views: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        proj_dim, hidden_dim, proj_layers = check_sizes("simclr", proj_dim=proj_dim, hidden_dim=hidden_dim,
                                                        proj_layers=proj_layers)
        self.temperature = check_arg("simclr", "temperature", temperature, gt=0)
        view_cfg = check_views("simclr", "views", views)
        check_encoder("simclr", encoder)
        self.encoder = encoder
        self.head = ProjectionHead(encoder.num_features, hidden_dim, proj_dim, proj_layers)
        self.views = RandomViews(view_cfg)
        self.medfm_spec = {"kind": "objective", "name": "simclr", "args": {
            "proj_dim": proj_dim, "hidden_dim": hidden_dim, "proj_layers": proj_layers,
            "temperature": self.temperature, "views": to_dict(view_cfg)}}

    def forward(self, batch: Dict[str, Any], gen: torch.Generator) -> Dict[str, torch.Tensor]:
        """Objective step: NT-Xent between two random views of each image.

        Args:
            batch: ``{"image": (B, C, H, W) float in [0, 1]}``, B >= 2.
            gen: CPU generator for the random views.

        Returns:
            ``{"loss": scalar}`` float32 (no extra keys).

        Raises:
            ValueError: no ``"image"``, B < 2, or ``gen`` not a CPU ``torch.Generator``.
            EncoderInputError: an image batch that is not a finite float ``(B, C, H, W)`` with the
                encoder's channel count.
        """
        images = check_image_batch(batch, self.encoder, "simclr", 2, gen=gen,
                                   why=" (NT-Xent contrasts each image with the others)")
        v1, v2 = self.views(images, gen), self.views(images, gen)
        z = self.head(encode_views(self.encoder, torch.cat([v1, v2])))
        z1, z2 = z.chunk(2)
        return {"loss": nt_xent_loss(z1, z2, self.temperature)}
