"""In-memory datasets of the evaluation suites: :class:`ArraySet` (uint8 images with the medfm
``get_batch`` contract: subsets, corrupted copies) and :class:`ProgressSet` (a dataset seen through
a progress bar that counts images, for the model passes of :func:`medfm.evaluation.suites.run_suite`).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch

from medfm.data.uint8_sets import UInt8ImageSet
from medfm.evaluation.metrics import MULTI_LABEL


class ArraySet(UInt8ImageSet):
    """uint8 images held in memory with the ``get_batch`` contract of the medfm datasets.

    Args:
        images: ``(N, H, W)``, ``(N, H, W, 3)`` or 3D ``(N, D, H, W)`` uint8.
        like: the dataset whose task, classes, channel handling (``n_channels`` 3 with grey images
            repeats them), ``size``, ``md5`` and ``flag`` to copy, and whose labels to use.
        labels: ``(N, L)`` integer labels as stored, when not ``like.labels`` (a subset of ``like``).

    Raises:
        TypeError: ``images`` not a uint8 numpy array (float images were divided by 255 once more,
            to a near-black batch, without a word).
        ValueError: a label count other than N (the extra images failed only when fetched).
    """

    def __init__(self, images: np.ndarray, like: Any, labels: Optional[np.ndarray] = None) -> None:
        labels = like.labels if labels is None else labels
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            raise TypeError(f"ArraySet images must be a uint8 numpy array (N, H, W[, 3]) or (N, D, H, W), got "
                            f"{type(images).__name__} {getattr(images, 'dtype', '')}".rstrip())
        if len(labels) != len(images):
            raise ValueError(f"ArraySet got {len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.task, self.num_classes, self.label_names = like.task, like.num_classes, like.label_names
        self.n_channels, self.is_3d = like.n_channels, getattr(like, "is_3d", False)
        self.size, self.md5, self.flag = (getattr(like, k, None) for k in ("size", "md5", "flag"))
        channel_last = not self.is_3d and images.ndim == 4 and images.shape[-1] == 3
        self._hold(images, self.labels, like.task == MULTI_LABEL, channel_last=channel_last,
                   repeat_rgb=not channel_last and self.n_channels == 3)


def image_bar(images: int, desc: str, on: bool = True) -> Any:
    """The progress bar of every model pass over a data set (``medfm eval --data`` and each pass of a
    suite): a tqdm bar on stderr, not left behind, counting ``images`` images (a :class:`ProgressSet`
    advances it); ``on`` False: a disabled bar."""
    from tqdm.auto import tqdm

    return tqdm(total=images, desc=desc, unit="img", leave=False, disable=not on)


class ProgressSet:
    """A dataset seen through a tqdm bar: batches pass through unchanged, and the bar counts images.

    ``get_batch(idx)`` returns ``dataset.get_batch(idx)`` as is and advances ``bar`` to the highest
    index fetched so far + 1, so one in-order pass over the dataset (as
    :func:`medfm.evaluation.predict.predict_scores` and
    :func:`medfm.evaluation.protocols.extract_features` make; the latter's 1-image probe batch is
    not counted twice) moves the bar by exactly ``len(dataset)``. Several views may share one bar
    (e.g. every corrupted set of a dataset). Any other attribute is the wrapped dataset's.

    Args:
        dataset: has ``__len__`` and ``get_batch(indices) -> dict`` (e.g. :class:`ArraySet`).
        bar: a ``tqdm`` bar (or anything with ``update(n)``).
    """

    def __init__(self, dataset: Any, bar: Any) -> None:
        self.dataset, self.bar, self._done = dataset, bar, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "bar", "_done"):  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def get_batch(self, idx: Any) -> Dict[str, Any]:
        """The wrapped dataset's batch for ``idx``, unchanged; advances the bar."""
        batch = self.dataset.get_batch(idx)
        idx = torch.as_tensor(idx)
        end = int(idx.max()) + 1 if idx.numel() else 0
        if end > self._done:
            self.bar.update(end - self._done)
            self._done = end
        return batch


__all__ = ["ArraySet", "ProgressSet", "image_bar"]
