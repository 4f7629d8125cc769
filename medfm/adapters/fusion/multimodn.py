"""Sequential modular fusion after MultiModN (Swamy et al., NeurIPS 2023).

A learned initial state ``s_0`` (``(D,)``) is updated by one encoder per modality in a fixed
order: ``s_t = GRUCell(e_t(x_t), s_{t-1})`` where ``e_t`` embeds modality ``t``. A shared
decoder predicts from the state **after every step**, and the training loss averages the
cross-entropy of every step's prediction. A modality missing for a sample is **skipped for
that sample**: its state passes through the step unchanged (bit for bit) and that step's
prediction is left out of its loss, so missingness is never encoded as an input value.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medfm.adapters.classification import check_class_labels
from medfm.adapters.fusion.base import (MODALITY_DROPOUT_USE, FusionModel, build_modality_encoder,
                                        sample_modality_dropout)
from medfm.arg_checks import check_number
from medfm.registry import FUSERS


@FUSERS.register("multimodn", family="fusion", paper="Swamy et al., NeurIPS 2023 (MultiModN)")
class SequentialFusion(FusionModel):
    """MultiModN-style fuser.

    Args:
        modalities: modality names in the order the state visits them.
        image_encoder, img_size, clinical_features, dim: as in :class:`ModalityDropoutFusion`.
        modality_dropout: optional per-sample modality dropout in training (0: off, as in the paper).
        num_classes, label_names: outputs.

    Shape:
        ``forward(batch)`` -> ``{"logits": (B, K)`` (final state), ``"step_logits": (T, B, K)``,
        ``"step_present": (T, B) bool``, ``"states": (T + 1, B, D)``, ``"used": {m: (B,) bool}}``.

    Raises:
        ValueError: bad options (one line each, the shared rules of :mod:`medfm.arg_checks`: ``dim`` an
            integer >= 1, ``modality_dropout`` a finite number in [0, 1)); a sample with no modality;
            NaN in a present image.
    """

    generator_use = MODALITY_DROPOUT_USE  # what gen is for (FusionModel.forward's check): no channel sampling

    def __init__(self, modalities: Sequence[str], image_encoder: Mapping[str, Any], img_size: int,
                 clinical_features: int = 0, dim: int = 64, modality_dropout: float = 0.0,
                 num_classes: int = 2, label_names: Optional[Sequence[str]] = None) -> None:
        super().__init__(modalities, num_classes, label_names)
        modality_dropout = check_number("modality_dropout", modality_dropout, ge=0, lt=1)
        dim = check_number("dim", dim, ge=1, integer=True, hint=" (the state size)")
        self.encoders = nn.ModuleDict({m: build_modality_encoder(m, image_encoder, img_size, dim, clinical_features)
                                       for m in self.modalities})
        self.cells = nn.ModuleDict({m: nn.GRUCell(dim, dim) for m in self.modalities})
        self.state0 = nn.Parameter(torch.zeros(dim))
        self.decoder = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))
        self.modality_dropout = float(modality_dropout)
        self.img_size = int(img_size)  # the image side every modality must have (check_image)
        self._set_spec("multimodn", {"modalities": self.modalities, "image_encoder": dict(image_encoder),
                                     "img_size": int(img_size), "clinical_features": int(clinical_features),
                                     "dim": int(dim), "modality_dropout": self.modality_dropout,
                                     "num_classes": self.num_classes, "label_names": self.label_names})

    def fuse_batch(self, batch: Mapping[str, Any], gen: Optional[torch.Generator] = None) -> Dict[str, Any]:
        """Run the state through the modalities in order, skipping absent ones per sample.

        Args:
            batch: ``{modality: (B, 1, S, S) float in [0, 1] | (B, F) float}`` plus optional presence masks.
            gen: CPU generator for modality dropout (training with ``modality_dropout > 0`` only).

        Returns:
            ``{"logits": (B, K), "step_logits": (T, B, K), "step_present": (T, B) bool,
            "states": (T + 1, B, D), "used": {m: (B,) bool}}`` with ``T`` = number of modalities.

        Raises:
            ValueError: a sample with none of the modalities; NaN/inf in a present image (``gen``: checked by
                :meth:`~medfm.adapters.fusion.base.FusionModel.forward`, which runs this).
            EncoderInputError: a present image that is not float ``(B, 1, img_size, img_size)`` in [0, 1].
        """
        pres = self.presence(batch)
        if self.training and self.modality_dropout > 0:
            pres = sample_modality_dropout(pres, self.modality_dropout, gen)
        b = next(iter(pres.values())).shape[0]
        state = self.state0.expand(b, -1)
        states, logits, used = [state], [], []
        for m in self.modalities:
            if pres[m].any():
                idx, rows = self.select(batch, m, pres[m])
                idx = idx.to(state.device)
                new = self.cells[m](self.encoders[m](rows), state.index_select(0, idx))
                state = state.index_copy(0, idx, new.to(state.dtype))
            states.append(state)
            logits.append(self.decoder(state))
            used.append(pres[m])
        return {"logits": logits[-1], "step_logits": torch.stack(logits), "step_present": torch.stack(used),
                "states": torch.stack(states), "used": pres}

    def loss(self, out: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over every (step, sample) whose modality was present at that step.

        Raises:
            ValueError: not B labels, or labels outside ``[0, K)``.
        """
        step_logits = out["step_logits"].float()
        t, b, k = step_logits.shape
        y = check_class_labels(labels, b, self.num_classes).to(step_logits.device).repeat(t)
        ce = F.cross_entropy(step_logits.reshape(t * b, k), y, reduction="none")
        w = out["step_present"].reshape(-1).to(ce.device).float()
        return (ce * w).sum() / w.sum().clamp(min=1)
