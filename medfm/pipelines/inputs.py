"""Input checks shared by every pipeline (image classification, segmentation, VQA).

Holds :class:`PipelineInputError` and the checks and hints every pipeline applies to its raw
inputs: files (:func:`existing_image_file`, the NIfTI notes :func:`is_nifti`,
:func:`check_not_nifti`, :func:`nifti_shape_note`, :func:`not_a_volume_note`, voxel dtypes
:func:`is_real_dtype`, :func:`check_real_nifti`), 2D image arrays
(:func:`uint8_image_array`: dtype, shape and [0, 1] float checks with their hints; masked arrays,
:func:`refuse_masked`), image files and PIL images (:func:`read_image_file`, :func:`pil_to_array`; several
frames, TIFFs or 16-bit colour PNGs Pillow would misread, :func:`check_tiff`), volumes (:func:`refuse_single_slice`,
:func:`refuse_rgb_like`, :func:`axes_longer_than_1`, :func:`clip_unit_range`), ``top_k`` (:func:`check_top_k`) and
batches (:func:`each_input`).
Each check raises one error class with a one-line message; a pipeline with its own error class
passes it as ``error``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np
import torch

from medfm.data import images as data_images
from medfm.data.errors import MedFMDataError
from medfm.data.images import TiffAdvice, pil_to_uint8, read_image


class PipelineInputError(ValueError):
    """A pipeline input (image, volume, array or file) of an unsupported type, shape, dtype or range."""


#: the suffixes of NIfTI files (nibabel reads both)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: what a 3D classifier's errors tell a 2D image to use (the default of :func:`refuse_single_slice`)
NEEDS_2D_CLASSIFIER = "a 2D image needs a 2D classifier"
#: the inputs of every 2D pipeline (classification, segmentation, VQA), as their errors name them
IMAGES_2D = "image files (PNG, JPEG, TIFF, ...), PIL images or (H, W) / (H, W, 1|3) arrays (uint8, or float in [0, 1])"


def existing_image_file(image: Union[str, os.PathLike], missing: str = "image file not found",
                        error: type = PipelineInputError) -> Path:
    """``image`` as the path of an existing file (a user's own image: no data-set advice).

    Used by every pipeline for its input files (the segmentation pipeline with its own
    ``missing`` wording and error class).

    Raises:
        error: "<missing>: <path>" (with "(a folder)" for a directory; an empty path ``""``, which
            ``Path`` reads as the current folder, is called empty).
    """
    if not os.fspath(image):
        raise error(f"{missing}: the path is empty ('')")
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


def refuse_masked(item: Any, noun: str = "image", error: type = PipelineInputError) -> None:
    """Refuse a numpy masked array (``np.ma.MaskedArray``) given to a pipeline.

    Every step after it (``np.asarray``, ``np.array``, ``torch.from_numpy``) drops the mask and uses
    the values stored under it, and numpy's masked arithmetic writes into those entries values that are
    neither the stored nor a fill value; which value a masked pixel or voxel should take is not guessed.
    Refused whatever its mask (one with nothing masked too: :meth:`~numpy.ma.MaskedArray.filled` makes it a
    plain array). Other inputs pass (one ``isinstance``). Used by :func:`each_input` (every input of every
    pipeline), :func:`uint8_image_array` (the 2D array form),
    :func:`medfm.pipelines.seg_inputs.split_item` (a segmentation input's ``image`` and ``brain_mask``) and the
    functions also called directly: :func:`medfm.pipelines.classification.volume_to_tensor`,
    :func:`medfm.pipelines.segmentation.predict_probs`, and :func:`medfm.pipelines.seg_inputs.read_input`
    (volumes), :func:`~medfm.pipelines.seg_inputs.read_channels` and :func:`~medfm.pipelines.seg_inputs.read_brain_mask`
    (a pipeline input meets it twice: in :func:`each_input` and in its reader; each call is an error path of its
    own, kept: :func:`each_input`'s names a masked array before a reader's shape or emptiness checks, a reader's
    refuses it in a direct call; the second costs one ``isinstance``).

    Args:
        item: a pipeline input (any type).
        noun: how the message names it ("image", "volume", "brain_mask").
        error: the pipeline's error class (a ``ValueError`` subclass).

    Raises:
        error: "image is a numpy masked array: its masked entries would be used with the values stored under
            the mask; pass array.filled(value), with the value they should take (e.g. 0), or array.data for
            the stored values".
    """
    if isinstance(item, np.ma.MaskedArray):
        raise error(f"{noun} is a numpy masked array: its masked entries would be used with the values stored under "
                    "the mask; pass array.filled(value), with the value they should take (e.g. 0), or array.data "
                    "for the stored values")


def uint8_image_array(arr: np.ndarray, error: type = PipelineInputError, gray: bool = False) -> np.ndarray:
    """The 2D pipelines' array form of an image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` (channels
    last), uint8 (0-255, as MedMNIST stores them) or float in [0, 1] -> uint8 ``(H, W)`` or ``(H, W, 3)``
    (``gray``, for 1-channel models: RGB made ``(H, W)`` by PIL's 8-bit luminance "L", as an image
    file read in mode "L" is).

    Used by the image-classification (:func:`medfm.pipelines.classification.image_to_tensor`), 2D
    segmentation (:func:`medfm.pipelines.seg_inputs.read_input`, ``error`` its own class) and VQA
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
        error: a numpy masked array (:func:`refuse_masked`), another dtype (int, bool, complex, ...:
            :func:`image_dtype_error`), another shape
            ("expected an (H, W) or (H, W, 1|3) image, got shape ...", with what it probably is:
            :func:`image_shape_hint`), NaN/inf floats or floats outside [0, 1] (0-255 floats: with
            the hint to divide by 255).
    """
    refuse_masked(arr, "image", error)
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
    segmentation, VQA), naming the bad input of a batch; a numpy masked array is refused first
    (:func:`refuse_masked`: every pipeline, 2D images and volumes alike).

    Args:
        items: the inputs (one, when ``batch`` is False).
        convert: reads and checks one input, raising ``error`` for a bad one.
        batch: the user passed a list (even of one): a bad input's message then starts with
            "<noun> at index i of n: " (i counted from 0, as the list is indexed).
        noun: what an input is, e.g. "image", "volume".
        error: the pipeline's error class (a ``ValueError`` subclass taking one message).

    Raises:
        error: a masked array (:func:`refuse_masked`) or from ``convert``, re-raised as the same class with the
            index prefix in a batch.
    """
    out = []
    for i, item in enumerate(items):
        try:
            refuse_masked(item, noun, error)
            out.append(convert(item))
        except error as err:
            if not batch:
                raise
            raise type(err)(f"{noun} at index {i} of {len(items)}: {err}") from None
    return out


#: what the 2D pipelines' refusals of images Pillow would misread say to do (:func:`medfm.data.images.check_tiff`:
#: several frames, TIFFs, 16-bit colour PNGs): a file is named by its name
PIPELINE_TIFF_ADVICE = TiffAdvice(
    frames="this model takes one 2D image: pass one frame as a PIL image, im = Image.open(path); im.seek(i); "
           "im.copy()",
    deep_colour="save it as 8-bit RGB or 16-bit grayscale, or pass its pixels as a float array (H, W, 3) scaled to "
                "[0, 1]",
    loaded="pass the file path, or the image before it is loaded (Image.open(path) without im.load() or "
           "np.asarray(im))",
    bare_name=True)


def check_tiff(im: Any, name: str = "", error: type = PipelineInputError) -> None:
    """Refuse a PIL image that Pillow would misread (several frames in any format: a multi-page TIFF, an animated
    PNG, GIF or WebP; a TIFF, or a PNG not loaded yet, with more than 8 bits per colour channel; a TIFF loaded with
    its rows scrambled):
    :func:`medfm.data.images.check_tiff` in the pipelines' words (:data:`PIPELINE_TIFF_ADVICE`). Used by
    :func:`pil_to_array` (PIL images) and, through :func:`medfm.data.images.read_image`, :func:`read_image_file`.

    Args:
        im: a PIL image (opened, loaded or not).
        name: how the message names it (a file name); default "the PIL image [of <file>]".
        error: the pipeline's error class (a ``ValueError`` subclass).

    Raises:
        error: "scan.tif is a TIFF of 3 frames (a stack, a volume or an animation?); this model takes one 2D image:
            ..." (any format: "anim.gif is a GIF of 12 frames ..."), "... is an
            RGB TIFF with 16 bits per channel, which Pillow reads as 8 bits ..." (or "an RGB PNG"), "... that Pillow
            loaded before
            medfm saw it, with its rows scrambled ...".
    """
    data_images.check_tiff(im, PIPELINE_TIFF_ADVICE, name, error)


def _pil_mode(in_chans: Optional[int]) -> Optional[str]:
    """The mode :func:`medfm.data.images.pil_to_uint8` converts to for a model of ``in_chans`` channels."""
    return None if in_chans is None else "L" if in_chans == 1 else "RGB"


def pil_to_array(image: Any, in_chans: Optional[int], error: type = PipelineInputError) -> np.ndarray:
    """A PIL image -> uint8 ``(H, W)`` (``in_chans`` 1) or ``(H, W, 3)`` array (``in_chans`` None: ``L``
    stays ``(H, W)``, ``RGB`` and every other mode become ``(H, W, 3)``, as
    :func:`medfm.data.images.read_image` with ``mode=None``).

    Pixels deeper than 8 bits (modes ``I;16``, ``I``, ``F``: 16-bit PNG/TIFF scans) are
    min-max scaled to 0-255 first, as :func:`medfm.data.images.read_image` does for files;
    PIL's own ``convert("L")`` would clip them at 255. Images Pillow would misread (several
    frames: a multi-page TIFF, an animated PNG or GIF; a 16-bit colour TIFF, one loaded with scrambled rows) are
    refused (:func:`check_tiff`).

    Raises:
        error: (the pipeline's error class, :class:`PipelineInputError` by default) non-finite pixels in a
            float image, a closed file, an image refused by :func:`check_tiff`.
    """
    check_tiff(image, error=error)
    try:
        return pil_to_uint8(image, _pil_mode(in_chans))
    except MedFMDataError as err:
        raise error(str(err)) from None


def read_image_file(path: Path, in_chans: Optional[int], error: type = PipelineInputError) -> np.ndarray:
    """An existing 2D image file -> uint8 ``(H, W)`` / ``(H, W, 3)`` array, as :func:`pil_to_array`
    converts a PIL image (``in_chans``: 1, 3, or None for the file's own ``L`` / RGB):
    :func:`medfm.data.images.read_image` (turned upright, min-max scaled when deeper than 8 bits, a file of several
    frames or a 16-bit colour TIFF refused in the pipelines' words, :data:`PIPELINE_TIFF_ADVICE`), its errors raised as
    ``error``. The image file reader of every 2D pipeline.

    Raises:
        error: a file PIL cannot identify (a NIfTI, DICOM or numpy file named as such,
            :func:`medfm.data.images.image_decode_error`), a truncated or damaged one, non-finite
            float pixels, a file refused by :func:`check_tiff` (several frames, ...); one line naming the file.
    """
    try:  # 16-bit / float files are min-max scaled, never clipped at 255
        return read_image(path, _pil_mode(in_chans), "image", PIPELINE_TIFF_ADVICE)
    except MedFMDataError as err:
        raise error(str(err)) from None


def axes_longer_than_1(shape: Sequence[int]) -> int:
    """How many axes of ``shape`` are longer than 1: 2 for a 2D image or slice whatever its length-1
    axes (``(H, W)``, ``(H, W, 1)``, ``(1, H, W, 1)``, ...), 3 for a volume. The one test behind
    every message that calls an array or a NIfTI a 2D slice (:func:`nifti_shape_note`,
    :func:`check_not_nifti`, :mod:`medfm.pipelines.seg_inputs`)."""
    return sum(int(n) > 1 for n in shape)


def refuse_single_slice(shape: Sequence[int], takes: str, needs_2d: str = NEEDS_2D_CLASSIFIER,
                        error: type = PipelineInputError) -> None:
    """Refuse an array for a 3D model whose spatial axes (the last three of ``shape``) include a
    length-1 one: a 2D slice saved as ``(H, W, 1)`` or ``(1, H, W)``, which a 3D classifier would
    resize to a cube and a 3D segmentation model segment as windows of zero padding. The one
    single-slice test of the volumetric pipelines
    (:func:`medfm.pipelines.classification.volume_to_tensor`,
    :func:`medfm.pipelines.seg_inputs.check_not_single_slice`).

    Args:
        shape: ``(D, H, W)`` or ``(C, D, H, W)`` (named whole in the message).
        takes: what the model takes, as its errors say it
            (:func:`medfm.pipelines.classification.volumes_taken`).
        needs_2d: what takes a 2D image, e.g. "a 2D image needs a 2D classifier".
        error: the pipeline's error class (a ``ValueError`` subclass).

    Raises:
        error: "<takes>; got a single 2D slice, shape (C, D, H, 1) (<needs_2d>)".
    """
    if 1 in tuple(shape)[-3:]:
        raise error(f"{takes}; got a single 2D slice, shape {tuple(shape)} ({needs_2d})")


#: how many times longer than a 3- or 4-long end axis both other spatial axes must be for an array
#: to be taken for an RGB(A) image, not a volume (:func:`rgb_like_axis`)
RGB_SIDE_RATIO = 4
#: how the messages show saving an array as a NIfTI volume
NIFTI_SAVE = "nib.save(nib.Nifti1Image(array, affine), 'volume.nii.gz')"
#: how an RGB(A)-like array's message (:func:`refuse_rgb_like`) says to pass a volume by default
NIFTI_VOLUME = f"pass a volume as a NIfTI file (NIfTI files are always volumes), {NIFTI_SAVE}"


def rgb_like_axis(shape: Sequence[int]) -> Optional[int]:
    """The axis of ``shape`` holding the channels of an RGB(A) image, when the array of that shape given to a
    volumetric model looks like one; else None.

    The rule (the one test of every volumetric entry point: the 3D classifier,
    :func:`medfm.pipelines.classification.volume_to_tensor`; the 3D / 2.5D segmentation pipeline,
    :func:`medfm.pipelines.seg_inputs.check_not_rgb_like`; :func:`medfm.pipelines.segmentation.predict_probs`):
    of the spatial axes (the last three of ``shape``: ``(D, H, W)`` or ``(C, D, H, W)``), the first or the
    last has length 3 or 4 (RGB, RGBA; channels first as torchvision gives images, or last as PIL, OpenCV
    and medfm's 2D pipelines do) and both other spatial axes are at least :data:`RGB_SIDE_RATIO` (4) times
    as long. Such an array is almost certainly an image (the smallest images medfm meets, MedMNIST's, are
    28x28); as a volume it would be a slab 3-4 slices thin. Not refused: small volumes whose other axes are
    short too (``(3, 8, 8)``), a 3-4 long middle axis (``(30, 3, 40)``: no image library writes that),
    and every real volume medfm handles (MedMNIST3D 28^3 / 64^3, MSD hippocampus 31-43 x 40-59 x 24-47,
    BraTS 240x240x155: no axis of 3 or 4). NIfTI files are volumes whatever their shape: the pipelines
    check arrays only.

    Returns:
        the axis index in ``shape`` (``len(shape) - 3`` or ``len(shape) - 1``), or None (also for
        shapes of fewer than 3 axes).
    """
    spatial = tuple(int(n) for n in shape)[-3:]
    if len(spatial) < 3:
        return None
    for end, others in ((0, spatial[1:]), (2, spatial[:2])):
        if spatial[end] in (3, 4) and min(others) >= RGB_SIDE_RATIO * spatial[end]:
            return len(shape) - 3 + end
    return None


def refuse_rgb_like(shape: Sequence[int], takes: str, needs_2d: str = NEEDS_2D_CLASSIFIER,
                    error: type = PipelineInputError, volume_hint: str = NIFTI_VOLUME) -> None:
    """Refuse an array given to a volumetric model that looks like an RGB(A) image
    (:func:`rgb_like_axis`, where the rule is): ``(H, W, 3)``, ``(3, H, W)``, ``(H, W, 4)``, ``(4, H, W)``
    (or those as the spatial axes of ``(C, ...)``). Such an array was taken for a volume of 3 or 4
    slices (segmented as one, or resized to a cube and classified) without a word. It is not guessed:
    the message says how to pass it as either.

    Args:
        shape: the array's shape (named whole in the message).
        takes: what the model takes, as its errors say it.
        needs_2d: what takes a 2D image, e.g. "a 2D image needs a 2D classifier".
        error: the pipeline's error class (a ``ValueError`` subclass).
        volume_hint: how to pass the array as a volume (default :data:`NIFTI_VOLUME`; a caller
            adds the array forms its model takes).

    Raises:
        error: one line, e.g. "<takes>; got an array of shape (30, 40, 3): an RGB image (H, W, 3) or a
            volume of 3 slices along axis 2? Not guessed: <volume_hint>; <needs_2d>".
    """
    axis = rgb_like_axis(shape)
    if axis is None:
        return
    n, first = int(shape[axis]), axis == len(shape) - 3
    kind = "RGB" if n == 3 else "RGBA"
    image = f"a channels-first {kind} image ({n}, H, W)" if first else f"an {kind} image (H, W, {n})"
    raise error(f"{takes}; got an array of shape {tuple(shape)}: {image} or a volume of {n} slices "
                f"along axis {axis}? Not guessed: {volume_hint}; {needs_2d}")


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


def is_real_dtype(dtype: Any) -> bool:
    """Whether a numpy dtype holds real numbers (integers or floats; not bools, complex numbers, strings,
    objects or records): the voxels every volumetric pipeline takes (:func:`check_real_nifti`,
    :func:`medfm.pipelines.segmentation.predict_probs`)."""
    return np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)


def check_real_nifti(dtype: Any, name: str, error: type = PipelineInputError) -> None:
    """Refuse a NIfTI file whose voxels are not real numbers (:func:`is_real_dtype`): a complex one,
    whose imaginary part a float cast drops with only a ``ComplexWarning``, or RGB records.

    Args:
        dtype: the voxels' numpy dtype (the header's, or the loaded array's).
        name: the file's name, for the message.
        error: the pipeline's error class (a ``ValueError`` subclass).

    Raises:
        error: "NIfTI <name> holds complex64 voxels, not real numbers".
    """
    if not is_real_dtype(dtype):
        raise error(f"NIfTI {name} holds {dtype} voxels, not real numbers")


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
