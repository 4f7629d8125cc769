"""timm-backed CNN and ViT encoders (ResNet, ConvNeXt, ViT) with small-image stems.

timm's ImageNet stems downsample by 4 before the first stage, which collapses 28 px
MedMNIST images to 1x1 at the last stage. As in the MedMNIST v2 benchmark code
(Yang et al., Scientific Data 2023, "ResNet-18 (28)"), small inputs use a 3x3 stride-1
stem without max-pooling (<= 32 px) or a stride-2 stem (<= 64 px); ViTs pick a patch
size that gives a 7x7 to 14x14 token grid.

That stem is the default only: an argument that chooses timm's stem (:data:`TIMM_STEM_ARGS`:
ConvNeXt ``patch_size``, ResNet/ConvNeXt ``stem_type``) keeps timm's stem at every size, as an
explicit ViT ``patch_size`` replaces the automatic one. (The small-image stem used to replace
it regardless, so ``patch_size`` did nothing at <= 64 px but shift timm's stage strides, and
a ResNet ``stem_type='deep'`` became one 3x3 conv.) A ConvNeXt whose stem and stage
downsampling (no padding) would leave no pixel at ``img_size`` is refused when it is built,
and inputs smaller than that are refused in forward (``Encoder.min_input_size``).
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional

import timm
import torch
from torch import nn

from medfm.encoders.base import Encoder, min_side_after_convs
from medfm.encoders.checks import (EncoderArgumentError, check_int, check_no_empty_layers, check_positive,
                                   check_rate, check_ratio_widths, check_stage_ints)
from medfm.registry import ENCODERS


def stem_stride(img_size: int) -> Optional[int]:
    """Stride of the small-image stem for ``img_size`` px, or None for timm's default stem."""
    if img_size <= 32:
        return 1
    if img_size <= 64:
        return 2
    return None


def vit_patch_size(img_size: int, patch_size: Optional[int] = None) -> int:
    """Patch size that suits ``img_size``: 4 (<= 32 px), 8 (<= 64 px), else 16; or ``patch_size``
    when given, once checked.

    Raises:
        EncoderArgumentError (a ``ValueError``): ``patch_size`` is not an integer >= 1, or ``img_size``
            is not a multiple of the patch size (timm would crop the border silently, or fail at the
            first forward).
    """
    auto = 4 if img_size <= 32 else 8 if img_size <= 64 else 16
    if patch_size is None:
        if img_size % auto:
            raise EncoderArgumentError(f"img_size={img_size} is not a multiple of the ViT patch size {auto}; use an "
                                       f"img_size that is a multiple of {auto} or pass a patch_size that "
                                       f"divides {img_size}")
        return auto
    patch = check_int("patch_size", patch_size)
    if img_size % patch:
        default = "" if img_size % auto else f" (the default for it is {auto})"
        raise EncoderArgumentError(f"patch_size must divide img_size={img_size}{default}, got {patch}")
    return patch


def timm_weights_source(arch: str) -> Dict[str, Any]:
    """Where timm's pretrained weights for ``arch`` come from, checked before timm downloads.

    The weights' safetensors file already in the Hugging Face cache is used directly (as
    timm's ``pretrained_cfg_overlay={"file": ...}``, no network); otherwise one quick hub
    request checks that the weights can be fetched. Without it an offline machine waits
    about 50 s in huggingface_hub's retries before failing.

    Returns:
        ``{"file": path}`` for a cached file, ``{}`` when timm should download.

    Raises:
        RuntimeError: not cached and the hub cannot be reached (the message says how to
        work offline), or ``arch`` has no pretrained weights on the hub.
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    hub_id = getattr(cfg, "hf_hub_id", None)
    if not hub_id:
        return {}  # weights from a URL or nowhere: timm reports it
    from huggingface_hub import HfApi, try_to_load_from_cache

    cached = try_to_load_from_cache(hub_id, getattr(cfg, "hf_hub_filename", None) or "model.safetensors")
    if isinstance(cached, str):
        return {"file": cached}
    try:
        HfApi().model_info(hub_id, timeout=10)
    except Exception as err:  # offline, DNS, auth, unknown repo
        raise RuntimeError(
            f"could not fetch timm's pretrained weights for {arch!r} from the Hugging Face hub ({hub_id}; "
            f"{type(err).__name__}). Offline, pass pretrained=None or a local medfm checkpoint directory, or "
            f"download them elsewhere with `hf download {hub_id}` into the Hugging Face cache."
        ) from None
    return {}


#: timm keywords medfm sets itself: an encoder is a headless feature extractor
RESERVED_TIMM_ARGS = ("num_classes", "features_only", "pretrained", "pretrained_cfg_overlay")


#: timm's dropout / stochastic-depth rates; each must be a probability in [0, 1)
TIMM_RATE_ARGS = ("drop_rate", "drop_path_rate", "attn_drop_rate", "proj_drop_rate", "pos_drop_rate")

#: timm's per-stage lists (ResNet ``layers``/``channels``, ConvNeXt ``depths``/``dims``): 4 integers >= 1
#: each (both families have 4 stages; timm does not check the length)
TIMM_STAGE_ARGS = {"layers": "blocks per stage", "channels": "stage widths", "depths": "blocks per stage",
                   "dims": "stage widths"}

#: timm's size arguments: integers >= 1 (timm builds ViT ``depth: 0``, which fails in forward, and divides
#: by ``num_heads``; ``embed_dim`` is left to timm, whose error is caught below). ``patch_size`` is not one:
#: the ViT and ConvNeXt classes check it, and a ResNet, which has none, is refused as not taking it
TIMM_SIZE_ARGS = ("depth", "num_heads", "stem_width", "base_width", "cardinality")

#: timm's width ratios: finite numbers > 0 (one too small for a layer's width is refused after the build)
TIMM_RATIO_ARGS = ("mlp_ratio",)

#: timm arguments that choose the stem (ConvNeXt ``patch_size``, ResNet/ConvNeXt ``stem_type``): given
#: one, the encoder keeps timm's stem at every ``img_size``; medfm's small-image stem (:func:`stem_stride`)
#: replaces timm's only when none is given (it ignored them at <= 64 px)
TIMM_STEM_ARGS = ("patch_size", "stem_type")


def uses_timm_stem(kwargs: Dict[str, Any]) -> bool:
    """True when ``kwargs`` choose timm's stem (one of :data:`TIMM_STEM_ARGS` is given), so the
    small-image stem must not replace it."""
    return any(k in kwargs for k in TIMM_STEM_ARGS)


def check_timm_args(kwargs: Dict[str, Any]) -> None:
    """The checks of :func:`_timm_create` on timm architecture arguments, before timm sees them:
    :data:`TIMM_RATE_ARGS`, :data:`TIMM_STAGE_ARGS`, :data:`TIMM_SIZE_ARGS`, :data:`TIMM_RATIO_ARGS`
    and ConvNeXt's ``kernel_sizes`` (one odd size or 4). Arguments not given are not checked.

    Raises:
        EncoderArgumentError: e.g. ``layers must be 4 integers >= 1 (blocks per stage), got [1, 1]`` or
            ``drop_path_rate must be in [0, 1), got 5.0`` (timm takes a bad rate and fails at the first
            training step).
    """
    for key in TIMM_RATE_ARGS:
        if key in kwargs:
            check_rate(key, kwargs[key])
    for key, what in TIMM_STAGE_ARGS.items():
        if key in kwargs:
            check_stage_ints(key, kwargs[key], hint=f" ({what})")
    for key in TIMM_SIZE_ARGS:
        if key in kwargs:
            check_int(key, kwargs[key])
    for key in TIMM_RATIO_ARGS:
        if key in kwargs:
            check_positive(key, kwargs[key])
    sizes = kwargs.get("kernel_sizes")
    if isinstance(sizes, (list, tuple)):
        check_stage_ints("kernel_sizes", sizes, odd=True, hint=" (one per stage) or one odd integer")
    elif sizes is not None:
        check_int("kernel_sizes", sizes, odd=True, hint=" (or 4 of them, one per stage)")


def _timm_create(arch: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """``timm.create_model(arch, num_classes=0, **kwargs)``, headless, with medfm's argument checks.

    Raises:
        UnknownArgumentError: a reserved argument (``num_classes``, ``features_only``, ...).
        ValueError: arguments timm cannot build the model with (``embed_dim: -4``, ``num_heads`` not
            dividing the width): one line naming the architecture and the arguments.
        EncoderArgumentError (a ``ValueError``): a bad rate, stage list, size or ratio (:func:`check_timm_args`),
            arguments that give a zero-width layer (``mlp_ratio: 0.001``), or a ``stem_width``
            that timm ignores (a ResNet without a deep stem).
        RuntimeError: timm's pretrained weights cannot be fetched (the message says how to work offline).
    """
    reserved = [k for k in RESERVED_TIMM_ARGS if k in kwargs]
    if reserved:
        from medfm.registry import UnknownArgumentError

        raise UnknownArgumentError(
            f"{', '.join(reserved)} cannot be set on a medfm encoder: encoders are headless feature "
            "extractors (timm num_classes=0). Add a head with medfm.adapters.ImageClassifier, take "
            "unpooled features from encoder.forward_features, and pass pretrained='timm' or a "
            "checkpoint to create_encoder")
    check_timm_args(kwargs)
    if pretrained:
        source = timm_weights_source(arch)
        if source:
            kwargs["pretrained_cfg_overlay"] = source
    shown = {k: v for k, v in kwargs.items() if k not in ("in_chans", "img_size", "patch_size",
                                                          "pretrained_cfg_overlay")}
    try:
        with warnings.catch_warnings():  # zero-width layers are refused below, in one line
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
            model = timm.create_model(arch, pretrained=pretrained, num_classes=0, **kwargs)
    except (OSError, RuntimeError, AssertionError, ValueError, ZeroDivisionError) as err:  # hub, weights; bad args
        if not pretrained or not isinstance(err, (OSError, RuntimeError)):
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"timm cannot build {arch!r} with {shown or 'its defaults'}: {first}") from None
        raise RuntimeError(
            f"could not fetch timm's pretrained weights for {arch!r} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). Offline, pass pretrained=None or a local "
            "medfm checkpoint directory instead."
        ) from None
    check_no_empty_layers(model, f"the arguments {shown} of timm {arch!r}")
    if "stem_width" in kwargs and isinstance(getattr(model, "conv1", None), nn.Conv2d):  # timm ignored it
        raise EncoderArgumentError(f"stem_width={kwargs['stem_width']!r} has no effect on timm {arch!r}: its stem is "
                                   f"one 64-channel conv; stem_width sets a deep stem's width (stem_type 'deep' "
                                   f"or 'deep_tiered')")
    return model


class TimmEncoder(Encoder):
    """Shared plumbing for timm-backed encoders: ``self.model`` is a headless timm model.

    ``forward`` pools with timm's own ``forward_head(pre_logits=True)`` so that head-side
    layers (ConvNeXt's final norm, ViT's class-token pooling) are part of the embedding.
    """

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def _pool(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(feats, pre_logits=True)

    def _intermediates(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.model.forward_intermediates(x, intermediates_only=True)


class TimmResNet(TimmEncoder):
    """A timm ResNet (He et al. 2016) with a small-image stem for <= 64 px inputs (timm's own stem
    when ``stem_type`` is given, see :data:`TIMM_STEM_ARGS`).

    Input ``(B, in_chans, H, W)`` in [0, 1]; ``forward_features`` gives ``(B, D, H/s, W/s)``.
    """

    family = "cnn"
    lora_target_modules = r".*\.(conv\d|downsample\.0)"

    def __init__(self, arch: str, in_chans: int = 3, img_size: int = 224, timm_pretrained: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(in_chans, img_size)
        self.model = _timm_create(arch, timm_pretrained, in_chans=in_chans, **kwargs)
        stride = stem_stride(img_size)
        if stride is not None and not uses_timm_stem(kwargs):
            width = self.model.bn1.num_features  # also right for timm's deep (Sequential) stems
            self.model.conv1 = nn.Conv2d(in_chans, width, 3, stride=stride, padding=1, bias=False)
            self.model.maxpool = nn.Identity()
        self.num_features = self.model.num_features


class TimmConvNeXt(TimmEncoder):
    """A timm ConvNeXt (Liu et al. 2022) with a stride-1/2 stem for <= 64 px inputs.

    Without a stem argument, inputs <= 32 px get a 3x3 stride-1 stem and <= 64 px a 2x2 stride-2
    one (:func:`stem_stride`); larger ones timm's 4x4 patch stem. An explicit ``patch_size`` (or
    ``stem_type``) keeps timm's stem at every size (:data:`TIMM_STEM_ARGS`), so
    ``patch_size=4`` at 64 px is timm's patch-4 stem (stage maps 16/8/4/2), ``patch_size=1`` at
    28 px a 1x1 stem (28/14/7/3). timm sets the stage strides from the stem's (``patch_size=2``
    makes stage 1 downsample too, and past ``output_stride`` 32 it dilates instead).

    Input ``(B, in_chans, H, W)`` in [0, 1], ``H, W >= min_input_size`` (8 with the 3x3 stride-1
    small-image stem, 16 with the 2x2 stride-2 one, 32 with timm's patch-4 stem: the product of the
    stem's and the 3 stride-2 downsamplings' strides, as these convolutions have no padding); ``forward_features`` gives
    ``(B, D, h, w)``.

    Raises:
        EncoderArgumentError (a ``ValueError``): a ``patch_size`` (timm's stem patch) that is not an
            integer >= 1, does not divide ``img_size`` (the border would be cropped, as for a ViT), or
            has no effect (a ``stem_type`` other than ``'patch'``); stem arguments that leave no pixel
            at the last stage at ``img_size`` (``patch_size=4`` at 28 px); a bad timm argument
            (:func:`check_timm_args`).
    """

    family = "cnn"
    lora_target_modules = r".*\.mlp\.fc[12]"

    def __init__(self, arch: str, in_chans: int = 3, img_size: int = 224, timm_pretrained: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(in_chans, img_size)
        if "patch_size" in kwargs:  # timm's stem patch (a float or str was a TypeError inside torch)
            patch = kwargs["patch_size"] = check_int("patch_size", kwargs["patch_size"])
            if img_size % patch:
                raise EncoderArgumentError(f"patch_size must divide img_size={img_size}, got {patch}")
        self.model = _timm_create(arch, timm_pretrained, in_chans=in_chans, **kwargs)
        stem = self.model.stem[0]
        if "patch_size" in kwargs and (stem.kernel_size[0], stem.stride[0]) != (patch, patch):
            raise EncoderArgumentError(f"patch_size={patch} has no effect with stem_type="
                                       f"{kwargs.get('stem_type')!r}: only timm's 'patch' stem has a patch size "
                                       "(its overlapping stems are 3x3 stride-2 convolutions)")
        stride = stem_stride(img_size)
        if stride is not None and not uses_timm_stem(kwargs):
            width = stem.out_channels
            kernel = 3 if stride == 1 else 2
            self.model.stem[0] = nn.Conv2d(in_chans, width, kernel, stride=stride,
                                           padding=kernel // 2 if stride == 1 else 0)
        downsampling = [m for part in (self.model.stem, *(s.downsample for s in self.model.stages))
                        for m in part.modules() if isinstance(m, nn.Conv2d)]
        self.min_input_size = max(8, min_side_after_convs(downsampling))
        if img_size < self.min_input_size:
            given = [k for k in TIMM_STEM_ARGS if k in kwargs] or list(TIMM_STEM_ARGS)
            raise EncoderArgumentError(
                f"{', '.join(f'{k}={kwargs.get(k)!r}' for k in given)} needs img_size >= {self.min_input_size} (the "
                f"stem and the stages' stride-2 downsampling leave no pixel at the last stage below that), got "
                f"img_size={img_size}; leave {' and '.join(given)} unset for medfm's small-image stem")
        self.num_features = self.model.num_features


class TimmViT(TimmEncoder):
    """A timm Vision Transformer (Dosovitskiy et al. 2021) with an input-suited patch size.

    Input ``(B, in_chans, img_size, img_size)`` in [0, 1] (fixed size: learned position
    embeddings); ``forward_features`` gives ``(B, 1 + N, D)`` tokens (class token first);
    ``forward`` returns the class token after the final norm.

    Raises:
        EncoderArgumentError (a ``ValueError``): a ``patch_size`` that does not divide ``img_size``
            (:func:`vit_patch_size`), an ``mlp_ratio`` that gives no hidden channel, or a bad timm
            argument (:func:`check_timm_args`).
    """

    family = "vit"
    lora_target_modules = r".*\.(qkv|proj|fc1|fc2)"

    def __init__(self, arch: str, in_chans: int = 3, img_size: int = 224, patch_size: Optional[int] = None,
                 timm_pretrained: bool = False, **kwargs: Any) -> None:
        super().__init__(in_chans, img_size, fixed_size=True)
        patch = vit_patch_size(img_size, patch_size)
        self.model = _timm_create(arch, timm_pretrained, in_chans=in_chans, img_size=img_size,
                                  patch_size=patch, **kwargs)
        if "mlp_ratio" in kwargs:  # timm's Mlp takes a hidden width of 0 as "same as the input" (ratio 1)
            check_ratio_widths("mlp_ratio", kwargs["mlp_ratio"], [self.model.embed_dim], of="embed_dim")
        self.patch_size = patch
        self.num_features = self.model.num_features

    def _intermediates(self, x: torch.Tensor) -> List[torch.Tensor]:
        # four evenly spaced blocks, all at the patch grid resolution (B, D, h, w)
        depth = len(self.model.blocks)
        idx = sorted({max(0, round(depth * f) - 1) for f in (0.25, 0.5, 0.75, 1.0)})
        return self.model.forward_intermediates(x, indices=idx, intermediates_only=True)


def _resnet(arch: str):
    def build(in_chans: int = 3, img_size: int = 224, **kw: Any) -> Encoder:
        return TimmResNet(arch, in_chans=in_chans, img_size=img_size, **kw)
    return build


def _convnext(arch: str):
    def build(in_chans: int = 3, img_size: int = 224, **kw: Any) -> Encoder:
        return TimmConvNeXt(arch, in_chans=in_chans, img_size=img_size, **kw)
    return build


def _vit(arch: str):
    def build(in_chans: int = 3, img_size: int = 224, **kw: Any) -> Encoder:
        return TimmViT(arch, in_chans=in_chans, img_size=img_size, **kw)
    return build


ENCODERS.register("resnet18", family="cnn", timm_arch="resnet18", timm_weights=True)(_resnet("resnet18"))
ENCODERS.register("resnet50", family="cnn", timm_arch="resnet50", timm_weights=True)(_resnet("resnet50"))
ENCODERS.register("resnet_test", family="cnn", test=True, timm_arch="test_resnet",
                  timm_weights=True)(_resnet("test_resnet"))
ENCODERS.register("convnext_atto", family="cnn", timm_arch="convnext_atto",
                  timm_weights=True)(_convnext("convnext_atto"))
ENCODERS.register("convnext_test", family="cnn", test=True, timm_arch="test_convnext",
                  timm_weights=True)(_convnext("test_convnext"))
ENCODERS.register("vit_tiny", family="vit", timm_arch="vit_tiny_patch16_224",
                  timm_weights=True)(_vit("vit_tiny_patch16_224"))
ENCODERS.register("vit_small", family="vit", timm_arch="vit_small_patch16_224",
                  timm_weights=True)(_vit("vit_small_patch16_224"))
ENCODERS.register("vit_test", family="vit", test=True, timm_arch="test_vit", timm_weights=True)(_vit("test_vit"))
