"""Classification adapter: an encoder plus a linear head, with the loss chosen by task type.

Task types are MedMNIST's (Yang et al., Scientific Data 2023): "binary-class" and
"multi-class" and "ordinal-regression" use softmax cross-entropy over K classes (binary as
two classes, ordinal as multi-class, as the benchmark does); "multi-label, binary-class"
uses per-label sigmoid + binary cross-entropy.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from medfm.arg_checks import check_bool, check_number
from medfm.encoders.base import Encoder, require_encoder
from medfm.evaluation.metrics import MULTI_LABEL, check_task, label_name_list
from medfm.registry import ADAPTERS


@ADAPTERS.register("classification")
class ImageClassifier(nn.Module):
    """Encoder + (optional feature BatchNorm) + dropout + linear head.

    ``head_norm=True`` inserts a BatchNorm without affine parameters between the pooled
    features and the head, as in MAE's linear probing (He et al., CVPR 2022, appendix A.2:
    "an extra BatchNorm layer without affine transformation", which calibrates feature
    magnitudes across encoders). It matters when the encoder is frozen: the pooled features
    of a randomly initialised ResNet-18 have a per-feature std of about 0.005 against about
    0.1-0.3 for trained ones, so a head trained by AdamW on raw features learns nothing on
    the former. The layer's running statistics are saved with the head.

    Args:
        encoder: any medfm :class:`Encoder`.
        num_classes: K outputs (2 for binary-class, L for multi-label).
        task: MedMNIST task type (see module docstring).
        label_names: K class (or label) names, used by pipelines, reports and cards.
        dropout: dropout before the head.
        head_norm: BatchNorm1d(D, affine=False) on the features before the head.

    Shape:
        ``forward``: images ``(B, C, H, W)`` float in [0, 1] -> logits ``(B, K)``.

    Raises:
        ValueError: unknown task, ``num_classes`` not an integer >= 1 (>= 2 for softmax tasks), a
            ``label_names`` that is not a list of ``num_classes`` names
            (:func:`medfm.evaluation.metrics.label_name_list`), ``dropout`` not in [0, 1), ``head_norm`` not
            true/false, an ``encoder`` that is not a medfm Encoder (:func:`medfm.encoders.base.require_encoder`).
    """

    def __init__(self, encoder: Encoder, num_classes: int, task: str = "multi-class",
                 label_names: Optional[Sequence[str]] = None, dropout: float = 0.0,
                 head_norm: bool = False) -> None:
        super().__init__()
        check_task(task)
        softmax = task != MULTI_LABEL
        num_classes = check_number("num_classes", num_classes, ge=2 if softmax else 1, integer=True,
                                   hint=f" for task {task!r}")
        names = label_name_list(label_names, num_classes, "classes" if softmax else "labels")  # the metrics' words
        dropout = check_number("dropout", dropout, ge=0, lt=1)
        head_norm = check_bool("head_norm", head_norm)
        require_encoder("ImageClassifier", encoder)
        self.encoder = encoder
        self.task = task
        self.label_names = names
        self.num_classes = int(num_classes)
        self.head_norm = nn.BatchNorm1d(encoder.num_features, affine=False) if head_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.task_head = nn.Linear(encoder.num_features, num_classes)
        self.medfm_spec: Dict[str, Any] = {
            "kind": "adapter",
            "name": "classification",
            "args": {"num_classes": self.num_classes, "task": task, "label_names": names, "dropout": float(dropout),
                     **({"head_norm": True} if head_norm else {})},
        }

    @property
    def head_modules(self) -> Tuple[str, ...]:
        """Names of the modules that make up the head (kept trainable and saved whole by LoRA)."""
        return ("task_head", "head_norm") if isinstance(self.head_norm, nn.BatchNorm1d) else ("task_head",)

    @property
    def multi_label(self) -> bool:
        """True for the "multi-label, binary-class" task (sigmoid + BCE), False for softmax tasks."""
        return self.task == MULTI_LABEL

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of images.

        Args:
            images: ``(B, C, H, W)`` float in [0, 1] (the encoder normalises itself).

        Returns:
            ``(B, K)`` logits (apply :meth:`scores` for probabilities).

        Raises:
            EncoderInputError: bad images (see :meth:`medfm.encoders.base.Encoder.check_input`).
            ValueError: a single image in training mode with ``head_norm`` (BatchNorm needs B >= 2).
        """
        feats = self.encoder(images)
        if self.training and feats.shape[0] == 1 and isinstance(self.head_norm, nn.BatchNorm1d):
            raise ValueError("head_norm (BatchNorm over the batch) needs at least 2 images per batch in training "
                             "mode, got 1; use larger batches (drop_last) or call model.eval() for inference")
        return self.task_head(self.dropout(self.head_norm(feats)))

    def _check_logits(self, logits: torch.Tensor) -> None:
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] != self.num_classes:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"logits must be (B, {self.num_classes}) (the output of this model), got {got}")

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(B, K)`` from logits ``(B, K)``: sigmoid for multi-label, softmax otherwise.

        Raises:
            ValueError: logits that are not ``(B, num_classes)``.
        """
        self._check_logits(logits)
        logits = logits.float()
        return torch.sigmoid(logits) if self.multi_label else logits.softmax(dim=-1)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Task loss: BCE-with-logits for multi-label ``(B, K)`` 0/1 labels, else CE on ``(B,)`` int labels.

        Raises:
            ValueError: logits that are not ``(B, num_classes)``; labels of the wrong shape for the
                task, class indices outside ``[0, K)`` or not whole numbers, multi-label targets
                outside [0, 1] or NaN.
        """
        self._check_logits(logits)
        logits = logits.float()
        if self.multi_label:
            if labels.shape != logits.shape:
                raise ValueError(f"multi-label targets must be (B, {self.num_classes}), got {tuple(labels.shape)}")
            labels = labels.float()
            if bool(((labels < 0) | (labels > 1) | labels.isnan()).any()):
                raise ValueError(f"multi-label targets must be in [0, 1], got values in "
                                 f"[{float(labels.min()):g}, {float(labels.max()):g}]")
            return F.binary_cross_entropy_with_logits(logits, labels)
        return F.cross_entropy(logits, check_class_labels(labels, logits.shape[0], self.num_classes))


def check_class_labels(labels: torch.Tensor, batch: int, num_classes: int, ignore_index: Optional[int] = None,
                       what: str = "class labels") -> torch.Tensor:
    """Class-index labels as ``(B,)`` int64, checked before ``F.cross_entropy`` sees them.

    Args:
        labels: ``(B,)`` or ``(B, 1)`` integer class indices (a tensor or array-like; whole-number
            floats are accepted).
        batch: B, the number of logits rows.
        num_classes: K.
        ignore_index: a value allowed besides ``[0, K)`` (e.g. -1 for "no label").
        what: how messages name the labels.

    Returns:
        ``(B,)`` int64 labels on ``labels``' device.

    Raises:
        ValueError: not B labels, not whole numbers, or outside ``[0, K)`` (and not ``ignore_index``).
    """
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    flat = labels.reshape(-1)
    if flat.shape[0] != batch:
        raise ValueError(f"{flat.shape[0]} {what} (shape {tuple(labels.shape)}) for {batch} samples; expected (B,) "
                         "class indices")
    if flat.is_floating_point() and bool((flat != flat.round()).any()):  # also NaN
        raise ValueError(f"{what} must be whole numbers in [0, {num_classes}), got {flat.tolist()[:8]}")
    flat = flat.long()
    bad = (flat < 0) | (flat >= num_classes)
    if ignore_index is not None:
        bad &= flat != ignore_index
    if bool(bad.any()):
        vals = sorted(set(flat[bad].tolist()))[:5]
        allowed = f"[0, {num_classes})" + (f" or {ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"{what} must be in {allowed}, got {vals}")
    return flat
