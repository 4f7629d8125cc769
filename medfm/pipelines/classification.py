"""Image-classification pipeline: raw images in, ``{"label", "score"}`` lists out.

Follows transformers' pipeline convention: for each image a list of
``{"label": name, "score": probability}`` over all classes, highest first; the
checkpoint's own preprocessing (channels, size, intensity scaling) is applied.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

class PipelineInputError(ValueError):
    """An input image is of an unsupported type, shape or dtype."""


def check_top_k(top_k: Any, none_means: str = "") -> Optional[int]:
    """``top_k`` as an int (None passes when ``none_means`` says what it means).

    Raises:
        PipelineInputError: not an integer >= 1 (bools, floats and strings included).
    """
    if top_k is None and none_means:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        allowed = f" or None ({none_means})" if none_means else ""
        raise PipelineInputError(f"top_k must be a positive integer{allowed}, got {top_k!r}")
    return int(top_k)


def pil_to_array(image: Any, in_chans: int) -> np.ndarray:
    """A PIL image -> uint8 ``(H, W)`` (``in_chans`` 1) or ``(H, W, 3)`` array.

    Pixels deeper than 8 bits (modes ``I;16``, ``I``, ``F``: 16-bit PNG/TIFF scans) are
    min-max scaled to 0-255 first, as :func:`medfm.data.images.read_image` does for files;
    PIL's own ``convert("L")`` would clip them at 255.

    Raises:
        PipelineInputError: non-finite pixels in a float image.
    """
    from medfm.data.errors import MedFMDataError
    from medfm.data.images import pil_to_uint8

    try:
        return pil_to_uint8(image, "L" if in_chans == 1 else "RGB")
    except MedFMDataError as err:
        raise PipelineInputError(str(err)) from None


def image_to_tensor(image: Any, in_chans: int, img_size: int) -> torch.Tensor:
    """One image -> ``(in_chans, img_size, img_size)`` float32 in [0, 1].

    Accepts an image file path (``str`` or ``os.PathLike``: PNG, JPEG, TIFF, ... read with
    :func:`medfm.data.images.read_image`, as the segmentation and VQA pipelines read theirs), a
    PIL image (16-bit and float modes min-max scaled, see :func:`pil_to_array`) or
    a uint8 array ``(H, W)`` / ``(H, W, C)`` (C = 1 or 3) as stored in MedMNIST npz files. Grayscale is repeated to 3 channels for RGB models; RGB is converted
    to luminance (PIL "L") for 1-channel models. Other sizes are resized bilinearly.

    Raises:
        PipelineInputError: unsupported type, dtype or shape; a missing or unreadable image file.
    """
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        from medfm.data.errors import MedFMDataError
        from medfm.data.images import read_image

        try:  # 16-bit / float files are min-max scaled, never clipped at 255
            image = read_image(image, mode="L" if in_chans == 1 else "RGB", what="image")
        except MedFMDataError as err:
            raise PipelineInputError(str(err)) from None
    if isinstance(image, Image.Image):
        arr = pil_to_array(image, in_chans)
    elif isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            raise PipelineInputError(f"arrays must be uint8 (as stored in MedMNIST), got {arr.dtype}")
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim == 3 and arr.shape[-1] == 3 and in_chans == 1:
            arr = np.asarray(Image.fromarray(arr).convert("L"))
        if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
            raise PipelineInputError(f"expected an (H, W) or (H, W, 3) array, got shape {arr.shape}")
    else:
        raise PipelineInputError(f"expected an image file path, a PIL image or a uint8 numpy array, got "
                                 f"{type(image).__name__}")
    if min(arr.shape[:2]) == 0:
        raise PipelineInputError(f"empty image of shape {arr.shape}")
    x = torch.from_numpy(np.array(arr, copy=True))  # PIL-backed arrays are read-only
    x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
    if x.shape[0] == 1 and in_chans == 3:
        x = x.expand(3, -1, -1)
    x = x.contiguous().to(torch.float32).div_(255.0)
    if x.shape[-2:] != (img_size, img_size):
        x = F.interpolate(x[None], size=(img_size, img_size), mode="bilinear", align_corners=False, antialias=True)[0]
    return x


class ImageClassificationPipeline:
    """Classify images with a medfm classifier checkpoint.

    Args:
        model: checkpoint dir / ``hf-hub:`` id, or a loaded classifier module.
        batch_size: images per forward pass (keep it equal to ``medfm eval``'s to reproduce
            its scores bit for bit).

    ``__call__(images, top_k=None)``: one image (a file path, PIL image or uint8 array, see
    :func:`image_to_tensor`) -> a list of
    ``{"label", "score"}``, highest first (``top_k`` of them); a list of images -> one such
    list per image (``[]`` for ``[]``).

    Raises:
        PipelineInputError: ``model`` is not a classifier; bad images or ``top_k``.
        medfm.hub.CheckpointError: missing or corrupt checkpoint.
    """

    def __init__(self, model: Any, batch_size: int = 256) -> None:
        from medfm.evaluation.predict import classifier_core
        from medfm.hub import from_pretrained

        self.model = from_pretrained(model) if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__") else model
        self.core = classifier_core(self.model)
        if not all(hasattr(self.core, a) for a in ("scores", "label_names", "encoder")):
            raise PipelineInputError(f"{type(self.core).__name__} is not an image classifier (medfm adapter "
                                     "'classification'); fine-tune one with `medfm finetune`")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model.eval()
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def __call__(self, images: Union[Any, Sequence[Any]], top_k: Optional[int] = None
                 ) -> Union[List[Dict[str, Any]], List[List[Dict[str, Any]]]]:
        top_k = check_top_k(top_k, none_means="all classes")
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        if not items:
            return []
        enc = self.core.encoder
        x = torch.stack([image_to_tensor(im, enc.in_chans, enc.img_size) for im in items])
        scores = torch.cat([self.core.scores(self.model(x[i:i + self.batch_size]))
                            for i in range(0, len(x), self.batch_size)])
        names = self.core.label_names
        out = []
        for row in scores.tolist():
            ranked = sorted(({"label": n, "score": s} for n, s in zip(names, row)), key=lambda d: -d["score"])
            out.append(ranked[:top_k] if top_k else ranked)
        return out[0] if single else out
