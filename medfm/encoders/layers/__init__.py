"""Reusable building layers for medfm encoders (each family file composes these)."""
from medfm.encoders.layers.kan import KANConv2d, KANLinear, create_basis  # noqa: F401
from medfm.encoders.layers.neighborhood_attention import (NeighborhoodAttention2D,  # noqa: F401
                                                          neighborhood_attention_2d)
from medfm.encoders.layers.selective_scan import selective_scan_chunked, selective_scan_ref  # noqa: F401
from medfm.encoders.layers.ss2d import SS2D, ModulatedGroupMamba, cross_merge, cross_scan  # noqa: F401
