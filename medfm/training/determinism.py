"""Deterministic kernels for a training run (``train.deterministic``).

The loop already fixes everything it draws: the sample order, each step's augmentations and the
checkpointed RNG states (:mod:`medfm.training.loop`). On a CPU that makes a resumed run end with
the same weights as an uninterrupted one. On a GPU it does not by itself: cuDNN picks
convolution algorithms whose weight gradients accumulate in a varying order (atomic adds), so two
runs from the same weights part in the last bits after the first step, and the difference
grows. Measured on an H200 (torch 2.11, fp32, a ResNet-18 on 28 px images, 3 epochs of 8 steps):
two uninterrupted runs ended with 102 of 122 tensors different; with ``deterministic=True``,
0 of 122, and no slower (0.88 s against 0.87 s); in bf16 both settings gave 0. Without it a resumed
run of the runner tests ended with 67 of 80 tensors different from the uninterrupted one.
``deterministic=True`` asks PyTorch for deterministic kernels for the run
(PyTorch's "Reproducibility" notes): :func:`torch.use_deterministic_algorithms`, cuDNN
``deterministic`` and no ``benchmark``, and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` when unset (the
variable stays set for the process: cuBLAS reads it when it makes a handle). Ops
without a deterministic CUDA kernel that medfm's models use have deterministic forms in
:mod:`medfm.encoders.layers.deterministic` (resizing, adaptive pooling, per-pixel
cross-entropy); any other raises :class:`DeterminismError`. It may cost speed on a GPU and
changes nothing measurable on a CPU.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch

#: the phrase of PyTorch's error for an op without a deterministic kernel
_NO_KERNEL = "does not have a deterministic implementation"


class DeterminismError(RuntimeError):
    """An op of the run has no deterministic kernel on this device while ``train.deterministic`` is on."""


@contextmanager
def deterministic_kernels(enabled: bool) -> Iterator[None]:
    """Run the block with deterministic kernels when ``enabled``; restore the previous settings after.

    The settings are process-wide (PyTorch keeps them globally), so they are set only for the
    block and put back as they were, also when it raises.

    Raises:
        DeterminismError: an op in the block has no deterministic kernel on its device (PyTorch's
            ``RuntimeError``, turned into one line that names the op and the way out,
            ``train.deterministic: false``).
    """
    if not enabled:
        yield
        return
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              cudnn.deterministic, cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    except RuntimeError as e:
        if _NO_KERNEL not in str(e):
            raise
        op = str(e).split(_NO_KERNEL)[0].strip().rstrip(",")
        raise DeterminismError(f"train.deterministic: {op} has no deterministic kernel in torch {torch.__version__} "
                               "on this device; set train.deterministic: false (the run is then not bit-for-bit "
                               "reproducible on a GPU)") from None
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        cudnn.deterministic, cudnn.benchmark = before[2], before[3]
