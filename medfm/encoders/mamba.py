"""Mamba (selective state space) encoders: VMamba and GroupMamba.

* **VMamba** (Liu et al., "VMamba: Visual State Space Model", NeurIPS 2024): hierarchical
  4-stage network of VSS blocks ``x + SS2D(LN(x))``, ``x + MLP(LN(x))``; SS2D scans the map
  along four directions with a selective scan (:class:`medfm.encoders.layers.ss2d.SS2D`).
* **GroupMamba** (Shaker et al., "GroupMamba: Parameter-Efficient and Accurate Group Visual
  State Space Model", arXiv:2407.13772, 2024): the same hierarchy with the modulated group Mamba layer
  (four channel groups, one scan direction each, channel affinity modulation;
  :class:`medfm.encoders.layers.ss2d.ModulatedGroupMamba`) and a feed-forward with a
  depthwise conv (PVTv2's FFN), as in the authors' code.

Shared choices (ours, stated here):

* stem: two 3x3 convs (C/2 then C, LayerNorm, GELU), VMamba's "v2" patch embedding, with a
  total stride from :func:`medfm.encoders.timm_encoders.stem_stride`: 1 (<= 32 px), 2
  (<= 64 px), else 4. Stage maps are 28/14/7/4 at 28 px, 32/16/8/4 at 64 px, 56/28/14/7 at
  224 px, like ResNet-18 with medfm's small-image stem. GroupMamba's deeper 7x7 conv-BN stem
  and its class-token post-network are not reproduced (the embedding is the mean of the
  normed last map, as VMamba's classifier does).
* downsampling between stages: 3x3 stride-2 conv + LayerNorm (VMamba "v3" / GroupMamba).
* d_state = 1 and ssm_ratio = 1: VMamba cuts the state size from 16 to 1 in its faster v2
  configurations and GroupMamba's code uses d_state = 1 (and expand 1); with N = 1 the scan
  state is no larger than its input, which keeps the CPU scan cheap. ``d_state`` and
  ``ssm_ratio`` are config fields.
* any input size >= 8 works (no position embeddings); ``img_size`` only sets the stem stride.

Input ``(B, in_chans, H, W)`` in [0, 1]; ``forward_features`` gives ``(B, C_4, h, w)``;
``forward_intermediates`` one ``(B, C_i, H_i, W_i)`` map per stage.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import torch
from timm.layers import DropPath, trunc_normal_
from torch import nn

from medfm.encoders.base import Encoder
from medfm.encoders.checks import (EncoderArgumentError, check_int, check_positive, check_rate, check_ratio_widths,
                                   check_stage_ints, check_stage_positive, replace_config)
from medfm.encoders.layers.ss2d import SS2D, DirectionalSelectiveScan, MapLinear, ModulatedGroupMamba
from medfm.encoders.timm_encoders import stem_stride
from medfm.registry import ENCODERS, close_match_hint

MIXERS = ("vmamba", "groupmamba")


@dataclass(frozen=True)
class MambaConfig:
    """Architecture of a Mamba encoder.

    Attributes:
        mixer: ``"vmamba"`` (SS2D, four directions over all channels) or ``"groupmamba"``
            (modulated group layer, one direction per channel quarter).
        dims: channels of the 4 stages (divisible by 4 for GroupMamba).
        depths: blocks per stage.
        mlp_ratios: feed-forward hidden/input channels per stage.
        d_state: SSM state size N.
        ssm_ratio: inner/outer channels of the selective scan.
        drop_path_rate: stochastic depth, linearly increasing to this value.
        chunk_size: CPU selective-scan chunk size (None = automatic).

    Raises:
        EncoderArgumentError (a ``ValueError``): an unknown mixer (with "did you mean"), dims/depths not 4
            integers >= 1, GroupMamba dims not divisible by 4, mlp_ratios not 4 numbers > 0, a non-integer
            d_state or chunk_size, ratios that give no hidden/inner channel, drop_path_rate not a number in
            [0, 1) (:mod:`medfm.encoders.checks`).
    """

    mixer: str
    dims: Tuple[int, int, int, int]
    depths: Tuple[int, int, int, int]
    mlp_ratios: Tuple[float, float, float, float] = (4.0, 4.0, 4.0, 4.0)
    d_state: int = 1
    ssm_ratio: float = 1.0
    drop_path_rate: float = 0.0
    chunk_size: Optional[int] = None

    def __post_init__(self) -> None:
        if self.mixer not in MIXERS:
            raise EncoderArgumentError(f"unknown Mamba mixer {self.mixer!r}{close_match_hint(self.mixer, MIXERS)}")
        check_stage_ints("dims", self.dims, hint=" (stage widths)")
        check_stage_ints("depths", self.depths, hint=" (blocks per stage)")
        check_stage_positive("mlp_ratios", self.mlp_ratios, hint=" (one per stage)")
        if self.mixer == "groupmamba" and any(d % 4 for d in self.dims):
            raise EncoderArgumentError(f"dims must be stage widths divisible by 4 for GroupMamba, got {self.dims}")
        check_int("d_state", self.d_state)
        check_positive("ssm_ratio", self.ssm_ratio)
        check_ratio_widths("mlp_ratios", self.mlp_ratios, self.dims)
        if self.mixer == "vmamba":  # GroupMamba keeps at least one inner channel per group
            check_ratio_widths("ssm_ratio", self.ssm_ratio, self.dims, to_int=round, what="inner channel")
        check_rate("drop_path_rate", self.drop_path_rate)
        if self.chunk_size is not None:
            check_int("chunk_size", self.chunk_size, hint=" or None (automatic)")


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of a ``(B, C, H, W)`` map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``, normalised over the C channels of each position."""
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class FeedForward(nn.Module):
    """Token-wise MLP ``fc1 -> [depthwise 3x3 conv] -> GELU -> fc2`` on ``(B, H, W, C)``.

    With ``dwconv`` it is PVTv2's convolutional FFN (Wang et al. 2022) used by GroupMamba.
    """

    def __init__(self, dim: int, hidden: int, dwconv: bool = False) -> None:
        super().__init__()
        self.fc1 = MapLinear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden) if dwconv else None
        self.act = nn.GELU()
        self.fc2 = MapLinear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` channels-last map -> ``(B, H, W, C)``."""
        h = self.fc1(x)
        if self.dwconv is not None:
            h = self.dwconv(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(self.act(h))


class MambaBlock(nn.Module):
    """Residual block on ``(B, H, W, C)``: ``x + mixer(x)``, ``x + ffn(LN(x))``.

    VMamba: ``mixer = SS2D(LN(x))`` (pre-norm, plain MLP). GroupMamba: the modulated group
    layer normalises its own input; the FFN has a depthwise conv.
    """

    def __init__(self, dim: int, cfg: MambaConfig, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        if cfg.mixer == "vmamba":
            self.norm1: nn.Module = nn.LayerNorm(dim)
            self.mixer: nn.Module = SS2D(dim, cfg.ssm_ratio, cfg.d_state, chunk_size=cfg.chunk_size)
        else:
            self.norm1 = nn.Identity()
            self.mixer = ModulatedGroupMamba(dim, cfg.ssm_ratio, cfg.d_state, chunk_size=cfg.chunk_size)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, int(dim * mlp_ratio), dwconv=cfg.mixer == "groupmamba")
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` channels-last map -> ``(B, H, W, C)`` (two residual branches)."""
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.ffn(self.norm2(x)))


class Downsample(nn.Module):
    """3x3 stride-2 conv + LayerNorm: ``(B, H, W, C_in)`` -> ``(B, ceil(H/2), ceil(W/2), C_out)``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C_in)`` -> ``(B, ceil(H/2), ceil(W/2), C_out)``, channels last."""
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


def _stem(in_chans: int, width: int, stride: int) -> nn.Sequential:
    hidden = max(1, width // 2)
    return nn.Sequential(
        nn.Conv2d(in_chans, hidden, 3, stride=2 if stride >= 2 else 1, padding=1),
        LayerNorm2d(hidden), nn.GELU(),
        nn.Conv2d(hidden, width, 3, stride=2 if stride >= 4 else 1, padding=1),
    )


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MambaEncoder(Encoder):
    """Hierarchical VMamba / GroupMamba encoder (see module docstring).

    Args:
        cfg: architecture (:class:`MambaConfig`).
        in_chans: 1 or 3 input channels.
        img_size: nominal square input side; sets the stem stride (any input >= 8 px works).

    Shape: ``(B, in_chans, H, W)`` float in [0, 1] -> ``forward``: ``(B, dims[-1])``.

    Raises:
        ValueError: bad ``in_chans``/``img_size`` or config.
        EncoderInputError: bad input tensors (see :meth:`Encoder.check_input`).
    """

    family = "mamba"
    #: the selective-scan projections: ``in_proj``/``out_proj`` and per direction ``x_proj.<k>``/
    #: ``dt_proj.<k>`` (VMamba); GroupMamba has ``in_proj.<k>``/``out_proj.<k>`` per channel group and
    #: the mixer's output ``proj`` (set per instance in ``__init__``). Both also adapt each block's
    #: FFN ``ffn.fc1``/``ffn.fc2``, as the ViT and MedViT patterns do their MLPs: the FFNs hold about
    #: 70 % of the weights, and without them LoRA adapted 21 % (VMamba) / 7 % (GroupMamba) of the
    #: encoder's linear and convolution weights against 80-100 % for the other families.
    lora_target_modules = r".*\.(in_proj|out_proj|x_proj\.\d+|dt_proj\.\d+|ffn\.fc[12])"
    _GROUP_LORA = r".*\.((in_proj|out_proj|x_proj|dt_proj)\.\d+|mixer\.proj|ffn\.fc[12])"

    def __init__(self, cfg: MambaConfig, in_chans: int = 3, img_size: int = 224) -> None:
        super().__init__(in_chans, img_size)
        self.arch = cfg
        if cfg.mixer == "groupmamba":
            self.lora_target_modules = self._GROUP_LORA
        self.stem = _stem(in_chans, cfg.dims[0], stem_stride(img_size) or 4)
        self.stem_norm = nn.LayerNorm(cfg.dims[0])
        total = sum(cfg.depths)
        rates = torch.linspace(0, cfg.drop_path_rate, total).tolist() if total > 1 else [cfg.drop_path_rate]
        self.stages = nn.ModuleList()
        idx, prev = 0, cfg.dims[0]
        for i, (dim, depth, ratio) in enumerate(zip(cfg.dims, cfg.depths, cfg.mlp_ratios)):
            layers: List[nn.Module] = [nn.Identity() if i == 0 else Downsample(prev, dim)]
            layers += [MambaBlock(dim, cfg, ratio, rates[idx + j]) for j in range(depth)]
            idx += depth
            self.stages.append(nn.Sequential(*layers))
            prev = dim
        self.norm = nn.LayerNorm(prev)
        self.num_features = prev
        self.apply(_init_weights)
        for m in self.modules():
            if isinstance(m, DirectionalSelectiveScan):
                m.reset_ssm_parameters()

    def _stages(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem_norm(self.stem(x).permute(0, 2, 3, 1))  # channels-last from here on
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        outs[-1] = self.norm(outs[-1])
        return outs

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self._stages(x)[-1].permute(0, 3, 1, 2)

    def _intermediates(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [m.permute(0, 3, 1, 2).contiguous() for m in self._stages(x)]


def _builder(base: MambaConfig):
    def build(in_chans: int = 3, img_size: int = 224, **overrides: Any) -> Encoder:
        cfg = replace_config(base, overrides, "Mamba encoder")
        return MambaEncoder(cfg, in_chans=in_chans, img_size=img_size)
    build.__doc__ = f"Mamba encoder with {base}; keyword overrides replace config fields."
    return build


#: sized to ResNet-18's cost at 28 px: depths 2-2-5-2 as VMamba's "tiny s2l5" model, widths 64-512 as
#: ResNet-18: 11.1 M parameters and 0.92 GFLOPs/image (ResNet-18 with the stride-1 stem: 11.2 M, 0.91);
#: the paper's VMamba-T is dims 96, depths 2-2-8-2.
VMAMBA_TINY = MambaConfig(mixer="vmamba", dims=(64, 128, 256, 512), depths=(2, 2, 5, 2))
#: GroupMamba-T's proportions (depths 3-4-9-3 -> 2-3-6-2, MLP ratios 8-8-4-4) scaled to ResNet-18's cost
#: at 28 px: 10.0 M parameters, 0.94 GFLOPs/image. The paper's GroupMamba-T (dims 64-128-348-448, depths
#: 3-4-9-3) costs 2.4x that: ``create_encoder("groupmamba_tiny", dims=..., depths=...)`` rebuilds it.
GROUPMAMBA_TINY = MambaConfig(mixer="groupmamba", dims=(48, 96, 256, 448), depths=(2, 3, 6, 2),
                              mlp_ratios=(8.0, 8.0, 4.0, 4.0))
VMAMBA_TEST = MambaConfig(mixer="vmamba", dims=(16, 32, 32, 48), depths=(1, 1, 1, 1), mlp_ratios=(2.0,) * 4)
GROUPMAMBA_TEST = MambaConfig(mixer="groupmamba", dims=(16, 32, 32, 48), depths=(1, 1, 1, 1), mlp_ratios=(2.0,) * 4)

ENCODERS.register("vmamba_tiny", family="mamba")(_builder(VMAMBA_TINY))
ENCODERS.register("groupmamba_tiny", family="mamba")(_builder(GROUPMAMBA_TINY))
ENCODERS.register("vmamba_test", family="mamba", test=True)(_builder(VMAMBA_TEST))
ENCODERS.register("groupmamba_test", family="mamba", test=True)(_builder(GROUPMAMBA_TEST))
