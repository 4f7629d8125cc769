"""Kolmogorov-Arnold layers built on one shared basis expansion.

A KAN layer (Liu et al., "KAN: Kolmogorov-Arnold Networks", 2024) learns a univariate
function per (input, output) edge. Written as ``phi(x) = sum_b c_b B_b(x)`` over a fixed
basis ``B_b``, the layer is a basis expansion of every input feature followed by one
ordinary linear map over the expanded features, which is what makes the "efficient KANs"
about as cheap as an MLP:

* Chebyshev basis (ChebyKAN, SS et al., "Chebyshev Polynomial-Based Kolmogorov-Arnold
  Networks", arXiv 2405.07200): ``T_n(tanh(x))``; the fastest basis measured here.
* Gaussian RBF basis (FastKAN, Z. Li, "Kolmogorov-Arnold Networks are Radial Basis
  Function Networks", arXiv 2405.06721): ``exp(-((x - g_j) / h) ** 2)`` on a fixed grid,
  with FastKAN's SiLU base branch.
* Convolution (Drokin, "Kolmogorov-Arnold Convolutions: Design Principles and Empirical
  Studies", arXiv 2407.01092): the same expansion of every channel followed by an
  ordinary ``nn.Conv2d`` over the expanded channels.

Because the learned coefficients live in a plain ``nn.Linear``/``nn.Conv2d`` named
``coeff`` (and ``base`` for the base branch), peft LoRA can wrap them.

The constant basis function (``T_0 = 1``) is folded into the bias of ``coeff``: for the
linear layer this is exactly the same function class with one fewer basis column per
input; for the convolution it differs only in the zero-padded border.
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, Mapping, Optional, Tuple, Type, Union

import torch
from torch import nn
from torch.nn import functional as F

from medfm.arg_checks import number_fits, shown
from medfm.encoders.checks import EncoderArgumentError, check_int
from medfm.registry import close_match_hint

BasisSpec = Union[str, Mapping[str, Any]]


class BasisExpansion(nn.Module):
    """Elementwise basis expansion ``x -> (B_1(x), ..., B_K(x))`` (abstract).

    Subclasses set ``num_basis`` and implement :meth:`expand`.

    Class attributes:
        base_branch: whether KAN layers using this basis add the ``base(SiLU(x))`` branch
            by default (FastKAN does, ChebyKAN does not).
    """

    num_basis: int = 0
    base_branch: bool = False

    def expand(self, x: torch.Tensor) -> list:
        """The ``num_basis`` tensors ``B_k(x)``, each shaped like ``x``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Expand ``x`` elementwise and stack the basis values in a new axis after ``dim``.

        Shape: ``(..., F, ...)`` -> ``(..., F, K, ...)`` with ``K = num_basis`` placed right
        after axis ``dim`` (``dim=-1``: ``(..., F)`` -> ``(..., F, K)``), so flattening
        ``(F, K)`` gives feature-major columns ``f * K + k``.
        """
        dim = dim % x.ndim
        return torch.stack(self.expand(x), dim=dim + 1)


class ChebyshevBasis(BasisExpansion):
    """Chebyshev polynomials ``T_1 .. T_degree`` of ``tanh(x)`` (ChebyKAN, arXiv 2405.07200).

    ``tanh`` maps any input to (-1, 1), the domain of the polynomials. ``T_0 = 1`` is left
    out (the KAN layer's bias plays its role). Computed with the three-term recurrence
    ``T_{n+1} = 2 t T_n - T_{n-1}`` (no ``acos``, whose gradient is infinite at +-1).

    Args:
        degree: highest polynomial degree (>= 1); ``num_basis == degree``.

    Raises:
        EncoderArgumentError: ``degree`` not an integer >= 1 (``2.0`` and ``True`` are refused too).
    """

    base_branch = False

    def __init__(self, degree: int = 3) -> None:
        super().__init__()
        self.degree = check_int("Chebyshev degree", degree)
        self.num_basis = self.degree

    def expand(self, x: torch.Tensor) -> list:
        """``[T_1(tanh x), ..., T_degree(tanh x)]``, each shaped and typed like ``x``, values in (-1, 1)."""
        t = torch.tanh(x)
        out = [t]
        prev, cur = torch.ones_like(t), t
        for _ in range(self.degree - 1):
            prev, cur = cur, 2 * t * cur - prev
            out.append(cur)
        return out

    def extra_repr(self) -> str:
        """The polynomial degree, for the module's ``repr``."""
        return f"degree={self.degree}"


class GaussianRBFBasis(BasisExpansion):
    """Gaussian radial basis ``exp(-((x - g_j) / h) ** 2)`` on a uniform grid (FastKAN).

    Follows FastKAN (arXiv 2405.06721): ``num_grids`` centres ``g_j`` evenly spaced on
    ``grid_range``, width ``h`` = grid spacing. Inputs should be roughly standardised
    (FastKAN applies LayerNorm first; see ``KANLinear(input_norm=True)``).

    Args:
        num_grids: number of centres (>= 2); ``num_basis == num_grids``.
        grid_range: (min, max) of the centres, min < max.

    Raises:
        EncoderArgumentError: ``num_grids`` not an integer >= 2, or ``grid_range`` not two finite
            numbers ``(min, max)`` with min < max.
    """

    base_branch = True

    def __init__(self, num_grids: int = 8, grid_range: Tuple[float, float] = (-2.0, 2.0)) -> None:
        super().__init__()
        num_grids = check_int("RBF num_grids", num_grids, minimum=2)
        if not isinstance(grid_range, (list, tuple)) or len(grid_range) != 2 \
                or not all(number_fits(v) for v in grid_range) or not float(grid_range[0]) < float(grid_range[1]):
            raise EncoderArgumentError(f"RBF grid_range must be two finite numbers (min, max) with min < max, "
                                       f"got {shown(grid_range)}")
        lo, hi = (float(v) for v in grid_range)
        self.num_basis = num_grids
        self.grid_range = (lo, hi)
        self.register_buffer("grid", torch.linspace(lo, hi, self.num_basis), persistent=False)
        self.inv_width = (self.num_basis - 1) / (hi - lo)

    def expand(self, x: torch.Tensor) -> list:
        """``[exp(-((x - g_j) / h) ** 2) for each centre g_j]``, each shaped like ``x``, values in (0, 1]."""
        return [torch.exp(-((x - g) * self.inv_width) ** 2) for g in self.grid.to(x.dtype).unbind(0)]

    def extra_repr(self) -> str:
        """Number of centres and the grid range, for the module's ``repr``."""
        return f"num_grids={self.num_basis}, grid_range={self.grid_range}"


BASES: Dict[str, Type[BasisExpansion]] = {"chebyshev": ChebyshevBasis, "rbf": GaussianRBFBasis}


def create_basis(spec: BasisSpec = "chebyshev", arg: str = "basis") -> BasisExpansion:
    """Build a basis expansion from a name or a mapping ``{"name": ..., **arguments}``.

    Examples: ``"chebyshev"`` (degree 3), ``{"name": "chebyshev", "degree": 2}``,
    ``{"name": "rbf", "num_grids": 6}``; a mapping without ``"name"`` is a Chebyshev basis.
    The encoders call it with their argument's name (``arg="kan"``) when they are built, so a bad
    spec is refused then, in one line that :func:`medfm.encoders.create_encoder` prefixes with the
    encoder's name: ``kan_resnet18: kan: unknown KAN basis 'chebyshv'; did you mean 'chebyshev'?
    (known: chebyshev, rbf)``.

    Args:
        spec: the basis name or mapping.
        arg: the argument's name in messages (``"basis"`` for the layers, ``"kan"`` for the encoders).

    Raises:
        EncoderArgumentError (a ``ValueError``): one line starting with ``arg``: a spec that is neither
            a name nor a mapping (a module instance included: every layer builds its own basis), an
            unknown basis name or basis argument (both with "did you mean" and what is known), or a
            bad value (``kan: RBF num_grids must be an integer >= 2, got 1``).
    """
    known = ", ".join(BASES)
    if isinstance(spec, str):
        name, args = spec, {}
    elif isinstance(spec, Mapping):
        args = dict(spec)
        name = args.pop("name", "chebyshev")
    else:
        why = " (every layer builds its own basis)" if isinstance(spec, BasisExpansion) else ""
        raise EncoderArgumentError(f"{arg} must be a KAN basis name ({known}) or a mapping "
                                   f"{{'name': ..., **arguments}}{why}, got {shown(spec)}")
    if not isinstance(name, str) or name not in BASES:
        hint = close_match_hint(name, list(BASES), n=2, cutoff=0.4, fallback=None)
        raise EncoderArgumentError(f"{arg}: unknown KAN basis {name!r}{hint} (known: {known})")
    takes = list(inspect.signature(BASES[name]).parameters)
    unknown = [k for k in args if k not in takes]
    if unknown:
        which = f"the {name!r} KAN basis" + ("" if isinstance(spec, str) or "name" in spec else
                                               " (the default: no 'name' given)")
        raise EncoderArgumentError(f"{arg}: {which} takes no argument {unknown[0]!r}"
                                   f"{close_match_hint(unknown[0], takes, fallback=None)} "
                                   f"(it takes: {', '.join(takes)})")
    try:
        return BASES[name](**args)
    except EncoderArgumentError as err:
        raise EncoderArgumentError(f"{arg}: {err}") from None


class KANLinear(nn.Module):
    """Kolmogorov-Arnold linear layer: ``y = coeff(phi(norm(x))) [+ base(SiLU(x))]``.

    ``phi`` expands each of the ``in_features`` inputs into ``K`` basis values (see
    :class:`ChebyshevBasis`, :class:`GaussianRBFBasis`); ``coeff`` is an ``nn.Linear``
    from ``in_features * K`` to ``out_features`` holding the spline coefficients, so
    ``phi_{o,i}(x_i) = sum_k coeff.weight[o, i * K + k] * B_k(x_i)`` (+ bias).
    Cost: ``K`` times an ``nn.Linear(in, out)`` plus the elementwise expansion.

    Args:
        in_features, out_features: feature sizes.
        basis: basis name or mapping (see :func:`create_basis`); default Chebyshev, degree 3.
        input_norm: apply LayerNorm before the expansion (FastKAN does; use it when the
            input is not already normalised).
        base_branch: add FastKAN's residual ``nn.Linear`` on ``SiLU(x)``; None follows the
            basis default (RBF: yes, Chebyshev: no).

    Shape: ``(..., in_features)`` -> ``(..., out_features)``.

    Raises:
        EncoderArgumentError: bad basis spec (:func:`create_basis`).
        ValueError: an input whose last axis is not ``in_features``.
    """

    def __init__(self, in_features: int, out_features: int, basis: BasisSpec = "chebyshev",
                 input_norm: bool = False, base_branch: Optional[bool] = None) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.basis = create_basis(basis)
        self.norm = nn.LayerNorm(self.in_features) if input_norm else nn.Identity()
        self.coeff = nn.Linear(self.in_features * self.basis.num_basis, self.out_features)
        use_base = self.basis.base_branch if base_branch is None else bool(base_branch)
        self.base = nn.Linear(self.in_features, self.out_features, bias=False) if use_base else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_features)`` float -> ``(..., out_features)``.

        Raises:
            ValueError: the last axis is not ``in_features``.
        """
        if x.shape[-1] != self.in_features:
            raise ValueError(f"KANLinear expects {self.in_features} input features in the last axis, "
                             f"got shape {tuple(x.shape)}")
        y = self.coeff(self.basis(self.norm(x), dim=-1).flatten(-2))
        if self.base is not None:
            y = y + self.base(F.silu(x))
        return y

    def extra_repr(self) -> str:
        """Feature sizes, for the module's ``repr``."""
        return f"in_features={self.in_features}, out_features={self.out_features}"


class KANConv2d(nn.Module):
    """Kolmogorov-Arnold convolution (Drokin 2024, arXiv 2407.01092).

    Each input channel is expanded into ``K`` basis channels, then one ordinary
    ``nn.Conv2d`` (``coeff``) maps the ``C_in * K`` channels to ``C_out``; with a base
    branch (RBF default) a second conv acts on ``SiLU(x)``. Channel layout after the
    expansion is channel-major (``c * K + k``), so ``groups`` keeps each group's basis
    channels together.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias:
            as ``nn.Conv2d``.
        basis: basis name or mapping (see :func:`create_basis`).
        base_branch: add ``Conv2d(SiLU(x))``; None follows the basis default.

    Shape: ``(B, C_in, H, W)`` -> ``(B, C_out, H', W')`` with ``nn.Conv2d``'s size rule.

    Raises:
        EncoderArgumentError: bad basis spec (:func:`create_basis`).
        ValueError: an input that is not ``(B, in_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, Tuple[int, int]],
                 stride: Union[int, Tuple[int, int]] = 1, padding: Union[int, Tuple[int, int]] = 0,
                 dilation: Union[int, Tuple[int, int]] = 1, groups: int = 1, bias: bool = True,
                 basis: BasisSpec = "chebyshev", base_branch: Optional[bool] = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.basis = create_basis(basis)
        geometry = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups)
        self.coeff = nn.Conv2d(self.in_channels * self.basis.num_basis, self.out_channels, bias=bias, **geometry)
        use_base = self.basis.base_branch if base_branch is None else bool(base_branch)
        self.base = nn.Conv2d(self.in_channels, self.out_channels, bias=False, **geometry) if use_base else None

    @classmethod
    def like(cls, conv: nn.Conv2d, basis: BasisSpec = "chebyshev",
             base_branch: Optional[bool] = None) -> "KANConv2d":
        """A KAN convolution with the geometry (channels, kernel, stride, padding, dilation,
        groups, bias) of an existing ``nn.Conv2d``; its weights are not copied."""
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                   conv.dilation, conv.groups, conv.bias is not None, basis=basis, base_branch=base_branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` float -> ``(B, C_out, H', W')`` (``nn.Conv2d`` size rule).

        Raises:
            ValueError: the input is not 4-D or has not ``in_channels`` channels.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"KANConv2d expects (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        y = self.coeff(self.basis(x, dim=1).flatten(1, 2))
        if self.base is not None:
            y = y + self.base(F.silu(x))
        return y

    def extra_repr(self) -> str:
        """Channel counts, for the module's ``repr``."""
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"


__all__ = ["BasisExpansion", "ChebyshevBasis", "GaussianRBFBasis", "BASES", "create_basis",
           "KANLinear", "KANConv2d"]
