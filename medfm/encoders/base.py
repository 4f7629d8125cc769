"""The encoder contract every image encoder in medfm follows, whatever its family.

An encoder is an ``nn.Module`` that takes ``(B, C, H, W)`` float32 images with values
in [0, 1] (``C == in_chans``), normalises them with its own ``pixel_mean``/``pixel_std``
and exposes:

* ``num_features``: int, size of the pooled embedding;
* ``forward_features(x)``: ``(B, N, D)`` tokens or ``(B, D, h, w)`` feature map;
* ``forward(x)``: ``(B, num_features)`` pooled embedding;
* ``forward_intermediates(x)``: list of ``(B, C_i, H_i, W_i)`` maps for dense heads;
* ``in_chans``, ``img_size``, ``family`` and ``lora_target_modules`` (a regex that peft
  matches against full module names; it selects the family's attention/projection/conv
  layers for LoRA).

The design follows timm's feature-extraction API (``forward_features``,
``forward_intermediates``) and open_clip's idea of a tower behind a fixed interface.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Union

import torch
from torch import nn

SUPPORTED_IN_CHANS = (1, 3)


class EncoderInputError(ValueError):
    """Raised when an encoder is given a tensor of the wrong shape, channels, size or with NaN/inf."""


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
    input and set ``num_features``.

    Raises:
        ValueError: ``in_chans`` or ``img_size`` out of range.
    """

    family: str = "generic"
    #: 2 for images ``(B, C, H, W)``, 3 for volumes ``(B, C, D, H, W)``.
    spatial_dims: int = 2
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
        if int(in_chans) != in_chans or in_chans < 1:
            raise ValueError(f"in_chans must be a positive integer, got {in_chans!r}")
        if int(img_size) != img_size or img_size < 8:
            raise ValueError(f"img_size must be an integer >= 8, got {img_size!r}")
        self.in_chans = int(in_chans)
        self.img_size = int(img_size)
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
        tensor with finite values.

        Args:
            x: the input batch.
            check_size: also check the spatial size (``img_size`` for fixed-size encoders,
                at least 8 per side); objectives turn it off for raw batches that their random
                views resize before the encoder sees them.

        Raises:
            EncoderInputError: wrong type, rank, channel count, an empty batch (B=0), size, or
                NaN/inf values.
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
        if not torch.isfinite(x).all():
            raise EncoderInputError("input contains NaN or inf values")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x`` ((B, C, H, W) in [0, 1]) and return ``(x - mean) / std``.

        Float inputs of another dtype than the encoder's (float64 from NumPy, float16) are
        cast to it (the dtype of ``pixel_mean``, which follows ``encoder.to(dtype)``), so they
        do not fail deep inside the first convolution with a dtype mismatch.
        """
        self.check_input(x)
        x = x.to(self.pixel_mean.dtype)
        return (x - self.pixel_mean) / self.pixel_std

    # -- the contract -----------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled features: ``(B, N, D)`` tokens or ``(B, D, h, w)`` map."""
        return self._features(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled embedding ``(B, num_features)`` of images ``(B, C, H, W)`` in [0, 1]."""
        return self._pool(self._features(self.normalize(x)))

    def forward_intermediates(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Multi-scale maps ``[(B, C_i, H_i, W_i), ...]``, finest first, for dense heads."""
        return self._intermediates(self.normalize(x))

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
