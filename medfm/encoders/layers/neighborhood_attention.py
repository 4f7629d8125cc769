"""2D (dilated) neighbourhood attention.

Neighbourhood attention (NA; Hassani et al., "Neighborhood Attention Transformer", CVPR
2023) lets every query pixel attend to a ``k x k`` window of keys around it; dilated NA
(DiNA; Hassani & Shi, "Dilated Neighborhood Attention Transformer", arXiv 2209.15001)
spreads the window with a dilation ``d``. The border rule follows NATTEN: near a border the
window is shifted to stay inside the map (it is not zero-padded), so every query attends to
exactly ``k * k`` keys; with dilation the window lives in the query's *dilation group*
(the pixels ``i' = i mod d`` along each axis) and is shifted inside that group.

Two backends compute the same thing:

* ``"sdpa"`` (any device): dense scaled-dot-product attention with a precomputed boolean
  ``(H*W, H*W)`` neighbourhood mask. Its cost is that of full attention over the map, which
  at the 4x4 to 28x28 maps of MedMNIST-sized inputs is about what a gather-based NA costs.
* ``"natten"`` (CUDA, when the NATTEN package is installed): NATTEN's fused kernels
  (``natten.functional.na2d``), imported lazily. With ``backend="auto"`` they are used for
  CUDA tensors when importable and fall back silently to ``"sdpa"`` otherwise (NATTEN's
  CPU path cannot back-propagate).

Maps smaller than the window: the kernel is clamped to the map side and the dilation to
``side // kernel`` (so ``kernel * dilation <= side``, NATTEN's requirement); a kernel that
covers a whole axis makes attention global along it. See :func:`effective_window`.
"""
from __future__ import annotations

import functools
import importlib
from typing import Any, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from medfm.arg_checks import check_heads
from medfm.encoders.checks import EncoderArgumentError, check_int

IntPair = Union[int, Tuple[int, int]]
BACKENDS = ("auto", "sdpa", "natten")


def _pair(value: IntPair, what: str) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(int(v) != v for v in pair):
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def window_starts(length: int, kernel_size: int, dilation: int = 1) -> torch.Tensor:
    """First key index of each query's window along one axis (NATTEN's border rule).

    Query ``i`` lies in dilation group ``r = i % d`` at position ``p = i // d``; the group
    has ``L_g = ceil((length - r) / d)`` members, and the window starts at group position
    ``clamp(p - kernel_size // 2, 0, L_g - kernel_size)``, i.e. index ``r + d * that``.

    Args:
        length: axis length (>= 1).
        kernel_size: window size along the axis (1 <= kernel_size * dilation <= length).
        dilation: spacing of the window's keys (>= 1).

    Returns:
        ``(length,)`` int64 start indices; window ``j`` keys are ``start + d * [0..k-1]``.

    Raises:
        ValueError: ``kernel_size * dilation > length`` or non-positive arguments.
    """
    if length < 1 or kernel_size < 1 or dilation < 1:
        raise ValueError(f"length, kernel_size and dilation must be >= 1, got {length}, {kernel_size}, {dilation}")
    if kernel_size * dilation > length:
        raise ValueError(f"kernel_size * dilation = {kernel_size * dilation} exceeds the axis length {length}")
    idx = torch.arange(length)
    group, pos = idx % dilation, idx // dilation
    group_len = (length - group + dilation - 1) // dilation
    start = torch.minimum((pos - kernel_size // 2).clamp(min=0), group_len - kernel_size)
    return group + dilation * start


def neighborhood_indices(length: int, kernel_size: int, dilation: int = 1) -> torch.Tensor:
    """Key indices of every query's window along one axis.

    Returns:
        ``(length, kernel_size)`` int64; row ``i`` lists the keys of query ``i``.

    Raises:
        ValueError: see :func:`window_starts`.
    """
    return window_starts(length, kernel_size, dilation)[:, None] + dilation * torch.arange(kernel_size)


@functools.lru_cache(maxsize=32)
def _cpu_mask(height: int, width: int, kernel: Tuple[int, int], dilation: Tuple[int, int]) -> torch.Tensor:
    masks = []
    for length, k, d in ((height, kernel[0], dilation[0]), (width, kernel[1], dilation[1])):
        axis = torch.zeros(length, length, dtype=torch.bool)
        axis.scatter_(1, neighborhood_indices(length, k, d), True)
        masks.append(axis)
    rows, cols = masks
    return (rows[:, None, :, None] & cols[None, :, None, :]).reshape(height * width, height * width)


def neighborhood_mask(height: int, width: int, kernel_size: IntPair, dilation: IntPair = 1,
                      device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """Boolean attention mask of 2D (dilated) neighbourhood attention on a ``height x width`` map.

    The 2D window is the product of the two axis windows (:func:`neighborhood_indices`);
    tokens are in row-major order (``n = y * width + x``). Cached per size and device.

    Returns:
        ``(H*W, H*W)`` bool, True where query (row) may attend to key (column); every row
        has exactly ``kernel_h * kernel_w`` True entries.

    Raises:
        ValueError: a kernel times its dilation exceeds the map side.
    """
    kernel, dil = _pair(kernel_size, "kernel_size"), _pair(dilation, "dilation")
    mask = _cpu_mask(int(height), int(width), kernel, dil)
    return mask if device is None or torch.device(device).type == "cpu" else _device_mask(mask, str(device))


@functools.lru_cache(maxsize=32)
def _device_mask(mask: torch.Tensor, device: str) -> torch.Tensor:
    return mask.to(device)


def effective_window(height: int, width: int, kernel_size: IntPair,
                     dilation: Optional[IntPair] = 1) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Kernel and dilation actually used on a ``height x width`` map.

    Per axis: ``kernel = min(kernel_size, side)`` (a kernel equal to the side is global along
    that axis) and ``dilation = clamp(dilation, 1, side // kernel)``; ``dilation=None`` takes
    the largest feasible value ``side // kernel`` (DiNAT's "sparse global" setting).

    Returns:
        ``((kernel_h, kernel_w), (dilation_h, dilation_w))`` with ``kernel * dilation <= side``.
    """
    kernel = _pair(kernel_size, "kernel_size")
    dil = (None, None) if dilation is None else _pair(dilation, "dilation")
    out_k, out_d = [], []
    for side, k, d in zip((height, width), kernel, dil):
        k = min(k, side)
        d = side // k if d is None else max(1, min(d, side // k))
        out_k.append(k)
        out_d.append(d)
    return (out_k[0], out_k[1]), (out_d[0], out_d[1])


_NATTEN: Any = None  # None: not tried yet; False: unavailable; else natten.functional


def _natten_functional() -> Any:
    global _NATTEN
    if _NATTEN is None:
        try:
            _NATTEN = importlib.import_module("natten.functional")
            if not hasattr(_NATTEN, "na2d"):
                _NATTEN = False
        except Exception:  # not installed, or built against another torch/CUDA (ImportError, OSError, ...)
            _NATTEN = False
    return _NATTEN


def _disable_natten() -> None:
    global _NATTEN
    _NATTEN = False


def natten_available() -> bool:
    """Whether NATTEN's ``natten.functional.na2d`` can be imported (CUDA kernels for training)."""
    return bool(_natten_functional())


def neighborhood_attention_2d(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: IntPair,
                              dilation: Optional[IntPair] = 1, backend: str = "auto",
                              dropout_p: float = 0.0) -> torch.Tensor:
    """2D (dilated) neighbourhood attention with NATTEN's border rule.

    Args:
        q, k, v: ``(B, H, W, heads, head_dim)`` (NATTEN's layout).
        kernel_size: window size, odd (int or (kh, kw)); clamped to the map
            (:func:`effective_window`).
        dilation: window dilation, or None for the largest feasible one.
        backend: ``"auto"`` (NATTEN for CUDA tensors when importable, else SDPA),
            ``"sdpa"`` (masked dense attention) or ``"natten"`` (required).
        dropout_p: attention-probability dropout (SDPA backend only).

    Returns:
        ``(B, H, W, heads, head_dim)``; softmax scale ``head_dim ** -0.5``.

    Raises:
        ValueError: mismatched shapes, an even kernel, or an unknown backend.
        RuntimeError: ``backend="natten"`` but NATTEN is unavailable or the tensors are not on CUDA.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown neighbourhood-attention backend {backend!r}; choose one of {BACKENDS}")
    if q.ndim != 5 or q.shape != k.shape or k.shape != v.shape:
        raise ValueError("q, k, v must share one (B, H, W, heads, head_dim) shape, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if any(ks % 2 == 0 for ks in _pair(kernel_size, "kernel_size")):
        raise ValueError(f"kernel_size must be odd (a window centred on the query), got {kernel_size!r}")
    b, height, width, heads, head_dim = q.shape
    kernel, dil = effective_window(height, width, kernel_size, dilation)
    odd = kernel[0] % 2 == 1 and kernel[1] % 2 == 1  # even only when clamped to an even side
    want_natten = backend == "natten" or (backend == "auto" and q.is_cuda and odd and dropout_p == 0.0)
    if want_natten and natten_available() and q.is_cuda:
        try:
            return _natten_functional().na2d(q, k, v, kernel_size=kernel, dilation=dil)
        except Exception as err:  # unsupported dtype/head_dim/arch: fall back (and stop trying)
            if backend == "natten":
                raise RuntimeError(f"NATTEN na2d failed: {err}") from None
            _disable_natten()
    elif backend == "natten":
        raise RuntimeError("backend='natten' needs the NATTEN package and CUDA tensors; use 'auto' or 'sdpa'")
    qh, kh, vh = (t.reshape(b, height * width, heads, head_dim).transpose(1, 2) for t in (q, k, v))
    global_window = kernel == (height, width)
    mask = None if global_window else neighborhood_mask(height, width, kernel, dil, device=q.device)
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, dropout_p=dropout_p)
    return out.transpose(1, 2).reshape(b, height, width, heads, head_dim)


class NeighborhoodAttention2D(nn.Module):
    """Multi-head 2D (dilated) neighbourhood attention layer (NAT / DiNAT).

    ``qkv`` (one ``nn.Linear``) -> :func:`neighborhood_attention_2d` -> ``proj``. Position
    information comes from the surrounding block (e.g. a depthwise-conv positional
    encoding); no relative position bias is used (NATTEN's fused training kernels do not
    support one).

    Args:
        dim: channels C (divisible by ``num_heads``).
        num_heads: attention heads.
        kernel_size: odd window size (clamped to small maps, see :func:`effective_window`).
        dilation: window dilation; None = the largest that fits the map (DiNAT's sparse
            global attention).
        qkv_bias: bias in the qkv projection.
        attn_drop, proj_drop: dropout on attention probabilities / the output.
        backend: ``"auto"``, ``"sdpa"`` or ``"natten"`` (see :func:`neighborhood_attention_2d`).

    Shape: ``(B, H, W, C)`` -> ``(B, H, W, C)`` (channels last, as NATTEN).

    Raises:
        EncoderArgumentError: ``dim``/``num_heads`` not integers >= 1 or ``dim`` not divisible by
            ``num_heads`` (:func:`medfm.arg_checks.check_heads`), ``kernel_size`` not an odd integer >= 1
            (``3.0`` and ``True`` are refused too), ``dilation`` not None or an integer >= 1.
        ValueError: an unknown backend, or an input whose last axis is not ``dim``.
    """

    def __init__(self, dim: int, num_heads: int, kernel_size: int = 7, dilation: Optional[int] = 1,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 backend: str = "auto") -> None:
        super().__init__()
        self.dim, self.num_heads = check_heads(dim, num_heads, heads_name="num_heads", error=EncoderArgumentError)
        self.kernel_size = check_int("kernel_size", kernel_size, odd=True)
        if dilation is not None:
            dilation = check_int("dilation", dilation, hint=" or None (largest feasible)")
        if backend not in BACKENDS:
            raise ValueError(f"unknown neighbourhood-attention backend {backend!r}; choose one of {BACKENDS}")
        self.head_dim = self.dim // self.num_heads
        self.dilation, self.backend = dilation, backend
        self.attn_drop = float(attn_drop)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` float (channels last, ``C == dim``) -> ``(B, H, W, C)``.

        Raises:
            ValueError: the input is not 4-D or its last axis is not ``dim``.
            RuntimeError: ``backend="natten"`` without NATTEN/CUDA tensors, or NATTEN's kernel fails.
        """
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"NeighborhoodAttention2D expects (B, H, W, {self.dim}), got shape {tuple(x.shape)}")
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h, w, 3, self.num_heads, self.head_dim).unbind(3)
        out = neighborhood_attention_2d(q, k, v, self.kernel_size, self.dilation, backend=self.backend,
                                        dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.reshape(b, h, w, self.dim)))

    def extra_repr(self) -> str:
        """Width, heads, window, dilation and backend, for the module's ``repr``."""
        return (f"dim={self.dim}, num_heads={self.num_heads}, kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, backend={self.backend!r}")


__all__ = ["window_starts", "neighborhood_indices", "neighborhood_mask", "effective_window",
           "neighborhood_attention_2d", "natten_available", "NeighborhoodAttention2D"]
