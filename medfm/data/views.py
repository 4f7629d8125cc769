"""Batched, seeded image augmentations ("views") for self-supervised pretraining and fine-tuning.

All randomness comes from an explicit ``torch.Generator``, so a training step's views are
a pure function of (seed, step): this is what lets a killed run resume bit-exactly.
Augmentations run on whole batches (one ``affine_grid``/``grid_sample`` call, one grouped
blur convolution), which is much faster than per-image PIL transforms at 28-64 px.

The defaults suit grayscale medical images (SimCLR's recipe, Chen et al. 2020, minus
colour jitter and grayscale conversion, which are meaningless on 1-channel data): random
resized crop, horizontal flip, small rotation, Gaussian blur, mild brightness/contrast
(intensity windowing) and Gaussian noise.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F

from medfm.arg_checks import check_number, shown
from medfm.data.view_config import ViewConfig  # torch-free (a recipe's augment section); re-exported here


def check_generator(gen: Any, who: str, why: str = "") -> None:
    """Refuse a ``gen`` that is neither None (torch's global generator) nor a CPU ``torch.Generator``:
    the views draw from it with ``torch.rand(..., generator=gen)`` on the CPU.

    Args:
        gen: the generator given.
        who: first words of the message (``"views"``, ``"simclr"``).
        why: a parenthesis after ``torch.Generator`` (``"it draws the random views"``).

    Raises:
        ValueError: ``views: gen must be a CPU torch.Generator or None, got 0; e.g.
            torch.Generator().manual_seed(0)`` (a seed given instead failed with torch's many-line
            ``rand() received an invalid combination of arguments``).
    """
    if gen is not None and not (isinstance(gen, torch.Generator) and gen.device.type == "cpu"):
        got = f"a {gen.device.type} torch.Generator" if isinstance(gen, torch.Generator) else shown(gen)
        raise ValueError(f"{who}: gen must be a CPU torch.Generator{f' ({why})' if why else ''} or None, got {got}; "
                         "e.g. torch.Generator().manual_seed(0)")


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (hi - lo) + lo


#: crop draws per image before the central fallback, torchvision's ``RandomResizedCrop.get_params``
CROP_ATTEMPTS = 10


def _crop_fits(area: torch.Tensor, log_r: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Whether each drawn crop fits an ``h x w`` image, torchvision's test in pixels:
    ``0 < round(sqrt(s * H * W * r)) <= W`` and ``0 < round(sqrt(s * H * W / r)) <= H`` (float64, round half
    to even as Python's ``round``; ``r`` the float32 ``exp`` of the drawn log ratio, as torchvision's).

    Args:
        area, log_r: ``(n,)`` float32 area fractions and log aspect ratios (width / height).
        h, w: the image's height and width in pixels.

    Returns:
        ``(n,)`` bool.
    """
    target = area.double() * (h * w)
    ratio = torch.exp(log_r).double()
    cw, ch = torch.round(torch.sqrt(target * ratio)), torch.round(torch.sqrt(target / ratio))
    return (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)


def _redraw_misfits(area: torch.Tensor, log_r: torch.Tensor, h: int, w: int, cfg: ViewConfig,
                    gen: Optional[torch.Generator]) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop.get_params`` rule for a batch of ``h x w`` images: a crop that does not
    fit (:func:`_crop_fits`) is redrawn, area then log ratio as the first draw, up to :data:`CROP_ATTEMPTS`
    draws in all; each round draws for the images still unfit only, in batch order (one image: torchvision's
    draws, in its order). ``area`` and ``log_r`` are updated in place.

    Returns:
        ``(n,)`` bool: the images none of whose draws fit, which take the central crop (:func:`_fallback_crop`).
    """
    unfit = ~_crop_fits(area, log_r, h, w)
    for _ in range(CROP_ATTEMPTS - 1):
        redo = unfit.nonzero().flatten()
        if not len(redo):
            break
        area[redo] = _uniform(gen, len(redo), *cfg.scale)
        log_r[redo] = _uniform(gen, len(redo), math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
        unfit[redo] = ~_crop_fits(area[redo], log_r[redo], h, w)
    return unfit


def _fallback_crop(h: int, w: int, ratio: Tuple[float, float]) -> Tuple[float, float]:
    """torchvision's fallback crop of an ``h x w`` image as ``(width, height)`` fractions of the image's: the
    whole image when its aspect ``W / H`` is within ``ratio``, else the full side and the other one giving the
    nearest bound of ``ratio`` (in pixels, not rounded to whole pixels)."""
    if w / h < ratio[0]:
        return 1.0, w / ratio[0] / h
    if w / h > ratio[1]:
        return h * ratio[1] / w, 1.0
    return 1.0, 1.0


class RandomViews:
    """Random views of a batch ``(B, C, H, W)`` float in [0, 1] -> ``(B, C, S, S)`` in [0, 1].

    The crop rule is torchvision's ``RandomResizedCrop`` (Szegedy et al. 2015, "Going deeper with
    convolutions"), drawn relative to each image, for any ``H x W``: an area fraction ``s`` from
    ``cfg.scale`` and an aspect ratio ``r`` (crop width / height, log-uniform in ``cfg.ratio``) give a
    crop of ``sqrt(s * H * W * r)`` x ``sqrt(s * H * W / r)`` px (width x height), placed uniformly inside
    the image, flipped, rotated about its centre by up to ``cfg.rotate_deg`` in pixel space (corners outside
    the image are reflected) and resampled to ``S x S`` (bilinear). A non-square image follows torchvision's
    ``get_params``: a crop whose rounded sides do not fit is redrawn, up to 10 draws, after which the image
    takes torchvision's central crop with its aspect clamped to ``cfg.ratio`` (one image on the global
    generator draws exactly torchvision's numbers and gets its crop size, unrounded). A square image
    (``H = W``) keeps the rule, views and random draws it had when only squares were accepted: a side longer
    than the image's is cut to it (the crop less elongated than drawn; torchvision would redraw).

    Args:
        cfg: the augmentation parameters.
        out_size: output side ``S`` in pixels, an integer >= 1 (default: the shorter input side,
            ``min(H, W)``). A 1 px view is a single bilinear sample (the blur leaves it as it is).
            An encoder may need more (:attr:`medfm.encoders.base.Encoder.min_input_size`); the objective
            that picks ``S`` checks that (:func:`medfm.objectives.inputs.check_view_size`).

    Raises:
        ValueError: ``cfg`` not a :class:`ViewConfig` (a dict or a name); ``out_size`` not an integer >= 1
            (``0`` was taken as the input side); in a call, input not a non-empty 4-D float tensor, or
            ``gen`` neither None (torch's global generator) nor a CPU ``torch.Generator`` (a seed given
            instead failed with torch's many-line ``rand() received an invalid combination``).
    """

    def __init__(self, cfg: Optional[ViewConfig] = None, out_size: Optional[int] = None) -> None:
        if cfg is not None and not isinstance(cfg, ViewConfig):
            raise ValueError(f"views cfg must be a ViewConfig (e.g. ViewConfig(**settings)), got {shown(cfg)}")
        self.cfg = cfg or ViewConfig()
        self.out_size = None if out_size is None else check_number("views out_size", out_size, ge=1, integer=True)

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"views expect a float torch.Tensor (B, C, H, W) batch, got {type(images).__name__}")
        if images.ndim != 4 or not images.is_floating_point() or not images.numel():
            raise ValueError(f"views expect a non-empty float (B, C, H, W) batch, got {tuple(images.shape)} "
                             f"{images.dtype}")
        b, c, h, w = images.shape
        check_generator(gen, "views")
        cfg = self.cfg
        size = self.out_size or min(h, w)
        # random resized crop + flips + rotation as one affine map in normalised coords (x: width, y: height,
        # each in [-1, 1]); the crop's width and height as fractions of the image's: sqrt(s * r * H / W) and
        # sqrt(s / r * W / H); for a square the factors are exactly 1.0, leaving each value as it was
        area = _uniform(gen, b, *cfg.scale)
        log_r = _uniform(gen, b, math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
        central = None if h == w else _redraw_misfits(area, log_r, h, w, cfg, gen)
        ratio = torch.exp(log_r)
        cw = torch.sqrt(area * ratio * (h / w)).clamp(max=1.0)  # square: the cut; else at most half a px over
        ch = torch.sqrt(area / ratio * (w / h)).clamp(max=1.0)
        if central is not None and central.any():  # torchvision's fallback: the central crop, its ratio clamped
            fw, fh = _fallback_crop(h, w, cfg.ratio)
            cw, ch = torch.where(central, fw, cw), torch.where(central, fh, ch)
        cx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - cw)
        cy = (torch.rand(b, generator=gen) * 2 - 1) * (1 - ch)
        if central is not None:  # drawn all the same, so the later draws do not depend on the fallback
            cx, cy = cx.masked_fill(central, 0.0), cy.masked_fill(central, 0.0)
        fx = torch.where(torch.rand(b, generator=gen) < cfg.hflip_p, -1.0, 1.0)
        fy = torch.where(torch.rand(b, generator=gen) < cfg.vflip_p, -1.0, 1.0)
        ang = _uniform(gen, b, -cfg.rotate_deg, cfg.rotate_deg) * math.pi / 180
        cos, sin = torch.cos(ang), torch.sin(ang)
        # a rotation in pixels, written in normalised coords: the off-diagonal terms carry H / W and W / H
        theta = torch.stack(
            [
                torch.stack([cw * fx * cos, -ch * fy * sin * (h / w), cx], dim=1),
                torch.stack([cw * fx * sin * (w / h), ch * fy * cos, cy], dim=1),
            ],
            dim=1,
        ).to(device=images.device, dtype=images.dtype)
        grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

        if cfg.blur_p > 0:
            out = self._blur(out, gen)
        if cfg.brightness > 0 or cfg.contrast > 0:
            shift = _uniform(gen, b, -cfg.brightness, cfg.brightness).view(b, 1, 1, 1).to(out)
            gain = _uniform(gen, b, 1 - cfg.contrast, 1 + cfg.contrast).view(b, 1, 1, 1).to(out)
            mean = out.mean(dim=(1, 2, 3), keepdim=True)
            out = (out - mean) * gain + mean + shift
        if cfg.noise_std > 0:
            out = out + torch.randn(out.shape, generator=gen).to(out) * cfg.noise_std
        return out.clamp_(0.0, 1.0)

    def _blur(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        cfg = self.cfg
        apply = torch.rand(b, generator=gen) < cfg.blur_p
        sigma = _uniform(gen, b, *cfg.blur_sigma)
        # 2 sigma each side, but below the image side: reflect padding needs pad < side, and a
        # kernel wider than the image would only repeat reflected pixels (a large blur_sigma on
        # SwAV's 12 px local crops used to raise torch's padding error); a 1 px view has nothing to
        # blur (out_size=1 raised that padding error); the draws above keep the generator's stream
        radius = min(int(math.ceil(2 * cfg.blur_sigma[1])), min(h, w) - 1)
        if radius < 1:
            return x
        coords = torch.arange(-radius, radius + 1, dtype=x.dtype)
        k1 = torch.exp(-(coords[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
        k1 = k1 / k1.sum(dim=1, keepdim=True)
        identity = torch.zeros_like(k1)
        identity[:, radius] = 1
        k1 = torch.where(apply[:, None], k1, identity).to(x)  # (B, K)
        k1 = k1.repeat_interleave(c, dim=0)  # (B*C, K)
        flat = x.reshape(1, b * c, h, w)
        flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
        flat = F.conv2d(flat, k1.view(b * c, 1, 1, -1), groups=b * c)
        flat = F.conv2d(flat, k1.view(b * c, 1, -1, 1), groups=b * c)
        return flat.view(b, c, h, w)
