"""The parameters of the random views (:class:`ViewConfig`, a recipe's ``augment`` section): pure Python, so
that a fine-tuning recipe (:mod:`medfm.training.recipes`) is read and checked without importing torch
(``medfm eval --suite``'s early check of a suite's ``protocol.finetune`` settings imported it for this dataclass).
:mod:`medfm.data.views`, which draws the views, re-exports it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

from medfm.arg_checks import check_number, number_fits, shown


@dataclass
class ViewConfig:
    """Parameters of :class:`medfm.data.views.RandomViews`.

    Attributes:
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the crop aspect ratio, width / height in pixels (log-uniform).
        hflip_p / vflip_p: flip probabilities.
        rotate_deg: maximum absolute rotation in degrees.
        blur_p: probability of Gaussian blur; ``blur_sigma`` its sigma range in pixels.
        brightness / contrast: maximum intensity shift / relative scale change, each in [0, 1).
        noise_std: standard deviation of additive Gaussian noise (intensity units in [0, 1]).

    Raises:
        ValueError: a value of the wrong kind or out of range (:func:`medfm.arg_checks.check_number`;
            ``True`` is not a probability of 1, NaN/inf are refused), e.g. ``views.contrast must be
            in [0, 1) (...), got 1.5``, ``views.brightness must be < 1 (...), got 1.5`` or
            ``views.scale must satisfy 0 < low <= high <= 1, got (0, 1)``.
    """

    scale: Tuple[float, float] = (0.35, 1.0)
    ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    vflip_p: float = 0.0
    rotate_deg: float = 10.0
    blur_p: float = 0.5
    blur_sigma: Tuple[float, float] = (0.1, 1.0)
    brightness: float = 0.2
    contrast: float = 0.2
    noise_std: float = 0.02

    def __post_init__(self) -> None:
        _check_range("scale", self.scale, "satisfy 0 < low <= high <= 1", le=1)
        _check_range("ratio", self.ratio, "be finite, positive and ordered")
        for name in ("hflip_p", "vflip_p", "blur_p"):
            check_number(f"views.{name}", getattr(self, name), ge=0, le=1, hint=" (a probability)")
        for name in ("rotate_deg", "noise_std", "brightness"):
            check_number(f"views.{name}", getattr(self, name), ge=0)
        # the shift is drawn from [-brightness, brightness] on [0, 1] intensities (1.5 was accepted)
        check_number("views.brightness", self.brightness, lt=1,
                     hint=" (a shift of +/- brightness on [0, 1] intensities; 1 or more can blank the image)")
        # the gain is drawn from [1 - contrast, 1 + contrast]
        check_number("views.contrast", self.contrast, ge=0, lt=1,
                     hint=" (a gain of 1 +/- contrast; 1 or more can invert or blank the image)")
        _check_range("blur_sigma", self.blur_sigma, "satisfy 0 < low <= high (pixels)")

    @classmethod
    def light(cls) -> "ViewConfig":
        """Mild augmentation for supervised fine-tuning (crop >= 80 %, flips, 5 degrees)."""
        return cls(scale=(0.8, 1.0), rotate_deg=5.0, blur_p=0.0, brightness=0.1, contrast=0.1, noise_std=0.0)


def _check_range(name: str, pair: Any, rule: str, le: Optional[float] = None) -> None:
    """Refuse a ``(low, high)`` range that is not two finite numbers with ``0 < low <= high`` (``<= le``).

    Raises:
        ValueError: ``views.scale must satisfy 0 < low <= high <= 1, got (0, 1)``.
    """
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(number_fits(v, gt=0, le=le) for v in pair)
            and pair[0] <= pair[1]):
        raise ValueError(f"views.{name} must {rule}, got {shown(pair)}")
