"""Reading the inputs of the ``"image-segmentation"`` pipeline (:mod:`medfm.pipelines.segmentation`).

:func:`read_input` turns one input of a single-channel model (an image file, a PIL image, a NIfTI
path or an array) into the array the model takes, with its affine and header for NIfTI files;
:func:`read_channels` does it for one case of a multi-channel 3D model (per-channel NIfTI files,
a 4D NIfTI or a ``(C, X, Y, Z)`` array) and :func:`read_brain_mask` for a BraTS-style case's
brain mask. Volumes for models that take them as given (``inference.intensity == "unit"``) are
checked by :func:`check_unit_volume`. Every bad input is one :class:`SegmentationInputError`
with a one-line message naming the problem (and, through the pipeline, what the model takes).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from medfm.pipelines.inputs import (IMAGES_2D, NIFTI_VOLUME, axes_longer_than_1,
                                    check_not_nifti, check_real_nifti, clip_unit_range, existing_image_file, is_nifti,
                                    nifti_shape_note, not_a_volume_note, pil_to_array, read_image_file,
                                    refuse_masked, refuse_rgb_like, refuse_single_slice, rgb_like_axis, tensor_hint,
                                    uint8_image_array)


class SegmentationInputError(ValueError):
    """An input to the segmentation pipeline has an unsupported type, shape or file format."""


def check_not_empty(shape: Sequence[int], what: str) -> None:
    """Refuse an image or volume with a zero-length axis (it would give an empty mask, no error).

    Raises:
        SegmentationInputError: ``0 in shape``, naming ``what`` and the shape.
    """
    if 0 in tuple(shape):
        raise SegmentationInputError(f"{what} is empty: shape {tuple(shape)} has a zero-length axis")


_NEEDS_2D = "a 2D image needs a 2D segmentation model"
_NEEDS_3D = "a 3D volume needs a 3D or 2.5D segmentation model"


def _slice_hint(shape: Sequence[int]) -> str:
    """The 2D-model hint for a shape with exactly two axes longer than 1 (a 2D image or slice,
    :func:`medfm.pipelines.inputs.axes_longer_than_1`), else ""."""
    return f" ({_NEEDS_2D})" if axes_longer_than_1(shape) == 2 else ""


def check_not_single_slice(shape: Sequence[int], takes: str) -> None:
    """Refuse a volume for a 3D model whose spatial axes (the last three of ``shape``) include a
    length-1 one: a 2D slice saved as ``(X, Y, 1)``, which would be segmented as windows of zero padding
    (the 3D classifier's test, :func:`medfm.pipelines.inputs.refuse_single_slice`).

    Args:
        shape: ``(X, Y, Z)`` or ``(C, X, Y, Z)``.
        takes: what the model takes, as its errors say it
            (:attr:`medfm.pipelines.segmentation.ImageSegmentationPipeline.takes`).

    Raises:
        SegmentationInputError: "<takes>; got a single 2D slice, shape (C, X, Y, 1) (a 2D image needs a
            2D segmentation model)".
    """
    refuse_single_slice(shape, takes, _NEEDS_2D, SegmentationInputError)


def check_not_rgb_like(shape: Sequence[int], takes: str, slice_axis: Optional[int],
                       volume_hint: str = NIFTI_VOLUME) -> None:
    """Refuse an array that looks like an RGB(A) image for a volumetric model (3D, 2.5D): ``(X, Y, 3)``,
    ``(3, X, Y)``, ``(X, Y, 4)``, ``(4, X, Y)`` with both other axes at least 4 times as long (the rule of
    every volumetric entry point, :func:`medfm.pipelines.inputs.rgb_like_axis`), also as the spatial axes
    of a ``(C, X, Y, Z)`` array.

    Such an array is read both ways: as an RGB(A) image (medfm's 2D image form is channels last,
    :data:`medfm.pipelines.inputs.IMAGES_2D`; torchvision's channels first; plausible for a 3-channel
    2.5D model), or as a volume of 3-4 slices. It was segmented as the volume, without a word (an RGB
    image got an ``(H, W, 3)`` mask). It is not guessed: a NIfTI file is always a volume (the pipeline
    checks arrays only), and so is an array with its 3-4 slices on the middle axis, so the message says
    how to pass it as either.

    Args:
        shape: the array's shape, ``(X, Y, Z)`` or ``(C, X, Y, Z)``.
        takes: what the model takes, as its errors say it
            (:attr:`medfm.pipelines.segmentation.ImageSegmentationPipeline.takes`).
        slice_axis: a 2.5D model's ``inference.slice_axis``; None for a 3D model.
        volume_hint: how to pass a volume as a file (default: as a NIfTI file to the pipeline).

    Raises:
        SegmentationInputError: "<takes>; got an array of shape (X, Y, 3): an RGB image (H, W, 3) or a
            volume of 3 slices along axis 2? Not guessed: <volume_hint>, or as np.moveaxis(array, 2, 1)
            (...); a 2D image needs a 2D segmentation model". The ``np.moveaxis`` form (the slices on the
            middle axis) is offered to 3D models and to 2.5D models whose slice axis is 1.
    """
    axis = rgb_like_axis(shape)
    if axis is None:
        return
    middle = len(shape) - 2
    if slice_axis is None or slice_axis == 1:
        where = "the middle axis" + (", this model's slice axis" if slice_axis == 1 else "")
        volume_hint += (f", or as np.moveaxis(array, {axis}, {middle}) (the slices on {where}; the mask comes back "
                        "in that axis order)")
    refuse_rgb_like(shape, takes, _NEEDS_2D, SegmentationInputError, volume_hint)


def _load_nifti(path: Path) -> Tuple[np.ndarray, Any]:
    """``(float32 voxels, nibabel image)`` of an existing NIfTI file.

    Raises:
        SegmentationInputError: unreadable file; voxels that are not real numbers (a complex NIfTI,
            whose imaginary part the float32 cast dropped with only a ``ComplexWarning``; RGB
            records), as the 3D classifier refuses them.
    """
    import nibabel as nib

    try:
        img = nib.load(str(path))
        dtype = img.get_data_dtype()
    except Exception as err:
        raise SegmentationInputError(f"cannot read NIfTI {path}: {type(err).__name__}: {err}") from None
    check_real_nifti(dtype, path.name, SegmentationInputError)
    try:
        return np.asarray(img.dataobj, dtype=np.float32), img
    except Exception as err:
        raise SegmentationInputError(f"cannot read NIfTI {path}: {type(err).__name__}: {err}") from None


#: largest per-entry difference between two files' affines (mm / direction cosines) still taken as equal
AFFINE_ATOL = 1e-3


def _existing_file(item: Union[str, os.PathLike]) -> Path:
    """``item`` as the path of an existing file.

    Raises:
        SegmentationInputError: "no such input file: <path>" (with "(a folder)" for a directory).
    """
    return existing_image_file(item, missing="no such input file", error=SegmentationInputError)


def _existing_nifti(item: Any, what: str) -> Path:
    """``item`` as the path of an existing NIfTI file.

    Raises:
        SegmentationInputError: not a path, missing (or a folder), or not ``.nii`` / ``.nii.gz``.
    """
    if not isinstance(item, (str, os.PathLike)):
        raise SegmentationInputError(f"{what} must be a NIfTI file path, got {type(item).__name__}")
    path = _existing_file(item)
    if not is_nifti(path):
        raise SegmentationInputError(f"{what} must be a NIfTI file (.nii / .nii.gz), got {path.name}")
    return path


def _finite_volume(arr: np.ndarray, where: str) -> np.ndarray:
    """``arr`` as contiguous float32, after checking that it is numeric and finite.

    A NaN voxel would otherwise reach the model silently: percentile scaling of a volume with
    one NaN gives all zeros (an all-background mask), and the 2.5D and "unit" paths pass it on.

    Raises:
        SegmentationInputError: a non-numeric dtype (bool, strings, objects, complex), an empty
            volume (a zero-length axis), NaN/inf voxels.
    """
    check_not_empty(arr.shape, where)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise SegmentationInputError(f"volumes must be numeric, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise SegmentationInputError(f"{where} has {int((~np.isfinite(arr)).sum())} NaN/inf voxel value(s)")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_unit_volume(arr: np.ndarray) -> np.ndarray:
    """A volume for a model with ``inference.intensity == "unit"``, checked to lie in [0, 1].

    Such a model takes intensities as given, so scanner units (a raw NIfTI: HU, MR arbitrary
    units) or 0-255 voxels would reach it unscaled and give a meaningless mask; one rule for
    single-channel (3D, 2.5D) and multi-channel volumes, and the range rule of every pipeline
    (:func:`medfm.pipelines.inputs.clip_unit_range`): float rounding past the bounds
    (within :data:`medfm.encoders.base.INPUT_RANGE_TOLERANCE`, 1e-3) is clipped.

    Args:
        arr: ``(X, Y, Z)`` or ``(C, X, Y, Z)`` finite float voxels (:func:`_finite_volume`).

    Returns:
        ``arr`` clipped to [0, 1] (the same array when nothing needed clipping).

    Raises:
        SegmentationInputError: a value below 0 or above 1 beyond the tolerance, naming the range
            found and what to do.
    """
    def refuse(lo: float, hi: float) -> SegmentationInputError:
        return SegmentationInputError(
            f"this model takes volumes already scaled to [0, 1] (inference.intensity 'unit'), got values in "
            f"[{lo:.7g}, {hi:.7g}]; scale them to [0, 1] as the model was trained (see its model card; 0-255 data: "
            "divide by 255), or use a model trained with percentile normalisation (inference.intensity "
            "'percentile'), which scales raw scans itself")

    return clip_unit_range(arr, refuse)


def read_channels(item: Any, in_chans: int) -> Dict[str, Any]:
    """One case of a ``in_chans``-channel 3D model as ``(C, X, Y, Z)`` float32 (intensities as stored).

    ``item``: a list/tuple of ``in_chans`` per-channel 3D NIfTI paths (model channel order; the
    first file gives the affine and header), one 4D ``(X, Y, Z, C)`` NIfTI path, or a
    ``(C, X, Y, Z)`` array.

    Raises:
        SegmentationInputError: wrong channel count, a single 3D volume, 2D files or arrays (said),
            channel files of different shapes or affines (beyond :data:`AFFINE_ATOL`), NaN/inf voxels, a numpy
            masked array (:func:`medfm.pipelines.inputs.refuse_masked`), other types.
    """
    order = f"{in_chans} channels per case, in the model's channel order"
    if isinstance(item, (list, tuple)):
        if len(item) != in_chans:
            raise SegmentationInputError(f"this model takes {order}; got {len(item)} channel file(s)")
        paths = [_existing_nifti(p, "each channel") for p in item]
        loaded = [_load_nifti(p) for p in paths]
        for p, (arr, img) in zip(paths, loaded):
            if arr.ndim != 3:
                raise SegmentationInputError(f"each channel file must be a 3D volume, {p} has shape {arr.shape}"
                                             f"{_slice_hint(arr.shape)}")
            if arr.shape != loaded[0][0].shape:
                raise SegmentationInputError(f"channel files differ in shape: {paths[0].name} {loaded[0][0].shape}, "
                                             f"{p.name} {arr.shape}")
            if not np.allclose(img.affine, loaded[0][1].affine, rtol=0, atol=AFFINE_ATOL):
                raise SegmentationInputError("channel files differ in affine (voxel-to-world geometry): "
                                             f"{paths[0].name} and {p.name}; resample them onto one grid first")
        arr, img, where = np.stack([a for a, _ in loaded]), loaded[0][1], "the channel files"
    elif isinstance(item, (str, os.PathLike)):
        path = _existing_nifti(item, "a multi-channel volume")
        arr, img = _load_nifti(path)
        if arr.ndim == 3:
            raise SegmentationInputError(
                f"this model takes {order}; {path} is one 3D volume. Give a case's channel files together, "
                "{'image': [channel1, channel2, ...]} (a list at the top level is a batch of cases), or a 4D "
                "(X, Y, Z, C) NIfTI")
        if arr.ndim != 4 or arr.shape[3] != in_chans:
            raise SegmentationInputError(f"this model takes {order}: a 4D (X, Y, Z, {in_chans}) NIfTI, {path} has "
                                         f"shape {arr.shape}{_slice_hint(arr.shape)}")
        arr, where = np.moveaxis(arr, 3, 0), str(path)
    elif isinstance(item, np.ndarray):
        refuse_masked(item, "volume", SegmentationInputError)
        if item.ndim != 4 or item.shape[0] != in_chans:
            spatial = item.shape[1:] if item.shape[:1] == (in_chans,) else item.shape
            raise SegmentationInputError(f"this model takes {order}: a ({in_chans}, X, Y, Z) array, got shape "
                                         f"{item.shape}{_slice_hint(spatial)}")
        arr, img, where = item, None, "the array"
    else:
        raise SegmentationInputError(f"this model takes {order}: a list of per-channel NIfTI paths, a 4D NIfTI path "
                                     f"or a ({in_chans}, X, Y, Z) array, got {type(item).__name__}")
    arr = _finite_volume(arr, where)
    if img is None:
        return {"array": arr, "affine": None, "header": None, "nifti": False}
    return {"array": arr, "affine": np.asarray(img.affine), "header": img.header, "nifti": True}


def read_brain_mask(item: Any, shape: Sequence[int], affine: Optional[np.ndarray] = None) -> np.ndarray:
    """A brain mask for a case of spatial ``shape``: ``(X, Y, Z)`` bool, voxels > 0.5.

    ``item``: a 3D NIfTI path (its affine must match ``affine``, the image's, when given) or an
    ``(X, Y, Z)`` bool / numeric array.

    Raises:
        SegmentationInputError: unreadable file, wrong shape or affine, NaN/inf, an empty mask, a numpy masked
            array (:func:`medfm.pipelines.inputs.refuse_masked`; it came back as a masked array).
    """
    what = "the brain mask"
    if isinstance(item, np.ndarray):
        refuse_masked(item, "brain_mask", SegmentationInputError)
        arr, mask_affine = item, None
        if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)):
            raise SegmentationInputError(f"{what} must be a bool or numeric array, got dtype {arr.dtype}")
    else:
        path = _existing_nifti(item, what)
        arr, img = _load_nifti(path)
        mask_affine, what = np.asarray(img.affine), f"brain mask {path}"
    if tuple(arr.shape) != tuple(shape):
        raise SegmentationInputError(f"{what} has shape {tuple(arr.shape)}, the image {tuple(shape)}")
    if (mask_affine is not None and affine is not None
            and not np.allclose(mask_affine, affine, rtol=0, atol=AFFINE_ATOL)):
        raise SegmentationInputError(f"{what} and the image differ in affine (voxel-to-world geometry)")
    if arr.dtype != bool and not np.isfinite(arr).all():
        raise SegmentationInputError(f"{what} has NaN/inf values")
    brain = arr > 0.5
    if not brain.any():
        raise SegmentationInputError(f"{what} is empty (no voxel > 0.5)")
    return brain


#: what a volumetric model's errors say it takes when :func:`read_input` is not told more
VOLUMES_3D = "this model segments 3D volumes (X, Y, Z): a 3D NIfTI file or an (X, Y, Z) array"
#: what a 2D model's errors say it takes when :func:`read_input` is not told more
TAKES_2D = f"this 2D segmentation model takes {IMAGES_2D}"


def read_input(item: Any, in_chans: int, volumetric: bool, takes: Optional[str] = None) -> Dict[str, Any]:
    """Load one pipeline input into ``{"array": ..., "affine": (4, 4) or None, "header": ...}``.

    2D inputs: an image file path (``str`` / ``os.PathLike``; PNG, JPEG, TIFF, ... via
    :func:`medfm.pipelines.inputs.read_image_file`, turned upright by its EXIF Orientation), a PIL image in
    any mode (several frames, e.g. a multi-page TIFF or an animated GIF, and 16-bit colour TIFFs refused,
    :func:`medfm.pipelines.inputs.check_tiff`), or an
    ``(H, W)`` / ``(H, W, 1|3)`` uint8 or float array (channels last). They become
    ``(C, H, W)`` float32 in [0, 1] (uint8 / 255; float arrays, which must be finite and in [0, 1]
    (float rounding within 1e-3 outside is clipped), rounded to the nearest 8-bit level first, as
    the classification and VQA pipelines do (:func:`medfm.pipelines.inputs.uint8_image_array`:
    the 2D segmentation models were trained on uint8 images / 255, CHASE_DB1 and TCGA-LGG), so
    ``u / 255.0`` gives exactly the mask and probabilities of the uint8 ``u``; 16-bit/float image
    files and PIL images min-max scaled; grayscale repeated to 3 channels, RGB converted to luminance for
    1-channel models; any size: the mask comes back at the input's size). 3D inputs
    (``volumetric``): a 3D NIfTI path or an ``(X, Y, Z)`` numeric array (the pipeline refuses an
    RGB(A)-like array such as ``(X, Y, 3)`` or ``(3, X, Y)``, :func:`check_not_rgb_like`); volumes stay
    ``(X, Y, Z)`` with intensities as stored: the pipeline scales them (or, for "unit" models,
    checks that they are in [0, 1], :func:`check_unit_volume`) afterwards (volumes of
    multi-channel 3D models: :func:`read_channels`).

    ``volumetric``: the model takes volumes (3D or 2.5D); ``takes``: what it takes, as its errors
    say it (the pipeline passes :attr:`medfm.pipelines.segmentation.ImageSegmentationPipeline.takes`,
    naming the model's kind; None: :data:`VOLUMES_3D` or :data:`TAKES_2D`).

    Raises:
        SegmentationInputError: unsupported type (a torch tensor: with how to pass it as an
            array), a NIfTI file for a 2D model (a 2D slice: with how to pass it as an array; a
            volume: what takes volumes, :func:`medfm.pipelines.inputs.check_not_nifti`), a
            file that is not NIfTI (what to do with it,
            :func:`medfm.pipelines.inputs.not_a_volume_note`), a PIL image, 2D or 4D NIfTI or
            array for a volumetric model (``takes`` and what was given), missing file (or a
            folder), unreadable file (a DICOM or numpy file named as such; a PIL image whose file
            was closed), wrong dimensionality or dtype, a 2D float
            array with NaN/inf or values outside [0, 1], an empty image or volume (a zero-length
            axis), a volume that is not numeric or has NaN/inf voxels, a numpy masked array
            (:func:`medfm.pipelines.inputs.refuse_masked`: a volume here, a 2D image by
            :func:`medfm.pipelines.inputs.uint8_image_array`).
    """
    from PIL import Image

    takes = takes or (VOLUMES_3D if volumetric else TAKES_2D)
    if isinstance(item, (str, os.PathLike)):
        path = _existing_file(item)
        if is_nifti(path):
            if not volumetric:
                check_not_nifti(path, takes, _NEEDS_3D, SegmentationInputError)
            arr, img = _load_nifti(path)
            if arr.ndim != 3:
                raise SegmentationInputError(f"{takes}; {path.name} is {nifti_shape_note(arr.shape, _NEEDS_2D)}")
            return {"array": _finite_volume(arr, str(path)), "affine": np.asarray(img.affine), "header": img.header,
                    "nifti": True}
        if volumetric:  # read as an image, an RGB file would pass for a 3-slice volume
            raise SegmentationInputError(f"{takes}; {path.name} is not a NIfTI file (.nii / .nii.gz): "
                                         f"{not_a_volume_note(path, _NEEDS_2D)}")
        item = read_image_file(path, in_chans, SegmentationInputError)  # 16-bit / float files min-max scaled
    elif isinstance(item, Image.Image):
        if volumetric:
            raise SegmentationInputError(f"{takes}; got a 2D PIL image of size {item.size} ({_NEEDS_2D})")
        item = pil_to_array(item, in_chans, SegmentationInputError)
    if not isinstance(item, np.ndarray):
        raise SegmentationInputError(f"expected a file path, PIL image or numpy array, got {type(item).__name__}"
                                     f"{tensor_hint(item, channels_last=not volumetric)}")
    arr = item
    if volumetric:  # a 2D image array: masked ones refused by uint8_image_array
        refuse_masked(arr, "volume", SegmentationInputError)
        if arr.ndim != 3:
            hint = _slice_hint(arr.shape) or (" (a stack of volumes is a batch: pass a list, list(array))"
                                              if arr.ndim == 4 else "")
            raise SegmentationInputError(f"{takes}; got an array of shape {arr.shape}{hint}")
        return {"array": _finite_volume(arr, "the volume"), "affine": None, "header": None, "nifti": False}
    check_not_empty(arr.shape, "the image")
    # floats rounded to 8 bits, RGB to PIL's "L" for 1-channel models, as the classifier's: the models were
    # trained on uint8 / 255 (CHASE_DB1, TCGA-LGG)
    arr = uint8_image_array(arr, SegmentationInputError, gray=in_chans == 1)  # (H, W) or (H, W, 3)
    arr = arr.astype(np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1 and in_chans == 3:
        arr = np.repeat(arr, 3, axis=-1)
    return {"array": np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32), "affine": None, "header": None,
            "nifti": False}


#: keys of a dict pipeline input
ITEM_KEYS = ("image", "brain_mask")


def split_item(item: Any) -> Tuple[Any, Any]:
    """``(image, brain mask or None)`` of one pipeline input (a dict with :data:`ITEM_KEYS`, or the image).

    Raises:
        SegmentationInputError: a dict without ``"image"`` or with unknown keys; a dict's image or brain mask
            given as a numpy masked array (:func:`medfm.pipelines.inputs.refuse_masked`; the input itself is
            checked by :func:`medfm.pipelines.inputs.each_input`).
    """
    if not isinstance(item, dict):
        return item, None
    unknown = set(item) - set(ITEM_KEYS)
    if unknown or "image" not in item:
        raise SegmentationInputError("a dict input has the keys 'image' (required) and 'brain_mask', got "
                                     f"{sorted(item)}")
    for key in ITEM_KEYS:
        refuse_masked(item.get(key), key, SegmentationInputError)
    return item["image"], item.get("brain_mask")


__all__ = ["SegmentationInputError", "read_input", "read_channels", "read_brain_mask", "check_unit_volume",
           "check_not_empty", "check_not_single_slice", "check_not_rgb_like", "split_item", "AFFINE_ATOL",
           "VOLUMES_3D", "TAKES_2D", "ITEM_KEYS"]
