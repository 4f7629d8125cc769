"""MoCo: momentum contrast with a queue of negatives (He et al., CVPR 2020; MoCo v2, Chen et al. 2020).

The query encoder (``encoder`` + ``head``) is trained by back-propagation; the key encoder
(``momentum_encoder`` + ``momentum_head``) is its exponential moving average, updated in
:meth:`MoCo.on_step_end` after each optimizer step. Keys of past batches wait in a FIFO
queue of negatives. Both the key encoder and the queue (with its write pointer) are part
of the ``state_dict`` (the queue is a persistent buffer), so checkpoints hold them and a
resumed run continues exactly; :func:`medfm.hub.load_encoder_weights` reads only the
``encoder.`` tensors, i.e. the query encoder.

Choices, stated: MoCo v2's MLP head and augmentations; the loss is symmetrised over the
two views (as in MoCo v3, Chen, Xie & He, ICCV 2021) by default; the keys of the first
view are enqueued. MoCo's "shuffling BN" (Sec. 3.3), which stops the query and its key
from sharing batch statistics, is done on one device by running the key encoder on a
random permutation of the batch split into ``key_bn_splits`` chunks (each chunk has its
own BatchNorm statistics), then undoing the permutation.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from medfm.config import to_dict
from medfm.data.views import RandomViews
from medfm.encoders.base import Encoder
from medfm.objectives.heads import ProjectionHead
from medfm.objectives.inputs import (check_arg, check_encoder, check_flag, check_float_tensors, check_image_batch,
                                     check_sizes, check_views, encode_views)
from medfm.registry import OBJECTIVES


def moco_infonce_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo's InfoNCE: each query's positive is its key; the negatives are the queue.

    ``loss = mean_i CE([q_i . k_i, q_i . queue_1, ..., q_i . queue_K] / T, target 0)`` with
    ``q`` and ``k`` L2-normalised here and ``queue`` used as given (MoCo stores normalised keys).

    Shape:
        q, k: ``(B, D)``; queue: ``(K, D)``. Returns a float32 scalar, computed in float32 also
        under ``torch.autocast``.
        NaN/inf values in ``q``/``k``/``queue`` give a NaN loss (not looked for: see :mod:`medfm.objectives.inputs`).

    Raises:
        ValueError: not float tensors (:func:`~medfm.objectives.inputs.check_float_tensors`), mismatched
            shapes, an empty batch or queue, or a temperature that is not a finite number > 0.
    """
    check_float_tensors("moco_infonce_loss", q=q, k=k, queue=queue)
    if q.shape != k.shape or q.ndim != 2 or queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"moco_infonce_loss expects q, k (B, D) and queue (K, D), got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(queue.shape)}")
    if q.shape[0] == 0 or queue.shape[0] == 0:
        raise ValueError(f"moco_infonce_loss needs B >= 1 queries and K >= 1 queue entries, got q {tuple(q.shape)} "
                         f"and queue {tuple(queue.shape)}")
    temperature = check_arg("moco_infonce_loss", "temperature", temperature, gt=0)
    with torch.autocast(device_type=q.device.type, enabled=False):  # logits / T in fp32 also under autocast
        q = F.normalize(q.float(), dim=1)
        k = F.normalize(k.float(), dim=1)
        pos = (q * k).sum(dim=1, keepdim=True)
        neg = q @ queue.float().t()
        logits = torch.cat([pos, neg], dim=1) / temperature
        return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


@OBJECTIVES.register("moco")
class MoCo(nn.Module):
    """MoCo v2 (momentum key encoder + queue + InfoNCE), optionally symmetrised.

    Args:
        encoder: any medfm :class:`Encoder`; images ``(B, C, H, W)`` in [0, 1].
        proj_dim / hidden_dim / proj_layers: projection head sizes, integers >= 1 (MoCo v2: 2-layer MLP).
        temperature: InfoNCE temperature, finite and > 0 (MoCo v2: 0.2).
        momentum: EMA coefficient ``m`` of the key encoder, ``k <- m k + (1 - m) q``, in [0, 1)
            (MoCo: 0.999 for long runs; 0.99 suits a few thousand steps).
        queue_size: number of negatives ``K`` kept, integer >= 1. Any size works with any batch
            size: the write pointer wraps, and a batch larger than the queue keeps its last ``K`` keys.
        symmetric: also contrast view-2 queries with view-1 keys and average (true/false).
        key_bn_splits: chunks of the shuffled key batch (shuffling BN), integer >= 1; 1 disables it
            (at run time it is capped at ``B // 2``).
        views: augmentation parameters (dict of :class:`ViewConfig` fields, or a :class:`ViewConfig`).

    ``forward(batch, gen)`` takes ``{"image": (B, C, H, W)}`` and returns ``{"loss"}``; in
    training mode it also remembers the batch's keys, which :meth:`on_step_end` enqueues.

    Raises:
        ValueError: an argument out of its range or of the wrong type (one line naming it, its
            range and the value, e.g. ``moco: momentum must be in [0, 1), got 1.0``); unknown
            ``views`` keys; an ``encoder`` that is not a medfm Encoder (:func:`~medfm.objectives.inputs.check_encoder`).
    """

    def __init__(self, encoder: Encoder, proj_dim: int = 128, hidden_dim: int = 512, proj_layers: int = 2,
                 temperature: float = 0.2, momentum: float = 0.99, queue_size: int = 4096, symmetric: bool = True,
                 key_bn_splits: int = 2, views: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        proj_dim, hidden_dim, proj_layers = check_sizes("moco", proj_dim=proj_dim, hidden_dim=hidden_dim,
                                                        proj_layers=proj_layers)
        temperature = check_arg("moco", "temperature", temperature, gt=0)
        momentum = check_arg("moco", "momentum", momentum, ge=0, lt=1)
        queue_size = check_arg("moco", "queue_size", queue_size, ge=1, integer=True)
        key_bn_splits = check_arg("moco", "key_bn_splits", key_bn_splits, ge=1, integer=True)
        symmetric = check_flag("moco", "symmetric", symmetric)
        view_cfg = check_views("moco", "views", views)
        check_encoder("moco", encoder)
        self.encoder = encoder
        self.head = ProjectionHead(encoder.num_features, hidden_dim, proj_dim, proj_layers)
        self.momentum_encoder = copy.deepcopy(encoder)
        self.momentum_head = copy.deepcopy(self.head)
        for p in list(self.momentum_encoder.parameters()) + list(self.momentum_head.parameters()):
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.temperature, self.momentum = float(temperature), float(momentum)
        self.symmetric, self.key_bn_splits = bool(symmetric), int(key_bn_splits)
        self.views = RandomViews(view_cfg)
        self._pending: Optional[torch.Tensor] = None
        self.medfm_spec = {"kind": "objective", "name": "moco", "args": {
            "proj_dim": proj_dim, "hidden_dim": hidden_dim, "proj_layers": proj_layers,
            "temperature": self.temperature, "momentum": self.momentum, "queue_size": queue_size,
            "symmetric": self.symmetric, "key_bn_splits": self.key_bn_splits, "views": to_dict(view_cfg)}}

    @torch.no_grad()
    def keys(self, images: torch.Tensor, gen: torch.Generator, checked: bool = False) -> torch.Tensor:
        """Normalised keys ``(B, proj_dim)`` float32 from the momentum encoder, with shuffling BN.
        ``checked``: ``images`` are views of a batch :func:`~medfm.objectives.inputs.check_image_batch` checked,
        so the encoder's value check is left out (:func:`~medfm.objectives.inputs.encode_views`)."""
        b = images.shape[0]
        splits = max(1, min(self.key_bn_splits, b // 2))
        perm = torch.randperm(b, generator=gen).to(images.device)
        enc = self.momentum_encoder
        chunks = [self.momentum_head(encode_views(enc, c) if checked else enc(c)) for c in images[perm].chunk(splits)]
        shuffled = torch.cat(chunks)
        k = torch.empty_like(shuffled)
        k[perm] = shuffled
        return F.normalize(k.float(), dim=1)

    def forward(self, batch: Dict[str, Any], gen: torch.Generator) -> Dict[str, torch.Tensor]:
        """Objective step: InfoNCE of view queries against momentum keys and the queue.

        Args:
            batch: ``{"image": (B, C, H, W) float in [0, 1]}``.
            gen: CPU generator for the random views and the key-batch shuffle.

        Returns:
            ``{"loss": scalar}`` float32 (no extra keys); in training mode the view-1 keys are kept
            for :meth:`on_step_end` to enqueue.

        Raises:
            ValueError: no ``"image"`` in ``batch``, or ``gen`` not a CPU ``torch.Generator``.
            EncoderInputError: an image batch that is not a non-empty finite float ``(B, C, H, W)``
                with the encoder's channel count.
        """
        images = check_image_batch(batch, self.encoder, "moco", gen=gen)
        b = images.shape[0]
        views = torch.cat([self.views(images, gen), self.views(images, gen)])
        q1, q2 = self.head(encode_views(self.encoder, views)).chunk(2)
        k1, k2 = self.keys(views, gen, checked=True).split(b)
        queue = self.queue.clone()
        with torch.autocast(device_type=images.device.type, enabled=False):  # logits / T in fp32
            loss = moco_infonce_loss(q1.float(), k2, queue, self.temperature)
            if self.symmetric:
                loss = (loss + moco_infonce_loss(q2.float(), k1, queue, self.temperature)) / 2
        if self.training:
            self._pending = k1.detach()
        return {"loss": loss}

    @torch.no_grad()
    def on_step_end(self, step: int) -> None:
        """After an optimizer step: EMA-update the key encoder, enqueue the last batch's keys."""
        m = self.momentum
        q_params = list(self.encoder.parameters()) + list(self.head.parameters())
        k_params = list(self.momentum_encoder.parameters()) + list(self.momentum_head.parameters())
        torch._foreach_mul_(k_params, m)
        torch._foreach_add_(k_params, [p.detach() for p in q_params], alpha=1 - m)
        if self._pending is not None:
            self._enqueue(self._pending)
            self._pending = None

    def _enqueue(self, keys: torch.Tensor) -> None:
        size = self.queue.shape[0]
        keys = keys[-size:]
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % size)
