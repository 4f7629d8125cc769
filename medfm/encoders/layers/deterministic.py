"""Resampling and loss ops that stay deterministic on a GPU under ``train.deterministic``.

PyTorch has no deterministic CUDA backward for linear interpolation (``F.interpolate`` with
``bilinear``/``trilinear``) or adaptive average pooling, and no deterministic CUDA forward for
the per-pixel negative log-likelihood (``nll_loss2d``, behind ``F.cross_entropy`` on maps):
with :func:`torch.use_deterministic_algorithms` on they raise (PyTorch, "Reproducibility" and
``torch.use_deterministic_algorithms``). Both resamplings are separable linear maps, one matrix
per spatial axis (:func:`linear_resize_matrix`, :func:`adaptive_pool_matrix`), so
:func:`linear_resize` and :func:`adaptive_avg_pool` apply them as matrix products, whose
gradients are matrix products too, when deterministic kernels are asked for and the input is on
a GPU and needs a gradient; otherwise they call PyTorch's own op. The values agree to float
rounding (tested against PyTorch on a CPU); each matrix is built once per shape, device and dtype
(:func:`_matrix_on`). :func:`cross_entropy_map` is ``F.cross_entropy`` unless deterministic kernels
are on and the logits are on a GPU, then the mean per-pixel cross-entropy written as ``log_softmax``
times a one-hot target (elementwise and a sum, exact on every device; 2-3 times the time of
``F.cross_entropy`` on a CPU, and a one-hot copy of the target in memory).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F


def needs_deterministic(x: torch.Tensor) -> bool:
    """True when deterministic kernels are on (:func:`torch.use_deterministic_algorithms`) and ``x``
    is a GPU tensor that needs a gradient: where PyTorch's resampling backward has no deterministic kernel."""
    return torch.are_deterministic_algorithms_enabled() and x.device.type != "cpu" and x.requires_grad


def linear_resize_matrix(n_in: int, n_out: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(n_out, n_in)`` weights of 1-D linear interpolation with ``align_corners=False``, as
    ``F.interpolate`` computes them: source ``(i + 0.5) * n_in / n_out - 0.5`` clamped at 0, the two
    neighbours ``floor`` and ``min(floor + 1, n_in - 1)`` weighted by distance."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m[rows, lo] += 1 - frac
    m[rows, hi] += frac
    return m.to(device=device, dtype=dtype)


def adaptive_pool_matrix(n_in: int, n_out: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(n_out, n_in)`` weights of 1-D adaptive average pooling (PyTorch's windows: output ``i``
    averages inputs ``floor(i * n_in / n_out)`` to ``ceil((i + 1) * n_in / n_out) - 1``)."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, math.ceil((i + 1) * n_in / n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _matrix_on(matrix: Callable, n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``matrix(n_in, n_out)`` on ``device``, built once: a fresh one every forward would be built on the
    CPU and copied to the GPU, a copy that waits for the GPU's queued work. Read only (shared)."""
    return matrix(n_in, n_out, device=device, dtype=dtype)


def _separable(x: torch.Tensor, size: Sequence[int], matrix) -> torch.Tensor:
    """Apply ``matrix(n_in, n_out)`` along each spatial axis of ``(B, C, *S)``."""
    for axis, n_out in enumerate(size, start=2):
        n_in = x.shape[axis]
        if n_in != n_out:
            m = _matrix_on(matrix, n_in, int(n_out), x.device, x.dtype)
            x = torch.movedim(torch.movedim(x, axis, -1) @ m.t(), -1, axis)
    return x


def _check(x: torch.Tensor, size: Sequence[int], what: str) -> list:
    size = [int(s) for s in size]
    if x.ndim not in (3, 4, 5) or len(size) != x.ndim - 2 or min(size) < 1:
        raise ValueError(f"{what} takes (B, C, *S) with 1-3 spatial axes and one output size >= 1 per axis; "
                         f"got shape {tuple(x.shape)} and size {tuple(size)}")
    return size


def linear_resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Linear / bilinear / trilinear resize, ``align_corners=False``: ``(B, C, *S)`` -> ``(B, C, *size)``.

    ``F.interpolate`` unless :func:`needs_deterministic`, then the same weights as matrix products.

    Raises:
        ValueError: ``x`` has no 1-3 spatial axes, or ``size`` does not give one size >= 1 per axis.
    """
    size = _check(x, size, "linear_resize")
    if list(x.shape[2:]) == size:
        return x
    if needs_deterministic(x):
        return _separable(x, size, linear_resize_matrix)
    mode = {3: "linear", 4: "bilinear", 5: "trilinear"}[x.ndim]
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)


def adaptive_avg_pool(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Adaptive average pooling: ``(B, C, *S)`` -> ``(B, C, *size)`` (1-3 spatial axes).

    ``F.adaptive_avg_pool{1,2,3}d`` unless :func:`needs_deterministic`, then the same windows as matrix products.

    Raises:
        ValueError: ``x`` has no 1-3 spatial axes, or ``size`` does not give one size >= 1 per axis.
    """
    size = _check(x, size, "adaptive_avg_pool")
    if needs_deterministic(x):
        return _separable(x, size, adaptive_pool_matrix)
    return {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}[x.ndim](x, tuple(size))


def cross_entropy_map(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every pixel/voxel: ``-mean(log_softmax(logits)[target])``.

    ``F.cross_entropy(logits, target)`` (mean reduction, no weights), except under deterministic
    kernels on a GPU (where its ``nll_loss2d`` has none): then the same value computed as
    ``log_softmax`` times a one-hot target.

    Shape: logits ``(B, K, *S)`` float, target ``(B, *S)`` integer class indices in ``[0, K)`` -> scalar.

    Raises:
        ValueError: ``target``'s shape is not ``logits``' without the class axis.
    """
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"cross_entropy_map: target shape {tuple(target.shape)} does not match logits "
                         f"{tuple(logits.shape)} without their class axis")
    if not (torch.are_deterministic_algorithms_enabled() and logits.device.type != "cpu"):
        return F.cross_entropy(logits, target.long())
    return _one_hot_cross_entropy(logits, target)


def _one_hot_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`cross_entropy_map`'s deterministic form: ``log_softmax`` times a one-hot target, meaned."""
    onehot = torch.movedim(F.one_hot(target.long(), logits.shape[1]), -1, 1).to(logits.dtype)
    return -(F.log_softmax(logits, dim=1) * onehot).sum(1).mean()


__all__ = ["needs_deterministic", "linear_resize", "adaptive_avg_pool", "cross_entropy_map",
           "linear_resize_matrix", "adaptive_pool_matrix"]
