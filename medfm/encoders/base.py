"""The encoder contract every image encoder in medfm follows, whatever its family.

An encoder is an ``nn.Module`` that takes ``(B, C, H, W)`` float images with values
in [0, 1] (``C == in_chans``; volumes ``(B, C, D, H, W)``), normalises them with its own
``pixel_mean``/``pixel_std`` and exposes:

* ``num_features``: int, size of the pooled embedding;
* ``forward_features(x)``: ``(B, N, D)`` tokens or ``(B, D, h, w)`` feature map;
* ``forward(x)``: ``(B, num_features)`` pooled embedding;
* ``forward_intermediates(x)``: list of ``(B, C_i, H_i, W_i)`` maps for dense heads;
* ``in_chans``, ``img_size``, ``family`` and ``lora_target_modules`` (a regex that peft
  matches against full module names; it selects the family's attention/projection/conv
  layers for LoRA).

Inputs are checked on every call (:meth:`Encoder.check_input`), values included: images
already normalised by the caller (ImageNet mean/std, z-scores: about [-2.1, 2.6]) or float
images on a 0-255 scale would be normalised a second time and give wrong features without
any error, so values outside [0, 1] (beyond :data:`INPUT_RANGE_TOLERANCE`) raise
:class:`EncoderInputError`. Models that standardise their inputs on purpose (segmentation
models trained with ``normalize: channel_zscore``) set ``encoder.input_range = None``.
Every input error is one line that starts with the encoder's name and says what it takes
(``resnet18 takes float (B, C, H, W) images in [0, 1] with C = 1 and H, W >= 8; got ...``)
and the likely fix (a NumPy or channels-last batch, a single image, a volume into a 2D
encoder, uint8 pixels, an input too small for the stem and stages: :attr:`Encoder.min_input_size`).

The design follows timm's feature-extraction API (``forward_features``,
``forward_intermediates``) and open_clip's idea of a tower behind a fixed interface.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from medfm.encoders.checks import check_int

SUPPORTED_IN_CHANS = (1, 3)

#: How far inputs may stray outside [0, 1] before :meth:`Encoder.check_input` refuses them.
#: uint8 / 255 inputs are exact; float32 resampling and colour conversion of [0, 1] images
#: (antialiased resizes, ``grid_sample``, blur, luma weights) overshoot by a few ulp (< 1e-6).
#: 1e-3 is far above that yet a quarter of one 8-bit grey level (1/255), and far below any
#: real mis-scaling (normalised inputs reach about -2, 0-255 inputs up to 255). For inputs
#: whose dtype is coarser (bfloat16: one step above 1.0 is 2**-7) one unit of that dtype's
#: precision (``torch.finfo(dtype).eps``) is allowed instead.
INPUT_RANGE_TOLERANCE = 1e-3


class EncoderInputError(ValueError):
    """Raised when an encoder is given a tensor of the wrong shape, channels, size, with NaN/inf,
    or with values outside [0, 1] (already normalised images, 0-255 scale)."""


def range_error(lo: float, hi: float, low: float = 0.0, high: float = 1.0) -> str:
    """The one-line message for inputs whose values span ``[lo, hi]`` instead of ``[low, high]``,
    naming the likely cause.

    Negative values: the images were normalised already (mean/std); values well above 1: a
    0-255 (or 16-bit) scale; values just above 1: rescaling or clamping was missed.
    """
    got = f"expected images in [{low:g}, {high:g}] " \
          "(the encoder normalises them itself with its pixel_mean/pixel_std), " \
          f"got values in [{lo:.4g}, {hi:.4g}]"
    if lo < low:
        why = ("they look already normalised (mean/std, e.g. ImageNet statistics or z-scores); pass the "
               "unnormalised images in [0, 1]")
    elif hi > 1.5 * high:
        why = "they look like 0-255 pixel values; divide them by 255 (16-bit images: by their maximum)"
    else:
        why = "rescale them to [0, 1] (or clamp them)"
    return f"{got}: {why}"


def check_value_range(x: torch.Tensor, input_range: Optional[Tuple[float, float]] = (0.0, 1.0)) -> None:
    """Refuse NaN/inf values and, unless ``input_range`` is None, values outside it by more than
    ``max(INPUT_RANGE_TOLERANCE, torch.finfo(x.dtype).eps)``; the value part of
    :meth:`Encoder.check_input`, also used by inputs that no medfm encoder sees as such (fusers' image rows).

    One ``torch.aminmax`` (one device sync; it propagates NaN) over a non-empty float tensor of any shape.

    Raises:
        EncoderInputError: NaN/inf values, or values outside ``input_range`` (:func:`range_error`'s message).
    """
    lo, hi = torch.stack(torch.aminmax(x.detach())).tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise EncoderInputError("input contains NaN or inf values")
    if input_range is not None:
        low, high = input_range
        tol = max(INPUT_RANGE_TOLERANCE, torch.finfo(x.dtype).eps)
        if lo < low - tol or hi > high + tol:
            raise EncoderInputError(range_error(lo, hi, low, high))


def _per_channel(value: Union[float, Sequence[float]], in_chans: int, what: str, spatial_dims: int) -> torch.Tensor:
    vals = [float(value)] * in_chans if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(vals) != in_chans:
        raise ValueError(f"{what} has {len(vals)} values but the encoder has in_chans={in_chans}")
    return torch.tensor(vals, dtype=torch.float32).view(1, in_chans, *([1] * spatial_dims))


def _layout(dims: int) -> Tuple[str, str]:
    """``("(B, C, H, W)", "images")`` or ``("(B, C, D, H, W)", "volumes")``."""
    return ("(B, C, H, W)", "images") if dims == 2 else ("(B, C, D, H, W)", "volumes")


def _channels_first(dims: int) -> str:
    """The ``permute`` that turns a channels-last batch into ``(B, C, ...)``."""
    return "permute(0, 3, 1, 2)" if dims == 2 else "permute(0, 4, 1, 2, 3)"


def _not_a_tensor(x: Any, in_chans: int, dims: int) -> Tuple[str, str]:
    """What a non-tensor input is, and how to turn it into one (``(got, hint)`` for :meth:`Encoder.input_error`)."""
    shape = getattr(x, "shape", None)
    if hasattr(x, "__array__") and isinstance(shape, tuple):  # a NumPy (or array-like) batch
        steps, note = ["torch.from_numpy(x)"], ""
        if len(shape) == dims + 2 and shape[-1] == in_chans and shape[1] != in_chans:
            steps.append(_channels_first(dims))
            note = " (it looks channels-last)"
        if str(getattr(x, "dtype", "")) == "uint8":
            steps.append("float() / 255")
        kind = f"{type(x).__module__.split('.')[0]}.{type(x).__name__}"  # numpy.ndarray
        return f"a {kind} of shape {shape}, not a torch.Tensor", f"convert it with {'.'.join(steps)}{note}"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)} items, not a torch.Tensor", "stack the images with torch.stack(x)"
    return f"{type(x).__name__}, not a torch.Tensor", ""


def _rank_hint(shape: Tuple[int, ...], in_chans: int, dims: int) -> str:
    """The likely cause of a tensor with the wrong number of axes, or ``""``."""
    kind = _layout(dims)[1][:-1]
    if dims == 3 and len(shape) == 4 and shape[1] == in_chans:
        return "2D images (B, C, H, W)? this is a 3D (volume) encoder: use a 2D encoder, or pass volumes"
    if len(shape) == dims + 1 and shape[0] == in_chans:
        return f"a single {kind}? add the batch axis with x.unsqueeze(0)"
    if len(shape) == dims + 1 and in_chans == 1:
        return f"{kind}s without the channel axis? add it with x.unsqueeze(1)"
    if dims == 2 and len(shape) == 5:
        from medfm.registry import ENCODERS  # the error path only: the registry lists the 3D encoders

        names = [n for n in ENCODERS.names(dims=3) if not ENCODERS.tags(n).get("test")]
        return (f"volumes (B, C, D, H, W)? this is a 2D encoder: use a 3D one ({', '.join(names)}), "
                "or pass 2D slices")
    return ""


def _channel_hint(shape: Tuple[int, ...], in_chans: int, dims: int) -> str:
    """How to fix a batch whose axis 1 is not ``in_chans`` channels."""
    if shape[-1] == in_chans:
        return f"channels last? use x.{_channels_first(dims)}"
    return f"convert the images to {in_chans} channel(s), or create the encoder with in_chans={shape[1]}"


def _dtype_hint(dtype: torch.dtype) -> str:
    """How to turn a non-float batch into float values in [0, 1]."""
    if dtype == torch.uint8:
        return "divide them by 255 (x.float() / 255)"
    if dtype == torch.bool:
        return "convert them with x.float()"
    return "convert them to float and rescale them to [0, 1] (e.g. 16-bit images: x.float() / 65535)"


def min_side_after_convs(convs: Sequence[nn.Module], limit: int = 4096) -> int:
    """The smallest square input side for which a chain of convolutions, applied in this order, leaves
    at least one pixel (``out = floor((s + 2p - d (k - 1) - 1) / stride) + 1`` per convolution; a
    ``"same"`` padding keeps the side). Sets :attr:`Encoder.min_input_size` of a family whose
    downsampling convolutions have no padding (timm's ConvNeXt: a patch stem, 2x2 stride-2 downsampling).

    Args:
        convs: ``nn.Conv2d``/``nn.Conv3d`` modules on the downsampling path (stem, stage downsampling),
            in forward order; the first entry of each (square) kernel, stride, padding and dilation is used.
        limit: the largest side tried.

    Raises:
        ValueError: no side up to ``limit`` leaves a pixel.
    """
    def out(side: int) -> int:
        for conv in convs:
            if isinstance(conv.padding, str):
                side = side if conv.padding == "same" else (side - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) \
                    // conv.stride[0] + 1
            else:
                side = (side + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) \
                    // conv.stride[0] + 1
            if side < 1:
                return 0
        return side

    for side in range(1, limit + 1):
        if out(side) >= 1:
            return side
    raise ValueError(f"no input side up to {limit} leaves a pixel after these convolutions")


class Encoder(nn.Module):
    """Base class of all medfm image encoders.

    Args:
        in_chans: input channels (1 for grayscale, 3 for RGB).
        img_size: the square input side in pixels the encoder is built for.
        mean, std: per-channel normalisation applied to inputs in [0, 1]
            (default 0.5/0.5, as the MedMNIST benchmark code does).
        fixed_size: when True (ViTs with learned position embeddings)
            inputs must be exactly ``img_size``; the others (CNNs, Mamba, MedViT-KAN) accept any size
            >= :attr:`min_input_size` (8, more for a family whose downsampling would leave no pixel).

    Subclasses implement ``_features``, ``_pool`` and ``_intermediates`` on normalised
    input and set ``num_features``; ``forward``, ``forward_features`` and
    ``forward_intermediates`` check every input with :meth:`check_input` first, values in
    [0, 1] included (``input_range``), so subclasses must not override them.

    Raises:
        EncoderArgumentError: ``in_chans`` not an integer >= 1 or ``img_size`` not an integer >= 8
            (``img_size must be an integer >= 8, got 4``; ``True`` and ``28.0`` are refused too).
    """

    family: str = "generic"
    #: 2 for images ``(B, C, H, W)``, 3 for volumes ``(B, C, D, H, W)``.
    spatial_dims: int = 2
    #: value range :meth:`check_input` enforces (within :data:`INPUT_RANGE_TOLERANCE`); ``None``
    #: turns the range check off on an instance whose owner standardises the inputs on purpose
    #: (:class:`medfm.adapters.segmentation.SegmentationModel` with ``normalize: channel_zscore``).
    input_range: Optional[Tuple[float, float]] = (0.0, 1.0)
    #: regex matched (``re.fullmatch``) by peft against full module names.
    lora_target_modules: str = r".*"
    #: the smallest input side :meth:`check_input` accepts; a family whose stem and stage downsampling
    #: would leave no pixel below a larger side sets it per instance (timm's ConvNeXt: the product of its
    #: strides, see :func:`min_side_after_convs`), so such inputs get one line instead of a torch error.
    min_input_size: int = 8

    def __init__(
        self,
        in_chans: int,
        img_size: int,
        mean: Union[float, Sequence[float]] = 0.5,
        std: Union[float, Sequence[float]] = 0.5,
        fixed_size: bool = False,
    ) -> None:
        super().__init__()
        self.in_chans = check_int("in_chans", in_chans)
        self.img_size = check_int("img_size", img_size, minimum=8)
        self.fixed_size = fixed_size
        dims = self.spatial_dims
        self.register_buffer("pixel_mean", _per_channel(mean, self.in_chans, "mean", dims), persistent=False)
        self.register_buffer("pixel_std", _per_channel(std, self.in_chans, "std", dims), persistent=False)
        self.num_features: int = 0
        #: the arguments that rebuild this encoder with ``create_encoder`` (set by the factory).
        self.config: Dict[str, Any] = {}

    # -- input handling -------------------------------------------------------------
    @property
    def display_name(self) -> str:
        """The first word of the encoder's input errors: its registered name (``config["name"]``, set by
        :func:`medfm.encoders.create_encoder`), else its class name."""
        return str(self.config.get("name") or type(self).__name__)

    def input_spec(self) -> str:
        """What the encoder takes, as its input errors say it, e.g. ``float (B, C, H, W) images in [0, 1]
        with C = 1 and H, W >= 8`` (fixed size: ``H = W = 28``; volumes: ``(B, C, D, H, W)``, ``D, H, W``)."""
        layout, kind = _layout(self.spatial_dims)
        axes = layout[7:-1].split(", ")
        sides = (" = ".join(axes) + f" = {self.img_size}") if self.fixed_size else \
            (", ".join(axes) + f" >= {self.min_input_size}")
        return f"float {layout} {kind} in [0, 1] with C = {self.in_chans} and {sides}"

    def input_error(self, got: str, hint: str = "") -> "EncoderInputError":
        """The one-line error of :meth:`check_input`: ``<name> takes <input_spec>; got <got>[: <hint>]``."""
        sep = ": " if hint else ""
        return EncoderInputError(f"{self.display_name} takes {self.input_spec()}; got {got}{sep}{hint}")

    def check_input(self, x: torch.Tensor, check_size: bool = True, check_values: bool = True) -> None:
        """Validate ``x``: a non-empty float ``(B, in_chans, H, W)`` (3D: ``(B, in_chans, D, H, W)``)
        tensor with finite values in [0, 1].

        The shape and dtype checks are O(1); the value check is one ``torch.aminmax`` over the batch
        (any float dtype, also bfloat16 tensors made under ``torch.autocast``), which finds NaN/inf and
        the range in the same pass. Values may exceed [0, 1] by
        ``max(INPUT_RANGE_TOLERANCE, torch.finfo(x.dtype).eps)`` (1e-3 for float32/float16,
        2**-7 for bfloat16; see :data:`INPUT_RANGE_TOLERANCE`). ``input_range = None`` on the
        instance skips the range part (NaN/inf are still refused).

        Args:
            x: the input batch.
            check_size: also check the spatial size (``img_size`` for fixed-size encoders,
                at least :attr:`min_input_size` per side); objectives turn it off for raw batches that
                their random views resize before the encoder sees them.
            check_values: also run the value check (the one ``aminmax``, a device sync); objectives turn it
                off for random views of a batch they checked already, whose values the views keep finite and
                clamp to [0, 1] (:func:`medfm.objectives.inputs.encode_views`): only the O(1) checks run.

        Raises:
            EncoderInputError: one line starting with the encoder's name (:attr:`display_name`): what it
                takes (:meth:`input_spec`), what it got and the likely fix, e.g. ``resnet18 takes float
                (B, C, H, W) images in [0, 1] with C = 1 and H, W >= 8; got 28 input channels (shape
                (2, 28, 28, 1)): channels last? use x.permute(0, 3, 1, 2)``. For: not a tensor (a NumPy
                array: how to convert it), wrong rank (a single image, a volume into a 2D encoder and
                back), channel count, a non-float dtype, an empty batch (B=0), a size other than
                ``img_size`` (fixed-size encoders) or below :attr:`min_input_size`; then NaN/inf values,
                or values outside [0, 1] (naming the observed range and the likely cause: already
                normalised images, a 0-255 scale).
        """
        dims = self.spatial_dims
        if not isinstance(x, torch.Tensor):
            raise self.input_error(*_not_a_tensor(x, self.in_chans, dims))
        if x.ndim != dims + 2:
            raise self.input_error(f"shape {tuple(x.shape)} ({x.ndim} dims)",
                                   _rank_hint(tuple(x.shape), self.in_chans, dims))
        if x.shape[1] != self.in_chans:
            raise self.input_error(f"{x.shape[1]} input channels (shape {tuple(x.shape)})",
                                   _channel_hint(tuple(x.shape), self.in_chans, dims))
        if not x.is_floating_point():
            raise self.input_error(f"non-float inputs (dtype {x.dtype})", _dtype_hint(x.dtype))
        if x.shape[0] == 0:
            raise self.input_error(f"an empty batch (B=0, shape {tuple(x.shape)})", "pass at least one image")
        spatial = tuple(x.shape[2:])
        if check_size and self.fixed_size and any(s != self.img_size for s in spatial):
            raise self.input_error(
                f"{'x'.join(map(str, spatial))} inputs (it was built for {'x'.join([str(self.img_size)] * dims)})",
                f"resize the inputs or create the encoder with img_size={spatial[-1]}")
        if check_size and min(spatial) < self.min_input_size:
            unit = "pixels" if dims == 2 else "voxels"
            raise self.input_error(f"{'x'.join(map(str, spatial))} inputs",
                                   f"resize them to at least {self.min_input_size} {unit} per side")
        if not check_values or x.numel() == 0:  # a zero-sized side (only with check_size=False): nothing to check
            return
        try:
            check_value_range(x, self.input_range)
        except EncoderInputError as err:
            raise EncoderInputError(f"{self.display_name}: {err}") from None

    def normalize(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Check ``x`` ((B, C, H, W) or (B, C, D, H, W) in [0, 1], see :meth:`check_input`) and
        return ``(x - mean) / std``. Every ``forward``/``forward_features``/``forward_intermediates``
        goes through it, so the check runs once per forward. ``check=False``: the caller has run the
        same checks on ``x`` already (a fuser's :meth:`~medfm.adapters.fusion.base.FusionModel.select`,
        which names the modality), or the ones that can fail on it (an objective's random views of a checked
        batch: :func:`medfm.objectives.inputs.encode_views`), so they are not repeated (one ``aminmax`` and
        device sync fewer).

        Float inputs of another dtype than the encoder's (float64 from NumPy, float16) are
        cast to it (the dtype of ``pixel_mean``, which follows ``encoder.to(dtype)``), so they
        do not fail deep inside the first convolution with a dtype mismatch.
        """
        if check:
            self.check_input(x)
        x = x.to(self.pixel_mean.dtype)
        return (x - self.pixel_mean) / self.pixel_std

    # -- the contract -----------------------------------------------------------------
    def forward_features(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Unpooled features of images ``(B, C, H, W)`` in [0, 1]: ``(B, N, D)`` tokens or ``(B, D, h, w)`` map.
        ``check``: see :meth:`normalize`.

        Raises:
            EncoderInputError: see :meth:`check_input`.
        """
        return self._features(self.normalize(x, check))

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """Pooled embedding ``(B, num_features)`` of :meth:`forward_features`' output (timm's
        ``forward_head(x, pre_logits=True)``): ``forward(x) == forward_head(forward_features(x))``, for
        objectives that need both without running the encoder twice (graph matching's node features)."""
        return self._pool(feats)

    def forward(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Pooled embedding ``(B, num_features)`` of images ``(B, C, H, W)`` in [0, 1].
        ``check``: see :meth:`normalize`.

        Raises:
            EncoderInputError: see :meth:`check_input`.
        """
        return self.forward_head(self._features(self.normalize(x, check)))

    def forward_intermediates(self, x: torch.Tensor, check: bool = True) -> List[torch.Tensor]:
        """Multi-scale maps ``[(B, C_i, H_i, W_i), ...]``, finest first, for dense heads, of images in [0, 1].
        ``check``: see :meth:`normalize`.

        Raises:
            EncoderInputError: see :meth:`check_input`.
        """
        return self._intermediates(self.normalize(x, check))

    @property
    def feature_channels(self) -> List[int]:
        """Channels ``C_i`` of each map returned by ``forward_intermediates``."""
        with torch.no_grad():
            was_training = self.training
            self.eval()
            shape = (1, self.in_chans, *([self.img_size] * self.spatial_dims))
            maps = self.forward_intermediates(torch.zeros(shape, device=self.pixel_mean.device))
            self.train(was_training)
        return [int(m.shape[1]) for m in maps]

    def norm_module_names(self) -> List[str]:
        """Full names of modules with running statistics (BatchNorm); LoRA keeps them trainable
        and saved (peft ``modules_to_save``), or a reloaded adapter would not reproduce."""
        return [
            n for n, m in self.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]

    # -- to implement -------------------------------------------------------------------
    def _features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _pool(self, feats: torch.Tensor) -> torch.Tensor:
        """Default pooling: mean over tokens ``(B, N, D)`` or over space ``(B, D, *spatial)``."""
        if feats.ndim == 3:
            return feats.mean(dim=1)
        return feats.mean(dim=tuple(range(2, feats.ndim)))

    def _intermediates(self, x: torch.Tensor) -> List[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


def require_encoder(owner: str, encoder: Any) -> None:
    """Refuse an ``encoder`` that is not a medfm :class:`~medfm.encoders.base.Encoder`.

    Accepted: an ``Encoder`` (what :func:`medfm.create_encoder` returns, and what stays in place inside a model
    that :func:`medfm.adapters.lora.apply_lora` wrapped), a ``peft`` model wrapping one directly
    (``peft.get_peft_model(encoder, config)``: its ``get_base_model()`` is the ``Encoder``).
    Objectives (:func:`medfm.objectives.inputs.check_encoder`) and task adapters call this before they
    first read an attribute of ``encoder`` (its ``num_features``, ``img_size``, ...). Without it
    an encoder name failed with ``AttributeError: 'str' object has no attribute 'num_features'``, and a timm
    model (whose ``forward`` returns class logits, not the pooled ``(B, num_features)`` embedding of the
    encoder contract) was built and failed at the first step with a matrix-shape error.

    Args:
        owner: the objective or adapter, first word of the message.
        encoder: what the constructor was given.

    Raises:
        ValueError: one line, e.g. ``simclr: encoder must be a medfm Encoder (medfm.encoders.base.Encoder), got
            str 'resnet18'; build one with medfm.create_encoder('resnet18', in_chans=..., img_size=...)``.
    """
    if isinstance(encoder, Encoder):
        return
    base = getattr(encoder, "get_base_model", None) if isinstance(encoder, nn.Module) else None
    if callable(base) and isinstance(base(), Encoder):  # a peft (LoRA) wrapper of a medfm encoder
        return
    kind = type(encoder)
    got = f"str {encoder!r}" if isinstance(encoder, str) else (
        kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}")
    if isinstance(encoder, str):
        from medfm.registry import ENCODERS, close_match_hint

        names = ENCODERS.names()
        how = (f"build one with medfm.create_encoder({encoder!r}, in_chans=..., img_size=...)" if encoder in names
               else f"build one with medfm.create_encoder(name, in_chans=..., img_size=...), a name from "
                    f"medfm.list_encoders(){close_match_hint(encoder, names, n=3, fallback=None)}")
    else:
        timm_model = kind.__module__.startswith("timm.")
        why = "; a timm model returns class logits, not an encoder's pooled features" if timm_model else ""
        how = (f"build one with medfm.create_encoder(name, in_chans=..., img_size=...) (medfm.list_encoders() "
               f"names them{why})")
    raise ValueError(f"{owner}: encoder must be a medfm Encoder (medfm.encoders.base.Encoder), got {got}; {how}")


def tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """Reshape square token grids ``(B, N, D)`` to maps ``(B, D, sqrt(N), sqrt(N))``.

    Raises:
        ValueError: ``N`` is not a perfect square.
    """
    b, n, d = tokens.shape
    side = int(math.isqrt(n))
    if side * side != n:
        raise ValueError(f"cannot reshape {n} tokens to a square map")
    return tokens.transpose(1, 2).reshape(b, d, side, side)
