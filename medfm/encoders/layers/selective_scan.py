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
* :func:`selective_scan_chunked`: the fast CPU path, one fused autograd function over a
  sequence-first ``(L, B*D*N)`` layout with a hand-written backward (the adjoint recurrence
  run in reverse, as mamba_ssm's kernel does) that reuses its buffers in place. The state
  recurrence ``h_t = a_t h_{t-1} + x_t`` is cut into chunks of ``chunk_size``: chunk-local
  states of all chunks are computed at once, then the states at chunk boundaries are passed
  from chunk to chunk and added back with the decay from the boundary (the chunked state
  passing of Mamba-2's state-space-duality algorithm, Dao & Gu 2024). Within a chunk that
  decay is the running product of the per-step decays ``a = exp(delta * A)`` in (0, 1],
  i.e. ``exp`` of a segment sum of log-decays ``delta * A <= 0``: nothing is ever divided by
  a decay or exponentiated upwards, so strong decays cannot overflow. With Mamba-1's
  per-channel, per-state decays (``A`` of shape (D, N)) the quadratic "attention" form of SSD
  has no decay shared across channels to amortise (it costs ``chunk_size`` times the memory
  traffic; measured 10-50x slower on CPU), so it is not used. :func:`auto_chunk_size` picks
  one chunk (the plain loop, least memory traffic) for large batches and sqrt(L)-sized chunks
  for small ones.
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
#: (measured on a 2-core AMD EPYC: at 6144-24576 channels the loop was 1.4-3x faster, at
#: 96-384 channels 2-10x slower than sqrt(L)-sized chunks).
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

    A step of the recurrence costs a fixed dispatch overhead (a few microseconds) plus memory
    traffic proportional to ``channels``. With many channels (>= ``SEQUENTIAL_MIN_CHANNELS``,
    e.g. batch 16 x 4 directions x 64 channels) the overhead is amortised and a single chunk
    (the plain loop, least memory traffic) is fastest; with few channels (small batches)
    chunks of ``ceil(sqrt(length))`` cut the Python steps from L to about 2 sqrt(L).
    """
    if channels >= SEQUENTIAL_MIN_CHANNELS or length <= 8:
        return max(1, length)
    return max(1, math.ceil(math.sqrt(length)))


@torch.no_grad()
def _scan_inplace(a: Tensor, x: Tensor, chunk: int, reverse: bool = False) -> None:
    """Overwrite ``x`` with the states of a first-order linear recurrence along dim 0.

    Forward: ``x_t <- x_t + a_t * x_{t-1}``; reverse (the adjoint): ``x_t <- x_t + a_{t+1} * x_{t+1}``.
    ``a`` and ``x`` are contiguous ``(L, R)`` tensors; ``a`` holds the per-step decays.

    With ``chunk < L`` the sequence is cut into chunks: local states of all chunks are computed
    at once (``chunk`` steps), the states at chunk boundaries are passed from chunk to chunk
    (``L / chunk`` steps) and added back with the decay from the boundary, the cumulative
    product of the decays of the chunk (= exp of a segment sum of log-decays, each factor in
    [0, 1] for a stable scan, so nothing is ever divided or exponentiated upwards).
    """
    length, width = x.shape
    if chunk >= length:
        if reverse:
            for t in range(length - 2, -1, -1):
                x[t].addcmul_(a[t + 1], x[t + 1])
        else:
            for t in range(1, length):
                x[t].addcmul_(a[t], x[t - 1])
        return
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    if reverse:  # b_t = a_{t+1}: the decay that carries state t+1 into t; padding goes in front
        b = a.new_zeros(n_chunks * chunk, width)
        b[pad:length + pad - 1] = a[1:]
        xp = torch.cat((x.new_zeros(pad, width), x)) if pad else x
    else:  # padding (decay 1, input 0) goes after the end
        b = torch.cat((a, a.new_ones(pad, width))) if pad else a
        xp = torch.cat((x, x.new_zeros(pad, width))) if pad else x
    bc, xc = b.view(n_chunks, chunk, width), xp.view(n_chunks, chunk, width)
    decay = torch.empty_like(bc)  # decay from the chunk's incoming boundary state to each position
    if reverse:
        decay[:, -1] = bc[:, -1]
        for t in range(chunk - 2, -1, -1):  # chunk-local states, all chunks at once
            xc[:, t].addcmul_(bc[:, t], xc[:, t + 1])
            torch.mul(decay[:, t + 1], bc[:, t], out=decay[:, t])  # prod_{s >= t} b_s
        carry = x.new_zeros(n_chunks, width)  # state entering chunk c from chunk c + 1
        for c in range(n_chunks - 2, -1, -1):
            torch.addcmul(xc[c + 1, 0], decay[c + 1, 0], carry[c + 1], out=carry[c])
        xc[:-1].addcmul_(decay[:-1], carry[:-1, None])
        if pad:
            x.copy_(xp[pad:])
    else:
        decay[:, 0] = bc[:, 0]
        for t in range(1, chunk):
            xc[:, t].addcmul_(bc[:, t], xc[:, t - 1])
            torch.mul(decay[:, t - 1], bc[:, t], out=decay[:, t])  # prod_{s <= t} a_s
        carry = x.new_zeros(n_chunks, width)  # state entering chunk c from chunk c - 1
        for c in range(1, n_chunks):
            torch.addcmul(xc[c - 1, -1], decay[c - 1, -1], carry[c - 1], out=carry[c])
        xc[1:].addcmul_(decay[1:], carry[1:, None])
        if pad:
            x.copy_(xp[:length])


class _LinearRecurrence(torch.autograd.Function):
    """``h = recurrence(log_a, x)`` over (L, R) with the adjoint recurrence as backward:
    ``lam_t = g_t + a_{t+1} lam_{t+1}``, ``dx = lam``, ``dlog_a_t = lam_t a_t h_{t-1}``."""

    @staticmethod
    def forward(ctx: Any, log_a: Tensor, x: Tensor, chunk: int) -> Tensor:  # type: ignore[override]
        a = log_a.exp()
        h = x.clone()
        _scan_inplace(a, h, chunk)
        ctx.save_for_backward(a, h)
        ctx.chunk = chunk
        return h

    @staticmethod
    def backward(ctx: Any, grad_h: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None]:  # type: ignore[override]
        a, h = ctx.saved_tensors
        lam = grad_h.contiguous().clone()
        _scan_inplace(a, lam, ctx.chunk, reverse=True)
        grad_log_a = torch.zeros_like(lam)
        grad_log_a[1:] = lam[1:] * a[1:] * h[:-1]
        return grad_log_a, lam, None


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


def _softplus(x: Tensor) -> Tensor:
    """``log(1 + exp(x))`` as ``max(log(1 + exp(min(x, 20))), x)``: within 1e-7 of
    ``F.softplus`` and several times faster on CPU (whose ``log1p`` is not vectorised)."""
    out = x.clamp(max=20.0)
    out.exp_().add_(1.0).log_()
    return torch.maximum(out, x, out=out)


def _dot_n(p: Tensor, q: Tensor) -> Tensor:
    """Sum over the state dim: (..., N) x (..., N) -> (...)."""
    return (p * q)[..., 0] if p.shape[-1] == 1 and q.shape[-1] == 1 else (p * q).sum(-1)


def _reduce_h(p: Tensor, q: Tensor, scratch: Tensor, shape: torch.Size) -> Tensor:
    """``p * q[..., None]`` summed over the channel-in-group dim H and reduced to the broadcast
    ``shape`` of B or C; ``p`` (L, B, G, H, N), ``q`` (L, B, G, H); uses ``scratch`` (L, B, G, H)
    when N = 1 to avoid a large temporary."""
    prod = torch.mul(p[..., 0], q, out=scratch)[..., None] if p.shape[-1] == 1 else p * q[..., None]
    return prod.sum(3, keepdim=True).sum_to_size(shape)


class _SelectiveScanFn(torch.autograd.Function):
    """Fused selective scan over sequence-first tensors with a hand-written backward.

    Inputs: ``u``, ``delta`` (L, B, G, H); ``delta_bias``, ``D`` (G, H) or None; ``A`` (G, H, N);
    ``Bs``, ``Cs`` broadcastable (L|1, B|1, G, 1, N). Output ``y`` (L, B, G, H).
    The backward is the adjoint recurrence (as in mamba_ssm's CUDA kernel):
    ``lam = reverse scan of dy * C`` and ``d(delta * A)_t = lam_t a_t h_{t-1}``; it reuses its
    buffers in place, since on CPU every large fresh allocation costs page faults.
    """

    @staticmethod
    def forward(ctx: Any, u: Tensor, delta: Tensor, delta_bias: Optional[Tensor],  # type: ignore[override]
                A: Tensor, Bs: Tensor, Cs: Tensor, D: Optional[Tensor], softplus: bool, chunk: int) -> Tensor:
        length = u.shape[0]
        raw = delta if delta_bias is None else delta + delta_bias
        dt = _softplus(raw) if softplus else raw
        a = (dt[..., None] * A).exp_()  # (L, B, G, H, N) decays in (0, 1]
        if A.shape[-1] == 1:  # inputs delta * u * B, overwritten with the states
            h = torch.mul(dt, u).mul_(Bs[..., 0])[..., None]
        else:
            h = (dt * u)[..., None] * Bs
        _scan_inplace(a.view(length, -1), h.view(length, -1), chunk)
        y = _dot_n(h, Cs)
        if D is not None:
            y.addcmul_(u, D)
        ctx.save_for_backward(u, delta, delta_bias, A, Bs, Cs, D, dt, a, h)
        ctx.softplus, ctx.chunk = softplus, chunk
        return y

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        u, delta, delta_bias, A, Bs, Cs, D, dt, a, h = ctx.saved_tensors
        length, n = u.shape[0], A.shape[-1]
        gy = gy.contiguous()
        need = ctx.needs_input_grad
        scratch = torch.empty_like(u)
        g_D = torch.mul(gy, u, out=scratch).sum((0, 1)) if D is not None and need[6] else None
        g_C = _reduce_h(h, gy, scratch, Cs.shape) if need[5] else None
        lam = gy[..., None] * Cs  # (L, B, G, H, N) -> adjoint states
        _scan_inplace(a.view(length, -1), lam.view(length, -1), ctx.chunk, reverse=True)
        g_la = lam * a  # d loss / d (delta * A) = lam_t a_t h_{t-1}
        g_la[1:] *= h[:-1]
        g_la[0] = 0.0
        g_A = None
        if need[3]:
            g_A = (torch.mul(g_la[..., 0], dt, out=scratch)[..., None] if n == 1 else g_la * dt[..., None]).sum((0, 1))
        g_dt = g_la[..., 0].mul_(A[..., 0]) if n == 1 else (g_la * A).sum(-1)
        g_B = None
        if need[4]:
            du = torch.mul(dt, u, out=scratch)
            prod = du.mul_(lam[..., 0])[..., None] if n == 1 else lam * du[..., None]
            g_B = prod.sum(3, keepdim=True).sum_to_size(Bs.shape)
        lam_b = lam[..., 0].mul_(Bs[..., 0]) if n == 1 else (lam * Bs).sum(-1)  # (L, B, G, H)
        g_dt.addcmul_(lam_b, u)
        g_u = lam_b.mul_(dt)
        if D is not None:
            g_u.addcmul_(gy, D)
        if ctx.softplus:  # d softplus(x) / dx = sigmoid(x)
            raw = delta if delta_bias is None else torch.add(delta, delta_bias, out=scratch)
            g_dt.mul_(torch.sigmoid(raw, out=scratch))
        g_bias = g_dt.sum((0, 1)) if delta_bias is not None and need[2] else None
        return g_u, g_dt, g_bias, g_A, g_B, g_C, g_D, None, None


def _bc_seq(t: Tensor, batch: int, dim: int, groups: int, ctype: torch.dtype) -> Tensor:
    """B or C as a sequence-first broadcastable (L|1, B|1, groups, 1, N) view."""
    t = t.to(ctype)
    if t.ndim == 2:  # (D, N): constant, one group per channel
        return t.view(1, 1, dim, 1, t.shape[1])
    if t.ndim == 3:  # (B, N, L): one group
        t = t[:, None]
    if t.shape[1] != groups:  # groups of B and C differ: expand both to one per channel
        t = t.repeat_interleave(groups // t.shape[1], dim=1)
    return t.permute(3, 0, 1, 2)[:, :, :, None, :]


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
    if return_last_state:  # rarely needed: the composite recurrence keeps the states at hand
        return _selective_scan_composite(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size)
    dtype_in = u.dtype
    ctype = _compute_dtype(u)
    group_of = lambda t: dim if t.ndim == 2 else 1 if t.ndim == 3 else t.shape[1]  # noqa: E731
    groups = group_of(B) if group_of(B) == group_of(C) else dim
    hd = dim // groups
    with torch.autocast(device_type=u.device.type, enabled=False):
        seq = lambda t: t.to(ctype).permute(2, 0, 1).contiguous().view(length, batch, groups, hd)  # noqa: E731
        per = lambda t: None if t is None else t.to(ctype).view(groups, hd)  # noqa: E731
        chunk = int(chunk_size or auto_chunk_size(length, batch * dim * d_state))
        y = _SelectiveScanFn.apply(
            seq(u), seq(delta), per(delta_bias), A.to(ctype).view(groups, hd, d_state),
            _bc_seq(B, batch, dim, groups, ctype), _bc_seq(C, batch, dim, groups, ctype), per(D),
            bool(delta_softplus), chunk,
        ).view(length, batch, dim)
        if z is not None:
            y = y * F.silu(z.to(ctype).permute(2, 0, 1))
        return y.to(dtype_in).permute(1, 2, 0)


def _selective_scan_composite(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                              z: Optional[Tensor], delta_bias: Optional[Tensor], delta_softplus: bool,
                              chunk_size: Optional[int]) -> Tuple[Tensor, Tensor]:
    """Selective scan from autograd ops around :func:`linear_recurrence`; returns (out, last_state)."""
    batch, dim, length, d_state = u.shape[0], u.shape[1], u.shape[2], A.shape[1]
    dtype_in, ctype = u.dtype, _compute_dtype(u)
    with torch.autocast(device_type=u.device.type, enabled=False):
        u_s = u.to(ctype).permute(2, 0, 1)  # (L, B, D)
        dt = delta.to(ctype).permute(2, 0, 1)
        if delta_bias is not None:
            dt = dt + delta_bias.to(ctype)
        if delta_softplus:
            dt = F.softplus(dt)
        groups = dim if B.ndim == 2 else 1 if B.ndim == 3 else B.shape[1]
        b_s = _bc_seq(B, batch, dim, groups, ctype)
        x = ((dt * u_s).reshape(length, batch, groups, dim // groups, 1) * b_s).reshape(length, batch, dim, d_state)
        h = linear_recurrence(dt[..., None] * A.to(ctype), x, chunk_size)  # (L, B, D, N)
        groups = dim if C.ndim == 2 else 1 if C.ndim == 3 else C.shape[1]
        c_s = _bc_seq(C, batch, dim, groups, ctype)
        y = (h.view(length, batch, groups, dim // groups, d_state) * c_s).sum(-1).reshape(length, batch, dim)
        if D is not None:
            y = y + u_s * D.to(ctype)
        if z is not None:
            y = y * F.silu(z.to(ctype).permute(2, 0, 1))
        return y.to(dtype_in).permute(1, 2, 0), h[-1]


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
