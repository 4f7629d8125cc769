"""Scored subsets of an evaluation split (a suite dataset's ``max_samples``): which images.

Their corrupted copies are cached next to the full split's, named and checked by the subset's
indices (:func:`medfm.data.corruptions.cache_path`), and are the full split's rows bit for bit.

A subset is the largest seeded, class-stratified draw of
:func:`medfm.data.medmnist.label_fraction_indices` that fits ``max_samples`` (the same rule as the
label fractions of fine-tuning and probes), so a smaller subset is part of a larger one and every
class keeps at least one image.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medfm.arg_checks import check_number

#: seed of the scored subset of a dataset with ``max_samples``
SUBSET_SEED = 0


def scored_subset_indices(labels: Any, max_samples: int, seed: int = SUBSET_SEED) -> np.ndarray:
    """Indices of at most ``max_samples`` images of a split, stratified by class and seeded.

    The largest draw of :func:`medfm.data.label_fraction_indices` (each class keeps
    ``round(fraction * n_class)`` images, at least one; multi-label sets group images by their
    rarest positive label) that holds at most ``max_samples`` images; with one seed a smaller
    subset is part of a larger one.

    Args:
        labels: ``(N,)`` / ``(N, 1)`` class indices or ``(N, L)`` 0/1 multi-label labels.
        max_samples: the most images to keep, >= 1.
        seed: the draw's seed.

    Returns:
        Sorted int64 indices into ``[0, N)``; all of them when ``N <= max_samples``.

    Raises:
        ValueError: ``max_samples`` not an integer >= 1, or fewer than the split's classes (label groups).
    """
    from medfm.data.medmnist import label_fraction_indices

    n = len(labels)
    max_samples = check_number("max_samples", max_samples, ge=1, integer=True)
    if n <= max_samples:
        return np.arange(n)
    for target in range(max_samples, 0, -1):  # rounding per class (at least one each) can overshoot the target
        idx = label_fraction_indices(labels, target / n, seed=seed)
        if len(idx) <= max_samples:
            return idx
    raise ValueError(f"max_samples {max_samples} is below the number of classes (label groups) of the split: a "
                     "stratified subset keeps at least one image of each; raise max_samples")


__all__ = ["SUBSET_SEED", "scored_subset_indices"]
