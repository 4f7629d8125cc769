"""Segmentation adapter: a U-Net decoder over any encoder's ``forward_intermediates``.

The decoder follows U-Net (Ronneberger et al., MICCAI 2015): starting from the coarsest
encoder map, each stage upsamples (bilinear/trilinear, to the skip's exact size, so odd
sizes such as 7 -> 4 -> 7 work), concatenates the next finer encoder map (skip connection)
and applies two 3x3 conv-norm-ReLU layers. Encoders differ in what they return, so the
maps are first turned into a strictly coarsening pyramid (:class:`FeaturePyramid`):

* hierarchical CNNs may return two maps at one resolution (timm ResNets at <= 32 px: the
  stem and ``layer1``); adjacent maps of equal size are concatenated;
* plain ViTs return all maps at the patch-grid resolution; as in ViTDet's simple feature
  pyramid (Li et al., ECCV 2022) and UNETR (Hatamizadeh et al., WACV 2022) the i-th of n
  maps (shallow to deep) is resampled by ``2 ** (n - 2 - i)`` (x4, x2, x1, x1/2 for four
  maps) with stride-2 transposed convolutions or max-pooling.

As in UNETR, a small conv block on the input image gives a full-resolution skip
(``input_skip``), so thin structures (retinal vessels) survive encoders whose finest map
has stride 2-4. The same code builds 2D and 3D decoders (``spatial_dims`` is taken from the
encoder: 3 for :mod:`medfm.encoders.cnn3d`).

The adapter :class:`SegmentationModel` (registered as ``"segmentation"``) holds
``encoder``, ``decoder`` and ``task_head`` and a ``medfm_spec``, so :mod:`medfm.hub` saves and
rebuilds it; train it frozen (decoder only), with LoRA (``apply_lora(model, settings,
head_modules=SEG_HEAD_MODULES)``) or fully.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from medfm.arg_checks import check_bool, check_number, number_fits, shown
from medfm.data.segmentation import NORMALIZATIONS
from medfm.encoders.base import require_encoder
from medfm.encoders.layers.deterministic import cross_entropy_map, linear_resize
from medfm.evaluation.metrics import label_name_list
from medfm.registry import ADAPTERS, close_match_hint

NORMS = ("batch", "instance")
#: module names LoRA must keep trainable and save (``apply_lora(..., head_modules=...)``); peft matches
#: them as name suffixes anywhere, so they avoid names backbones use (timm's ``head``)
SEG_HEAD_MODULES = ("decoder", "task_head")
#: the :class:`UNetDecoder` options a ``decoder`` mapping (recipe section, adapter argument) may set
DECODER_OPTIONS = ("decoder_channels", "input_skip", "stem_channels", "norm")


def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}{close_match_hint(norm, NORMS, cutoff=0.6, fallback='known')}")
    return norm


def conv_layers(spatial_dims: int) -> Tuple[type, type, type, type]:
    """(Conv, ConvTranspose, BatchNorm, InstanceNorm) classes for 2 or 3 spatial dims.

    Raises:
        ValueError: ``spatial_dims`` not 2 or 3.
    """
    if spatial_dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.InstanceNorm2d
    if spatial_dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.InstanceNorm3d
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def make_norm(spatial_dims: int, norm: str, channels: int) -> nn.Module:
    """A BatchNorm (``"batch"``) or affine InstanceNorm (``"instance"``) layer for ``channels``."""
    _, _, bn, inorm = conv_layers(spatial_dims)
    return bn(channels) if _check_norm(norm) == "batch" else inorm(channels, affine=True)


class ConvBlock(nn.Sequential):
    """Two ``3x3`` (or ``3x3x3``) conv-norm-ReLU layers, the U-Net stage.

    Shape: ``(B, in_ch, *S)`` -> ``(B, out_ch, *S)`` with ``S`` 2 or 3 spatial sizes.
    """

    def __init__(self, in_ch: int, out_ch: int, spatial_dims: int = 2, norm: str = "batch") -> None:
        conv = conv_layers(spatial_dims)[0]
        super().__init__(
            conv(in_ch, out_ch, 3, padding=1, bias=False), make_norm(spatial_dims, norm, out_ch), nn.ReLU(inplace=True),
            conv(out_ch, out_ch, 3, padding=1, bias=False), make_norm(spatial_dims, norm, out_ch),
                         nn.ReLU(inplace=True),
        )


def _resample(channels: int, factor: float, spatial_dims: int, norm: str) -> Tuple[nn.Module, int]:
    """Module resampling a map by ``factor`` (a power of 2) and its output channels (ViTDet)."""
    _, deconv, _, _ = conv_layers(spatial_dims)
    if factor == 1:
        return nn.Identity(), channels
    if factor < 1:
        pool = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
        return pool(kernel_size=2, stride=2, ceil_mode=True), channels
    layers: List[nn.Module] = []
    ch = channels
    steps = int(round(math.log2(factor)))
    for i in range(steps):
        out = max(16, ch // 2)
        layers.append(deconv(ch, out, kernel_size=2, stride=2))
        if i < steps - 1:
            layers += [make_norm(spatial_dims, norm, out), nn.GELU()]
        ch = out
    return nn.Sequential(*layers), ch


class FeaturePyramid(nn.Module):
    """Turns encoder intermediates into maps of strictly decreasing resolution.

    Args:
        channels: ``C_i`` of each encoder map (finest first, as ``forward_intermediates``).
        sizes: spatial size of each map for an ``img_size`` input.
        img_size: the input side the sizes were probed at.
        spatial_dims: 2 or 3.
        norm: "batch" or "instance" (between ViT transposed convolutions).

    Shape:
        ``forward(maps)`` -> list of ``(B, out_channels[j], *S_j)``, ``S_j`` strictly coarser
        with ``j``.
    """

    def __init__(self, channels: Sequence[int], sizes: Sequence[Tuple[int, ...]], img_size: int,
                 spatial_dims: int = 2, norm: str = "batch") -> None:
        super().__init__()
        if not channels or len(channels) != len(sizes):
            raise ValueError(f"need one size per encoder map, got {len(channels)} channels and {len(sizes)} sizes")
        n = len(channels)
        self.single_scale = n > 1 and len(set(map(tuple, sizes))) == 1
        self.resamplers = nn.ModuleList()
        self.groups: List[List[int]] = []
        self.out_channels: List[int] = []
        if self.single_scale:  # ViT: x4, x2, x1, x1/2 ... (never finer than the input)
            stride = img_size / sizes[0][0]
            for i, ch in enumerate(channels):
                factor = 2.0 ** (n - 2 - i)
                while factor > 1 and stride / factor < 1:
                    factor /= 2
                mod, out = _resample(ch, factor, spatial_dims, norm)
                self.resamplers.append(mod)
                self.groups.append([i])
                self.out_channels.append(out)
        else:  # hierarchical: concatenate adjacent maps of equal size
            for i, size in enumerate(sizes):
                if self.groups and tuple(sizes[self.groups[-1][0]]) == tuple(size):
                    self.groups[-1].append(i)
                    self.out_channels[-1] += channels[i]
                else:
                    self.groups.append([i])
                    self.out_channels.append(channels[i])

    def forward(self, maps: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Encoder maps (finest first, ``(B, C_i, *S_i)``) -> list of ``(B, out_channels[j], *S_j)``.

        Single-scale (ViT) maps are resampled one by one; hierarchical maps of equal size are
        concatenated along channels. ``maps`` must match the ``channels``/``sizes`` given at init.
        """
        if self.single_scale:
            return [mod(m) for mod, m in zip(self.resamplers, maps)]
        return [maps[g[0]] if len(g) == 1 else torch.cat([maps[i] for i in g], dim=1) for g in self.groups]


class UNetDecoder(nn.Module):
    """U-Net decoder over encoder intermediates (see the module docstring).

    Args:
        channels, sizes, img_size: encoder map channels and sizes at ``img_size`` (as
            :class:`FeaturePyramid`); use :func:`probe_encoder`.
        spatial_dims: 2 or 3.
        decoder_channels: output channels per pyramid level, finest first (default
            16, 32, 64, ... capped at 256, as segmentation_models_pytorch's U-Net).
        input_skip: add a full-resolution conv block on the input image as the last skip.
        input_channels: image channels (for ``input_skip``).
        stem_channels: channels of that input block.
        norm: "batch" or "instance".

    Shape:
        ``forward(maps, image)``: maps as ``forward_intermediates`` gives them and the
        ``(B, C, *S)`` image -> features ``(B, out_channels, *S)``.

    Raises:
        ValueError: a bad option (:func:`check_decoder_options`), ``decoder_channels`` of the wrong length.
    """

    def __init__(self, channels: Sequence[int], sizes: Sequence[Tuple[int, ...]], img_size: int,
                 spatial_dims: int = 2, decoder_channels: Optional[Sequence[int]] = None, input_skip: bool = True,
                 input_channels: int = 3, stem_channels: int = 16, norm: str = "batch") -> None:
        super().__init__()
        check_decoder_options({"decoder_channels": decoder_channels, "input_skip": input_skip,
                               "stem_channels": stem_channels, "norm": norm})
        self.encoder_channels = [int(c) for c in channels]
        self.pyramid = FeaturePyramid(channels, sizes, img_size, spatial_dims, norm)
        enc = self.pyramid.out_channels
        dec = list(decoder_channels) if decoder_channels is not None else [min(256, 16 * 2 ** j)
                                                                           for j in range(len(enc))]
        if len(dec) != len(enc):
            raise ValueError(f"decoder_channels needs {len(enc)} values (one per pyramid level), got {len(dec)}")
        self.bottleneck = ConvBlock(enc[-1], dec[-1], spatial_dims, norm)
        # stage j (fine -> coarse index) fuses upsampled dec[j + 1] with encoder level j
        self.stages = nn.ModuleList(ConvBlock(dec[j + 1] + enc[j], dec[j], spatial_dims, norm)
                                    for j in range(len(enc) - 1))
        self.input_skip = input_skip
        if input_skip:
            self.stem = ConvBlock(input_channels, stem_channels, spatial_dims, norm)
            self.final = ConvBlock(dec[0] + stem_channels, stem_channels, spatial_dims, norm)
            self.out_channels = stem_channels
        else:
            self.out_channels = dec[0]

    def forward(self, maps: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """Decode encoder maps into full-resolution features.

        Args:
            maps: ``forward_intermediates`` output, finest first, ``(B, C_i, *S_i)``.
            image: the encoder input ``(B, input_channels, *S)`` (used for its size and the input skip).

        Returns:
            ``(B, out_channels, *S)`` float features at the image's spatial size.
        """
        levels = self.pyramid(maps)
        x = self.bottleneck(levels[-1])
        for j in range(len(levels) - 2, -1, -1):
            skip = levels[j]
            x = self.stages[j](torch.cat([linear_resize(x, skip.shape[2:]), skip], dim=1))
        x = linear_resize(x, image.shape[2:])
        if self.input_skip:
            x = self.final(torch.cat([x, self.stem(image)], dim=1))
        return x


def spatial_dims_of(encoder: nn.Module) -> int:
    """2 for image encoders, 3 for volume encoders (``encoder.spatial_dims``)."""
    return int(getattr(encoder, "spatial_dims", 2))


@torch.no_grad()
def probe_encoder(encoder: nn.Module) -> Tuple[List[int], List[Tuple[int, ...]]]:
    """Channels and spatial sizes of ``encoder.forward_intermediates`` at its ``img_size``.

    Runs one zero input of shape ``(1, in_chans, img_size, ...)`` in eval mode.
    """
    dims = spatial_dims_of(encoder)
    was_training = encoder.training
    encoder.eval()
    dev = next((p.device for p in encoder.parameters()), torch.device("cpu"))
    side = encoder.img_size
    maps = encoder.forward_intermediates(torch.zeros(1, encoder.in_chans, *([side] * dims), device=dev))
    encoder.train(was_training)
    return [int(m.shape[1]) for m in maps], [tuple(int(s) for s in m.shape[2:]) for m in maps]


def check_decoder_options(decoder: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The :class:`UNetDecoder` options of a ``decoder`` mapping (None: none), as a new dict.

    The values are checked here, not by the layers they size: torch built a decoder with 0
    channels that trained to nothing, and answered ``-1`` with a traceback, ``1.5`` with
    "out_channels must be divisible by groups" and ``"16"`` with a string-formatting error.

    Raises:
        ValueError: ``decoder`` not a mapping; an option that is not one of :data:`DECODER_OPTIONS` (with close
            matches); ``stem_channels`` not an integer >= 1; ``decoder_channels`` not a list of integers >= 1
            (its length is checked against the encoder's maps by :class:`UNetDecoder`);
            ``input_skip`` not true/false; an unknown ``norm``.
    """
    if decoder is not None and not isinstance(decoder, Mapping):
        raise ValueError(f"decoder must be a mapping of decoder options {list(DECODER_OPTIONS)}, got {shown(decoder)}")
    options = dict(decoder or {})
    for key in options:
        if key not in DECODER_OPTIONS:
            raise ValueError("unknown decoder option "
                             f"{key!r}{close_match_hint(key, DECODER_OPTIONS, fallback='known')}")
    if "stem_channels" in options:
        options["stem_channels"] = check_number("stem_channels", options["stem_channels"], ge=1, integer=True)
    channels = options.get("decoder_channels")
    if channels is not None and (not isinstance(channels, (list, tuple)) or not channels
                                 or not all(number_fits(c, ge=1, integer=True) for c in channels)):
        raise ValueError(f"decoder_channels must be a list of integers >= 1 (one per pyramid level, finest first), "
                         f"got {shown(channels)}")
    check_bool("input_skip", options.get("input_skip", True))
    if "norm" in options:
        _check_norm(options["norm"])
    return options


def unet_decoder_for(encoder: nn.Module, decoder: Optional[Dict[str, Any]] = None) -> UNetDecoder:
    """A :class:`UNetDecoder` over ``encoder``'s intermediates (:func:`probe_encoder`, one zero input at
    its ``img_size``) with the options of a ``decoder`` mapping (:func:`check_decoder_options`); the
    decoder of :class:`SegmentationModel` and :class:`medfm.adapters.text_seg.TextConditionedSegmenter`.

    Raises:
        ValueError: a bad option (:func:`check_decoder_options`), ``decoder_channels`` of the wrong length.
    """
    options = check_decoder_options(decoder)
    channels, sizes = probe_encoder(encoder)
    return UNetDecoder(channels, sizes, encoder.img_size, spatial_dims_of(encoder), input_channels=encoder.in_chans,
                       **options)


@ADAPTERS.register("segmentation")
class SegmentationModel(nn.Module):
    """Encoder + U-Net decoder + 1x1 head: per-pixel (per-voxel) class logits.

    Args:
        encoder: any medfm encoder (2D, or 3D with ``spatial_dims == 3``).
        num_classes: K output channels including background (softmax over K).
        label_names: K class names (default "0".."K-1"); index 0 is background.
        decoder: :class:`UNetDecoder` options (``decoder_channels``, ``input_skip``,
            ``stem_channels``, ``norm``).
        inference: how to run this model on whole images, used by the pipeline and
            evaluation (JSON values): ``roi_size`` (sliding-window patch, default
            ``img_size`` per axis), ``scale`` (resize factor applied to inputs before
            inference, default 1), ``intensity`` ("unit": 2D images uint8/255 or already in [0, 1], volumes already in
            [0, 1]; "percentile": clip to the 0.5/99.5 percentiles and rescale, for MR/CT;
            "brain_percentile" (3D only): each channel clipped to its ``percentiles`` inside a
            brain mask and rescaled, the volume cropped to the mask's bounding box +
            ``crop_margin`` voxels, the BraTS recipe of :mod:`medfm.data.brats`; the pipeline
            then needs the brain mask),
            ``overlap`` (sliding-window overlap fraction in [0, 1) the run was evaluated
            with, default 0.5; the pipeline's default),
            ``context_slices`` (2.5D: k neighbouring slices on each side as channels;
            0 for plain 2D/3D), ``slice_axis`` (2.5D slicing axis of a volume), ``normalize``
            ("none", or "channel_zscore": each whole input image standardised per channel
            before the sliding windows, as the model was trained; the encoder's [0, 1] input
            check is then turned off, ``encoder.input_range = None``).

    Shape:
        ``forward``: ``(B, C, H, W)`` (or ``(B, C, D, H, W)``) float in [0, 1] ->
        logits ``(B, K, H, W)`` (``(B, K, D, H, W)``) at the input's size.

    Raises:
        ValueError: ``num_classes`` not an integer >= 2, ``label_names`` not a list of ``num_classes`` names
            (:func:`medfm.evaluation.metrics.label_name_list`), bad decoder options or inference settings
            (:func:`default_inference`), an ``encoder`` that is not a medfm Encoder.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, label_names: Optional[Sequence[str]] = None,
                 decoder: Optional[Dict[str, Any]] = None, inference: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        num_classes = check_number("num_classes", num_classes, ge=2, integer=True, hint=" (background + targets)")
        names = label_name_list(label_names, num_classes)
        require_encoder("SegmentationModel", encoder)
        self.encoder = encoder
        self.spatial_dims = spatial_dims_of(encoder)
        self.num_classes = num_classes
        self.label_names = names
        dec_args = check_decoder_options(decoder)
        self.decoder = unet_decoder_for(encoder, dec_args)
        conv = conv_layers(self.spatial_dims)[0]
        self.task_head = conv(self.decoder.out_channels, self.num_classes, kernel_size=1)
        self.inference = default_inference(encoder, inference)
        accept_standardised_inputs(encoder, self.inference)
        self.medfm_spec: Dict[str, Any] = {
            "kind": "adapter", "name": "segmentation",
            "args": {"num_classes": self.num_classes, "label_names": names, "decoder": dec_args,
                     "inference": self.inference},
        }

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Decoder features ``(B, decoder.out_channels, *S)`` of images ``(B, C, *S)``."""
        return self.decoder(self.encoder.forward_intermediates(images), images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Per-pixel (per-voxel) class logits.

        Args:
            images: ``(B, C, H, W)`` (or ``(B, C, D, H, W)``) float in [0, 1] (per-channel z-scored
                instead when ``inference["normalize"] == "channel_zscore"``).

        Returns:
            ``(B, K, H, W)`` (``(B, K, D, H, W)``) logits at the input's size.
        """
        return self.task_head(self.features(images))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Dice + cross-entropy (MONAI ``DiceCELoss``, softmax, background excluded from Dice).

        Args:
            logits: ``(B, K, *S)``.
            target: integer labels ``(B, *S)`` or ``(B, 1, *S)`` in [0, K).

        Raises:
            ValueError: target shape or values that do not fit the logits.
        """
        return dice_ce_loss(logits, target, self.num_classes)


def accept_standardised_inputs(encoder: nn.Module, *inference: Dict[str, Any]) -> None:
    """Turn off ``encoder``'s [0, 1] input check (``encoder.input_range = None``) when any of the
    ``inference`` settings (:func:`default_inference` dicts) standardises images before the
    encoder (``normalize`` other than "none", e.g. ``channel_zscore``): those inputs leave
    [0, 1] on purpose. NaN/inf are still refused.
    """
    if any(i["normalize"] != "none" for i in inference):
        encoder.input_range = None


#: sliding-window overlap of checkpoints that do not record the one they were evaluated with
DEFAULT_OVERLAP = 0.5


def check_overlap(value: Any, name: str = "overlap") -> float:
    """``value`` as a sliding-window overlap fraction in [0, 1) (float).

    Raises:
        ValueError: not a finite number (bools included) or outside [0, 1); the message names
            ``name`` (``overlap must be in [0, 1), got 1.0``).
    """
    return check_number(name, value, ge=0, lt=1)


#: ``inference.intensity`` values (see :class:`SegmentationModel`)
INTENSITIES = ("unit", "percentile", "brain_percentile")
#: options recorded only with ``intensity == "brain_percentile"``
BRAIN_PERCENTILE_OPTIONS = ("percentiles", "crop_margin")


def _brain_percentile_options(out: Dict[str, Any], dims: int) -> None:
    """Fill in and check ``percentiles`` ((low, high) in [0, 100], default the BraTS 0.5 / 99.5)
    and ``crop_margin`` (voxels >= 0, default 4) of a "brain_percentile" model, in place.

    Raises:
        ValueError: not a 3D model, or bad values.
    """
    from medfm.data.brats import BRATS_MARGIN, BRATS_PERCENTILES

    if dims != 3 or out["context_slices"]:
        raise ValueError("inference.intensity 'brain_percentile' needs a 3D model (no 2D / 2.5D)")
    pct = out.setdefault("percentiles", list(BRATS_PERCENTILES))
    if (not isinstance(pct, (list, tuple)) or len(pct) != 2 or not all(number_fits(p, ge=0, le=100) for p in pct)
            or not pct[0] < pct[1]):
        raise ValueError(f"inference.percentiles must be [low, high] with 0 <= low < high <= 100, got {pct!r}")
    out["percentiles"] = [float(p) for p in pct]
    out["crop_margin"] = check_number("inference.crop_margin", out.get("crop_margin", BRATS_MARGIN), ge=0, integer=True,
                                      hint=" (voxels)")


def default_inference(encoder: nn.Module, given: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Inference settings with defaults filled in (see :class:`SegmentationModel`).

    Raises:
        ValueError: ``given`` not a mapping, unknown keys or bad values (one line naming the setting: ``roi_size``
            sides integers >= 1, ``scale`` in (0, 4], ``context_slices`` an integer >= 0, ``slice_axis`` 0, 1 or 2;
            ``2.5``, ``"64"`` and ``True`` are refused, not truncated).
    """
    dims = spatial_dims_of(encoder)
    if given is not None and not isinstance(given, Mapping):
        raise ValueError(f"inference must be a mapping of inference settings, got {shown(given)}")
    out: Dict[str, Any] = {"roi_size": [encoder.img_size] * dims, "scale": 1.0, "intensity": "unit",
                           "context_slices": 0, "slice_axis": 0, "normalize": "none", "overlap": DEFAULT_OVERLAP}
    given = dict(given or {})
    unknown = set(given) - set(out) - set(BRAIN_PERCENTILE_OPTIONS)
    if unknown:
        raise ValueError(f"unknown inference option(s) {sorted(unknown)} "
                         f"(known: {sorted(set(out) | set(BRAIN_PERCENTILE_OPTIONS))})")
    out.update(given)
    roi = out["roi_size"] if isinstance(out["roi_size"], (list, tuple)) else [out["roi_size"]] * dims
    if not all(number_fits(side, ge=1, integer=True) for side in roi):
        raise ValueError("inference.roi_size must be an integer side >= 1 or a list of them, got "
                         f"{shown(out['roi_size'])}")
    out["roi_size"] = [int(side) for side in roi]
    if len(out["roi_size"]) != dims:
        raise ValueError(f"inference.roi_size needs {dims} values, got {out['roi_size']}")
    if out["intensity"] not in INTENSITIES:
        raise ValueError(f"inference.intensity must be one of {list(INTENSITIES)}, got {out['intensity']!r}")
    if out["intensity"] == "brain_percentile":
        _brain_percentile_options(out, dims)
    elif set(given) & set(BRAIN_PERCENTILE_OPTIONS):
        raise ValueError(f"inference.{'/'.join(sorted(set(given) & set(BRAIN_PERCENTILE_OPTIONS)))} only go with "
                         f"intensity 'brain_percentile', not {out['intensity']!r}")
    if out["normalize"] not in NORMALIZATIONS:
        raise ValueError(f"inference.normalize must be one of {list(NORMALIZATIONS)}, got {out['normalize']!r}")
    out["scale"] = check_number("inference.scale", out["scale"], gt=0, le=4)
    out["overlap"] = check_overlap(out["overlap"], "inference.overlap")
    out["context_slices"] = check_number("inference.context_slices", out["context_slices"], ge=0, integer=True)
    out["slice_axis"] = check_number("inference.slice_axis", out["slice_axis"], ge=0, le=2, integer=True,
                                     hint=" (a volume axis)")
    if out["context_slices"] and out["normalize"] != "none":
        raise ValueError("inference.normalize is not supported for 2.5D models (context_slices > 0)")
    if out["context_slices"] and encoder.in_chans != 2 * out["context_slices"] + 1:
        raise ValueError(f"2.5D with context_slices={out['context_slices']} needs an encoder with "
                         f"in_chans={2 * out['context_slices'] + 1}, got {encoder.in_chans}")
    return out


def check_target(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Return integer labels ``(B, 1, *S)`` for ``logits`` ``(B, K, *S)``.

    Raises:
        ValueError: mismatched shapes, labels that are not whole numbers (soft masks, NaN) or outside [0, K).
    """
    if not isinstance(target, torch.Tensor):
        target = torch.as_tensor(target)
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    if target.shape[0] != logits.shape[0] or target.shape[1] != 1 or target.shape[2:] != logits.shape[2:]:
        raise ValueError(f"target of shape {tuple(target.shape)} does not fit logits {tuple(logits.shape)} "
                         "(expected (B, *S) or (B, 1, *S) integer labels)")
    if target.is_floating_point() and bool((target != target.round()).any()):  # also NaN
        raise ValueError(f"target must hold whole-number class labels in [0, {num_classes}), got other values "
                         f"(e.g. {float(target[target != target.round()][0]):g}); soft or probability masks are no "
                         "labels")
    target = target.long()
    if target.numel():
        lo, hi = target.aminmax()
        if bool((lo < 0) | (hi >= num_classes)):  # one device sync per step (was two: min, then max)
            raise ValueError(f"labels must be in [0, {num_classes}), got range [{int(lo)}, {int(hi)}]")
    return target


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """MONAI ``DiceCELoss`` (softmax, one-hot target, background excluded from Dice) in fp32:
    MONAI's ``DiceLoss`` plus the mean per-pixel cross-entropy.

    The Dice term is computed over the whole batch (``batch=True``, as nnU-Net's batch
    Dice), so patches without foreground do not dominate it. The cross-entropy term is
    :func:`medfm.encoders.layers.deterministic.cross_entropy_map` (the value of MONAI's
    ``nn.CrossEntropyLoss`` term, with a deterministic GPU kernel, which ``nll_loss2d`` lacks).

    Shape: logits ``(B, K, *S)``, target ``(B, *S)`` or ``(B, 1, *S)`` -> scalar.

    Raises:
        ValueError: see :func:`check_target`.
    """
    from monai.losses import DiceLoss

    target = check_target(logits, target, num_classes)
    dice = DiceLoss(to_onehot_y=True, softmax=True, include_background=False, batch=True, smooth_nr=1e-5,
                    smooth_dr=1e-5)
    logits = logits.float()
    return dice(logits, target) + cross_entropy_map(logits, target[:, 0])


__all__ = ["SegmentationModel", "UNetDecoder", "FeaturePyramid", "ConvBlock", "SEG_HEAD_MODULES",
           "probe_encoder", "dice_ce_loss", "check_target", "default_inference", "accept_standardised_inputs",
           "spatial_dims_of", "DECODER_OPTIONS", "check_decoder_options", "unet_decoder_for"]
