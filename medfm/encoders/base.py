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
    got = f"expected images in [{low:g}, {high:g}] (the encoder normalises them itself with its pixel_mean/pixel_std), " \
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


class Encoder(nn.Module):
    """Base class of all medfm image encoders.

    Args:
        in_chans: input channels (1 for grayscale, 3 for RGB).
        img_size: the square input side in pixels the encoder is built for.
        mean, std: per-channel normalisation applied to inputs in [0, 1]
            (default 0.5/0.5, as the MedMNIST benchmark code does).
        fixed_size: when True (ViTs with learned position embeddings)
            inputs must be exactly ``img_size``; the others (CNNs, Mamba, MedViT-KAN) accept any size >= 8.

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
    def check_input(self, x: torch.Tensor, check_size: bool = True) -> None:
        """Validate ``x``: a non-empty float ``(B, in_chans, H, W)`` (3D: ``(B, in_chans, D, H, W)``)
        tensor with finite values in [0, 1].

        The value check is one ``torch.aminmax`` over the batch (any float dtype, also bfloat16
        tensors made under ``torch.autocast``). Values may exceed [0, 1] by
        ``max(INPUT_RANGE_TOLERANCE, torch.finfo(x.dtype).eps)`` (1e-3 for float32/float16,
        2**-7 for bfloat16; see :data:`INPUT_RANGE_TOLERANCE`). ``input_range = None`` on the
        instance skips the range part (NaN/inf are still refused).

        Args:
            x: the input batch.
            check_size: also check the spatial size (``img_size`` for fixed-size encoders,
                at least 8 per side); objectives turn it off for raw batches that their random
                views resize before the encoder sees them.

        Raises:
            EncoderInputError: wrong type, rank, channel count, an empty batch (B=0), size,
                NaN/inf values, or values outside [0, 1] (one line naming the observed range and
                the likely cause: already normalised images, a 0-255 scale).
        """
        dims = self.spatial_dims
        layout = "(B, C, H, W)" if dims == 2 else "(B, C, D, H, W)"
        if not isinstance(x, torch.Tensor):
            raise EncoderInputError(f"expected a torch.Tensor of shape {layout}, got {type(x).__name__}")
        if x.ndim != dims + 2:
            raise EncoderInputError(f"expected a {layout} tensor, got shape {tuple(x.shape)} ({x.ndim} dims)")
        if x.shape[1] != self.in_chans:
            raise EncoderInputError(
                f"encoder expects {self.in_chans} input channel(s), got {x.shape[1]} (shape {tuple(x.shape)})"
            )
        if not x.is_floating_point():
            raise EncoderInputError(f"expected float inputs in [0, 1], got dtype {x.dtype}")
        if x.shape[0] == 0:
            raise EncoderInputError(f"got an empty batch (B=0, shape {tuple(x.shape)}); pass at least one image")
        spatial = tuple(x.shape[2:])
        shown = "x".join(map(str, spatial))
        if check_size and self.fixed_size and any(s != self.img_size for s in spatial):
            raise EncoderInputError(
                f"encoder was built for {'x'.join([str(self.img_size)] * dims)} inputs, got {shown}; resize the "
                f"inputs or create the encoder with img_size={spatial[-1]}"
            )
        if check_size and min(spatial) < 8:
            raise EncoderInputError(f"inputs must be at least 8 pixels per side, got {shown}")
        if x.numel() == 0:  # a zero-sized side (only with check_size=False): nothing to check
            return
        check_value_range(x, self.input_range)

    def normalize(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Check ``x`` ((B, C, H, W) or (B, C, D, H, W) in [0, 1], see :meth:`check_input`) and
        return ``(x - mean) / std``. Every ``forward``/``forward_features``/``forward_intermediates``
        goes through it, so the check runs once per forward. ``check=False``: the caller has run the
        same checks on ``x`` already (a fuser's :meth:`~medfm.adapters.fusion.base.FusionModel.select`,
        which names the modality), so they are not repeated (one ``aminmax`` and device sync fewer).

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

    def forward(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Pooled embedding ``(B, num_features)`` of images ``(B, C, H, W)`` in [0, 1]. ``check``: see :meth:`normalize`.

        Raises:
            EncoderInputError: see :meth:`check_input`.
        """
        return self._pool(self._features(self.normalize(x, check)))

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
