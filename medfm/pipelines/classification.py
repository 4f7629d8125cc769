"""Image-classification pipeline: raw images in, ``{"label", "score"}`` lists out.

Follows transformers' pipeline convention: for each image a list of
``{"label": name, "score": probability}`` over all classes, highest first; the
checkpoint's own preprocessing (channels, size, intensity scaling) is applied.
Checkpoints with a 3D encoder (``encoder.spatial_dims == 3``, config
``preprocessing.spatial_dims``) classify volumes instead (see :func:`volume_to_tensor`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

# PipelineInputError is re-exported here: ``from medfm.pipelines.classification import PipelineInputError``
from medfm.pipelines.inputs import (IMAGES_2D, NEEDS_2D_CLASSIFIER, NIFTI_SUFFIXES, PipelineInputError,
                                    check_not_nifti, check_real_nifti, check_top_k, check_unit_floats, each_input,
                                    existing_image_file, is_nifti, nifti_shape_note, not_a_volume_note,
                                    pil_to_array, read_image_file, refuse_masked, refuse_rgb_like, refuse_single_slice,
                                    tensor_hint, uint8_image_array)


#: files :func:`volume_to_tensor` reads (NIfTI via nibabel, numpy arrays)
VOLUME_SUFFIXES = NIFTI_SUFFIXES + (".npy",)
_NEEDS_3D = "a 3D volume needs a 3D classifier, e.g. one fine-tuned with encoder resnet3d_10"


def volumes_taken(in_chans: int, img_size: int) -> str:
    """What a 3D classifier takes, as its errors say it: kind, dim order, channels and size."""
    chans = "1" if in_chans == 1 else f"1 or {in_chans}"
    return (f"this 3D classifier takes volumes (D, H, W) or (C, D, H, W) with C = {chans}, any size (resized to "
            f"{img_size}^3 voxels)")


def image_to_tensor(image: Any, in_chans: int, img_size: int) -> torch.Tensor:
    """One image -> ``(in_chans, img_size, img_size)`` float32 in [0, 1].

    Accepts an image file path (``str`` or ``os.PathLike``: PNG, JPEG, TIFF, ... read with
    :func:`medfm.pipelines.inputs.read_image_file`, as the segmentation and VQA pipelines read theirs), a
    PIL image in any mode (``L``, ``RGB``, ``RGBA``, ``P``, ``1``, ``I;16``, ``I``, ``F``, ...; 16-bit
    and float modes min-max scaled, see :func:`medfm.pipelines.inputs.pil_to_array`; files and PIL
    images are turned upright by their EXIF Orientation, :func:`medfm.data.images.load_upright`; TIFFs
    Pillow would misread, multi-page or 16-bit colour ones, are refused,
    :func:`medfm.pipelines.inputs.check_tiff`) or a numpy array ``(H, W)`` / ``(H, W, C)`` (C = 1 or 3,
    channels last), uint8 as stored in MedMNIST npz files or float in [0, 1], rounded to uint8 so that
    ``u / 255.0`` gives exactly what uint8 ``u`` gives (:func:`medfm.pipelines.inputs.uint8_image_array`:
    other dtypes, channels-first arrays and ``(N, H, W)`` stacks are refused; a batch is a list).
    Grayscale is repeated to 3 channels for RGB models; RGB is converted to luminance (PIL "L") for
    1-channel models. Other sizes (larger or smaller) are
    resized bilinearly (antialiased) to ``img_size`` x ``img_size``, without keeping the aspect ratio.

    Raises:
        PipelineInputError: unsupported type (a torch tensor: with how to pass it as an array),
            dtype or shape; NaN/inf or out-of-range floats; an empty image; a missing or unreadable
            image file (a folder, a DICOM or numpy file, a PIL image whose file was closed: each
            named); a multi-page or 16-bit colour TIFF, or one Pillow loaded scrambled
            (:func:`medfm.pipelines.inputs.check_tiff`); a NIfTI file (a 2D slice: with how to pass it
            as an array; a volume: a 3D classifier takes it, :func:`medfm.pipelines.inputs.check_not_nifti`);
            a ``(D, H, W)`` or 4D array
            (those need a 3D classifier).
    """
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        path = existing_image_file(image)
        check_not_nifti(path, f"this 2D classifier takes {IMAGES_2D}", _NEEDS_3D)
        arr = read_image_file(path, in_chans)  # 16-bit / float files are min-max scaled, never clipped at 255
    elif isinstance(image, Image.Image):
        arr = pil_to_array(image, in_chans)
    elif isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[0] not in (1, 3) and arr.shape[-1] not in (1, 2, 3, 4)):
            raise PipelineInputError(f"this classifier takes 2D images (H, W) or (H, W, 3), got an array of shape "
                                     f"{arr.shape} ({_NEEDS_3D}; a stack of 2D images is a batch: pass a list, "
                                     "list(array))")
        arr = uint8_image_array(arr, gray=in_chans == 1)
    else:
        raise PipelineInputError(f"expected an image file path, a PIL image or a numpy array (uint8, or float in "
                                 f"[0, 1]), got {type(image).__name__}{tensor_hint(image)}")
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


def _unit_volume(arr: np.ndarray, what: str) -> np.ndarray:
    """A uint8 (/255) or float-in-[0, 1] volume array -> float32, same shape.

    Raises:
        PipelineInputError: another dtype, NaN/inf voxels, floats outside [0, 1].
    """
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise PipelineInputError(f"{what} must be uint8 (0-255) or float in [0, 1], got {arr.dtype} (scale it to "
                                 "[0, 1] first, or pass a NIfTI file, which is min-max scaled)")
    return check_unit_floats(arr, what, "voxel", f"{what} float values").astype(np.float32, copy=False)

def _read_volume_file(path: Path, takes: str) -> np.ndarray:
    """A NIfTI (min-max scaled to [0, 1], float32) or ``.npy`` (as stored) volume file.

    ``takes`` is what the model takes (:func:`volumes_taken`), for the messages about files of
    another kind or dimensionality.

    Raises:
        PipelineInputError: missing file (or a folder), not a volume suffix (with what to do:
            :func:`medfm.pipelines.inputs.not_a_volume_note`), unreadable/corrupt file, a NIfTI that is
            not 3D (a 2D slice or a 4D series: named with its shape and what the model takes) or has
            NaN/inf voxels.
    """
    existing_image_file(path, missing="no such volume file")
    name = path.name.lower()
    if name.endswith(".npy"):
        try:
            return np.load(path, allow_pickle=False)
        except Exception as err:  # numpy raises ValueError/OSError/EOFError for bad files
            raise PipelineInputError(f"cannot read {path} as a .npy array ({type(err).__name__}: {err})") from None
    if not is_nifti(path):
        raise PipelineInputError(f"{takes}; {path.name} is not a volume file ({', '.join(VOLUME_SUFFIXES)}): "
                                 f"{not_a_volume_note(path, NEEDS_2D_CLASSIFIER)}")
    from medfm.data.errors import MedFMDataError
    from medfm.data.segmentation import load_nifti

    try:
        arr = load_nifti(path)[0]
    except MedFMDataError as err:
        raise PipelineInputError(str(err)) from None
    if arr.ndim != 3 or 1 in arr.shape:
        raise PipelineInputError(f"{takes}; {path.name} is {nifti_shape_note(arr.shape, NEEDS_2D_CLASSIFIER)}")
    check_real_nifti(arr.dtype, path.name)
    vol = arr.astype(np.float64)
    if not np.isfinite(vol).all():
        raise PipelineInputError(f"NIfTI {path.name} has {int((~np.isfinite(vol)).sum())} NaN/inf voxel value(s)")
    if vol.size == 0:
        raise PipelineInputError(f"empty NIfTI volume of shape {vol.shape} in {path.name}")
    lo, hi = vol.min(), vol.max()
    vol = (vol - lo) / (hi - lo) if hi > lo else np.zeros_like(vol)
    return vol.astype(np.float32)


def volume_to_tensor(volume: Any, in_chans: int, img_size: int) -> torch.Tensor:
    """One volume -> ``(in_chans, img_size, img_size, img_size)`` float32 in [0, 1] (3D classifiers).

    Accepts:

    - a numpy array ``(D, H, W)`` or ``(C, D, H, W)``: uint8 (divided by 255, as
      :class:`medfm.data.medmnist.MedMNISTDataset` does) or float, which must be finite and
      already in [0, 1] (float rounding up to 1e-3 outside is clipped,
      :func:`medfm.pipelines.inputs.clip_unit_range`);
    - a NIfTI file path (``.nii``/``.nii.gz``, read with nibabel, a 3D volume): intensities are
      min-max scaled to [0, 1] per volume (``(v - min) / (max - min)``; a constant volume gives
      zeros), since scanner units (HU, MR arbitrary units) have no fixed range; the stored voxel
      axes are used in order as (D, H, W), without reorientation;
    - a ``.npy`` file path: read with ``np.load`` (no pickles) and treated as the arrays above.

    An array (or ``.npy`` file) that looks like an RGB(A) image, ``(H, W, 3)``, ``(3, H, W)``, ``(H, W, 4)``,
    ``(4, H, W)`` with both other axes at least 4 times as long (:func:`medfm.pipelines.inputs.rgb_like_axis`),
    is refused, not resized to a cube as a volume 3-4 slices thin; a NIfTI file of that shape is a volume.
    Smaller ones, such as ``(8, 8, 3)`` or ``(11, 40, 3)`` (another axis shorter than 12, or 16 beside a 4),
    are taken as volumes of 3-4 slices: no image medfm meets is that small (MedMNIST's, the smallest, are
    28 x 28), while tiny test volumes are; an RGB image goes to a 2D classifier.

    A single-channel volume is repeated to ``in_chans`` channels (as MedMNIST's ``as_rgb``
    does); otherwise ``C`` must equal ``in_chans``. Volumes of another size (also non-cubic
    ones) are resized with trilinear interpolation (``align_corners=False``, no anti-aliasing)
    to ``img_size`` a side; MedMNIST 3D volumes were themselves made by resizing source CT / MRA
    crops to 28^3 (or 64^3) voxels (Yang et al., "MedMNIST v2", Scientific Data 2023), so
    resize a scan cropped around the organ, not a whole-body scan.

    Raises:
        PipelineInputError: a 2D image (PIL, image file, 2D NIfTI, ``(H, W)`` array, a volume with a
            length-1 spatial axis: a single slice), an array shaped like an RGB(A) image (see above), a numpy
            masked array (:func:`medfm.pipelines.inputs.refuse_masked`; its mask was dropped),
            wrong rank (a 4D NIfTI, a 5D array), channel count, dtype, NaN/inf or out-of-range floats,
            an empty volume, a missing or corrupt file, another type (a torch tensor: with how to pass
            it as an array). Shape errors say what this model takes (:func:`volumes_taken`).
    """
    from PIL import Image

    takes = volumes_taken(in_chans, img_size)
    nifti = isinstance(volume, (str, os.PathLike)) and is_nifti(Path(volume))  # a volume whatever its shape
    if isinstance(volume, (str, os.PathLike)):
        volume = _read_volume_file(Path(volume), takes)
    if isinstance(volume, Image.Image):
        raise PipelineInputError(f"{takes}; got a 2D PIL image of size {volume.size} ({NEEDS_2D_CLASSIFIER})")
    if not isinstance(volume, np.ndarray):
        raise PipelineInputError(f"expected a volume file path ({', '.join(VOLUME_SUFFIXES)}) or a numpy array "
                                 f"(D, H, W) / (C, D, H, W), got {type(volume).__name__}"
                                 f"{tensor_hint(volume, channels_last=False)}")
    refuse_masked(volume, "volume")
    if volume.ndim == 2:
        raise PipelineInputError(f"{takes}; got a 2D array of shape {volume.shape} ({NEEDS_2D_CLASSIFIER})")
    if volume.ndim not in (3, 4):
        raise PipelineInputError(f"{takes}; got an array of shape {volume.shape}")
    if 0 in volume.shape:
        raise PipelineInputError(f"empty volume of shape {volume.shape}")
    refuse_single_slice(volume.shape, takes)  # a (H, W, 1) NIfTI or a (1, H, W) array: would be resized to a cube
    if not nifti:
        refuse_rgb_like(volume.shape, takes)  # an (H, W, 3) or (3, H, W) image: 3 slices resized to a cube
    arr = _unit_volume(volume, "volume")
    if arr.ndim == 4 and arr.shape[0] not in (1, in_chans):
        raise PipelineInputError(f"volume has {arr.shape[0]} channels (C, D, H, W) = {arr.shape} but the model "
                                 f"takes {in_chans} (a stack of volumes is a batch: pass a list, list(array))")
    x = torch.from_numpy(np.array(arr, copy=True))
    x = x.unsqueeze(0) if x.ndim == 3 else x
    if x.shape[0] == 1 and in_chans > 1:
        x = x.expand(in_chans, -1, -1, -1)
    x = x.contiguous().to(torch.float32)
    if volume.dtype == np.uint8:
        x = x.div_(255.0)
    if tuple(x.shape[-3:]) != (img_size,) * 3:
        x = F.interpolate(x[None], size=(img_size,) * 3, mode="trilinear", align_corners=False)[0]
    return x


class ImageClassificationPipeline:
    """Classify images with a medfm classifier checkpoint.

    Args:
        model: checkpoint dir / ``hf-hub:`` id, or a loaded classifier module.
        batch_size: images per forward pass, an integer >= 1 (keep it equal to ``medfm eval``'s to
            reproduce its scores bit for bit).
        top_k: labels returned per image by default: an integer >= 1, or None (the default)
            for all classes; ``__call__``'s ``top_k`` overrides it for one call (as in the
            VQA pipeline, ``medfm.pipeline("image-classification", model=..., top_k=1)``).

    ``__call__(images, top_k=None)``: one image (a file path, PIL image, or array: uint8, or float
    in [0, 1], see :func:`image_to_tensor`) -> a list of
    ``{"label", "score"}``, highest first (``top_k`` of them; ``top_k=None``: the pipeline's
    ``top_k``); a list of images -> one such
    list per image (``[]`` for ``[]``). A checkpoint whose encoder is 3D
    (``encoder.spatial_dims == 3``) takes volumes instead: ``(D, H, W)`` / ``(C, D, H, W)``
    arrays or ``.nii``/``.nii.gz``/``.npy`` paths, see :func:`volume_to_tensor`; its scores on
    a MedMNIST 3D split equal ``medfm eval``'s at the same ``batch_size``.

    Raises:
        ValueError: ``batch_size`` not an integer >= 1 (``"8"``, ``2.5``, ``True`` and None included).
        PipelineInputError: ``model`` is not a classifier; bad images or ``top_k``; a volume given
            to a 2D classifier or a 2D image to a 3D one (in a list, the message names the input:
            "image at index 3 of 5: ...", :func:`medfm.pipelines.inputs.each_input`).
        medfm.hub.CheckpointError: missing or corrupt checkpoint.
    """

    def __init__(self, model: Any, batch_size: int = 256, top_k: Optional[int] = None) -> None:
        from medfm.evaluation.predict import classifier_core
        from medfm.hub import from_pretrained

        from medfm.arg_checks import check_number

        self.top_k = check_top_k(top_k, none_means="all classes")
        # checked before the checkpoint loads; "8", 2.7 and True were taken as 8, 2 and 1, None failed in int()
        self.batch_size = check_number("batch_size", batch_size, ge=1, integer=True)
        self.model = from_pretrained(model) if isinstance(model,
                                                          (str, bytes)) or hasattr(model, "__fspath__") else model
        self.core = classifier_core(self.model)
        if not all(hasattr(self.core, a) for a in ("scores", "label_names", "encoder")):
            raise PipelineInputError(f"{type(self.core).__name__} is not an image classifier (medfm adapter "
                                     "'classification'); fine-tune one with `medfm finetune`")
        self.model.eval()

    @torch.no_grad()
    def __call__(self, images: Union[Any, Sequence[Any]], top_k: Optional[int] = None
                 ) -> Union[List[Dict[str, Any]], List[List[Dict[str, Any]]]]:
        top_k = self.top_k if top_k is None else check_top_k(top_k)
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        if not items:
            return []
        enc = self.core.encoder
        volumes = getattr(enc, "spatial_dims", 2) == 3
        to_tensor = volume_to_tensor if volumes else image_to_tensor
        x = torch.stack(each_input(items, lambda im: to_tensor(im, enc.in_chans, enc.img_size), batch=not single,
                                   noun="volume" if volumes else "image"))
        scores = torch.cat([self.core.scores(self.model(x[i:i + self.batch_size]))
                            for i in range(0, len(x), self.batch_size)])
        names = self.core.label_names
        out = []
        for row in scores.tolist():
            ranked = sorted(({"label": n, "score": s} for n, s in zip(names, row)), key=lambda d: -d["score"])
            out.append(ranked[:top_k] if top_k else ranked)
        return out[0] if single else out
