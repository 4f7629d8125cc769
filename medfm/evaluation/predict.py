"""Batched inference of classifier scores over a dataset."""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np
import torch
from torch import nn

from medfm.arg_checks import check_number
from medfm.training.loop import get_batch


def classifier_core(model: nn.Module) -> nn.Module:
    """The medfm classifier inside a peft wrapper (or the model itself)."""
    return model.base_model.model if hasattr(model, "base_model") and hasattr(model.base_model, "model") else model


def predict_scores(model: nn.Module, dataset: Any, batch_size: int = 256) -> np.ndarray:
    """Class scores ``(N, K)`` float32 (softmax, or sigmoid for multi-label) for every sample.

    Runs in eval mode and fp32 (no autocast), in fixed batches of ``batch_size`` in dataset
    order, so the same checkpoint gives bit-identical scores in any process.

    The model's train/eval mode is restored afterwards, also when a batch fails.

    For an AUC, keep the logits too (:func:`predict_outputs`, same pass and scores): a confident
    model's float32 scores saturate at exactly 1.0 / 0.0 and tie where its logits do not.

    Raises:
        ValueError: ``batch_size`` not an integer >= 1 (``0`` stopped in ``range()``, ``2.5`` in torch);
            an empty ``dataset`` (torch's "expected a non-empty list of Tensors" before).
    """
    return predict_outputs(model, dataset, batch_size)[0]


@torch.no_grad()
def predict_outputs(model: nn.Module, dataset: Any, batch_size: int = 256) -> Tuple[np.ndarray, np.ndarray]:
    """``(scores, logits)``, both ``(N, K)`` float32: :func:`predict_scores`'s scores (bit-identical)
    and the model's logits they were made from, in one pass.

    Pass the logits to :func:`medfm.evaluation.metrics.classification_metrics` (``logits=``): AUC then
    ranks their log-odds, which do not tie where float32 sigmoid/softmax scores saturate (a sigmoid
    above logit ~17.3 is exactly 1.0), while ACC, calibration and saved predictions keep the scores.

    Raises:
        ValueError: as :func:`predict_scores`.
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
        scores, logits = [], []
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size))
            images = get_batch(dataset, idx)["image"].to(device)
            z = model(images)
            scores.append(core.scores(z).cpu())
            logits.append(z.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(scores).numpy().astype(np.float32), torch.cat(logits).numpy().astype(np.float32)
