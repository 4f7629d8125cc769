"""2D selective scans: cross-scan / cross-merge, VMamba's SS2D and GroupMamba's modulated group layer.

A 2D map is read as 1D sequences along four directions (VMamba, Liu et al. 2024, "VMamba:
Visual State Space Model", NeurIPS 2024, the "2D-Selective-Scan" (SS2D)):

* 0: row-major (left to right, top to bottom);  1: column-major (top to bottom, left to right);
* 2: direction 0 reversed;                       3: direction 1 reversed.

Both families share :class:`DirectionalSelectiveScan`, one selective scan per direction with its
own ``x_proj`` (d -> dt_rank + 2 N), ``dt_proj`` (dt_rank -> d), ``A_log`` and ``D`` (the S6
parameters of Gu & Dao 2023). They differ only in which channels a direction reads and how the
directions are merged:

* **VMamba** (:class:`SS2D`): every direction scans all ``d`` channels; outputs are summed.
* **GroupMamba** (:class:`ModulatedGroupMamba`, Shaker et al. 2024, "GroupMamba: Parameter-
  Efficient and Accurate Group Visual State Space Model", arXiv:2407.13772): channels are split
  into four groups, group ``k`` is scanned along direction ``k`` only (a "visual single
  selective scan" with its own in/out projections), outputs are concatenated, and a channel
  affinity modulation (squeeze-excitation style: mean over tokens -> FC -> ReLU -> FC ->
  sigmoid) re-weights channels.

Maps are channels-last ``(B, H, W, C)``; sequences are sequence-first ``(L, B, K, d)`` so that the
scan reads each step as one contiguous slab (see :mod:`.selective_scan`).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from medfm.encoders.layers.selective_scan import selective_scan

Tensor = torch.Tensor

ALL_DIRECTIONS: Tuple[int, ...] = (0, 1, 2, 3)
_REDUCTIONS = ("sum", "concat")


# --------------------------------------------------------------------- cross-scan / merge
def _check_directions(directions: Sequence[int]) -> Tuple[int, ...]:
    dirs = tuple(int(d) for d in directions)
    if not dirs or any(d not in ALL_DIRECTIONS for d in dirs):
        raise ValueError(f"scan directions must be a non-empty subset of {ALL_DIRECTIONS}, got {tuple(directions)}")
    return dirs


def _as_map(seq: Tensor, height: int, width: int, direction: int) -> Tensor:
    """(L, B, d) sequence of ``direction`` (0/1 parity only) -> (B, H, W, d) view."""
    if direction % 2 == 0:
        return seq.view(height, width, *seq.shape[1:]).permute(2, 0, 1, 3)
    return seq.view(width, height, *seq.shape[1:]).permute(2, 1, 0, 3)


def _rot180(x: Tensor) -> Tensor:
    """Reverse the scan order of a (B, H, W, d) map (both reversed directions are this rotation)."""
    return x.flip(1, 2)


@torch.no_grad()
def _scan_impl(maps: Tuple[Tensor, ...], directions: Tuple[int, ...]) -> Tensor:
    """One map read along every direction, or map ``k`` along direction ``k``."""
    batch, height, width, d = maps[0].shape
    out = maps[0].new_empty(height * width, batch, len(directions), d)
    rotated = None
    for i, direction in enumerate(directions):
        src = maps[0] if len(maps) == 1 else maps[i]
        if direction >= 2:
            if len(maps) == 1:
                rotated = _rot180(src) if rotated is None else rotated
                src = rotated
            else:
                src = _rot180(src)
        _as_map(out[:, :, i], height, width, direction).copy_(src)
    return out


@torch.no_grad()
def _merge_impl(y: Tensor, height: int, width: int, directions: Tuple[int, ...], reduce: str) -> Any:
    """Inverse reading: ``sum`` -> one (B, H, W, d) map; ``concat`` -> (B, H, W, K * d);
    ``list`` -> a tuple of K (B, H, W, d) maps."""
    _, batch, k, d = y.shape
    if reduce == "sum":
        out = y.new_zeros(batch, height, width, d)
        rev = None
        for i, direction in enumerate(directions):
            m = _as_map(y[:, :, i], height, width, direction)
            if direction >= 2:
                rev = m.clone(memory_format=torch.contiguous_format) if rev is None else rev.add_(m)
            else:
                out.add_(m)
        if rev is not None:
            out.add_(_rot180(rev))
        return out
    out = y.new_empty(batch, height, width, k, d)
    for i, direction in enumerate(directions):
        m = _as_map(y[:, :, i], height, width, direction)
        out[:, :, :, i].copy_(_rot180(m) if direction >= 2 else m)
    if reduce == "list":
        return out.unbind(3)
    return out.view(batch, height, width, k * d)


class _CrossScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, directions: Tuple[int, ...], *maps: Tensor) -> Tensor:  # type: ignore[override]
        ctx.meta = (maps[0].shape[1], maps[0].shape[2], directions, len(maps))
        return _scan_impl(maps, directions)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Any, ...]:  # type: ignore[override]
        height, width, directions, n_maps = ctx.meta
        grads = _merge_impl(grad.contiguous(), height, width, directions, "sum" if n_maps == 1 else "list")
        return (None, grads) if n_maps == 1 else (None, *grads)


class _CrossMerge(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, y: Tensor, height: int, width: int, directions: Tuple[int, ...],  # type: ignore[override]
                reduce: str) -> Tensor:
        ctx.meta = (directions, reduce)
        return _merge_impl(y, height, width, directions, reduce)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, None, None, None, None]:  # type: ignore[override]
        directions, reduce = ctx.meta
        grad = grad.contiguous()
        maps = (grad,) if reduce == "sum" else tuple(grad.chunk(len(directions), dim=-1))
        return _scan_impl(maps, directions), None, None, None, None


def cross_scan(x: Union[Tensor, Sequence[Tensor]], directions: Sequence[int] = ALL_DIRECTIONS,
               shared: bool = True) -> Tensor:
    """Read channels-last maps as sequences along scan ``directions`` (differentiable).

    Args:
        x: a (B, H, W, C) map, or a list of K (B, H, W, d) maps (map ``k`` is read along
            direction ``k``).
        directions: scan directions (subset of 0-3, see module docstring), K of them.
        shared: for a single map: True: every direction reads all C channels (VMamba, d = C);
            False: direction ``k`` reads channel group ``k`` of C / K channels (GroupMamba).

    Returns:
        (H * W, B, K, d) contiguous sequences, sequence-first.

    Raises:
        ValueError: bad directions, a list of the wrong length or shapes, or C not divisible by K.
    """
    dirs = _check_directions(directions)
    if isinstance(x, torch.Tensor):
        if x.ndim != 4:
            raise ValueError(f"cross_scan expects a (B, H, W, C) map, got shape {tuple(x.shape)}")
        if not shared and x.shape[-1] % len(dirs):
            raise ValueError(f"cross_scan: {x.shape[-1]} channels cannot be split into {len(dirs)} direction groups")
        maps: Tuple[Tensor, ...] = (x,) if shared else tuple(x.chunk(len(dirs), dim=-1))
    else:
        maps = tuple(x)
        if len(maps) != len(dirs) or any(m.ndim != 4 or m.shape != maps[0].shape for m in maps):
            raise ValueError(f"cross_scan expects {len(dirs)} (B, H, W, d) maps of one shape, got "
                             f"{[tuple(m.shape) for m in maps]}")
    return _CrossScan.apply(dirs, *maps)


def cross_merge(y: Tensor, height: int, width: int, directions: Sequence[int] = ALL_DIRECTIONS,
                reduce: str = "sum") -> Tensor:
    """Put sequences from :func:`cross_scan` back on the map (differentiable adjoint of the scan).

    Args:
        y: (H * W, B, K, d) sequences, one per direction.
        height, width: map size.
        directions: the K directions ``y`` was scanned along.
        reduce: ``"sum"`` (VMamba: (B, H, W, d)) or ``"concat"`` (GroupMamba: (B, H, W, K * d)).

    Returns:
        The merged channels-last map. ``cross_merge(cross_scan(x, dirs, shared=True)) == K * x``
        and ``cross_merge(cross_scan(x, dirs, shared=False), reduce="concat") == x``.

    Raises:
        ValueError: bad directions, ``reduce`` or shapes.
    """
    dirs = _check_directions(directions)
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {_REDUCTIONS}, got {reduce!r}")
    if y.ndim != 4 or y.shape[0] != height * width or y.shape[2] != len(dirs):
        raise ValueError(
            f"cross_merge expects (H*W={height * width}, B, K={len(dirs)}, d) sequences, got shape {tuple(y.shape)}")
    return _CrossMerge.apply(y.contiguous(), int(height), int(width), dirs, reduce)


class MapLinear(nn.Linear):
    """``nn.Linear`` over the last (channel) dim; a channels-last map (B, H, W, C) runs as a
    1x1 convolution, the same function computed by oneDNN instead of BLAS.

    On the CPUs measured for medfm (AMD EPYC with MKL) the convolution is 1.5-2x faster than
    ``F.linear`` for these shapes (see benchmarks/encoders.py); other inputs use ``F.linear``.
    A subclass of ``nn.Linear``: state dicts and peft LoRA wrapping are unchanged.

    Shape: (..., in_features) -> (..., out_features).
    """

    def forward(self, x: Tensor) -> Tensor:
        """``(..., in_features)`` -> ``(..., out_features)``; same values as ``nn.Linear``.

        A 4-D channels-last CPU input ``(B, H, W, C)`` runs as a 1x1 convolution, anything else as
        ``F.linear``.
        """
        if x.ndim == 4 and x.shape[-1] == self.in_features and x.device.type == "cpu":
            return F.conv2d(x.permute(0, 3, 1, 2), self.weight[:, :, None, None], self.bias).permute(0, 2, 3, 1)
        return F.linear(x, self.weight, self.bias)


# ------------------------------------------------------------------------ shared SSM core
def init_dt_proj(layer: nn.Linear, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> None:
    """Mamba's step-size initialisation (Gu & Dao 2023, Sec. 3.6 and the reference code): weight
    uniform in +-rank^-0.5 and bias = softplus^-1(dt) with dt log-uniform in [dt_min, dt_max]."""
    std = layer.in_features ** -0.5
    with torch.no_grad():
        layer.weight.uniform_(-std, std)
        dt = torch.exp(torch.rand(layer.out_features) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_floor)
        layer.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus


class DirectionalSelectiveScan(nn.Module):
    """K selective scans over a 2D map, one per direction, each with its own S6 parameters.

    Args:
        d: channels each direction scans.
        directions: scan directions (subset of 0-3), K of them.
        shared: True: each direction reads the same d channels and outputs are summed (VMamba);
            False: direction ``k`` reads channel group ``k`` and outputs are concatenated
            (GroupMamba); the input then has K * d channels.
        d_state: SSM state size N per channel.
        dt_rank: rank of the step-size projection; "auto" = ceil(d / 16) as in Mamba.
        chunk_size: chunk size of the CPU scan (None = automatic).

    Shape:
        input (B, H, W, d) if ``shared`` else (B, H, W, K * d); output (B, H, W, d) resp.
        (B, H, W, K * d).

    LoRA-targetable linears: ``x_proj.<k>`` and ``dt_proj.<k>``.
    """

    def __init__(self, d: int, directions: Sequence[int] = ALL_DIRECTIONS, shared: bool = True, d_state: int = 1,
                 dt_rank: Any = "auto", chunk_size: Optional[int] = None) -> None:
        super().__init__()
        self.directions = _check_directions(directions)
        if d < 1 or d_state < 1:
            raise ValueError(f"d and d_state must be >= 1, got d={d}, d_state={d_state}")
        k = len(self.directions)
        self.d, self.d_state, self.shared, self.chunk_size = int(d), int(d_state), bool(shared), chunk_size
        self.dt_rank = math.ceil(d / 16) if dt_rank == "auto" else int(dt_rank)
        self.x_proj = nn.ModuleList(MapLinear(d, self.dt_rank + 2 * d_state, bias=False) for _ in range(k))
        self.dt_proj = nn.ModuleList(MapLinear(self.dt_rank, d, bias=True) for _ in range(k))
        # S4D-real initialisation A = -(1, 2, ..., N) per channel (Gu et al. 2022), D = 1
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(k * d, 1))
        self.D = nn.Parameter(torch.ones(k * d))
        self.reset_ssm_parameters()

    def reset_ssm_parameters(self) -> None:
        """(Re-)initialise the projections with Mamba's scheme (after a model-wide init)."""
        for lin in self.x_proj:
            nn.init.uniform_(lin.weight, -lin.in_features ** -0.5, lin.in_features ** -0.5)
        for lin in self.dt_proj:
            init_dt_proj(lin)
        with torch.no_grad():
            s4d_real = torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32))
            self.A_log.copy_(s4d_real.repeat(self.A_log.shape[0], 1))
            self.D.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        """Scan ``x`` (B, H, W, C) along every direction; see class docstring for shapes."""
        batch, height, width, _ = x.shape
        k, d, n, r = len(self.directions), self.d, self.d_state, self.dt_rank
        maps = [x] * k if self.shared else list(x.chunk(k, dim=-1))
        # x_proj / dt_proj act per token, so they run on the map before the scan reorders it
        proj = [self.x_proj[i](maps[i]) for i in range(k)]  # (B, H, W, R + 2N)
        u = cross_scan(x, self.directions, self.shared)  # (L, B, K, d)
        dt = cross_scan([self.dt_proj[i](p[..., :r]) for i, p in enumerate(proj)], self.directions)
        bc = cross_scan([p[..., r:] for p in proj], self.directions)  # (L, B, K, 2N)
        length = u.shape[0]
        to_bdl = lambda t: t.view(length, batch, k * d).permute(1, 2, 0)  # noqa: E731
        y = selective_scan(
            to_bdl(u), to_bdl(dt), -torch.exp(self.A_log.float()),
            bc[..., :n].permute(1, 2, 3, 0), bc[..., n:].permute(1, 2, 3, 0),
            D=self.D, delta_softplus=True, chunk_size=self.chunk_size,
        )  # (B, K * d, L) view of a sequence-first tensor
        y = y.permute(2, 0, 1).reshape(length, batch, k, d)
        return cross_merge(y, height, width, self.directions, "sum" if self.shared else "concat")


# ----------------------------------------------------------------------------- VMamba SS2D
class SS2D(nn.Module):
    """VMamba's 2D selective scan mixer (SS2D of the VSS block, Liu et al. 2024).

    ``in_proj`` (C -> d_inner) -> depthwise 3x3 conv -> SiLU -> 4-direction selective scan
    (summed) -> LayerNorm -> ``out_proj`` (d_inner -> C). This is the gate-free form VMamba
    adopts for its final models (forward type "v05_noz": the multiplicative ``z`` branch of
    Mamba is dropped).

    Args:
        dim: channels C. ssm_ratio: d_inner = ssm_ratio * C. d_state: SSM state size N.
        dt_rank: "auto" = ceil(d_inner / 16). chunk_size: CPU scan chunk size (None = auto).

    Shape: (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, dim: int, ssm_ratio: float = 1.0, d_state: int = 1, dt_rank: Any = "auto",
                 chunk_size: Optional[int] = None) -> None:
        super().__init__()
        d_inner = int(round(ssm_ratio * dim))
        self.in_proj = MapLinear(dim, d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, 3, padding=1, groups=d_inner, bias=True)
        self.act = nn.SiLU()
        self.ssm = DirectionalSelectiveScan(d_inner, ALL_DIRECTIONS, shared=True, d_state=d_state,
                                            dt_rank=dt_rank, chunk_size=chunk_size)
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = MapLinear(d_inner, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        h = self.in_proj(x)
        h = self.act(self.conv2d(h.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        return self.out_proj(self.out_norm(self.ssm(h)))


# ------------------------------------------------------------------------ GroupMamba layer
class GroupLayerNorm(nn.Module):
    """LayerNorm applied separately to ``groups`` consecutive channel groups (one LN per group).

    Shape: (..., groups * d) -> same.
    """

    def __init__(self, groups: int, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.groups, self.d, self.eps = groups, d, eps
        self.weight = nn.Parameter(torch.ones(groups, d))
        self.bias = nn.Parameter(torch.zeros(groups, d))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise each group of ``x`` (..., groups * d)."""
        shape = x.shape
        y = F.layer_norm(x.reshape(*shape[:-1], self.groups, self.d), (self.d,), eps=self.eps)
        return (y * self.weight + self.bias).reshape(shape)


class ModulatedGroupMamba(nn.Module):
    """GroupMamba's modulated group Mamba layer (Shaker et al. 2024, arXiv:2407.13772, method section).

    LayerNorm -> split C into 4 groups; group ``k``: ``in_proj.<k>`` (C/4 -> 2 e, value and gate
    ``z``) -> depthwise 3x3 conv -> SiLU -> single-direction selective scan along direction
    ``k`` -> LayerNorm -> ``* silu(z)`` -> ``out_proj.<k>`` (e -> C/4); concatenate, multiply
    by ``skip_scale * x_norm`` and by the channel affinity ``sigmoid(fc2(relu(fc1(mean(x_norm)))))``,
    LayerNorm (the same module as the input norm, as in the authors' code) and ``proj``.

    Args:
        dim: channels C (divisible by 4). ssm_ratio: e = ssm_ratio * C / 4 per group (1 in the
        paper). d_state: SSM state size (1 in the paper). reduction: channel-affinity reduction
        (16 in the paper). chunk_size: CPU scan chunk size (None = auto).

    Shape: (B, H, W, C) -> (B, H, W, C).

    Raises:
        ValueError: ``dim`` not divisible by 4.
    """

    groups = 4

    def __init__(self, dim: int, ssm_ratio: float = 1.0, d_state: int = 1, reduction: int = 16,
                 chunk_size: Optional[int] = None) -> None:
        super().__init__()
        if dim % self.groups:
            raise ValueError(f"GroupMamba needs channels divisible by {self.groups}, got {dim}")
        k, c = self.groups, dim // self.groups
        e = max(1, int(round(ssm_ratio * c)))
        self.e = e
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        hidden = max(4, dim // reduction)  # >= 4 units so that small test models keep a live ReLU
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.in_proj = nn.ModuleList(MapLinear(c, 2 * e, bias=False) for _ in range(k))
        self.conv2d = nn.Conv2d(k * e, k * e, 3, padding=1, groups=k * e, bias=True)  # = 4 depthwise convs
        self.act = nn.SiLU()
        self.ssm = DirectionalSelectiveScan(e, ALL_DIRECTIONS, shared=False, d_state=d_state, chunk_size=chunk_size)
        self.out_norm = GroupLayerNorm(k, e)
        self.out_proj = nn.ModuleList(MapLinear(e, c, bias=False) for _ in range(k))
        self.skip_scale = nn.Parameter(torch.ones(1))
        self.proj = MapLinear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        k, e = self.groups, self.e
        x = self.norm(x)
        c = x.shape[-1] // k
        affinity = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(1, 2))))))  # (B, C)
        xz = [self.in_proj[i](x[..., i * c:(i + 1) * c]) for i in range(k)]  # (B, H, W, 2e) each
        h = torch.cat([t[..., :e] for t in xz], dim=-1)
        z = torch.cat([t[..., e:] for t in xz], dim=-1)
        h = self.act(self.conv2d(h.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        y = self.out_norm(self.ssm(h)) * F.silu(z)  # (B, H, W, 4e)
        y = torch.cat([self.out_proj[i](y[..., i * e:(i + 1) * e]) for i in range(k)], dim=-1)
        y = y * (self.skip_scale * x) * affinity[:, None, None, :]
        return self.proj(self.norm(y))


__all__ = [
    "ALL_DIRECTIONS", "DirectionalSelectiveScan", "GroupLayerNorm", "MapLinear", "ModulatedGroupMamba", "SS2D",
    "cross_merge", "cross_scan", "init_dt_proj",
]
