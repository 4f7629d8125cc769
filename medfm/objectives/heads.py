"""Projection heads for self-supervised objectives."""
from __future__ import annotations

from torch import nn

from medfm.objectives.inputs import check_arg


class ProjectionHead(nn.Sequential):
    """SimCLR-style MLP projection head (Chen et al. 2020): Linear-BN-ReLU-...-Linear.

    Maps ``(B, in_dim)`` embeddings to ``(B, out_dim)`` projections.

    Args:
        in_dim: encoder embedding size, integer >= 1.
        hidden_dim: width of the hidden layers, integer >= 1 (checked also when ``num_layers == 1``).
        out_dim: projection size, integer >= 1.
        num_layers: number of Linear layers, integer >= 1.

    Raises:
        ValueError: a size or ``num_layers`` that is not an integer >= 1 (one line naming it).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128, num_layers: int = 2) -> None:
        in_dim, hidden_dim, out_dim, num_layers = (check_arg("ProjectionHead", n, v, ge=1, integer=True) for n, v in (
            ("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim), ("num_layers", num_layers)))
        layers = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        super().__init__(*layers)
