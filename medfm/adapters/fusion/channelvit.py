"""ChannelViT: per-channel patch tokens with hierarchical channel sampling (Bao et al., ICLR 2024).

Every image channel (here: every MR sequence) is patchified **separately** by one shared
patch embedding; each token gets the shared 2D position embedding plus a learned
**channel embedding**, and the tokens of all present channels (plus, optionally, one token
per clinical column with its own channel embedding) form one sequence for a ViT encoder
with a class token. Absent channels are removed by the key-padding mask. In training,
**hierarchical channel sampling** (HCS) first draws the number of channels ``k`` uniformly
from ``1..c`` (``c`` = channels present for that sample), then which ``k`` channels, per sample.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import torch
from torch import nn

from medfm.adapters.fusion.base import TABULAR, FusionModel, check_generator
from medfm.adapters.fusion.tabular import TabularEncoder
from medfm.arg_checks import check_bool, check_heads, check_number
from medfm.registry import FUSERS


#: ChannelViT's draw from its ``gen`` (``check_generator``'s message): channel sampling, no modality dropout
CHANNEL_SAMPLING_USE = "it draws the hierarchical channel sampling in training when hcs is on"


def hierarchical_channel_sampling(present: torch.Tensor, gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """HCS (Bao et al. 2024): per sample draw ``k ~ U{1..c}``, then ``k`` of its ``c`` present channels.

    Args:
        present: ``(B, C)`` bool, at least one True per row.
        gen: CPU generator (None: global RNG).

    Returns:
        ``(B, C)`` bool: the kept channels (a subset of ``present``, never empty).

    Raises:
        ValueError: ``gen`` neither None nor a CPU ``torch.Generator``
        (:func:`~medfm.adapters.fusion.base.check_generator`).
    """
    check_generator(gen, CHANNEL_SAMPLING_USE)
    c = present.sum(1)
    k = (torch.rand(c.shape, generator=gen) * c).floor().long() + 1
    score = torch.rand(present.shape, generator=gen).masked_fill(~present, 2.0)
    rank = score.argsort(1).argsort(1)
    return present & (rank < k[:, None])


@FUSERS.register("channelvit", family="fusion", paper="Bao et al., ICLR 2024 (ChannelViT)")
class ChannelViT(FusionModel):
    """ChannelViT fuser over single-channel image modalities (+ optional clinical tokens).

    Args:
        modalities: image channel names, optionally with ``"clinical"``.
        img_size: image side S; patch_size: P (S divisible by P).
        clinical_features: F table columns (when ``"clinical"`` is a modality).
        dim, depth, heads: ViT width, blocks and heads.
        hcs: hierarchical channel sampling in training.
        num_classes, label_names: outputs.

    Shape:
        ``forward(batch)`` -> ``{"logits": (B, K), "embedding": (B, D), "used": {m: (B,) bool}}``.

    Raises:
        ValueError: ``img_size``, ``patch_size`` or ``depth`` not an integer >= 1
            (:func:`medfm.arg_checks.check_number`), ``img_size`` not divisible by ``patch_size``, ``dim`` by
            ``heads`` (:func:`medfm.arg_checks.check_heads`), ``hcs`` not true/false; a sample with no modality;
            NaN in a present image.
        EncoderInputError: an image modality that is not float ``(B, 1, img_size, img_size)``.
    """

    fixed_image_size = True  # learned position embedding for (img_size / patch_size)^2 patches
    generator_use = CHANNEL_SAMPLING_USE  # what gen is for (FusionModel.forward's check): no modality dropout

    def __init__(self, modalities: Sequence[str], img_size: int, patch_size: int = 8, clinical_features: int = 0,
                 dim: int = 64, depth: int = 2, heads: int = 4, hcs: bool = True, num_classes: int = 2,
                 label_names: Optional[Sequence[str]] = None) -> None:
        super().__init__(modalities, num_classes, label_names)
        img_size = check_number("img_size", img_size, ge=1, integer=True)
        patch_size = check_number("patch_size", patch_size, ge=1, integer=True)
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
        dim, heads = check_heads(dim, heads)
        depth = check_number("depth", depth, ge=1, integer=True, hint=" (transformer blocks)")
        check_bool("hcs", hcs, note="hierarchical channel sampling")  # bool("no") is True: it would stay on
        self.channels = [m for m in self.modalities if m != TABULAR]
        self.img_size = int(img_size)
        self.n_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(1, dim, patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.randn(1, self.n_patches, dim) * 0.02)
        self.channel_embed = nn.Parameter(torch.randn(len(self.modalities), dim) * 0.02)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.tabular = TabularEncoder(clinical_features, dim) if TABULAR in self.modalities else None
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.hcs = bool(hcs)
        self._set_spec("channelvit", {"modalities": self.modalities, "img_size": int(img_size),
                                      "patch_size": int(patch_size),
                                      "clinical_features": int(clinical_features), "dim": int(dim), "depth": int(depth),
                                      "heads": int(heads), "hcs": self.hcs, "num_classes": self.num_classes,
                                      "label_names": self.label_names})

    def fuse_batch(self, batch: Mapping[str, Any], gen: Optional[torch.Generator] = None) -> Dict[str, Any]:
        """Fuse the present channels of a batch (layout: :mod:`medfm.data.multimodal`).

        Args:
            batch: ``{modality: (B, 1, S, S) float in [0, 1] | (B, F) float}`` plus optional presence masks.
            gen: CPU generator for hierarchical channel sampling (training with ``hcs`` only).

        Returns:
            ``{"logits": (B, K), "embedding": (B, D), "used": {m: (B,) bool}}``; ``used`` is after HCS.

        Raises:
            ValueError: a sample with none of the modalities; NaN/inf in a present image (``gen``: checked by
                :meth:`~medfm.adapters.fusion.base.FusionModel.forward`, which runs this).
        """
        pres = self.presence(batch)
        if self.training and self.hcs:
            kept = hierarchical_channel_sampling(torch.stack([pres[m] for m in self.modalities], 1), gen)
            pres = {m: kept[:, j] for j, m in enumerate(self.modalities)}
        b = next(iter(pres.values())).shape[0]
        dim, device = self.cls_token.shape[-1], self.cls_token.device
        tokens, pads = [self.cls_token.expand(b, -1, -1)], [torch.zeros(b, 1, dtype=torch.bool, device=device)]
        for j, m in enumerate(self.modalities):
            n_tok = self.tabular.num_features if m == TABULAR else self.n_patches
            tok = torch.zeros(b, n_tok, dim, device=device)
            if pres[m].any():
                idx, rows = self.select(batch, m, pres[m])
                if m == TABULAR:
                    new = self.tabular.tokens(rows)
                else:
                    new = self.patch_embed((rows - 0.5) / 0.5).flatten(2).transpose(1, 2) + self.pos_embed
                tok = tok.index_copy(0, idx.to(device), new.to(tok.dtype))
            tokens.append(tok + self.channel_embed[j])
            pads.append((~pres[m].to(device))[:, None].expand(b, n_tok))
        x = self.blocks(torch.cat(tokens, 1), src_key_padding_mask=torch.cat(pads, 1))
        emb = self.norm(x[:, 0])
        return {"logits": self.head(emb), "embedding": emb, "used": pres}
