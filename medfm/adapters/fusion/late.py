"""Baselines: parallel late fusion that **zero-fills** missing inputs, and single-modality models.

Each modality has its own encoder; the pooled embeddings are concatenated and a linear head
predicts. A missing image is replaced by an all-zero image and a missing table value by 0
before encoding — on purpose: this is the common naive baseline the missing-modality fusers
are compared against (it cannot tell "absent" from "black image"). With one modality it is
the single-modality baseline (``modalities=["flair"]``); evaluate those only on samples that
have their modality.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import torch
from torch import nn

from medfm.adapters.fusion.base import TABULAR, FusionModel, build_modality_encoder
from medfm.data.multimodal import batch_size, presence
from medfm.arg_checks import check_number
from medfm.registry import FUSERS


@FUSERS.register("late_fusion_zero_fill", family="baseline")
class LateFusionZeroFill(FusionModel):
    """Late (embedding-concatenation) fusion with zero-filled missing inputs.

    Args:
        modalities, image_encoder, img_size, clinical_features, dim: as in the other fusers.
        dropout: dropout on the concatenated embedding.
        num_classes, label_names: outputs.

    Shape:
        ``forward(batch)`` -> ``{"logits": (B, K), "embedding": (B, M * D), "used": {m: (B,) bool}}``.

    Raises:
        ValueError: ``dropout`` not a finite number in [0, 1) (:func:`medfm.arg_checks.check_number`);
            NaN in a present image.
    """

    #: it takes the fusers' ``gen`` (checked as theirs by :meth:`FusionModel.forward`) but draws nothing from it
    generator_use = "late_fusion_zero_fill draws nothing from it, but checks it as every fuser does"

    def __init__(self, modalities: Sequence[str], image_encoder: Mapping[str, Any], img_size: int,
                 clinical_features: int = 0, dim: int = 64, dropout: float = 0.0, num_classes: int = 2,
                 label_names: Optional[Sequence[str]] = None) -> None:
        super().__init__(modalities, num_classes, label_names)
        dropout = check_number("dropout", dropout, ge=0, lt=1)
        self.encoders = nn.ModuleDict({m: build_modality_encoder(m, image_encoder, img_size, dim, clinical_features,
                                                                 tabular_missing="zero") for m in self.modalities})
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(dim * len(self.modalities), num_classes)
        self.img_size = int(img_size)
        self.clinical_features = int(clinical_features)
        self._set_spec("late_fusion_zero_fill", {"modalities": self.modalities, "image_encoder": dict(image_encoder),
                                                 "img_size": self.img_size, "clinical_features": self.clinical_features,
                                                 "dim": int(dim), "dropout": float(dropout),
                                                 "num_classes": self.num_classes, "label_names": self.label_names})

    def zero_filled(self, batch: Mapping[str, Any], modality: str) -> torch.Tensor:
        """The modality's input with absent samples replaced by zeros (the baseline's design).

        Present rows are checked as every fuser checks them (:meth:`FusionModel.select`).
        """
        n = batch_size(batch)
        pres = presence(batch, modality)
        device = self.head.weight.device
        if modality == TABULAR:
            shape = (n, self.clinical_features)
        else:
            shape = (n, 1, self.img_size, self.img_size)
        if not pres.any():
            return torch.zeros(shape, device=device)
        idx, rows = self.select(batch, modality, pres)
        return torch.zeros((n, *rows.shape[1:]), device=device).index_copy(0, idx.to(device), rows.to(device))

    def fuse_batch(self, batch: Mapping[str, Any], gen: Optional[torch.Generator] = None) -> Dict[str, Any]:
        """Encode every modality (absent rows zero-filled), concatenate, classify.

        Args:
            batch: ``{modality: (B, 1, S, S) float in [0, 1] | (B, F) float}`` plus optional presence masks.
            gen: unused: no modality dropout or other draw (same signature as the other fusers; checked as
                theirs by :meth:`~medfm.adapters.fusion.base.FusionModel.forward`, which runs this).

        Returns:
            ``{"logits": (B, K), "embedding": (B, M * D), "used": {m: (B,) bool}}`` (presence, not dropout).

        Raises:
            ValueError: NaN/inf in a present image; a sample with none of the modalities; a batch
                with no tensor (batch size unknown).
            EncoderInputError: a present image that is not float ``(B, 1, img_size, img_size)`` in [0, 1].
        """
        used = self.presence(batch)  # a sample with no modality at all is refused, as by every fuser
        emb = torch.cat([self.encoders[m](self.zero_filled(batch, m)) for m in self.modalities], 1)
        return {"logits": self.head(self.dropout(emb)), "embedding": emb, "used": used}
