"""Missing-modality segmentation: one encoder per MR sequence, HeMIS fusion per scale, U-Net decoder.

HeMIS (Havaei et al., "HeMIS: Hetero-Modal Image Segmentation", MICCAI 2016): every image
modality has its own encoder; at each scale the feature maps of the modalities a sample
**has** are reduced to their mean and variance across modalities (the variance of a single
modality is 0), so the decoder input has a fixed size whatever the subset. Absent modalities
are skipped: their encoders are not run for those samples and they have weight 0 in the
moments; their (NaN) batch rows are never read. The raw images are fused the same way and
feed the decoder's full-resolution skip. Training uses modality dropout (each present
modality of a sample dropped with probability ``modality_dropout``, at least one kept;
:func:`medfm.adapters.fusion.base.sample_modality_dropout`), as HeMIS trains on random
subsets. The decoder is medfm's :class:`medfm.adapters.segmentation.UNetDecoder`.

``fusion="attention"`` keeps HeMIS's skip-absent moments and adds a region-aware weighted sum
after RFNet (Ding et al., "RFNet: Region-aware Fusion Network for Incomplete Multi-modal
Brain Tumor Segmentation", ICCV 2021): at every scale each present modality's map gets a
per-pixel score (a 1x1 convolution shared by the modalities plus a learned per-modality
bias), the scores are soft-maxed over the modalities the sample has (absent ones get weight
exactly 0, their rows are never read), and the weighted sum is concatenated with the mean
and variance. The moments are symmetric in the modalities; the weights let the network
prefer the sequence that carries the target (FLAIR here) wherever it is present.

``fusion="zero_fill"`` is the late-fusion baseline on the same network: an absent image is
replaced by an all-zero image, every encoder runs on every sample, and the per-scale maps are
concatenated across modalities (the naive design, which cannot tell "absent" from "black").
With one modality it is a single-modality U-Net.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from medfm.adapters.fusion.base import (MODALITY_DROPOUT_USE, TABULAR, FusionModel, image_encoder_spec,
                                        sample_modality_dropout)
from medfm.adapters.segmentation import UNetDecoder, check_decoder_options, dice_ce_loss, probe_encoder
from medfm.arg_checks import check_number
from medfm.registry import FUSERS

FUSIONS = ("hemis", "attention", "zero_fill")
def masked_moments(feats: torch.Tensor, present: torch.Tensor):
    """Mean and (population) variance across modalities, over present ones only (HeMIS).

    Args:
        feats: ``(B, M, C, *S)`` per-modality maps; rows of absent modalities must be finite
            (they get weight 0).
        present: ``(B, M)`` bool, at least one True per sample.

    Returns:
        ``(mean, var)``, each ``(B, C, *S)``; ``var`` is 0 for a sample with one modality.
    """
    w = present.to(feats.dtype).reshape(*present.shape, *([1] * (feats.ndim - 2)))
    n = w.sum(1).clamp_min(1.0)
    mean = (feats * w).sum(1) / n
    var = (((feats - mean.unsqueeze(1)) ** 2) * w).sum(1) / n
    return mean, var


def masked_softmax_fusion(feats: torch.Tensor, scores: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Per-pixel softmax-weighted sum over the present modalities (RFNet-style region-aware fusion).

    Args:
        feats: ``(B, M, C, *S)`` per-modality maps (absent rows finite, weight 0).
        scores: ``(B, M, 1, *S)`` fusion scores.
        present: ``(B, M)`` bool, at least one True per sample.

    Returns:
        ``(B, C, *S)``: ``sum_m softmax_m(scores)[m] * feats[m]`` over present ``m`` only.
    """
    mask = present.reshape(*present.shape, *([1] * (scores.ndim - 2)))
    w = scores.float().masked_fill(~mask, float("-inf")).softmax(dim=1).to(feats.dtype)
    return (w * feats).sum(1)


@FUSERS.register("fused_unet", family="fusion", task="segmentation", paper="Havaei et al., MICCAI 2016 (HeMIS)")
class FusedUNet(FusionModel):
    """Missing-modality segmentation network (module docstring).

    Args:
        modalities: image modality names (single-channel images; ``"clinical"`` is refused).
        image_encoder: ``{"name": registered encoder with forward_intermediates, "args": {...}}``,
            one instance per modality.
        img_size: image side S.
        fusion: ``"hemis"`` (masked mean + variance, skip absent), ``"attention"`` (HeMIS +
            region-aware weighted sum, skip absent) or ``"zero_fill"`` (late-fusion baseline:
            zero images, concatenated maps).
        modality_dropout: per-sample, per-modality drop probability in training, in [0, 1).
        decoder: :class:`UNetDecoder` options (``decoder_channels``, ``input_skip``,
            ``stem_channels``, ``norm``).
        num_classes: K (2: background + abnormality); label_names: K names.

    Shape:
        ``forward(batch)``: batch of :mod:`medfm.data.multimodal` with ``(B, 1, S, S)`` images in
        [0, 1] -> ``{"logits": (B, K, S, S), "used": {m: (B,) bool}}``.

    Raises:
        ValueError: bad options (an unknown ``fusion``; ``modality_dropout`` not a finite number in
            [0, 1): :func:`medfm.arg_checks.check_number`; a bad ``image_encoder``:
            :func:`~medfm.adapters.fusion.base.image_encoder_spec`); a tabular modality; a sample with no
            modality; NaN in a present image.
        EncoderInputError: an image modality that is not float ``(B, 1, img_size, img_size)``.
    """

    fixed_image_size = True  # absent modalities become img_size zero images stacked with the others
    generator_use = MODALITY_DROPOUT_USE  # what gen is for (FusionModel.forward's check): no channel sampling

    def __init__(self, modalities: Sequence[str], image_encoder: Mapping[str, Any], img_size: int,
                 fusion: str = "hemis", modality_dropout: float = 0.3, decoder: Optional[Mapping[str, Any]] = None,
                 num_classes: int = 2, label_names: Optional[Sequence[str]] = None) -> None:
        super().__init__(modalities, num_classes, label_names)
        from medfm.encoders import create_encoder

        if TABULAR in self.modalities:
            raise ValueError(f"fused_unet segments images; drop the tabular modality {TABULAR!r} from "
                             f"{self.modalities}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        modality_dropout = check_number("modality_dropout", modality_dropout, ge=0, lt=1)
        dec_args = check_decoder_options(decoder)
        name, args = image_encoder_spec(image_encoder)
        enc = dict(image_encoder)
        self.encoders = nn.ModuleDict({m: create_encoder(name, in_chans=1, img_size=img_size, **args)
                                       for m in self.modalities})
        channels, sizes = probe_encoder(self.encoders[self.modalities[0]])
        self.fusion = fusion
        # maps per encoder channel after fusion
        self.width = {"hemis": 2, "attention": 3}.get(fusion, len(self.modalities))
        if fusion == "attention":  # one scorer per scale (input image first), shared by the modalities
            self.fusion_scores = nn.ModuleList([nn.Conv2d(c, 1, kernel_size=1) for c in [1] + list(channels)])
            self.modality_bias = nn.Parameter(torch.zeros(len(channels) + 1, len(self.modalities)))
        self.decoder = UNetDecoder([self.width * c for c in channels], sizes, img_size, 2,
                                   input_channels=self.width, **dec_args)
        self.task_head = nn.Conv2d(self.decoder.out_channels, self.num_classes, kernel_size=1)
        self.modality_dropout = float(modality_dropout)
        self.img_size = int(img_size)
        self._set_spec("fused_unet", {"modalities": self.modalities, "image_encoder": enc, "img_size": self.img_size,
                                      "fusion": fusion, "modality_dropout": self.modality_dropout, "decoder": dec_args,
                                      "num_classes": self.num_classes, "label_names": self.label_names})

    def _inputs(self, batch: Mapping[str, Any], pres: Dict[str, torch.Tensor]):
        """Per modality: (present row indices, their images ``(n, 1, S, S)``), absent rows never read."""
        out = {}
        for m in self.modalities:
            if pres[m].any():
                idx, rows = self.select(batch, m, pres[m])
                out[m] = (idx.to(self.task_head.weight.device), rows.to(self.task_head.weight.device))
            else:
                out[m] = None
        return out

    def _scatter(self, b: int, idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return rows.new_zeros((b, *rows.shape[1:])).index_copy(0, idx, rows)

    def fuse_batch(self, batch: Mapping[str, Any], gen: Optional[torch.Generator] = None) -> Dict[str, Any]:
        """Segment a batch from whichever modalities each sample has (fusion per ``self.fusion``).

        Args:
            batch: ``{modality: (B, 1, S, S) float in [0, 1]}`` plus optional presence masks.
            gen: CPU generator for modality dropout (training with ``modality_dropout > 0`` only).

        Returns:
            ``{"logits": (B, K, S, S), "used": {m: (B,) bool}}``; ``used`` is after modality dropout.

        Raises:
            ValueError: a sample with none of the modalities; NaN/inf in a present image (``gen``: checked by
                :meth:`~medfm.adapters.fusion.base.FusionModel.forward`, which runs this).
        """
        pres = self.presence(batch)
        if self.training and self.modality_dropout > 0:
            pres = sample_modality_dropout(pres, self.modality_dropout, gen)
        b = next(iter(pres.values())).shape[0]
        device = self.task_head.weight.device
        inputs = self._inputs(batch, pres)
        zero_image = torch.zeros(b, 1, self.img_size, self.img_size, device=device)
        images: List[torch.Tensor] = []
        levels: List[Optional[List[torch.Tensor]]] = []  # [modality][level] (B, C_l, h_l, w_l)
        for m in self.modalities:
            x = zero_image if inputs[m] is None else self._scatter(b, *inputs[m])
            images.append(x)
            # select() checked the present rows (named by modality); the zero images need no check
            if self.fusion == "zero_fill":  # the baseline encodes the zero images too
                levels.append(list(self.encoders[m].forward_intermediates(x, check=False)))
            elif inputs[m] is None:
                levels.append(None)
            else:  # skip: the encoder sees the present rows only
                idx, rows = inputs[m]
                levels.append([self._scatter(b, idx, f)
                               for f in self.encoders[m].forward_intermediates(rows, check=False)])
        if self.fusion == "zero_fill":
            maps = [torch.cat([lv[j] for lv in levels], 1) for j in range(len(levels[0]))]
            image = torch.cat(images, 1)
        else:
            ref = next(lv for lv in levels if lv is not None)
            mask = torch.stack([pres[m] for m in self.modalities], 1).to(device)
            maps = []
            for j in range(len(ref)):
                stack = torch.stack([lv[j] if lv is not None else torch.zeros_like(ref[j]) for lv in levels], 1)
                maps.append(self._fuse(stack, mask, j + 1))
            image = self._fuse(torch.stack(images, 1), mask, 0)
        logits = self.task_head(self.decoder(maps, image))
        return {"logits": logits, "used": pres}

    def _fuse(self, stack: torch.Tensor, mask: torch.Tensor, level: int) -> torch.Tensor:
        """``(B, M, C, h, w)`` maps of one scale -> ``(B, width * C, h, w)`` (moments [+ weighted sum])."""
        moments = masked_moments(stack, mask)
        if self.fusion != "attention":
            return torch.cat(moments, 1)
        b, m = stack.shape[:2]
        score = self.fusion_scores[level](stack.flatten(0, 1)).unflatten(0, (b, m))
        score = score + self.modality_bias[level].view(1, m, 1, 1, 1)
        return torch.cat([masked_softmax_fusion(stack, score, mask), *moments], 1)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-pixel class probabilities ``(B, K, S, S)`` (softmax over the class axis)."""
        return logits.float().softmax(dim=1)

    def loss(self, out: Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """MONAI Dice + cross-entropy (:func:`medfm.adapters.segmentation.dice_ce_loss`) of
        ``out["logits"]`` ``(B, K, S, S)`` against integer masks ``(B, S, S)``."""
        return dice_ce_loss(out["logits"], target.to(out["logits"].device), self.num_classes)


__all__ = ["FusedUNet", "masked_moments", "masked_softmax_fusion", "FUSIONS"]
