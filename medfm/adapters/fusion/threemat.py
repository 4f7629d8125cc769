"""Modality-dropout fusion with cascaded cross-attention, after 3MAT (Liu et al. 2023).

One encoder per modality turns each present modality into tokens (image: ``grid x grid``
pooled feature-map tokens; clinical: one token per table column), a learned **modality
embedding** is added, and a learned fusion query is refined by a cascade of cross-attention
blocks (query <- query + CrossAttn(query, tokens); query <- query + MLP(query)). Absent
modalities are removed by the attention's key-padding mask (weight exactly 0), never
replaced by zeros at the input; their encoders are not even run for those samples. In
training, **modality dropout** removes each present modality of a sample with probability
``modality_dropout`` (at least one is kept), so any subset works at inference.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import torch
from torch import nn

from medfm.adapters.fusion.base import (MODALITY_DROPOUT_USE, FusionModel, build_modality_encoder,
                                        sample_modality_dropout)
from medfm.arg_checks import check_heads, check_number
from medfm.registry import FUSERS


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention + MLP block: ``(B, Q, D)`` queries attend to ``(B, T, D)`` tokens.

    ``key_padding_mask`` ``(B, T)`` bool, True = ignore that token.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, q: torch.Tensor, kv: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        """Queries ``q`` ``(B, Q, D)`` attend to ``kv`` ``(B, T, D)`` -> ``(B, Q, D)``.

        ``key_padding_mask``: ``(B, T)`` bool, True = ignored token (each row needs one False).
        """
        kvn = self.norm_kv(kv)
        q = q + self.attn(self.norm_q(q), kvn, kvn, key_padding_mask=key_padding_mask, need_weights=False)[0]
        return q + self.mlp(self.norm_mlp(q))


@FUSERS.register("3mat", family="fusion", paper="Liu et al. 2023 (3MAT)")
class ModalityDropoutFusion(FusionModel):
    """3MAT-style fuser.

    Args:
        modalities: modality names (``"clinical"`` = tabular, others single-channel images).
        image_encoder: ``{"name": ..., "args": {...}}`` for every image modality's encoder.
        img_size: image side S.
        clinical_features: F table columns (needed when ``"clinical"`` is a modality).
        dim: token size D; heads: attention heads; layers: cross-attention blocks in the cascade.
        grid: image tokens per modality = ``grid ** 2``.
        modality_dropout: per-sample, per-modality drop probability in training.
        num_classes, label_names: outputs.

    Shape:
        ``forward(batch)`` -> ``{"logits": (B, K), "embedding": (B, D), "used": {m: (B,) bool}}``.

    Raises:
        ValueError: bad options (one line each, the shared rules of :mod:`medfm.arg_checks`: ``dim``
            divisible by ``heads``, ``layers`` and ``grid`` integers >= 1, ``modality_dropout`` a finite
            number in [0, 1)); a sample with no modality; NaN in a present image.
    """

    generator_use = MODALITY_DROPOUT_USE  # what gen is for (FusionModel.forward's check): no channel sampling

    def __init__(self, modalities: Sequence[str], image_encoder: Mapping[str, Any], img_size: int,
                 clinical_features: int = 0, dim: int = 64, heads: int = 4, layers: int = 2, grid: int = 2,
                 modality_dropout: float = 0.3, num_classes: int = 2,
                 label_names: Optional[Sequence[str]] = None) -> None:
        super().__init__(modalities, num_classes, label_names)
        modality_dropout = check_number("modality_dropout", modality_dropout, ge=0, lt=1)
        dim, heads = check_heads(dim, heads)  # torch's MultiheadAttention: a bare AssertionError
        layers = check_number("layers", layers, ge=1, integer=True, hint=" (cross-attention blocks)")
        grid = check_number("grid", grid, ge=1, integer=True, hint=" (grid x grid tokens per image)")
        self.encoders = nn.ModuleDict({m: build_modality_encoder(m, image_encoder, img_size, dim,
                                                                 clinical_features, grid=grid)
                                       for m in self.modalities})
        self.modality_embed = nn.Parameter(torch.randn(len(self.modalities), dim) * 0.02)
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.blocks = nn.ModuleList([CrossAttentionBlock(dim, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.modality_dropout = float(modality_dropout)
        self.img_size = int(img_size)  # the image side every modality must have (check_image)
        self._set_spec("3mat", {"modalities": self.modalities, "image_encoder": dict(image_encoder),
                                "img_size": int(img_size),
                                "clinical_features": int(clinical_features), "dim": int(dim), "heads": int(heads),
                                "layers": int(layers), "grid": int(grid), "modality_dropout": self.modality_dropout,
                                "num_classes": self.num_classes, "label_names": self.label_names})

    def fuse_batch(self, batch: Mapping[str, Any], gen: Optional[torch.Generator] = None) -> Dict[str, Any]:
        """Fuse the present modalities' tokens with the cross-attention cascade.

        Args:
            batch: ``{modality: (B, 1, S, S) float in [0, 1] | (B, F) float}`` plus optional presence masks.
            gen: CPU generator for modality dropout (training only).

        Returns:
            ``{"logits": (B, K), "embedding": (B, D), "used": {m: (B,) bool}}``; ``used`` is after dropout.

        Raises:
            ValueError: a sample with none of the modalities; NaN/inf in a present image (``gen``: checked by
                :meth:`~medfm.adapters.fusion.base.FusionModel.forward`, which runs this).
            EncoderInputError: a present image that is not float ``(B, 1, img_size, img_size)`` in [0, 1].
        """
        pres = self.presence(batch)
        if self.training:
            pres = sample_modality_dropout(pres, self.modality_dropout, gen)
        b = next(iter(pres.values())).shape[0]
        device = self.query.device
        all_tokens, all_masks = [], []
        for j, m in enumerate(self.modalities):
            n_tok = self.encoders[m].num_features if m == "clinical" else self.encoders[m].grid ** 2
            tokens = torch.zeros(b, n_tok, self.query.shape[-1], device=device)
            if pres[m].any():
                idx, rows = self.select(batch, m, pres[m])
                tok = self.encoders[m].tokens(rows)
                tokens = tokens.index_copy(0, idx.to(device), tok.to(tokens.dtype))
            all_tokens.append(tokens + self.modality_embed[j])
            all_masks.append((~pres[m].to(device))[:, None].expand(b, n_tok))
        kv = torch.cat(all_tokens, 1)
        pad = torch.cat(all_masks, 1)
        q = self.query.expand(b, -1, -1)
        for blk in self.blocks:
            q = blk(q, kv, pad)
        emb = self.norm(q[:, 0])
        return {"logits": self.head(emb), "embedding": emb, "used": pres}
