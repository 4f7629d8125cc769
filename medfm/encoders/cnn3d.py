"""3D (volume) encoders behind the medfm encoder contract.

timm has no 3D models, so the family ``"cnn3d"`` wraps MONAI's 3D ResNet
(``monai.networks.nets.ResNet``, after Hara et al., "Can Spatiotemporal 3D CNNs Retrace
the History of 2D CNNs and ImageNet?", CVPR 2018, and MedicalNet, Chen et al. 2019)
with the small-input stem rule medfm uses in 2D (:func:`medfm.encoders.timm_encoders.stem_stride`):
a 3x3x3 stride-1 stem without max-pooling for volumes <= 32 voxels a side, stride 2 for
<= 64, else MONAI's 7x7x7 stride-2 stem with max-pooling.

The contract is the 2D one with one more axis: inputs ``(B, C, D, H, W)`` float in [0, 1]
(the encoder normalises them), ``forward_features`` -> ``(B, D_f, d, h, w)``, ``forward``
-> ``(B, num_features)``, ``forward_intermediates`` -> ``[(B, C_i, D_i, H_i, W_i), ...]``
finest first, ``spatial_dims == 3``. Registered entries carry the tag ``dims=3`` so
registry-wide 2D tests can skip them (``list_encoders(test=True)`` then filter on
``ENCODERS.tags(name).get("dims", 2)``).
"""
from __future__ import annotations

from typing import Any, List, Sequence

import torch
from torch import nn

from medfm.encoders.base import Encoder
from medfm.encoders.checks import check_int, check_stage_ints
from medfm.encoders.timm_encoders import stem_stride
from medfm.registry import ENCODERS


class Encoder3D(Encoder):
    """Base class of volume encoders: the :class:`Encoder` contract on ``(B, C, D, H, W)``.

    Args:
        in_chans, img_size, mean, std: as :class:`Encoder`; ``img_size`` is the cube side
            the encoder is built for (it accepts any side >= 8 unless ``fixed_size``).

    Raises:
        ValueError: bad ``in_chans``/``img_size``/``mean``/``std``.
    """

    spatial_dims = 3


class ResNet3D(Encoder3D):
    """MONAI's 3D ResNet (basic blocks) with a small-volume stem.

    Args:
        layers: blocks per stage (``[1, 1, 1, 1]`` = ResNet-10, ``[2, 2, 2, 2]`` = ResNet-18).
        base_width: channels of the first stage; stages have ``w, 2w, 4w, 8w``.
        in_chans, img_size: as :class:`Encoder3D`.
        norm: MONAI norm name for the blocks ("batch" or "instance").

    Shape: ``(B, in_chans, D, H, W)`` in [0, 1] -> ``forward_features`` ``(B, 8w, D/8s, H/8s, W/8s)``
    with ``s`` the stem stride; ``forward_intermediates``: stem, stage 1..4 maps
    (stem and stage 1 share a resolution when there is no max-pooling).

    Raises:
        EncoderArgumentError (a ``ValueError``): ``layers`` not 4 integers >= 1, ``base_width`` not an
            integer >= 1 (:mod:`medfm.encoders.checks`).
        ValueError: an unknown ``norm``.
    """

    family = "cnn3d"
    lora_target_modules = r".*\.(conv\d|downsample\.0)"

    def __init__(self, layers: Sequence[int] = (1, 1, 1, 1), base_width: int = 32, in_chans: int = 1,
                 img_size: int = 32, norm: str = "batch", **kwargs: Any) -> None:
        layers = check_stage_ints("layers", layers, hint=" (blocks per stage)")
        base_width = check_int("base_width", base_width)
        if norm not in ("batch", "instance"):
            raise ValueError(f"norm must be 'batch' or 'instance', got {norm!r}")
        from monai.networks.nets import ResNet

        super().__init__(in_chans, img_size)
        stride = stem_stride(img_size)
        widths = [base_width * m for m in (1, 2, 4, 8)]
        self.model = ResNet("basic", list(layers), widths, spatial_dims=3, n_input_channels=in_chans,
                            conv1_t_size=3 if stride is not None else 7, conv1_t_stride=stride or 2,
                            no_max_pool=stride is not None, feed_forward=False, norm=norm, **kwargs)
        self.model.avgpool = nn.Identity()
        self.num_features = widths[-1]

    def _stages(self, x: torch.Tensor) -> List[torch.Tensor]:
        m = self.model
        x = m.act(m.bn1(m.conv1(x)))
        maps = [x]
        if not m.no_max_pool:
            x = m.maxpool(x)
        for stage in (m.layer1, m.layer2, m.layer3, m.layer4):
            x = stage(x)
            maps.append(x)
        return maps

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self._stages(x)[-1]

    def _intermediates(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self._stages(x)


def _resnet3d(layers: Sequence[int], base_width: int):
    def build(in_chans: int = 1, img_size: int = 32, **kw: Any) -> Encoder:
        kw.setdefault("layers", layers)  # overridable, as base_width
        kw.setdefault("base_width", base_width)
        return ResNet3D(in_chans=in_chans, img_size=img_size, **kw)
    build.__doc__ = f"MONAI 3D ResNet with {list(layers)} blocks, base width {base_width} (see :class:`ResNet3D`)."
    return build


ENCODERS.register("resnet3d_10", family="cnn3d", dims=3)(_resnet3d((1, 1, 1, 1), 32))
ENCODERS.register("resnet3d_18", family="cnn3d", dims=3)(_resnet3d((2, 2, 2, 2), 64))
ENCODERS.register("resnet3d_test", family="cnn3d", dims=3, test=True)(_resnet3d((1, 1, 1, 1), 4))
