"""SwAV: swapped prediction of Sinkhorn-Knopp cluster assignments with multi-crop
(Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020), following the authors' ``main_swav.py``.

Each view's L2-normalised projection is scored against ``n_prototypes`` L2-normalised
prototypes; the codes ``q`` of the two global views are computed without gradient by 3
Sinkhorn-Knopp iterations with ``epsilon = 0.05`` (equipartition over the batch), and
every other view predicts them with a softmax at temperature 0.1. Multi-crop: 2 global
views at the input size plus ``n_local_views`` small crops at ``local_size`` pixels (each
resolution batched through the encoder once). Prototypes are re-normalised after every
optimizer step (:meth:`SwAV.on_step_end`) and can be frozen for the first
``freeze_prototypes_steps`` steps (the paper freezes them during the first epoch); the
step counter is a buffer, so a resumed run freezes/unfreezes at the same step.

Collapse to uniform codes (loss stuck at ``ln K``): if ``n_prototypes < proj_dim`` the
``K`` prototypes span only part of the projection space, so a projection orthogonal to all of
them scores 0 against every prototype; the codes are then uniform, the prediction too, and
the loss sits at exactly ``ln K`` with no gradient out of it. That is what a 2-epoch run with
64 prototypes and 128-d projections did here. With ``K >= proj_dim`` random unit prototypes
span the space (``P^T P ~ K / d I``), the scores of a unit projection cannot all vanish and the
codes stay informative (SwAV itself uses 3000 prototypes for 128-d projections). The model
logs a warning when ``n_prototypes < proj_dim``; the recipe uses 128 prototypes for 64-d
projections and freezes the prototypes for the first steps, as the paper does.

Left out, stated: the feature queue SwAV adds for batches < 256 images (medfm's recipes
use batches of 256), and the LARS optimizer (medfm's trainer uses AdamW).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medfm.arg_checks import is_integer
from medfm.config import to_dict
from medfm.data.views import RandomViews, ViewConfig
from medfm.encoders.base import Encoder
from medfm.objectives.heads import ProjectionHead
from medfm.objectives.inputs import (check_arg, check_encoder, check_float_tensors, check_image_batch, check_sizes,
                                     check_view_size, check_views, encode_views)
from medfm.registry import OBJECTIVES

log = logging.getLogger(__name__)
#: why sinkhorn_knopp (so swav_loss) and the SwAV objective need B >= 2 images
_ONE_IMAGE = " (Sinkhorn-Knopp spreads the codes over the batch; one image gets uniform codes)"
#: why sinkhorn_knopp (so swav_loss) needs K >= 2 prototypes (the SwAV objective refuses n_prototypes < 2 itself)
_ONE_PROTOTYPE = " (each image's codes sum to 1; one prototype's codes are 1 whatever the scores)"

@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp codes: ``Q = exp(scores / epsilon)`` made (approximately)
    equipartitioned over ``K`` prototypes and normalised per sample.

    Follows ``distributed_sinkhorn`` of the SwAV code (single process): ``Q`` is divided
    by its sum, then ``iterations`` times its prototype sums are set to ``1/K`` and its
    sample sums to ``1/B``; finally it is multiplied by ``B`` so that each row sums to 1.
    The same normalisations are done on ``log Q`` (with ``logsumexp``), which is exact
    for any ``epsilon``: in the linear domain ``exp(-2 / epsilon)`` underflows float32 for
    ``epsilon <= 0.01`` and a prototype far from every sample turned all codes into NaN.

    Shape:
        scores: ``(B, K)`` prototype scores (cosine similarities), ``B >= 2``, ``K >= 2``; returns ``(B, K)`` float32.

    Raises:
        ValueError: ``scores`` not a float 2-D tensor with ``B, K >= 1``; ``B < 2`` (the sample sums are set to
            ``1/B``, so one sample's codes are ``1/K`` whatever its scores: they were returned, and ``swav_loss``
            had to refuse them itself); ``K < 2`` (each row of codes sums to 1, so one prototype's codes were all
            ones and ``swav_loss`` 0: nothing to predict); ``epsilon`` not a finite number > 0 (``inf`` gave uniform
            codes), ``iterations`` not an integer >= 1 (``2.5`` failed in ``range``).
    """
    epsilon = check_arg("sinkhorn_knopp", "epsilon", epsilon, gt=0)
    iterations = check_arg("sinkhorn_knopp", "iterations", iterations, ge=1, integer=True)
    check_float_tensors("sinkhorn_knopp", scores=scores)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"sinkhorn_knopp needs (B, K) scores with B, K >= 1, got shape {tuple(scores.shape)}")
    if scores.shape[0] < 2:
        raise ValueError(f"sinkhorn_knopp needs a batch of at least 2 images{_ONE_IMAGE}, got {scores.shape[0]}")
    if scores.shape[1] < 2:
        raise ValueError(f"sinkhorn_knopp needs at least 2 prototypes{_ONE_PROTOTYPE}, got {scores.shape[1]}")
    log_q = (scores.float() / epsilon).t()  # (K, B)
    k, b = log_q.shape
    log_k, log_b = math.log(k), math.log(b)
    log_q = log_q - torch.logsumexp(log_q.flatten(), dim=0)
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - log_k
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - log_b
    return (log_q + log_b).exp().t()


def swav_loss(scores: Sequence[torch.Tensor], assign_views: Sequence[int] = (0, 1), temperature: float = 0.1,
              epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Swapped-prediction loss over multi-crop views.

    For each view ``v`` in ``assign_views``: ``q = sinkhorn_knopp(scores[v])`` and every
    other view ``w`` pays ``-mean_b sum_k q[b, k] log softmax(scores[w][b] / temperature)[k]``;
    the losses are averaged over the ``len(scores) - 1`` predicting views and then over
    ``assign_views``.

    Shape:
        scores: list of ``V >= 2`` tensors ``(B, K)`` (one per view, same images in the same
        order), ``B >= 2``. Returns a scalar. NaN/inf scores give a NaN loss (not looked for: see
        :mod:`medfm.objectives.inputs`).

    Raises:
        ValueError: fewer than 2 views, views that are not float tensors, mismatched shapes, bad view
            indices (integers in ``[0, V)``), a temperature that is not a finite number > 0; from
            :func:`sinkhorn_knopp` (its message): ``B < 2`` (one image's codes are uniform whatever its scores:
            the loss was a finite number with nothing to learn from), ``K < 2`` (the loss was 0), bad
            ``epsilon``/``iterations``.
    """
    temperature = check_arg("swav_loss", "temperature", temperature, gt=0)
    check_float_tensors("swav_loss", **{f"scores[{i}]": s for i, s in enumerate(scores)})
    if len(scores) < 2 or any(s.shape != scores[0].shape or s.ndim != 2 for s in scores):
        raise ValueError(f"swav_loss needs >= 2 score tensors of equal (B, K) shape, "
                         f"got {[tuple(s.shape) for s in scores]}")
    if not assign_views or any(not (is_integer(v) and 0 <= v < len(scores)) for v in assign_views):
        raise ValueError(f"assign_views {list(assign_views)} must index the {len(scores)} views")
    total = scores[0].new_zeros((), dtype=torch.float32)
    for v in assign_views:
        q = sinkhorn_knopp(scores[v].detach(), epsilon, iterations)
        sub = total.new_zeros(())
        for w, s in enumerate(scores):
            if w != v:
                sub = sub - (q * F.log_softmax(s.float() / temperature, dim=1)).sum(dim=1).mean()
        total = total + sub / (len(scores) - 1)
    return total / len(assign_views)


def _local_views() -> ViewConfig:
    return ViewConfig(scale=(0.1, 0.35))


@OBJECTIVES.register("swav")
class SwAV(nn.Module):
    """SwAV with multi-crop (see the module docstring).

    Args:
        encoder: any medfm :class:`Encoder`; images ``(B, C, H, W)`` in [0, 1].
        proj_dim / hidden_dim / proj_layers: projection head sizes, integers >= 1.
        n_prototypes: number of prototypes ``K``, integer >= 2 (SwAV: 3000 for ImageNet); keep it
            ``>= proj_dim`` (see the module docstring on collapse; smaller only logs a warning).
        temperature / epsilon: softmax temperature and Sinkhorn entropy, finite and > 0 (SwAV: 0.1 / 0.05).
        sinkhorn_iterations: Sinkhorn-Knopp iterations, integer >= 1 (SwAV: 3).
        n_local_views: number of small crops, integer >= 0 (SwAV: 6); 0 gives plain 2-view SwAV.
        local_size: side of the small crops in pixels, integer >= 8 and >= the encoder's
            ``min_input_size`` when there are local views (default: ``img_size * 96 / 224``, at least
            8 and ``min_input_size``; encoders that need a fixed input size get ``img_size`` whatever is given).
        freeze_prototypes_steps: optimizer steps during which prototypes get no gradient, integer >= 0.
        global_views / local_views: augmentation parameters of each crop kind (dicts of
            :class:`ViewConfig` fields); defaults: :class:`ViewConfig` defaults, and the same with
            scale (0.1, 0.35).

    ``forward(batch, gen)`` takes ``{"image": (B, C, H, W)}`` and returns ``{"loss"}``.

    Raises:
        ValueError: an argument out of its range or of the wrong type (one line naming it, its
            range and the value, e.g. ``swav: epsilon must be > 0, got -0.05``); unknown view keys; a
            ``local_size`` below the encoder's ``min_input_size`` (:func:`medfm.objectives.inputs.check_view_size`);
            an ``encoder`` that is not a medfm Encoder (:func:`~medfm.objectives.inputs.check_encoder`).
    """

    def __init__(self, encoder: Encoder, proj_dim: int = 128, hidden_dim: int = 512, proj_layers: int = 2,
                 n_prototypes: int = 64, temperature: float = 0.1, epsilon: float = 0.05, sinkhorn_iterations: int = 3,
                 n_local_views: int = 6, local_size: Optional[int] = None, freeze_prototypes_steps: int = 0,
                 global_views: Optional[Dict[str, Any]] = None, local_views: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        proj_dim, hidden_dim, proj_layers = check_sizes("swav", proj_dim=proj_dim, hidden_dim=hidden_dim,
                                                        proj_layers=proj_layers)
        n_prototypes = check_arg("swav", "n_prototypes", n_prototypes, ge=2, integer=True)
        temperature = check_arg("swav", "temperature", temperature, gt=0)
        epsilon = check_arg("swav", "epsilon", epsilon, gt=0)
        sinkhorn_iterations = check_arg("swav", "sinkhorn_iterations", sinkhorn_iterations, ge=1, integer=True)
        n_local_views = check_arg("swav", "n_local_views", n_local_views, ge=0, integer=True)
        freeze_prototypes_steps = check_arg("swav", "freeze_prototypes_steps", freeze_prototypes_steps, ge=0,
                                            integer=True)
        if local_size is not None:
            local_size = check_arg("swav", "local_size", local_size, ge=8, integer=True, hint=" px")
        g_cfg = check_views("swav", "global_views", global_views)
        l_cfg = check_views("swav", "local_views", local_views, default=_local_views())
        if n_prototypes < proj_dim:
            log.warning("swav: %d prototypes < proj_dim %d: the codes can collapse to uniform (loss = ln K); "
                        "use n_prototypes >= proj_dim", n_prototypes, proj_dim)
        check_encoder("swav", encoder)
        if getattr(encoder, "fixed_size", False):
            local_size = encoder.img_size
        elif local_size is None:  # no smaller than the encoder takes (a ConvNeXt patch-4 stem: 32 px)
            local_size = max(8, getattr(encoder, "min_input_size", 8), round(encoder.img_size * 96 / 224))
        elif n_local_views:
            check_view_size("swav", "local_size", local_size, encoder)
        self.encoder = encoder
        self.head = ProjectionHead(encoder.num_features, hidden_dim, proj_dim, proj_layers)
        self.prototypes = nn.Linear(proj_dim, n_prototypes, bias=False)
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.temperature, self.epsilon = float(temperature), float(epsilon)
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        self.n_local_views, self.local_size = int(n_local_views), int(local_size)
        self.freeze_prototypes_steps = int(freeze_prototypes_steps)
        self.global_views = RandomViews(g_cfg)
        self.local_views = RandomViews(l_cfg, out_size=self.local_size)
        self.medfm_spec = {"kind": "objective", "name": "swav", "args": {
            "proj_dim": proj_dim, "hidden_dim": hidden_dim, "proj_layers": proj_layers, "n_prototypes": n_prototypes,
            "temperature": self.temperature, "epsilon": self.epsilon, "sinkhorn_iterations": self.sinkhorn_iterations,
            "n_local_views": self.n_local_views, "local_size": self.local_size,
            "freeze_prototypes_steps": self.freeze_prototypes_steps,
            "global_views": to_dict(g_cfg), "local_views": to_dict(l_cfg)}}

    def scores(self, views: torch.Tensor) -> torch.Tensor:
        """Prototype scores ``(N, K)`` float32 of images ``(N, C, S, S)`` in [0, 1]: normalised projections x
        prototypes (the prototypes without gradient while they are frozen, the first ``freeze_prototypes_steps``
        training steps).

        Raises:
            EncoderInputError: images the encoder does not take (its check, values included: :meth:`forward`'s
                views of a checked batch skip only the value check).
        """
        return self._scores(views, self._prototype_weight(), checked=False)

    def _prototype_weight(self) -> torch.Tensor:
        """The prototypes ``(K, proj_dim)``, detached (no gradient) while they are frozen: in training, for the first
        ``freeze_prototypes_steps`` steps. The step counter is read back (a device sync) only when prototypes
        freeze at all (it is never < 0); :meth:`forward` asks once per step for all its views."""
        weight = self.prototypes.weight
        if self.training and self.freeze_prototypes_steps > 0 and int(self.steps_done) < self.freeze_prototypes_steps:
            return weight.detach()
        return weight

    def _scores(self, views: torch.Tensor, weight: torch.Tensor, checked: bool) -> torch.Tensor:
        """:meth:`scores` against the given prototypes ``weight`` (:meth:`_prototype_weight`). ``checked``: ``views``
        are views of a batch :func:`~medfm.objectives.inputs.check_image_batch` checked (:meth:`forward`), so the
        encoder's value check is left out (:func:`~medfm.objectives.inputs.encode_views`)."""
        z = self.head(encode_views(self.encoder, views) if checked else self.encoder(views))
        with torch.autocast(device_type=views.device.type, enabled=False):  # scores / epsilon needs fp32
            return F.normalize(z.float(), dim=1) @ weight.float().t()

    def forward(self, batch: Dict[str, Any], gen: torch.Generator) -> Dict[str, torch.Tensor]:
        """Objective step: swapped prediction of Sinkhorn codes over 2 global + ``n_local_views`` local crops.

        Args:
            batch: ``{"image": (B, C, H, W) float in [0, 1]}``, B >= 2.
            gen: CPU generator for the random crops.

        Returns:
            ``{"loss": scalar}`` float32 (no extra keys).

        Raises:
            ValueError: no ``"image"``, B < 2, or ``gen`` not a CPU ``torch.Generator``.
            EncoderInputError: an image batch that is not a finite float ``(B, C, H, W)`` with the
                encoder's channel count.
        """
        images = check_image_batch(batch, self.encoder, "swav", 2, why=_ONE_IMAGE, gen=gen)
        b = images.shape[0]
        globals_ = torch.cat([self.global_views(images, gen), self.global_views(images, gen)])
        weight = self._prototype_weight()  # once per step: it may read the step counter back
        per_view: List[torch.Tensor] = list(self._scores(globals_, weight, checked=True).split(b))
        if self.n_local_views:
            locals_ = torch.cat([self.local_views(images, gen) for _ in range(self.n_local_views)])
            per_view += list(self._scores(locals_, weight, checked=True).split(b))
        with torch.autocast(device_type=images.device.type, enabled=False):
            loss = swav_loss(per_view, (0, 1), self.temperature, self.epsilon, self.sinkhorn_iterations)
        return {"loss": loss}

    @torch.no_grad()
    def on_step_end(self, step: int) -> None:
        """After an optimizer step: L2-normalise the prototypes and count the step."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        self.steps_done.copy_(torch.as_tensor(step + 1))
