"""The in-memory uint8 dataset contract shared by every medfm image set.

:class:`UInt8ImageSet` holds the images as one uint8 tensor and converts a batch to float32
in [0, 1] with one indexing op (:meth:`UInt8ImageSet.get_batch`), the fast path of the training
loop and the evaluation passes. :class:`medfm.data.medmnist.MedMNISTDataset`,
:class:`medfm.data.imagefolder.ImageFolderDataset` and
:class:`medfm.evaluation.array_sets.ArraySet` are its subclasses, so the layout rules
(channel-last RGB, grey repeated to 3 channels) live here once, and :func:`batch_indices` checks
the indices of every ``get_batch``.
"""
from __future__ import annotations

from typing import Dict, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from medfm.arg_checks import is_index_tensor


def batch_indices(indices: Union[torch.Tensor, Sequence[int], np.ndarray]) -> torch.Tensor:
    """``(B,)`` indices of a ``get_batch`` call as a LongTensor.

    Args:
        indices: a 1-D integer LongTensor, list or numpy array (empty is fine).

    Raises:
        ValueError: indices that are not 1-D, or floats/bools/complex (which ``torch.long`` would
            truncate or reinterpret silently).
    """
    idx = torch.as_tensor(indices)
    # the index rule, except for an empty one: torch.as_tensor([]) is float32, and no batch is fine
    if idx.ndim != 1 or (idx.numel() and not is_index_tensor(idx)):
        raise ValueError(f"get_batch expects 1-D integer indices (B,), got shape {tuple(idx.shape)} dtype {idx.dtype}")
    return idx.to(torch.long)


class UInt8ImageSet(Dataset):
    """uint8 images in memory; samples ``{"image": float32 in [0, 1], "label": ...}``.

    A subclass sets, in its ``__init__``, through :meth:`_hold`:

    - ``_images_t``: uint8 ``(N, H, W)``, ``(N, H, W, 3)`` (RGB, channel-last) or 3D
      ``(N, D, H, W)``;
    - ``_labels_t``: ``(N,)`` int64 or ``(N, L)`` float32 (multi-label);
    - ``_channel_last``: the images are ``(N, H, W, 3)`` RGB (moved to ``(N, 3, H, W)``);
    - ``_repeat_rgb``: single-channel images are repeated to 3 channels.
    """

    _images_t: torch.Tensor
    _labels_t: torch.Tensor
    _channel_last: bool = False
    _repeat_rgb: bool = False

    def _hold(self, images: np.ndarray, labels: np.ndarray, multi_label: bool, channel_last: bool,
              repeat_rgb: bool) -> None:
        """Keep ``images`` (uint8, shared with the tensor when contiguous) and ``labels`` as stored,
        ``(N, L)`` or ``(N,)`` integers: ``(N, L)`` float32 when ``multi_label``, else ``(N,)`` int64
        (the first column)."""
        self._images_t = torch.from_numpy(np.ascontiguousarray(images))
        lab = np.asarray(labels)
        self._labels_t = torch.from_numpy(lab.astype(np.float32) if multi_label else
                                          (lab[:, 0] if lab.ndim == 2 else lab).astype(np.int64))
        self._channel_last, self._repeat_rgb = bool(channel_last), bool(repeat_rgb)

    def __len__(self) -> int:
        return int(self._images_t.shape[0])

    def _to_float(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, H, W)``/``(B, H, W, 3)``/``(B, D, H, W)`` -> float32 ``(B, C, ...)`` in [0, 1]."""
        x = x.permute(0, 3, 1, 2) if self._channel_last else x.unsqueeze(1)
        if self._repeat_rgb:
            x = x.expand(-1, 3, *x.shape[2:])
        return x.contiguous().to(torch.float32).div_(255.0)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        """Sample ``index``: ``{"image": (C, H, W) or (C, D, H, W) float32 in [0, 1], "label": ...}``.

        Raises:
            TypeError: ``index`` not an integer (``"1"`` failed in torch with ``new(): invalid data type 'str'``,
                ``1.0`` with a many-word torch message).
            IndexError: ``index`` out of range (torch's message).
        """
        if not hasattr(type(index), "__index__"):
            raise TypeError(f"sample index must be an integer, got {index!r} ({type(index).__name__})")
        return {"image": self._to_float(self._images_t[index].unsqueeze(0))[0], "label": self._labels_t[index]}

    def get_batch(self, indices: Union[torch.Tensor, Sequence[int], np.ndarray]) -> Dict[str, torch.Tensor]:
        """Gather a batch in one indexing op, bit-exact with stacking :meth:`__getitem__`.

        Args:
            indices: ``(B,)`` integer indices (LongTensor, list or numpy array).

        Returns:
            ``{"image": (B, C, H, W) or (B, C, D, H, W) float32 in [0, 1],
            "label": (B,) int64 or (B, L) float32 for multi-label}``.

        Raises:
            ValueError: indices are not a 1-D integer sequence.
            IndexError: an index is out of range.
        """
        idx = batch_indices(indices)
        return {"image": self._to_float(self._images_t[idx]), "label": self._labels_t[idx]}


__all__ = ["UInt8ImageSet", "batch_indices"]
