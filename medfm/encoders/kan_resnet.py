"""ResNets whose 3x3 convolutions are Kolmogorov-Arnold convolutions.

Follows Drokin ("Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies",
arXiv 2407.01092): each KAN convolution expands every input channel in a Chebyshev basis
of ``tanh(x)`` and applies one ordinary ``nn.Conv2d`` over the expanded channels
(:class:`medfm.encoders.layers.kan.KANConv2d`). The network is timm's ResNet (He et al.
2016) with :class:`KANBasicBlock`: both 3x3 convolutions of every basic block are KAN
convolutions and the ReLU between them is dropped (the learned basis functions are the
non-linearity); stem, 1x1 shortcuts, BatchNorms and the ReLU after the residual sum stay.

Default basis: Chebyshev degree 2 (two basis channels per input channel): twice ResNet-18's
convolution FLOPs, and about 0.45x its CPU training throughput at 28 px (fp32 and bf16;
see benchmarks/kan_layers.py); pass
``kan={"name": "chebyshev", "degree": 3}`` or ``kan="rbf"`` to change it. The small-image
stem rule and timm plumbing are those of :class:`medfm.encoders.timm_encoders.TimmResNet`.
"""
from __future__ import annotations

from typing import Any, Optional

from timm.models.resnet import BasicBlock
from torch import nn

from medfm.encoders.base import Encoder
from medfm.encoders.layers.kan import BasisSpec, KANConv2d, create_basis
from medfm.encoders.timm_encoders import TimmResNet
from medfm.registry import ENCODERS

DEFAULT_BASIS = {"name": "chebyshev", "degree": 2}


class KANBasicBlock(BasicBlock):
    """timm's ResNet basic block with both 3x3 convolutions replaced by :class:`KANConv2d`.

    ``x -> KANConv -> BN -> KANConv -> BN -> (+ shortcut) -> ReLU``; takes timm's
    ``BasicBlock`` arguments plus ``kan`` (basis spec, see ``create_basis``).

    Shape: ``(B, inplanes, H, W)`` -> ``(B, planes, H / stride, W / stride)``.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 kan: BasisSpec = "chebyshev", **kwargs: Any) -> None:
        super().__init__(inplanes, planes, stride, downsample, **kwargs)
        self.conv1 = KANConv2d.like(self.conv1, basis=kan)
        self.conv2 = KANConv2d.like(self.conv2, basis=kan)
        self.act1 = nn.Identity()


class KANResNet(TimmResNet):
    """A timm ResNet built from :class:`KANBasicBlock` (small-image stem for <= 64 px).

    Args:
        arch: timm ResNet architecture whose layout is reused (e.g. ``"resnet18"``).
        in_chans, img_size: as :class:`TimmResNet`.
        kan: KAN basis spec (default Chebyshev degree 2).

    Shape: ``(B, in_chans, H, W)`` in [0, 1] -> ``forward_features`` ``(B, 512, H/s, W/s)``
    for resnet18 (s = 8 at 28 px).

    Raises:
        EncoderArgumentError (a ``ValueError``): a bad ``kan`` basis spec (unknown name or argument, with
            "did you mean"; a bad degree or grid), refused before the network is built
            (:func:`~medfm.encoders.layers.kan.create_basis`), or a bad ``in_chans``/``img_size``.
    """

    family = "kan"
    # peft wraps nn.Linear/nn.Conv2d only: target the KAN coefficient convs (and the base-branch
    # convs of bases that have one, e.g. RBF). The plain stem conv and 1x1 shortcut convs are not
    # targeted (unlike resnet18's default); pass LoraSettings(target_modules=...) to add them.
    lora_target_modules = r".*\.(coeff|base)"

    def __init__(self, arch: str, in_chans: int = 3, img_size: int = 224, kan: Optional[BasisSpec] = None,
                 **kwargs: Any) -> None:
        kan = DEFAULT_BASIS if kan is None else kan
        create_basis(kan, arg="kan")  # validate before building, naming the argument
        super().__init__(arch, in_chans=in_chans, img_size=img_size, block=KANBasicBlock,
                         block_args={"kan": kan}, **kwargs)


def _kan_resnet(arch: str):
    def build(in_chans: int = 3, img_size: int = 224, **kw: Any) -> Encoder:
        return KANResNet(arch, in_chans=in_chans, img_size=img_size, **kw)
    build.__doc__ = f"KAN ResNet on timm's {arch!r} layout (see :class:`KANResNet`)."
    return build


ENCODERS.register("kan_resnet18", family="kan", timm_arch="resnet18")(_kan_resnet("resnet18"))
ENCODERS.register("kan_resnet_test", family="kan", test=True, timm_arch="test_resnet")(_kan_resnet("test_resnet"))
