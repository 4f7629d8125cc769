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
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

class PipelineInputError(ValueError):
    """An input image is of an unsupported type, shape or dtype."""


#: the suffixes of NIfTI files (nibabel reads both)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: files :func:`volume_to_tensor` reads (NIfTI via nibabel, numpy arrays)
VOLUME_SUFFIXES = NIFTI_SUFFIXES + (".npy",)
_NEEDS_3D = "a 3D volume needs a 3D classifier, e.g. one fine-tuned with encoder resnet3d_10"
_NEEDS_2D = "a 2D image needs a 2D classifier"
#: the inputs of every 2D pipeline (classification, segmentation, VQA), as their errors name them
IMAGES_2D = "image files (PNG, JPEG, TIFF, ...), PIL images or (H, W) / (H, W, 1|3) arrays (uint8, or float in [0, 1])"


def volumes_taken(in_chans: int, img_size: int) -> str:
    """What a 3D classifier takes, as its errors say it: kind, dim order, channels and size."""
    chans = "1" if in_chans == 1 else f"1 or {in_chans}"
    return (f"this 3D classifier takes volumes (D, H, W) or (C, D, H, W) with C = {chans}, any size (resized to "
            f"{img_size}^3 voxels)")


def existing_image_file(image: Union[str, os.PathLike], missing: str = "image file not found",
                        error: type = PipelineInputError) -> Path:
    """``image`` as the path of an existing file (a user's own image: no data-set advice).

    Used by every pipeline for its input files (the segmentation pipeline with its own
    ``missing`` wording and error class).

    Raises:
        error: "<missing>: <path>" (with "(a folder)" for a directory).
    """
    path = Path(image)
    if not path.is_file():
        raise error(f"{missing}: {path}" + (" (a folder)" if path.is_dir() else ""))
    return path


def clip_unit_range(arr: np.ndarray, refuse: Callable[[float, float], Exception]) -> np.ndarray:
    """Hold finite float pipeline inputs to [0, 1]: the one range rule of every pipeline.

    Values at most :data:`medfm.encoders.base.INPUT_RANGE_TOLERANCE` (1e-3, the encoders' own
    tolerance) outside [0, 1] are float rounding (``x / x.max()`` giving 1.0000001, a resampled
    or normalised image a hair below 0) and are clipped to [0, 1]; values beyond are refused.
    Used for float images (2D classification, segmentation and VQA, :func:`check_unit_floats`),
    3D classifier volumes and volumes of "unit" segmentation models
    (:func:`medfm.pipelines.seg_inputs.check_unit_volume`).

    Args:
        arr: finite float array of any shape (checked for NaN/inf by the caller).
        refuse: builds the caller's error from the range found, ``refuse(lo, hi)``.

    Returns:
        ``arr`` itself when it is already in [0, 1] (or empty), else a clipped copy (same shape and dtype).

    Raises:
        Exception: ``refuse(lo, hi)``, when a value lies below ``-tolerance`` or above ``1 + tolerance``.
    """
    from medfm.encoders.base import INPUT_RANGE_TOLERANCE

    if arr.size == 0:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -INPUT_RANGE_TOLERANCE or hi > 1 + INPUT_RANGE_TOLERANCE:
        raise refuse(lo, hi)
    return arr if 0 <= lo and hi <= 1 else np.clip(arr, 0, 1).astype(arr.dtype, copy=False)


def check_unit_floats(arr: np.ndarray, noun: str, unit: str, floats: str,
                      error: type = PipelineInputError) -> np.ndarray:
    """A float pipeline input checked to be finite and in [0, 1] (uint8 is the other accepted
    form; medfm encoders take [0, 1] inputs); float rounding just past the bounds is clipped
    (:func:`clip_unit_range`).

    Args:
        arr: float array of any shape.
        noun, unit, floats: how the messages name the input ("image", "pixel", "float images").
        error: the pipeline's error class (a ``ValueError`` subclass).

    Returns:
        ``arr``, clipped to [0, 1] when it was within the tolerance outside.

    Raises:
        error: "<noun> has N NaN/inf <unit> value(s)", or "<floats> must be in [0, 1],
            got values in [lo, hi] (divide 0-255 data by 255, ...)".
    """
    if not np.isfinite(arr).all():
        raise error(f"{noun} has {int((~np.isfinite(arr)).sum())} NaN/inf {unit} value(s)")
    return clip_unit_range(arr, lambda lo, hi: error(f"{floats} must be in [0, 1], got values in [{lo:.7g}, {hi:.7g}] "
                                                     "(divide 0-255 data by 255, or pass it as uint8)"))


def image_dtype_error(dtype: np.dtype, error: type = PipelineInputError) -> ValueError:
    """The one-line refusal of a 2D image array that is neither uint8 nor float (every 2D pipeline).

    Integer arrays (16-bit scans, CT units) are not guessed at: the message says to scale them
    to [0, 1] (or to pass the file or PIL image, which is min-max scaled as when it is read); a bool
    mask is told how to become uint8.
    """
    if dtype == np.bool_:
        hint = "; a mask? pass mask.astype(np.uint8) * 255"
    elif np.issubdtype(dtype, np.integer):
        hint = ("; scale other data to [0, 1] first, e.g. (x - x.min()) / (x.max() - x.min()), or pass it "
                "as a 16-bit image file or PIL image (those are min-max scaled for you)")
    else:
        hint = ""
    return error(f"image arrays must be uint8 or float in [0, 1], got {dtype}{hint}")


def image_shape_hint(shape: Sequence[int]) -> str:
    """What a 2D image array of an unsupported ``shape`` probably is, with what to pass instead,
    as a parenthesis to append to a message ("" when nothing fits)."""
    if len(shape) == 3 and shape[-1] == 4:
        return " (RGBA? drop the alpha channel, array[..., :3])"
    if len(shape) == 3 and shape[-1] == 2:
        return " (gray + alpha? keep the gray channel, array[..., 0])"
    if len(shape) == 3 and shape[0] in (1, 3):
        return " (channels first? pass array.transpose(1, 2, 0); several images? pass a list, list(array))"
    return ""


def tensor_hint(obj: Any, channels_last: bool = True) -> str:
    """For a refused input that is a ``torch.Tensor``: how to pass it as the numpy array the
    pipelines take, as a parenthesis to append to a message; else "".

    ``channels_last``: the pipeline takes channels-last images (the 2D pipelines), so a
    ``(C, H, W)`` tensor needs ``.permute(1, 2, 0)`` too; volumes are passed as they are.
    """
    if not isinstance(obj, torch.Tensor):
        return ""
    permute = ", channels last: a (C, H, W) tensor needs .permute(1, 2, 0) first" if channels_last else ""
    return f" (a torch tensor: pass tensor.detach().cpu().numpy(){permute})"


def uint8_image_array(arr: np.ndarray, error: type = PipelineInputError, gray: bool = False) -> np.ndarray:
    """The 2D pipelines' array form of an image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` (channels
    last), uint8 (0-255, as MedMNIST stores them) or float in [0, 1] -> uint8 ``(H, W)`` or ``(H, W, 3)``
    (``gray``, for 1-channel models: RGB made ``(H, W)`` by PIL's 8-bit luminance "L", as an image
    file read in mode "L" is).

    Used by the image-classification (:func:`image_to_tensor`), 2D segmentation
    (:func:`medfm.pipelines.seg_inputs.read_input`, ``error`` its own class) and VQA
    (:func:`medfm.pipelines.vqa.vqa_image_tensor`) pipelines.

    Float arrays (float16/32/64) must be finite and in [0, 1] (:func:`check_unit_floats`: float
    rounding up to 1e-3 outside is clipped, :func:`clip_unit_range`); they are rounded to the
    nearest 8-bit level, ``np.rint(x * 255)`` (half to even), since the models were trained on
    uint8 images divided by 255 (MedMNIST, VQA-RAD, CHASE_DB1, TCGA-LGG: :mod:`medfm.training.seg_tasks`)
    and the VQA preprocessing works in 8 bits:
    an image ``u`` given as ``u / 255.0`` gives exactly the result of ``u``, and a continuous
    float image moves by at most 0.5/255 per pixel. Arrays are taken as RGB
    (OpenCV's ``cv2.imread`` gives BGR: convert it with ``cv2.cvtColor(a, cv2.COLOR_BGR2RGB)``);
    channels-first ``(3, H, W)`` / ``(1, H, W)`` arrays and ``(N, H, W)`` stacks are refused (a list
    of images is a batch), as are RGBA ``(H, W, 4)`` and gray + alpha ``(H, W, 2)`` arrays.

    Raises:
        error: another dtype (int, bool, complex, ...: :func:`image_dtype_error`), another shape
            ("expected an (H, W) or (H, W, 1|3) image, got shape ...", with what it probably is:
            :func:`image_shape_hint`), NaN/inf floats or floats outside [0, 1] (0-255 floats: with
            the hint to divide by 255).
    """
    floating = np.issubdtype(arr.dtype, np.floating)
    if arr.dtype != np.uint8 and not floating:
        raise image_dtype_error(arr.dtype, error)
    shape = arr.shape
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise error(f"expected an (H, W) or (H, W, 1|3) image, got shape {shape}{image_shape_hint(shape)}")
    if floating:
        arr = check_unit_floats(arr, "image", "pixel", "float images", error)
        arr = np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    if gray and arr.ndim == 3:
        from PIL import Image

        arr = np.asarray(Image.fromarray(arr).convert("L"))
    return arr


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


def each_input(items: Sequence[Any], convert: Callable[[Any], Any], batch: bool, noun: str = "image",
               error: type = PipelineInputError) -> List[Any]:
    """``[convert(item) for item in items]``: the per-input step of every pipeline (classification,
    segmentation, VQA), naming the bad input of a batch.

    Args:
        items: the inputs (one, when ``batch`` is False).
        convert: reads and checks one input, raising ``error`` for a bad one.
        batch: the user passed a list (even of one): a bad input's message then starts with
            "<noun> at index i of n: " (i counted from 0, as the list is indexed).
        noun: what an input is, e.g. "image", "volume".
        error: the pipeline's error class (a ``ValueError`` subclass taking one message).

    Raises:
        error: from ``convert``, re-raised as the same class with the index prefix in a batch.
    """
    out = []
    for i, item in enumerate(items):
        try:
            out.append(convert(item))
        except error as err:
            if not batch:
                raise
            raise type(err)(f"{noun} at index {i} of {len(items)}: {err}") from None
    return out


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
    PIL image in any mode (``L``, ``RGB``, ``RGBA``, ``P``, ``1``, ``I;16``, ``I``, ``F``, ...; 16-bit
    and float modes min-max scaled, see :func:`pil_to_array`; files and PIL images are turned
    upright by their EXIF Orientation, :func:`medfm.data.images.exif_upright`) or a numpy array
    ``(H, W)`` / ``(H, W, C)`` (C = 1 or 3, channels last), uint8 as stored in MedMNIST npz files or
    float in [0, 1], rounded to uint8 so that ``u / 255.0`` gives exactly what uint8 ``u`` gives
    (:func:`uint8_image_array`: other dtypes, channels-first arrays and ``(N, H, W)`` stacks are
    refused; a batch is a list). Grayscale is repeated to 3 channels for RGB models; RGB is
    converted to luminance (PIL "L") for 1-channel models. Other sizes (larger or smaller) are
    resized bilinearly (antialiased) to ``img_size`` x ``img_size``, without keeping the aspect ratio.

    Raises:
        PipelineInputError: unsupported type (a torch tensor: with how to pass it as an array),
            dtype or shape; NaN/inf or out-of-range floats; an empty image; a missing or unreadable
            image file (a folder, a DICOM or numpy file, a PIL image whose file was closed: each
            named); a NIfTI file (a 2D slice: with how to pass it as an array; a volume: a 3D classifier
            takes it, :func:`check_not_nifti`); a ``(D, H, W)`` or 4D array (those need a 3D classifier).
    """
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        from medfm.data.errors import MedFMDataError
        from medfm.data.images import read_image

        path = existing_image_file(image)
        check_not_nifti(path, f"this 2D classifier takes {IMAGES_2D}", _NEEDS_3D)
        try:  # 16-bit / float files are min-max scaled, never clipped at 255
            image = read_image(path, mode="L" if in_chans == 1 else "RGB", what="image")
        except MedFMDataError as err:
            raise PipelineInputError(str(err)) from None
    if isinstance(image, Image.Image):
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


def axes_longer_than_1(shape: Sequence[int]) -> int:
    """How many axes of ``shape`` are longer than 1: 2 for a 2D image or slice whatever its length-1
    axes (``(H, W)``, ``(H, W, 1)``, ``(1, H, W, 1)``, ...), 3 for a volume. The one test behind
    every message that calls an array or a NIfTI a 2D slice (:func:`nifti_shape_note`,
    :func:`check_not_nifti`, :mod:`medfm.pipelines.seg_inputs`)."""
    return sum(int(n) > 1 for n in shape)


def refuse_single_slice(shape: Sequence[int], takes: str, needs_2d: str = _NEEDS_2D,
                        error: type = PipelineInputError) -> None:
    """Refuse an array for a 3D model whose spatial axes (the last three of ``shape``) include a
    length-1 one: a 2D slice saved as ``(H, W, 1)`` or ``(1, H, W)``, which a 3D classifier would
    resize to a cube and a 3D segmentation model segment as windows of zero padding. The one
    single-slice test of the volumetric pipelines (:func:`volume_to_tensor`,
    :func:`medfm.pipelines.seg_inputs.check_not_single_slice`).

    Args:
        shape: ``(D, H, W)`` or ``(C, D, H, W)`` (named whole in the message).
        takes: what the model takes, as its errors say it (:func:`volumes_taken`).
        needs_2d: what takes a 2D image, e.g. "a 2D image needs a 2D classifier".
        error: the pipeline's error class (a ``ValueError`` subclass).

    Raises:
        error: "<takes>; got a single 2D slice, shape (C, D, H, 1) (<needs_2d>)".
    """
    if 1 in tuple(shape)[-3:]:
        raise error(f"{takes}; got a single 2D slice, shape {tuple(shape)} ({needs_2d})")


def nifti_shape_note(shape: Sequence[int], needs_2d: str) -> str:
    """How a message names a NIfTI whose shape a 3D model cannot take: "a 2D NIfTI of shape (30, 40)
    (<needs_2d>)", "a 3D NIfTI of shape (30, 40, 1), a single 2D slice (...)" (exactly two axes
    longer than 1, :func:`axes_longer_than_1`), or for a 4D one where its channels / time points
    are and how to pass them."""
    note = f"a {len(shape)}D NIfTI of shape {tuple(shape)}"
    if axes_longer_than_1(shape) == 2:
        return note + ("" if len(shape) == 2 else ", a single 2D slice") + f" ({needs_2d})"
    if len(shape) == 4:
        return note + (" (its last axis holds channels or time points: pass one volume as an array, "
                       "np.asarray(nib.load(path).dataobj)[..., i], or all as (C, ...) with np.moveaxis(..., -1, 0))")
    return note


def is_nifti(path: Path) -> bool:
    """True when ``path``'s name ends in one of :data:`NIFTI_SUFFIXES` (any case)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def not_a_volume_note(path: Path, needs_2d: str) -> str:
    """What to do with a file that a volumetric model does not read, as its message says it: an
    image file (a suffix PIL decodes: PNG, JPEG, TIFF, ...) is a 2D image, ``needs_2d``; a ``.npy``
    volume goes in as an array; any other file (NRRD, MetaImage, DICOM, ...) is not called a 2D
    image, it is told to be converted to NIfTI or passed as an array."""
    from PIL import Image

    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "a numpy volume goes in as an array, np.load(path)"
    if suffix in Image.registered_extensions():
        return needs_2d
    return "convert it to NIfTI, or pass its voxels as a numpy array"


def check_not_nifti(path: Path, takes: str, needs_3d: str, error: type = PipelineInputError) -> None:
    """Refuse a NIfTI file given to a 2D pipeline (classification, segmentation, VQA), saying what it is.

    Only the header is read (nibabel, no voxels). A 2D slice (at most two axes longer than 1:
    ``(H, W)``, ``(H, W, 1)``, ...) is told to be loaded with nibabel and passed as an array (the 2D
    pipelines read image files, PIL images and arrays, not NIfTI); a volume is told what takes
    volumes (``needs_3d``); a file nibabel cannot read is named as such. Other files pass.

    Args:
        path: an existing file.
        takes: what the model takes, e.g. "this 2D classifier takes " + :data:`IMAGES_2D`.
        needs_3d: what to use for a volume, e.g. "a 3D volume needs a 3D classifier".
        error: the pipeline's error class (a ``ValueError`` subclass).

    Raises:
        error: ``path`` is a NIfTI file (:func:`is_nifti`), one line: "<name> is a 2D NIfTI slice of
            shape (H, W); <takes>, not NIfTI files: load it with nibabel and pass the array, ...",
            "<name> is a 3D NIfTI of shape (X, Y, Z); <takes> (<needs_3d>)" or "<name> is a NIfTI
            file nibabel cannot read (...); <takes>".
    """
    if not is_nifti(path):
        return
    import nibabel as nib

    try:
        shape = tuple(int(n) for n in nib.load(str(path)).shape)
    except Exception as err:  # nibabel raises several types for bad files
        raise error(f"{path.name} is a NIfTI file nibabel cannot read ({type(err).__name__}: {err}); {takes}") from None
    if axes_longer_than_1(shape) <= 2:
        raise error(f"{path.name} is a 2D NIfTI slice of shape {shape}; {takes}, not NIfTI files: load it with "
                    "nibabel and pass the array, np.asarray(nib.load(path).dataobj).squeeze(), as a float array "
                    "scaled to [0, 1] or as uint8")
    raise error(f"{path.name} is a {len(shape)}D NIfTI of shape {shape}; {takes} ({needs_3d})")


def _read_volume_file(path: Path, takes: str) -> np.ndarray:
    """A NIfTI (min-max scaled to [0, 1], float32) or ``.npy`` (as stored) volume file.

    ``takes`` is what the model takes (:func:`volumes_taken`), for the messages about files of
    another kind or dimensionality.

    Raises:
        PipelineInputError: missing file (or a folder), not a volume suffix (with what to do:
            :func:`not_a_volume_note`), unreadable/corrupt file, a NIfTI that is not 3D (a 2D slice
            or a 4D series: named with its shape and what the model takes) or has NaN/inf voxels.
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
                                 f"{not_a_volume_note(path, _NEEDS_2D)}")
    from medfm.data.errors import MedFMDataError
    from medfm.data.segmentation import load_nifti

    try:
        arr = load_nifti(path)[0]
    except MedFMDataError as err:
        raise PipelineInputError(str(err)) from None
    if arr.ndim != 3 or 1 in arr.shape:
        raise PipelineInputError(f"{takes}; {path.name} is {nifti_shape_note(arr.shape, _NEEDS_2D)}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise PipelineInputError(f"NIfTI {path.name} holds {arr.dtype} voxels, not real numbers")
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
      already in [0, 1] (float rounding up to 1e-3 outside is clipped, :func:`clip_unit_range`);
    - a NIfTI file path (``.nii``/``.nii.gz``, read with nibabel, a 3D volume): intensities are
      min-max scaled to [0, 1] per volume (``(v - min) / (max - min)``; a constant volume gives
      zeros), since scanner units (HU, MR arbitrary units) have no fixed range; the stored voxel
      axes are used in order as (D, H, W), without reorientation;
    - a ``.npy`` file path: read with ``np.load`` (no pickles) and treated as the arrays above.

    A single-channel volume is repeated to ``in_chans`` channels (as MedMNIST's ``as_rgb``
    does); otherwise ``C`` must equal ``in_chans``. Volumes of another size (also non-cubic
    ones) are resized with trilinear interpolation (``align_corners=False``, no anti-aliasing)
    to ``img_size`` a side; MedMNIST 3D volumes were themselves made by resizing source CT / MRA
    crops to 28^3 (or 64^3) voxels (Yang et al., "MedMNIST v2", Scientific Data 2023), so
    resize a scan cropped around the organ, not a whole-body scan.

    Raises:
        PipelineInputError: a 2D image (PIL, image file, 2D NIfTI, ``(H, W)`` array, a volume with a
            length-1 spatial axis: a single slice), wrong rank (a 4D NIfTI, a 5D array), channel
            count, dtype, NaN/inf or out-of-range floats, an empty volume, a missing or corrupt
            file, another type (a torch tensor: with how to pass it as an array). Shape errors
            say what this model takes (:func:`volumes_taken`).
    """
    from PIL import Image

    takes = volumes_taken(in_chans, img_size)
    if isinstance(volume, (str, os.PathLike)):
        volume = _read_volume_file(Path(volume), takes)
    if isinstance(volume, Image.Image):
        raise PipelineInputError(f"{takes}; got a 2D PIL image of size {volume.size} ({_NEEDS_2D})")
    if not isinstance(volume, np.ndarray):
        raise PipelineInputError(f"expected a volume file path ({', '.join(VOLUME_SUFFIXES)}) or a numpy array "
                                 f"(D, H, W) / (C, D, H, W), got {type(volume).__name__}"
                                 f"{tensor_hint(volume, channels_last=False)}")
    if volume.ndim == 2:
        raise PipelineInputError(f"{takes}; got a 2D array of shape {volume.shape} ({_NEEDS_2D})")
    if volume.ndim not in (3, 4):
        raise PipelineInputError(f"{takes}; got an array of shape {volume.shape}")
    if 0 in volume.shape:
        raise PipelineInputError(f"empty volume of shape {volume.shape}")
    refuse_single_slice(volume.shape, takes)  # a (H, W, 1) NIfTI or a (1, H, W) array: would be resized to a cube
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
        batch_size: images per forward pass (keep it equal to ``medfm eval``'s to reproduce
            its scores bit for bit).
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
        PipelineInputError: ``model`` is not a classifier; bad images or ``top_k``; a volume given
            to a 2D classifier or a 2D image to a 3D one (in a list, the message names the input:
            "image at index 3 of 5: ...", :func:`each_input`).
        medfm.hub.CheckpointError: missing or corrupt checkpoint.
    """

    def __init__(self, model: Any, batch_size: int = 256, top_k: Optional[int] = None) -> None:
        from medfm.evaluation.predict import classifier_core
        from medfm.hub import from_pretrained

        self.top_k = check_top_k(top_k, none_means="all classes")

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
