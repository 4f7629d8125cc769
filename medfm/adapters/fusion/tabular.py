"""Tabular encoder for clinical/genomic tables whose values may be missing (NaN).

Each feature ``f`` becomes a token ``z_f * w_f + b_f`` (the numerical feature tokenizer of
FT-Transformer, Gorishniy et al., NeurIPS 2021) where ``z_f`` is the value standardised with
training statistics; a missing value (NaN) is replaced by a learned per-feature **missing
token** ``m_f`` instead of an imputed number. ``missing="zero"`` is the zero-fill variant used
by the late-fusion baseline (NaN -> raw value 0, no missing token).
"""
from __future__ import annotations

import torch
from torch import nn

from medfm.arg_checks import check_number

TABULAR_MISSING = ("token", "zero")


class TabularEncoder(nn.Module):
    """Per-feature value embedding + learned missing token, mean-pooled to one vector.

    Args:
        num_features: F table columns.
        dim: token / embedding size D.
        missing: "token" (NaN -> learned missing token) or "zero" (NaN -> 0, zero-fill baseline).

    Shape:
        ``tokens(x)``: ``(B, F)`` float (NaN = missing) -> ``(B, F, D)``;
        ``forward(x)``: -> ``(B, D)``.

    The standardisation statistics are buffers (saved with the weights); set them from the
    training table with :meth:`set_statistics`.

    Raises:
        ValueError: unknown ``missing`` mode, ``num_features`` or ``dim`` not an integer >= 1
            (:func:`medfm.arg_checks.check_number`); inputs not ``(B, F)`` or holding inf.
    """

    def __init__(self, num_features: int, dim: int, missing: str = "token") -> None:
        super().__init__()
        if missing not in TABULAR_MISSING:
            raise ValueError(f"unknown tabular missing mode {missing!r}; use one of {TABULAR_MISSING}")
        num_features = check_number("num_features", num_features, ge=1, integer=True)
        dim = check_number("dim", dim, ge=1, integer=True)
        self.num_features, self.dim, self.missing = num_features, dim, missing
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        self.weight = nn.Parameter(torch.randn(num_features, dim) * 0.1)
        self.bias = nn.Parameter(torch.randn(num_features, dim) * 0.1)
        self.missing_token = nn.Parameter(torch.randn(num_features, dim) * 0.1) if missing == "token" else None
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())

    @torch.no_grad()
    def set_statistics(self, values: torch.Tensor) -> None:
        """Set mean/std from a ``(N, F)`` table with NaN (columns with no value or zero spread get 0 / 1)."""
        v = torch.as_tensor(values, dtype=torch.float32)
        self._check(v)
        ok = ~torch.isnan(v)
        cnt = ok.sum(0).clamp(min=1)
        mean = torch.where(ok, v, 0).sum(0) / cnt
        var = (torch.where(ok, v - mean, 0) ** 2).sum(0) / cnt
        std = var.sqrt()
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"tabular input must be (B, {self.num_features}), got shape {tuple(x.shape)}")
        if torch.isinf(x).any():
            raise ValueError("tabular input holds inf; missing values must be NaN")

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, F)`` with NaN -> ``(B, F, D)`` feature tokens."""
        x = x.float()
        self._check(x)
        nan = torch.isnan(x)
        raw = torch.where(nan, torch.zeros_like(x), x)
        if self.missing == "zero":
            z = (raw - self.mean) / self.std
            return z[..., None] * self.weight + self.bias
        z = torch.where(nan, torch.zeros_like(x), (raw - self.mean) / self.std)
        tok = z[..., None] * self.weight + self.bias
        return torch.where(nan[..., None], self.missing_token.expand_as(tok), tok)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, F)`` with NaN -> ``(B, D)`` pooled embedding."""
        return self.out(self.tokens(x).mean(dim=1))
