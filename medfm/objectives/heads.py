"""Projection heads for self-supervised objectives."""
from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Sequential):
    """SimCLR-style MLP projection head (Chen et al. 2020): Linear-BN-ReLU-...-Linear.

    Maps ``(B, in_dim)`` embeddings to ``(B, out_dim)`` projections.

    Args:
        in_dim: encoder embedding size.
        hidden_dim: width of the hidden layers.
        out_dim: projection size.
        num_layers: number of Linear layers (>= 1).

    Raises:
        ValueError: ``num_layers < 1`` or non-positive sizes.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128, num_layers: int = 2) -> None:
        if num_layers < 1 or min(in_dim, hidden_dim, out_dim) < 1:
            raise ValueError(f"bad projection head sizes in={in_dim} hidden={hidden_dim} out={out_dim} layers={num_layers}")
        layers = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        super().__init__(*layers)
