"""KAN-augmented hybrid CNN-transformer encoders after MedViTV2.

MedViTV2 (Manzari et al., "Medical Vision Transformer V2? KAN-integrated ...",
arXiv 2502.13693) is a hierarchical hybrid of

* **LFP** (Local Feature Perception) blocks: a depthwise/pointwise convolution unit for
  locality, then neighbourhood attention (NA) and an MLP;
* **GFP** (Global Feature Perception) blocks: dilated neighbourhood attention (DiNA) and a
  Kolmogorov-Arnold (KAN) feed-forward.

This re-implementation keeps that structure with our own choices (from the paper's
description, not its code):

* conv stem (two 3x3 conv-BN-ReLU) with total stride 2 (<= 32 px) or 4 (larger, as
  MedViT; :func:`medvit_stem_stride`), then 4 stages; stages 2-4 start with a 3x3 stride-2
  conv-BN. At 28 px the stage maps are 14/7/4/2, at 64 px 16/8/4/2, at 224 px 56/28/14/7.
* early stages use LFP blocks only; stage 3 alternates LFP and GFP (NA and DiNA alternate
  as in DiNAT); stage 4 is GFP only.
* NA kernel 7 (clamped to small maps); DiNA takes the largest dilation that fits the map
  (DiNAT's sparse-global setting); on maps of side < 2 * kernel that is dilation 1, and
  on maps no larger than the kernel it is global attention (always the case at 28 px).
* the KAN feed-forward is applied per token over channels on ``(B, H, W, C)`` tokens:
  ``KANLinear(C, r*C) -> KANLinear(r*C, C)`` with a Chebyshev basis (degree 3) by default,
  ``r = 1``, which costs about as much as an MLP with ratio 3 (the reference code's KAN
  acts on an unpermuted reshape of a BCHW tensor, whose rows are not per-pixel channel
  vectors; its "dilated" attention sets no dilation; neither defect is copied here).

Input ``(B, in_chans, H, W)`` in [0, 1]; ``forward_features`` gives ``(B, C_4, H/s, W/s)``;
``forward_intermediates`` one map per stage.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Tuple

import torch
from timm.layers import DropPath, Mlp
from torch import nn

from medfm.encoders.base import Encoder
from medfm.encoders.checks import (EncoderArgumentError, check_int, check_positive, check_rate, check_ratio_widths,
                                   check_stage_ints, replace_config)
from medfm.encoders.layers.kan import BasisSpec, KANLinear, create_basis
from medfm.encoders.layers.neighborhood_attention import BACKENDS, NeighborhoodAttention2D
from medfm.encoders.timm_encoders import stem_stride
from medfm.registry import ENCODERS, close_match_hint


@dataclass(frozen=True)
class MedViTKANConfig:
    """Architecture of a MedViT-KAN encoder.

    Attributes:
        dims: channels of the 4 stages.
        blocks: per stage, a string of block kinds, ``"L"`` (LFP) or ``"G"`` (GFP).
        head_dim: channels per attention head (heads = dim // head_dim, at least 1).
        kernel_size: odd neighbourhood size of NA and DiNA.
        mlp_ratio: hidden/input channels of the LFP MLP.
        kan_ratio: hidden/input channels of the GFP KAN feed-forward.
        kan: KAN basis, a name or ``{"name": ..., **args}`` (see ``create_basis``).
        drop_path_rate: stochastic depth, linearly increasing to this value.
        attn_backend: neighbourhood attention backend (``"auto"``, ``"sdpa"``, ``"natten"``).

    Raises:
        EncoderArgumentError (a ``ValueError``): dims not 4 integers >= 1, blocks not 4 strings of
            ``L``/``G``, an even or non-integer kernel_size, a head_dim whose head count does not divide
            a stage width, ratios that give no hidden channel, drop_path_rate not a number in [0, 1)
            (:mod:`medfm.encoders.checks`), an unknown attn_backend (with "did you mean"), a bad ``kan``
            basis spec (:func:`~medfm.encoders.layers.kan.create_basis`: unknown name or argument with
            "did you mean", a bad degree or grid).
    """

    dims: Tuple[int, int, int, int]
    blocks: Tuple[str, str, str, str]
    head_dim: int = 32
    kernel_size: int = 7
    mlp_ratio: float = 3.0
    kan_ratio: float = 1.0
    kan: BasisSpec = "chebyshev"
    drop_path_rate: float = 0.0
    attn_backend: str = "auto"

    def __post_init__(self) -> None:
        check_stage_ints("dims", self.dims, hint=" (stage widths)")
        if isinstance(self.blocks, str) or not isinstance(self.blocks, (list, tuple)) or len(self.blocks) != 4 \
                or any(not isinstance(s, str) or not s or set(s) - {"L", "G"} for s in self.blocks):
            raise EncoderArgumentError(f"blocks must be 4 non-empty strings of 'L' (LFP) / 'G' (GFP) blocks, one per "
                                       f"stage, e.g. ['LL', 'LL', 'LGLG', 'GG'], got {self.blocks!r}")
        check_int("kernel_size", self.kernel_size, odd=True)
        check_int("head_dim", self.head_dim)
        for dim in self.dims:
            heads = max(1, dim // self.head_dim)
            if dim % heads:
                raise EncoderArgumentError(
                    f"head_dim must give a head count (width // head_dim) that divides every stage width of dims "
                    f"{tuple(self.dims)}, got {self.head_dim} ({heads} heads at width {dim})")
        for name, kind in (("mlp_ratio", "L"), ("kan_ratio", "G")):  # LFP MLPs, GFP KAN feed-forwards
            ratio = check_positive(name, getattr(self, name))
            check_ratio_widths(name, ratio, [d for d, stage in zip(self.dims, self.blocks) if kind in stage])
        check_rate("drop_path_rate", self.drop_path_rate)
        if self.attn_backend not in BACKENDS:
            raise EncoderArgumentError(f"unknown attn_backend {self.attn_backend!r}"
                                       f"{close_match_hint(self.attn_backend, BACKENDS)}")
        create_basis(self.kan, arg="kan")  # validates the basis spec early


def medvit_stem_stride(img_size: int) -> int:
    """Total stem stride: twice :func:`~medfm.encoders.timm_encoders.stem_stride`, at most 4
    (MedViT's stem): 2 for <= 32 px, else 4.

    Stage-1 neighbourhood attention runs as dense masked attention on CPU, whose cost grows
    with the square of the token count (at 28x28 about 8x a 3x3 convolution of the same
    width, see benchmarks/kan_layers.py), so 28 px inputs start at 14x14 (stages
    14/7/4/2); 64 px gives 16/8/4/2 and 224 px 56/28/14/7.
    """
    return min(4, 2 * (stem_stride(img_size) or 2))


def _conv_bn(cin: int, cout: int, stride: int, act: bool = True) -> nn.Sequential:
    layers: List[nn.Module] = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class LocalPerception(nn.Module):
    """Depthwise 3x3 conv -> BN -> GELU -> pointwise 1x1 conv (the LFP locality unit).

    Shape: ``(B, C, H, W)`` -> ``(B, C, H, W)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.act = nn.GELU()
        self.pw = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``: depthwise 3x3 conv, BN, GELU, pointwise 1x1 conv."""
        return self.pw(self.act(self.bn(self.dw(x))))


class KANFeedForward(nn.Module):
    """Token-wise KAN feed-forward: ``KANLinear(C, hidden) -> KANLinear(hidden, C)``.

    Acts on the channel vector of every token; the second layer layer-normalises its
    input first (FastKAN's input norm).

    Shape: ``(..., C)`` -> ``(..., C)``.
    """

    def __init__(self, dim: int, hidden: int, basis: BasisSpec = "chebyshev") -> None:
        super().__init__()
        self.kan1 = KANLinear(dim, hidden, basis=basis)
        self.kan2 = KANLinear(hidden, dim, basis=basis, input_norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., C)`` -> ``(..., C)`` through the two KAN layers.

        Raises:
            ValueError: the last axis is not ``C`` (from :class:`KANLinear`).
        """
        return self.kan2(self.kan1(x))


class PerceptionBlock(nn.Module):
    """Residual block ``x + local(x)``, then pre-norm ``attn`` and ``ffn`` on ``(B, H, W, C)`` tokens.

    Subclasses choose the three parts. Shape: ``(B, C, H, W)`` -> ``(B, C, H, W)``.
    """

    local: nn.Module
    attn: nn.Module
    ffn: nn.Module

    def __init__(self, dim: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``: ``x + local(x)``, then ``attn`` and ``ffn`` on channels-last tokens."""
        x = x + self.drop_path(self.local(x))
        t = x.permute(0, 2, 3, 1)  # (B, H, W, C): per-pixel channel vectors
        t = t + self.drop_path(self.attn(self.norm1(t)))
        t = t + self.drop_path(self.ffn(self.norm2(t)))
        return t.permute(0, 3, 1, 2)


class LFPBlock(PerceptionBlock):
    """Local Feature Perception: conv locality unit, neighbourhood attention, MLP (GELU)."""

    def __init__(self, dim: int, cfg: MedViTKANConfig, drop_path: float = 0.0) -> None:
        super().__init__(dim, drop_path)
        self.local = LocalPerception(dim)
        self.attn = NeighborhoodAttention2D(dim, max(1, dim // cfg.head_dim), cfg.kernel_size, dilation=1,
                                            backend=cfg.attn_backend)
        self.ffn = Mlp(dim, int(dim * cfg.mlp_ratio), act_layer=nn.GELU)


class GFPBlock(PerceptionBlock):
    """Global Feature Perception: depthwise-conv position encoding, dilated neighbourhood
    attention (largest dilation that fits the map), KAN feed-forward."""

    def __init__(self, dim: int, cfg: MedViTKANConfig, drop_path: float = 0.0) -> None:
        super().__init__(dim, drop_path)
        self.local = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.attn = NeighborhoodAttention2D(dim, max(1, dim // cfg.head_dim), cfg.kernel_size, dilation=None,
                                            backend=cfg.attn_backend)
        self.ffn = KANFeedForward(dim, int(dim * cfg.kan_ratio), basis=cfg.kan)


class MedViTKAN(Encoder):
    """MedViTV2-style hybrid encoder with neighbourhood attention and KAN feed-forwards.

    Args:
        cfg: architecture (:class:`MedViTKANConfig`).
        in_chans: 1 or 3 input channels.
        img_size: nominal square input side (sets the stem stride); any input >= 8 px works.

    Shape: ``(B, in_chans, H, W)`` float in [0, 1] -> ``forward``: ``(B, dims[-1])``.

    Raises:
        ValueError: bad ``in_chans``/``img_size`` or config.
        EncoderInputError: bad input tensors (see :meth:`Encoder.check_input`).
    """

    family = "kan"
    lora_target_modules = r".*\.(qkv|proj|fc1|fc2|coeff|base)"

    def __init__(self, cfg: MedViTKANConfig, in_chans: int = 3, img_size: int = 224) -> None:
        super().__init__(in_chans, img_size)
        self.arch = cfg
        stride = medvit_stem_stride(img_size)
        width = cfg.dims[0]
        self.stem = nn.Sequential(_conv_bn(in_chans, width // 2 or 1, 2 if stride >= 2 else 1),
                                  _conv_bn(width // 2 or 1, width, 2 if stride >= 4 else 1))
        total = sum(len(s) for s in cfg.blocks)
        rates = torch.linspace(0, cfg.drop_path_rate, total).tolist() if total > 1 else [0.0]
        self.stages = nn.ModuleList()
        idx, prev = 0, width
        for i, (dim, kinds) in enumerate(zip(cfg.dims, cfg.blocks)):
            down = nn.Identity() if i == 0 and prev == dim else _conv_bn(prev, dim, 1 if i == 0 else 2, act=False)
            layers: List[nn.Module] = [down]
            for kind in kinds:
                block = LFPBlock if kind == "L" else GFPBlock
                layers.append(block(dim, cfg, drop_path=rates[idx]))
                idx += 1
            self.stages.append(nn.Sequential(*layers))
            prev = dim
        self.norm = nn.BatchNorm2d(prev)
        self.num_features = prev

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def _intermediates(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem(x)
        maps = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            maps.append((self.norm(x) if i == len(self.stages) - 1 else x).contiguous())
        return maps


def _builder(base: MedViTKANConfig):
    def build(in_chans: int = 3, img_size: int = 224, **overrides: Any) -> Encoder:
        cfg = replace_config(base, overrides, "MedViT-KAN")
        return MedViTKAN(cfg, in_chans=in_chans, img_size=img_size)
    build.__doc__ = f"MedViT-KAN encoder with {base}; keyword overrides replace config fields."
    return build


#: CPU training throughput at 28 px relative to resnet18 (benchmarks/kan_layers.py, B=64, 1 thread):
#: tiny (10.1M parameters) 1.46x fp32 / 0.92x bf16; small (25.7M) 0.62x fp32 / 0.50x bf16.
TINY = MedViTKANConfig(dims=(64, 128, 256, 512), blocks=("LL", "LL", "LGLG", "GG"))
SMALL = MedViTKANConfig(dims=(96, 192, 384, 768), blocks=("LL", "LL", "LGLGLG", "GG"), drop_path_rate=0.1)
TEST = MedViTKANConfig(dims=(16, 16, 32, 32), blocks=("L", "L", "LG", "G"), head_dim=16, kernel_size=3,
                       mlp_ratio=2.0, kan={"name": "chebyshev", "degree": 2})

ENCODERS.register("medvit_kan_tiny", family="kan")(_builder(TINY))
ENCODERS.register("medvit_kan_small", family="kan")(_builder(SMALL))
ENCODERS.register("medvit_kan_test", family="kan", test=True)(_builder(TEST))
