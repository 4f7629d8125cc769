"""Selective scan (the S6 layer of Mamba, Gu & Dao 2023) in plain PyTorch, with a CUDA fast path.

The selective scan maps ``u`` (B, D, L) to ``y`` (B, D, L) through a per-channel diagonal
state space model with input-dependent step sizes ``delta``::

    dA_t  = exp(delta_t[d] * A[d, n])                      (decay, in (0, 1] for A < 0)
    h_t   = dA_t * h_{t-1} + delta_t[d] * B_t[n] * u_t[d]   (state, (B, D, N))
    y_t   = sum_n C_t[n] * h_t[d, n] + D[d] * u_t[d]
    out   = y * silu(z)                                     (when ``z`` is given)

Arguments follow ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``:

* ``u``, ``delta``: (B, D, L) float; ``A``: (D, N) real (negative for a stable scan);
* ``B``, ``C``: (D, N) constant, (B, N, L) shared by all channels, or (B, G, N, L) with
  ``D % G == 0`` (channel group ``g`` uses ``B[:, g]``; VMamba passes one group per scan
  direction);
* ``D``: (D,) skip weights; ``z``: (B, D, L) gate; ``delta_bias``: (D,); ``delta_softplus``.

Three implementations:

* :func:`selective_scan_ref`: the step-by-step recurrence (slow; the ground truth in tests).
* :func:`selective_scan_chunked`: the fast CPU path. The state recurrence
  ``h_t = a_t h_{t-1} + x_t`` runs in a custom autograd function over a sequence-first
  ``(L, B*D*N)`` layout. The sequence is cut into chunks of ``chunk_size``; within a chunk the
  decays from the chunk start are ``exp`` of segment sums (cumulative sums) of the
  log-decays ``delta * A <= 0``, so only ``exp`` of non-positive numbers is ever taken;
  chunk-local states are computed for all chunks at once and the states at chunk
  boundaries are passed from chunk to chunk (the chunked state passing of Mamba-2's
  state-space-duality algorithm, Dao & Gu 2024). The backward pass is the adjoint
  recurrence run in reverse with the same kernel. With per-channel, per-state decays
  (Mamba-1 ``A`` of shape (D, N)) the quadratic "attention" form of SSD has no shared
  decay to amortise and costs ``chunk_size`` times more memory traffic, so it is not used.
* the CUDA kernel of ``mamba_ssm`` (imported lazily), used by :func:`selective_scan` when
  the inputs are CUDA tensors and ``mamba_ssm`` is installed.

All paths compute in float32 and return the dtype of ``u`` (as ``mamba_ssm`` does).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

#: at or above this many independent state channels (B * D * N) one step of the recurrence
#: is a large enough slab that the plain step-by-step loop beats the chunked kernel on CPU
#: (measured: benchmarks/encoders.py and the docstring of :func:`auto_chunk_size`).
SEQUENTIAL_MIN_CHANNELS = 4096


class SelectiveScanInputError(ValueError):
    """Raised when the selective scan gets tensors of inconsistent shapes or dtypes."""


# ----------------------------------------------------------------------------- validation
def _check_args(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                z: Optional[Tensor], delta_bias: Optional[Tensor]) -> Tuple[int, int, int, int]:
    """Validate shapes; return (batch, dim, length, d_state)."""
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        if not isinstance(t, torch.Tensor):
            raise SelectiveScanInputError(f"selective scan: {name} must be a torch.Tensor, got {type(t).__name__}")
    if u.ndim != 3:
        raise SelectiveScanInputError(f"selective scan: u must be (batch, dim, length), got shape {tuple(u.shape)}")
    if delta.shape != u.shape:
        raise SelectiveScanInputError(
            f"selective scan: delta shape {tuple(delta.shape)} differs from u shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if A.is_complex():
        raise SelectiveScanInputError("selective scan: complex A is not supported (use a real, negative A)")
    if A.ndim != 2 or A.shape[0] != dim:
        raise SelectiveScanInputError(
            f"selective scan: A must be (dim={dim}, d_state), got shape {tuple(A.shape)}")
    d_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.ndim == 2:
            ok = t.shape == (dim, d_state)
        elif t.ndim == 3:
            ok = t.shape == (batch, d_state, length)
        elif t.ndim == 4:
            ok = (t.shape[0] == batch and t.shape[2:] == (d_state, length) and t.shape[1] > 0
                  and dim % t.shape[1] == 0)
        else:
            ok = False
        if not ok:
            raise SelectiveScanInputError(
                f"selective scan: {name} must be (dim, d_state)=({dim}, {d_state}), (batch, d_state, length)="
                f"({batch}, {d_state}, {length}) or (batch, groups, d_state, length) with dim % groups == 0; "
                f"got shape {tuple(t.shape)}")
    if D is not None and tuple(D.shape) != (dim,):
        raise SelectiveScanInputError(f"selective scan: D must be (dim,)=({dim},), got shape {tuple(D.shape)}")
    if delta_bias is not None and tuple(delta_bias.shape) != (dim,):
        raise SelectiveScanInputError(
            f"selective scan: delta_bias must be (dim,)=({dim},), got shape {tuple(delta_bias.shape)}")
    if z is not None and z.shape != u.shape:
        raise SelectiveScanInputError(f"selective scan: z shape {tuple(z.shape)} differs from u shape {tuple(u.shape)}")
    return batch, dim, length, d_state


def _compute_dtype(u: Tensor) -> torch.dtype:
    """float64 for float64 inputs (exact gradient checks), else float32 (as mamba_ssm)."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


# ------------------------------------------------------------------------------ reference
def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
                       z: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                       delta_softplus: bool = True, return_last_state: bool = False) -> Any:
    """Selective scan as the plain step-by-step recurrence (Gu & Dao 2023, Algorithm 2).

    Slow (one Python step per position) and differentiable by autograd; it is the ground truth
    the fast paths are tested against. Argument conventions are those of ``mamba_ssm``'s
    ``selective_scan_fn`` except that ``delta_softplus`` defaults to True (as every medfm
    caller uses it).

    Args:
        u: (B, D, L) input sequence.
        delta: (B, D, L) step sizes before ``delta_bias`` and softplus.
        A: (D, N) real state matrix diagonal (negative for decaying states).
        B, C: (D, N), (B, N, L) or (B, G, N, L) input / output projections.
        D: optional (D,) skip weights. z: optional (B, D, L) gate (``out * silu(z)``).
        delta_bias: optional (D,) added to ``delta`` before the softplus.
        delta_softplus: apply ``softplus`` to ``delta``.
        return_last_state: also return the final state (B, D, N).

    Returns:
        (B, D, L) in the dtype of ``u``; with ``return_last_state`` a tuple (out, last_state).

    Raises:
        SelectiveScanInputError: inconsistent shapes or a complex ``A``.
    """
    batch, dim, length, d_state = _check_args(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    ctype = _compute_dtype(u)
    u, delta, A = u.to(ctype), delta.to(ctype), A.to(ctype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ctype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)

    def per_channel(t: Tensor) -> Tensor:  # -> (B, D, N, L) or (D, N) for constant
        t = t.to(ctype)
        if t.ndim == 3:
            return t[:, None].expand(batch, dim, d_state, length)
        if t.ndim == 4:
            return t.repeat_interleave(dim // t.shape[1], dim=1)
        return t

    Bf, Cf = per_channel(B), per_channel(C)
    state = u.new_zeros(batch, dim, d_state)
    ys = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)  # (B, D, N)
        b_t = Bf if Bf.ndim == 2 else Bf[..., t]
        c_t = Cf if Cf.ndim == 2 else Cf[..., t]
        state = decay * state + (delta[:, :, t] * u[:, :, t])[..., None] * b_t
        ys.append((state * c_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.to(ctype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(ctype))
    y = y.to(dtype_in)
    return (y, state) if return_last_state else y


# ------------------------------------------------------------------- chunked recurrence
def auto_chunk_size(length: int, channels: int) -> int:
    """Chunk size the fast CPU scan uses for a sequence of ``length`` over ``channels`` states.

    A step of the recurrence costs a fixed overhead (~5 us of dispatch) plus memory traffic
    proportional to ``channels``. With many channels (>= ``SEQUENTIAL_MIN_CHANNELS``, e.g. batch
    64 x 4 directions x 96 channels) the overhead is amortised and one chunk (the plain loop,
    least memory traffic) is fastest; with few channels (small batches) chunks of
    ``ceil(sqrt(length))`` cut the number of Python steps from L to about 2 sqrt(L).
    """
    if channels >= SEQUENTIAL_MIN_CHANNELS or length <= 8:
        return max(1, length)
    return max(1, math.ceil(math.sqrt(length)))


@torch.no_grad()
def _recurrence(log_a: Tensor, x: Tensor, chunk: int, reverse: bool = False) -> Tensor:
    """Solve ``h_t = exp(log_a_t) h_{t-1} + x_t`` (or ``h_t = exp(log_a_t) h_{t+1} + x_t``
    with ``reverse``) along dim 0 of contiguous float32 ``(L, R)`` tensors; ``h`` starts at 0.

    Chunked: local states of all chunks are computed together (``chunk`` steps), then the
    boundary states are passed between chunks (``L / chunk`` steps) and added back with the
    decays ``exp(segment sum of log_a) <= 1``.
    """
    length, width = x.shape
    a = log_a.exp()
    if chunk >= length:
        h = torch.empty_like(x)
        order = range(length - 1, -1, -1) if reverse else range(length)
        prev = None
        for t in order:
            if prev is None:
                h[t].copy_(x[t])
            else:
                torch.addcmul(x[t], a[t], h[prev], out=h[t])
            prev = t
        return h
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    if pad:  # padding (log_a = 0, x = 0) goes after the end in scan order; it changes nothing
        zeros = x.new_zeros(pad, width)
        parts = (lambda t: (zeros, t)) if reverse else (lambda t: (t, zeros))
        log_a, x, a = (torch.cat(parts(t)) for t in (log_a, x, a))
    lc, xc, ac = (t.view(n_chunks, chunk, width) for t in (log_a, x, a))
    hl = torch.empty_like(xc)
    steps = range(chunk - 1, -1, -1) if reverse else range(chunk)
    prev = None
    for t in steps:  # chunk-local states, all chunks at once
        if prev is None:
            hl[:, t].copy_(xc[:, t])
        else:
            torch.addcmul(xc[:, t], ac[:, t], hl[:, prev], out=hl[:, t])
        prev = t
    # decay from the incoming boundary state to each position: exp(segment sum of log_a) <= 1
    seg = lc.flip(1).cumsum(1).flip(1) if reverse else lc.cumsum(1)
    decay = seg.exp_()
    carry = x.new_zeros(n_chunks, width)  # state entering each chunk
    if reverse:
        for c in range(n_chunks - 2, -1, -1):
            torch.addcmul(hl[c + 1, 0], decay[c + 1, 0], carry[c + 1], out=carry[c])
    else:
        for c in range(1, n_chunks):
            torch.addcmul(hl[c - 1, -1], decay[c - 1, -1], carry[c - 1], out=carry[c])
    hl.addcmul_(decay, carry[:, None])
    h = hl.view(n_chunks * chunk, width)
    if pad:
        h = h[pad:] if reverse else h[:length]
    return h.contiguous()


class _LinearRecurrence(torch.autograd.Function):
    """``h = recurrence(log_a, x)`` over (L, R) float32 with the adjoint recurrence as backward.

    Backward: ``lam_t = g_t + a_{t+1} lam_{t+1}`` (reverse scan), ``dx = lam``,
    ``dlog_a_t = lam_t * a_t * h_{t-1}``.
    """

    @staticmethod
    def forward(ctx: Any, log_a: Tensor, x: Tensor, chunk: int) -> Tensor:  # type: ignore[override]
        h = _recurrence(log_a, x, chunk)
        ctx.save_for_backward(log_a, h)
        ctx.chunk = chunk
        return h

    @staticmethod
    def backward(ctx: Any, grad_h: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None]:  # type: ignore[override]
        log_a, h = ctx.saved_tensors
        grad_h = grad_h.contiguous()
        log_a_next = torch.empty_like(log_a)
        log_a_next[:-1] = log_a[1:]
        log_a_next[-1] = 0.0
        lam = _recurrence(log_a_next, grad_h, ctx.chunk, reverse=True)
        grad_log_a = None
        if ctx.needs_input_grad[0]:
            grad_log_a = torch.zeros_like(lam)
            grad_log_a[1:] = lam[1:] * log_a[1:].exp() * h[:-1]
        return grad_log_a, (lam if ctx.needs_input_grad[1] else None), None


def linear_recurrence(log_a: Tensor, x: Tensor, chunk_size: Optional[int] = None) -> Tensor:
    """Differentiable ``h_t = exp(log_a_t) * h_{t-1} + x_t`` along dim 0 (``h_{-1} = 0``).

    Args:
        log_a: (L, ...) log-decays (<= 0 for a stable recurrence).
        x: (L, ...) inputs, same shape.
        chunk_size: steps per chunk; None picks :func:`auto_chunk_size`.

    Returns:
        (L, ...) states ``h`` in float32 (float64 for float64 inputs).

    Raises:
        SelectiveScanInputError: shapes differ or ``chunk_size < 1``.
    """
    if log_a.shape != x.shape or x.ndim < 1:
        raise SelectiveScanInputError(
            f"linear_recurrence: log_a {tuple(log_a.shape)} and x {tuple(x.shape)} must have one shape (L, ...)")
    if chunk_size is not None and chunk_size < 1:
        raise SelectiveScanInputError(f"linear_recurrence: chunk_size must be >= 1, got {chunk_size}")
    shape = x.shape
    length = shape[0]
    ctype = _compute_dtype(x)
    la2 = log_a.to(ctype).reshape(length, -1).contiguous()
    x2 = x.to(ctype).reshape(length, -1).contiguous()
    chunk = chunk_size or auto_chunk_size(length, x2.shape[1])
    return _LinearRecurrence.apply(la2, x2, int(chunk)).view(shape)


def _to_seq(t: Tensor, batch: int, dim: int, d_state: int, ctype: torch.dtype) -> Tensor:
    """B or C in sequence-first broadcastable layout (L|1, B|1, G, 1, N)."""
    t = t.to(ctype)
    if t.ndim == 2:  # (D, N): constant; one group per channel
        return t.view(1, 1, dim, 1, d_state)
    if t.ndim == 3:  # (B, N, L)
        return t.permute(2, 0, 1)[:, :, None, None, :]
    return t.permute(3, 0, 1, 2)[:, :, :, None, :]  # (B, G, N, L)


def selective_scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
                           z: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                           delta_softplus: bool = True, chunk_size: Optional[int] = None,
                           return_last_state: bool = False) -> Any:
    """Fast plain-PyTorch selective scan (chunked linear recurrence, see module docstring).

    Same arguments, shapes and result as :func:`selective_scan_ref` (up to float32 rounding),
    plus ``chunk_size`` (steps per chunk, None = :func:`auto_chunk_size`). Inputs whose memory is
    sequence-first (``u.permute(2, 0, 1)`` contiguous, as SS2D produces them) avoid a copy.
    The result is a (B, D, L) view of a sequence-first tensor (non-contiguous).

    Raises:
        SelectiveScanInputError: inconsistent shapes, a complex ``A`` or ``chunk_size < 1``.
    """
    batch, dim, length, d_state = _check_args(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size is not None and chunk_size < 1:
        raise SelectiveScanInputError(f"selective scan: chunk_size must be >= 1, got {chunk_size}")
    dtype_in = u.dtype
    ctype = _compute_dtype(u)
    with torch.autocast(device_type=u.device.type, enabled=False):
        u_s = u.to(ctype).permute(2, 0, 1)  # (L, B, D)
        dt = delta.to(ctype).permute(2, 0, 1)
        if delta_bias is not None:
            dt = dt + delta_bias.to(ctype)
        if delta_softplus:
            dt = F.softplus(dt)
        dt = dt.contiguous()
        log_a = dt[..., None] * A.to(ctype)  # (L, B, D, N), <= 0 for A < 0, delta >= 0
        b_s = _to_seq(B, batch, dim, d_state, ctype)
        groups_b = b_s.shape[2]
        x = ((dt * u_s).reshape(length, batch, groups_b, dim // groups_b, 1) * b_s).reshape(
            length, batch, dim, d_state)
        h = linear_recurrence(log_a, x, chunk_size)  # (L, B, D, N)
        c_s = _to_seq(C, batch, dim, d_state, ctype)
        groups_c = c_s.shape[2]
        h_g = h.view(length, batch, groups_c, dim // groups_c, d_state)
        if d_state == 1:
            y = (h_g * c_s).reshape(length, batch, dim)
        else:
            y = torch.einsum("lbghn,lbgzn->lbgh", h_g, c_s.expand(length, batch, groups_c, 1, d_state)
                             ).reshape(length, batch, dim)
        if D is not None:
            y = torch.addcmul(y, u_s, D.to(ctype))
        if z is not None:
            y = y * F.silu(z.to(ctype).permute(2, 0, 1))
        out = y.to(dtype_in).permute(1, 2, 0)
    if return_last_state:
        return out, h[-1]
    return out


# ----------------------------------------------------------------------------- dispatch
_CUDA_SCAN: Optional[Callable[..., Tensor]] = None
_CUDA_SCAN_TRIED = False


def cuda_selective_scan_fn() -> Optional[Callable[..., Tensor]]:
    """``mamba_ssm``'s CUDA ``selective_scan_fn`` when importable, else None (imported once, lazily)."""
    global _CUDA_SCAN, _CUDA_SCAN_TRIED
    if not _CUDA_SCAN_TRIED:
        _CUDA_SCAN_TRIED = True
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as fn  # type: ignore
            _CUDA_SCAN = fn
        except Exception:  # not installed, or built without CUDA: the plain-torch path is used
            _CUDA_SCAN = None
    return _CUDA_SCAN


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
                   z: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None, delta_softplus: bool = True,
                   chunk_size: Optional[int] = None) -> Tensor:
    """Selective scan with the best available backend.

    CUDA inputs use ``mamba_ssm``'s fused kernel when it is installed; everything else runs
    :func:`selective_scan_chunked`. Arguments and shapes as in :func:`selective_scan_ref`.

    Returns:
        (B, D, L) in the dtype of ``u`` (possibly a non-contiguous view).

    Raises:
        SelectiveScanInputError: inconsistent shapes or a complex ``A``.
    """
    if u.is_cuda:
        fn = cuda_selective_scan_fn()
        if fn is not None:
            _check_args(u, delta, A, B, C, D, z, delta_bias)
            def cont(t: Optional[Tensor]) -> Optional[Tensor]:
                return None if t is None else t.contiguous()
            return fn(cont(u), cont(delta), A.float().contiguous(), cont(B), cont(C),
                      None if D is None else D.float().contiguous(), cont(z),
                      None if delta_bias is None else delta_bias.float().contiguous(), delta_softplus)
    return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size)


__all__ = [
    "SelectiveScanInputError", "auto_chunk_size", "cuda_selective_scan_fn", "linear_recurrence",
    "selective_scan", "selective_scan_chunked", "selective_scan_ref",
]
