"""Batched inference of classifier scores over a dataset."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from medfm.arg_checks import check_number
from medfm.training.loop import get_batch


def classifier_core(model: nn.Module) -> nn.Module:
    """The medfm classifier inside a peft wrapper (or the model itself)."""
    return model.base_model.model if hasattr(model, "base_model") and hasattr(model.base_model, "model") else model


@torch.no_grad()
def predict_scores(model: nn.Module, dataset: Any, batch_size: int = 256) -> np.ndarray:
    """Class scores ``(N, K)`` float32 (softmax, or sigmoid for multi-label) for every sample.

    Runs in eval mode and fp32 (no autocast), in fixed batches of ``batch_size`` in dataset
    order, so the same checkpoint gives bit-identical scores in any process.

    The model's train/eval mode is restored afterwards, also when a batch fails.

    Raises:
        ValueError: ``batch_size`` not an integer >= 1 (``0`` stopped in ``range()``, ``2.5`` in torch);
            an empty ``dataset`` (torch's "expected a non-empty list of Tensors" before).
    """
    batch_size = check_number("batch_size", batch_size, ge=1, integer=True)
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset holds no images: nothing to score")
    was_training = model.training
    model.eval()
    try:  # a bad batch must not leave a caller's training model in eval mode
        core = classifier_core(model)
        device = next(model.parameters()).device
        out = []
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size))
            images = get_batch(dataset, idx)["image"].to(device)
            out.append(core.scores(model(images)).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy().astype(np.float32)
