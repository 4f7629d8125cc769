"""A one-modality stand-in fuser whose logits are set by its batch (``[0, margin]`` per sample), and its batches,
for the missing-modality protocol tests of :mod:`medfm.evaluation.fusion`."""
from __future__ import annotations

import torch

from medfm.data.multimodal import PRESENT_KEY


class MarginModel(torch.nn.Module):
    """A one-modality model whose logits are ``[0, margin]``: margins above ~17 give p1 = 1.0 in float32."""

    modalities = ("flair",)

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, batch):
        """``{"logits": (N, 2)}``: ``[0, margin]`` per sample of ``batch`` (a :func:`margin_batch`)."""
        m = batch["margin"] * self.w
        return {"logits": torch.stack([torch.zeros_like(m), m], 1)}

    def scores(self, logits):
        """The class probabilities of ``logits`` (N, 2): their float32 softmax."""
        return logits.float().softmax(-1)


def margin_batch(margins, labels):
    """A batch of ``N = len(margins)`` samples for :class:`MarginModel`: random ``(N, 1, 4, 4)`` FLAIR images (all
    present), the ``margins`` (N,) float32, the ``labels`` (N,) and two samples per patient (``p0``, ``p0``, ``p1``,
    ...)."""
    n = len(margins)
    return {"flair": torch.rand(n, 1, 4, 4), "margin": torch.tensor(margins, dtype=torch.float32),
            "label": torch.tensor(labels), "patient": [f"p{i // 2}" for i in range(n)],
            PRESENT_KEY: {"flair": torch.ones(n, dtype=torch.bool)}}
