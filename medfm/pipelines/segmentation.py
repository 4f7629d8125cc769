"""Whole-image segmentation inference and the ``"image-segmentation"`` pipeline.

:func:`predict_probs` runs a :class:`medfm.adapters.segmentation.SegmentationModel` on an
image or volume of any size with MONAI's sliding-window inference (``roi_size`` = the
training patch, Gaussian-weighted overlap), following the model's ``inference`` settings
(input rescaling, 2.5D slice stacks). Probabilities come back in the input's geometry.

:class:`ImageSegmentationPipeline` (``medfm.pipeline("image-segmentation", model=...)``)
reads an image file (PNG/JPEG/TIFF), a NIfTI volume (``.nii``/``.nii.gz``, via nibabel)
or an array, and returns label masks in the input's geometry; for NIfTI inputs the mask
is also a ``nibabel.Nifti1Image`` with the input's affine (and can be written with
``output_path``). Multi-channel 3D models take per-channel NIfTI files, a 4D NIfTI or a
``(C, X, Y, Z)`` array per case, and BraTS-style models (``inference.intensity ==
"brain_percentile"``) the case's brain mask: ``pipe({"image": [flair, t1c], "brain_mask": mask})``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F


class SegmentationInputError(ValueError):
    """An input to the segmentation pipeline has an unsupported type, shape or file format."""


def _check_not_empty(shape: Sequence[int], what: str) -> None:
    """Refuse an image or volume with a zero-length axis (it would give an empty mask, no error).

    Raises:
        SegmentationInputError: ``0 in shape``, naming ``what`` and the shape.
    """
    if 0 in tuple(shape):
        raise SegmentationInputError(f"{what} is empty: shape {tuple(shape)} has a zero-length axis")


def seg_core(model: torch.nn.Module) -> torch.nn.Module:
    """The :class:`SegmentationModel` inside a (possibly peft-wrapped) model.

    Raises:
        TypeError: ``model`` is not a segmentation model.
    """
    core = model.base_model.model if hasattr(model, "base_model") and hasattr(model.base_model, "model") else model
    if not hasattr(core, "inference") or not hasattr(core, "num_classes"):
        raise TypeError(f"{type(core).__name__} is not a medfm segmentation model")
    return core


def _window(model: torch.nn.Module, x: torch.Tensor, roi: Sequence[int], overlap: float, sw_batch_size: int) -> torch.Tensor:
    from monai.inferers import sliding_window_inference

    if list(x.shape[2:]) == list(roi):
        return model(x).float()
    return sliding_window_inference(x, roi_size=list(roi), sw_batch_size=sw_batch_size, predictor=lambda t: model(t).float(),
                                    overlap=overlap, mode="gaussian", padding_mode="constant", cval=0.0)


@torch.no_grad()
def predict_probs(model: torch.nn.Module, image: Union[np.ndarray, torch.Tensor], overlap: float = 0.5,
                  sw_batch_size: int = 4) -> torch.Tensor:
    """Class probabilities of one image or volume, in its own geometry.

    Args:
        model: a segmentation model (or its peft wrapper) in eval mode.
        image: 2D model: ``(C, H, W)`` float in [0, 1]; 3D model: ``(C, X, Y, Z)``; 2.5D
            model (``inference.context_slices > 0``): a ``(X, Y, Z)`` volume in [0, 1].
        overlap: sliding-window overlap fraction.
        sw_batch_size: windows per forward pass.

    Returns:
        ``(K, *S)`` float32 probabilities, ``S`` the input's spatial shape.

    Raises:
        SegmentationInputError: wrong rank or channel count for this model, an empty input
            (a zero-length axis).
    """
    core = seg_core(model)
    inf = core.inference
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image, dtype=torch.float32)
    _check_not_empty(x.shape, "the input")
    dev = next(core.parameters()).device
    k = inf["context_slices"]
    if k:
        if x.ndim != 3:
            raise SegmentationInputError(f"this 2.5D model segments (X, Y, Z) volumes, got shape {tuple(x.shape)}")
        from medfm.data.segmentation import slice_stack

        axis = inf["slice_axis"]
        stack = torch.from_numpy(slice_stack(x.numpy(), k, axis))  # (n, 2k+1, a, b)
        probs = torch.cat([_predict_2d(model, stack[i:i + 32].to(dev), inf, overlap, sw_batch_size)
                           for i in range(0, stack.shape[0], 32)])  # (n, K, a, b)
        return torch.movedim(probs.permute(1, 0, 2, 3), 1, 1 + axis).cpu()
    dims = core.spatial_dims
    if x.ndim != dims + 1 or x.shape[0] != core.encoder.in_chans:
        raise SegmentationInputError(f"model expects ({core.encoder.in_chans}, {'X, Y, Z' if dims == 3 else 'H, W'}) "
                                     f"input, got shape {tuple(x.shape)}")
    if dims == 3:
        x = _normalized(x[None], inf)
        return _window(model, x.to(dev), inf["roi_size"], overlap, sw_batch_size).softmax(1)[0].cpu()
    return _predict_2d(model, x[None].to(dev), inf, overlap, sw_batch_size)[0].cpu()


def _normalized(x: torch.Tensor, inf: Dict[str, Any]) -> torch.Tensor:
    """``(B, C, *S)`` whole inputs with the model's ``inference.normalize`` applied."""
    if inf.get("normalize", "none") == "channel_zscore":
        from medfm.data.segmentation import channel_zscore

        return channel_zscore(x)
    return x


def _predict_2d(model, x: torch.Tensor, inf: Dict[str, Any], overlap: float, sw_batch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, K, H, W)`` probabilities, resizing by ``inf['scale']`` and back."""
    size = x.shape[2:]
    if inf["scale"] != 1:
        new = [max(8, round(s * inf["scale"])) for s in size]
        x = F.interpolate(x, size=new, mode="bilinear", align_corners=False, antialias=True)
    x = _normalized(x, inf)
    logits = _window(model, x, inf["roi_size"], overlap, sw_batch_size)
    if tuple(logits.shape[2:]) != tuple(size):
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return logits.softmax(1)


def predict_labels(model: torch.nn.Module, image: Union[np.ndarray, torch.Tensor], **kwargs: Any) -> np.ndarray:
    """Arg-max label map (uint8, input geometry) of :func:`predict_probs`."""
    return predict_probs(model, image, **kwargs).argmax(0).numpy().astype(np.uint8)


# -- reading inputs --------------------------------------------------------------------------------
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _load_nifti(path: Path) -> Tuple[np.ndarray, Any]:
    """``(float32 voxels, nibabel image)`` of an existing NIfTI file.

    Raises:
        SegmentationInputError: unreadable file.
    """
    import nibabel as nib

    try:
        img = nib.load(str(path))
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
    from medfm.pipelines.classification import existing_image_file

    return existing_image_file(item, missing="no such input file", error=SegmentationInputError)


def _existing_nifti(item: Any, what: str) -> Path:
    """``item`` as the path of an existing NIfTI file.

    Raises:
        SegmentationInputError: not a path, missing (or a folder), or not ``.nii`` / ``.nii.gz``.
    """
    if not isinstance(item, (str, os.PathLike)):
        raise SegmentationInputError(f"{what} must be a NIfTI file path, got {type(item).__name__}")
    path = _existing_file(item)
    if not _is_nifti(path):
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
    _check_not_empty(arr.shape, where)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise SegmentationInputError(f"volumes must be numeric, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise SegmentationInputError(f"{where} has {int((~np.isfinite(arr)).sum())} NaN/inf voxel value(s)")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_unit_volume(arr: np.ndarray) -> np.ndarray:
    """A volume for a model with ``inference.intensity == "unit"``, checked to lie in [0, 1].

    Such a model takes intensities as given, so scanner units (a raw NIfTI: HU, MR arbitrary
    units) or 0-255 voxels would reach it unscaled and give a meaningless mask; one rule for
    single-channel (3D, 2.5D) and multi-channel volumes. Float rounding past the bounds (within
    :data:`medfm.encoders.base.INPUT_RANGE_TOLERANCE`, the encoders' own tolerance) is clipped.

    Args:
        arr: ``(X, Y, Z)`` or ``(C, X, Y, Z)`` finite float voxels (:func:`_finite_volume`).

    Returns:
        ``arr`` clipped to [0, 1] (the same array when nothing needed clipping).

    Raises:
        SegmentationInputError: a value below 0 or above 1 beyond the tolerance, naming the range
            found and what to do.
    """
    from medfm.encoders.base import INPUT_RANGE_TOLERANCE

    lo, hi = float(arr.min()), float(arr.max())
    if lo < -INPUT_RANGE_TOLERANCE or hi > 1 + INPUT_RANGE_TOLERANCE:
        raise SegmentationInputError(
            f"this model takes volumes already scaled to [0, 1] (inference.intensity 'unit'), got values in "
            f"[{lo:.7g}, {hi:.7g}]; scale them to [0, 1] as the model was trained (see its model card; 0-255 data: "
            "divide by 255), or use a model trained with percentile normalisation (inference.intensity "
            "'percentile'), which scales raw scans itself")
    return arr if 0 <= lo and hi <= 1 else np.clip(arr, 0.0, 1.0)


def read_channels(item: Any, in_chans: int) -> Dict[str, Any]:
    """One case of a ``in_chans``-channel 3D model as ``(C, X, Y, Z)`` float32 (intensities as stored).

    ``item``: a list/tuple of ``in_chans`` per-channel 3D NIfTI paths (model channel order; the
    first file gives the affine and header), one 4D ``(X, Y, Z, C)`` NIfTI path, or a
    ``(C, X, Y, Z)`` array.

    Raises:
        SegmentationInputError: wrong channel count, a single 3D volume, channel files of
            different shapes or affines (beyond :data:`AFFINE_ATOL`), NaN/inf voxels, other types.
    """
    order = f"{in_chans} channels per case, in the model's channel order"
    if isinstance(item, (list, tuple)):
        if len(item) != in_chans:
            raise SegmentationInputError(f"this model takes {order}; got {len(item)} channel file(s)")
        paths = [_existing_nifti(p, "each channel") for p in item]
        loaded = [_load_nifti(p) for p in paths]
        for p, (arr, img) in zip(paths, loaded):
            if arr.ndim != 3:
                raise SegmentationInputError(f"each channel file must be a 3D volume, {p} has shape {arr.shape}")
            if arr.shape != loaded[0][0].shape:
                raise SegmentationInputError(f"channel files differ in shape: {paths[0].name} {loaded[0][0].shape}, "
                                             f"{p.name} {arr.shape}")
            if not np.allclose(img.affine, loaded[0][1].affine, rtol=0, atol=AFFINE_ATOL):
                raise SegmentationInputError(f"channel files differ in affine (voxel-to-world geometry): {paths[0].name} "
                                             f"and {p.name}; resample them onto one grid first")
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
                                         f"shape {arr.shape}")
        arr, where = np.moveaxis(arr, 3, 0), str(path)
    elif isinstance(item, np.ndarray):
        if item.ndim != 4 or item.shape[0] != in_chans:
            raise SegmentationInputError(f"this model takes {order}: a ({in_chans}, X, Y, Z) array, got shape {item.shape}")
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
        SegmentationInputError: unreadable file, wrong shape or affine, NaN/inf, an empty mask.
    """
    what = "the brain mask"
    if isinstance(item, np.ndarray):
        arr, mask_affine = item, None
        if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)):
            raise SegmentationInputError(f"{what} must be a bool or numeric array, got dtype {arr.dtype}")
    else:
        path = _existing_nifti(item, what)
        arr, img = _load_nifti(path)
        mask_affine, what = np.asarray(img.affine), f"brain mask {path}"
    if tuple(arr.shape) != tuple(shape):
        raise SegmentationInputError(f"{what} has shape {tuple(arr.shape)}, the image {tuple(shape)}")
    if mask_affine is not None and affine is not None and not np.allclose(mask_affine, affine, rtol=0, atol=AFFINE_ATOL):
        raise SegmentationInputError(f"{what} and the image differ in affine (voxel-to-world geometry)")
    if arr.dtype != bool and not np.isfinite(arr).all():
        raise SegmentationInputError(f"{what} has NaN/inf values")
    brain = arr > 0.5
    if not brain.any():
        raise SegmentationInputError(f"{what} is empty (no voxel > 0.5)")
    return brain


#: the inputs of a 2D segmentation model, as its errors name them
IMAGES_2D = "image files (PNG, JPEG, TIFF, ...), PIL images or (H, W) / (H, W, 1|3) arrays (uint8, or float in [0, 1])"


def read_input(item: Any, in_chans: int, volumetric: bool) -> Dict[str, Any]:
    """Load one pipeline input into ``{"array": ..., "affine": (4, 4) or None, "header": ...}``.

    2D inputs: an image file path (``str`` / ``os.PathLike``; PNG, JPEG, TIFF, ... via
    :func:`medfm.data.images.read_image`), a PIL image in any mode, or an ``(H, W)`` /
    ``(H, W, 1|3)`` uint8 or float array (not channels first). They become ``(C, H, W)`` float32
    in [0, 1] (uint8 / 255; 16-bit/float image files and PIL images min-max scaled; grayscale
    repeated to 3 channels, RGB converted to luminance for 1-channel models; any size: the mask
    comes back at the input's size); float arrays must already be finite and in [0, 1]. 3D
    inputs: a NIfTI path or an ``(X, Y, Z)`` numeric array; volumes stay ``(X, Y, Z)`` with
    intensities as stored: the pipeline scales them (or, for "unit" models, checks that they are
    in [0, 1], :func:`check_unit_volume`) afterwards (volumes of multi-channel 3D models:
    :func:`read_channels`).

    Raises:
        SegmentationInputError: unsupported type, a NIfTI file for a 2D model (``volumetric``
            False: the message names :data:`IMAGES_2D`), missing file (or a folder), unreadable
            file (a DICOM or numpy file named as such; a PIL image whose file was closed), wrong
            dimensionality, a 2D float array with NaN/inf or values outside [0, 1], an empty image
            or volume (a zero-length axis), a volume that is not numeric or has NaN/inf voxels.
    """
    from PIL import Image

    if isinstance(item, (str, os.PathLike)):
        path = _existing_file(item)
        if _is_nifti(path):
            if not volumetric:
                raise SegmentationInputError(
                    f"this is a 2D image model: it takes {IMAGES_2D}, not NIfTI files ({path.name}); pass a 2D "
                    "slice as a uint8 array or a float array scaled to [0, 1]")
            arr, img = _load_nifti(path)
            if arr.ndim != 3:
                raise SegmentationInputError(f"expected a 3D NIfTI volume, {path} has shape {arr.shape}")
            return {"array": _finite_volume(arr, str(path)), "affine": np.asarray(img.affine), "header": img.header,
                    "nifti": True}
        from medfm.data.errors import MedFMDataError
        from medfm.data.images import read_image

        try:  # 16-bit / float files are min-max scaled, never clipped at 255
            item = read_image(path, mode="L" if in_chans == 1 else "RGB", what="image")
        except MedFMDataError as err:
            raise SegmentationInputError(str(err)) from None
    if isinstance(item, Image.Image):
        from medfm.pipelines.classification import PipelineInputError, pil_to_array

        try:
            item = pil_to_array(item, in_chans)
        except PipelineInputError as err:
            raise SegmentationInputError(str(err)) from None
    if not isinstance(item, np.ndarray):
        raise SegmentationInputError(f"expected a file path, PIL image or numpy array, got {type(item).__name__}")
    arr = item
    if volumetric:
        if arr.ndim != 3:
            raise SegmentationInputError(f"this model segments 3D volumes (X, Y, Z), got an array of shape {arr.shape}")
        return {"array": _finite_volume(arr, "the volume"), "affine": None, "header": None, "nifti": False}
    _check_not_empty(arr.shape, "the image")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif not np.issubdtype(arr.dtype, np.floating):
        raise SegmentationInputError(f"2D arrays must be uint8 or float in [0, 1], got {arr.dtype}")
    else:
        from medfm.pipelines.classification import check_unit_floats

        check_unit_floats(arr, "image", "pixel", "float images", error=SegmentationInputError)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise SegmentationInputError(f"expected an (H, W) or (H, W, 1|3) image, got shape {item.shape}")
    if arr.shape[-1] == 1 and in_chans == 3:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 3 and in_chans == 1:
        arr = (arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    return {"array": np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32), "affine": None, "header": None,
            "nifti": False}


#: keys of a dict pipeline input
ITEM_KEYS = ("image", "brain_mask")


def _split_item(item: Any) -> Tuple[Any, Any]:
    """``(image, brain mask or None)`` of one pipeline input (a dict with :data:`ITEM_KEYS`, or the image).

    Raises:
        SegmentationInputError: a dict without ``"image"`` or with unknown keys.
    """
    if not isinstance(item, dict):
        return item, None
    unknown = set(item) - set(ITEM_KEYS)
    if unknown or "image" not in item:
        raise SegmentationInputError(f"a dict input has the keys 'image' (required) and 'brain_mask', got {sorted(item)}")
    return item["image"], item.get("brain_mask")


class ImageSegmentationPipeline:
    """Segment images or NIfTI volumes with a medfm segmentation checkpoint.

    Args:
        model: checkpoint dir / ``hf-hub:`` id, or a loaded segmentation model.
        overlap: sliding-window overlap fraction in [0, 1); None (default) uses the one the
            checkpoint was evaluated with (``inference.overlap``, 0.5 for checkpoints that do
            not record it), so the pipeline reproduces the model card's numbers.

    ``__call__(inputs, output_path=None, target=None, query=None)`` takes one input or a list
    (paths, PIL images, arrays) and returns per input ``{"mask": uint8 label map in the
    input's geometry, "label_names": [...], "affine": (4, 4) or None, "nifti":
    nibabel.Nifti1Image or None}``. With ``output_path`` (single NIfTI input) the mask is
    written there (atomically) with the input's affine and header. A top-level list is
    always a batch of cases.

    Multi-channel 3D models (``in_chans`` C > 1, e.g. BraTS [FLAIR, T1c]) take per case a list
    of C per-channel 3D NIfTI paths in the model's channel order (same shape and affine; the
    mask gets the first file's affine and header), a 4D ``(X, Y, Z, C)`` NIfTI path or a
    ``(C, X, Y, Z)`` array; ``pipe({"image": [flair, t1c]})`` or, in a batch,
    ``pipe([[flair, t1c], ...])``. How intensities are prepared follows the checkpoint's
    ``inference.intensity``: "unit" takes volumes as given, already in [0, 1] (values outside
    are refused, :func:`check_unit_volume`: a raw NIfTI in scanner units needs scaling first);
    "percentile" rescales each channel by its
    percentiles; "brain_percentile" (BraTS) needs the case's brain mask, given as
    ``pipe({"image": [flair, t1c], "brain_mask": "brainmask.nii.gz"})`` (a NIfTI path or an
    ``(X, Y, Z)`` array, voxels > 0.5): each channel is scaled to [0, 1] by its
    ``inference.percentiles`` inside the mask (:func:`medfm.data.brats.brain_percentile_unit`),
    the volume cropped to the mask's bounding box + ``inference.crop_margin`` voxels
    (:func:`medfm.data.brats.brain_bbox`), and the prediction pasted back into the full volume,
    background outside the box (:func:`medfm.data.brats.paste_back`). BraTS checkpoints
    written before that recipe was recorded say "unit": give them the scaled, cropped
    ``(2, x, y, z)`` array (or patch ``args.inference`` of their ``config.json`` to
    ``"intensity": "brain_percentile"``).

    Text-conditioned checkpoints (:class:`medfm.adapters.text_seg.TextConditionedSegmenter`,
    MulModSeg) segment one named target per call: ``target="vessel"`` (a known target) or
    ``query="segment the retinal vessels"`` (referring segmentation after LSMS: the query is
    embedded by the checkpoint's frozen text encoder, or ``text_encoder`` when given, and
    conditions the head; the result also holds ``"matched_target"`` and ``"similarity"``,
    the closest known prompt and its cosine). Each target is segmented with its own
    inference settings (input scale, window) and modality norms.

    Raises:
        SegmentationInputError: ``model`` is not a segmentation model; unsupported inputs (see
            :func:`read_input`); volumes outside [0, 1] for a "unit" model; a wrong channel
            count; a "brain_percentile" model called without ``brain_mask`` (or a brain mask
            given to another model); ``target`` / ``query`` missing for a text-conditioned
            model, or given to a plain one.
        KeyError: an unknown target name (with the close matches).
    """

    def __init__(self, model: Any, overlap: Optional[float] = None, text_encoder: Any = None) -> None:
        from medfm.hub import from_pretrained

        self.model = from_pretrained(model) if isinstance(model, (str, bytes, os.PathLike)) else model
        try:
            self.core = seg_core(self.model)
        except TypeError as err:
            raise SegmentationInputError(f"{err} (medfm adapter 'segmentation'); fine-tune one with "
                                         "`medfm segment`") from None
        self.model.eval()
        if overlap is not None:
            from medfm.adapters.segmentation import check_overlap

            overlap = check_overlap(overlap)
        self.overlap = overlap
        self.text_encoder = text_encoder
        self.text_conditioned = hasattr(self.core, "prompt_embeddings") and hasattr(self.core, "target_names")

    @property
    def volumetric(self) -> bool:
        """True when the model takes whole volumes: a 3D encoder or a 2.5D model (``context_slices > 0``)."""
        return self.core.spatial_dims == 3 or self.core.inference["context_slices"] > 0

    def _view(self, target: Optional[str], query: Optional[str]) -> Tuple[torch.nn.Module, Dict[str, Any]]:
        """The model that segments this call's target, and what the result reports about it."""
        if not self.text_conditioned:
            if target is not None or query is not None:
                raise SegmentationInputError("target=/query= need a text-conditioned segmentation checkpoint; "
                                             f"this model segments {self.core.label_names}")
            return self.model, {}
        from medfm.adapters.text_seg import PromptedSegmenter

        if (target is None) == (query is None):
            raise SegmentationInputError("a text-conditioned model segments one target per call: pass target= "
                                         f"(one of {self.core.target_names}) or query= (free text), not both")
        if target is not None:
            return PromptedSegmenter(self.model, target).eval(), {"target": target}
        if self.text_encoder is None:
            from medfm.text import create_text_encoder

            self.text_encoder = create_text_encoder(self.core.medfm_spec["args"]["text_encoder"])
        try:
            q, name, sim = self.core.embed_query(query, self.text_encoder)
        except ValueError as err:
            raise SegmentationInputError(str(err)) from None
        return PromptedSegmenter(self.model, q).eval(), {"query": query, "matched_target": name, "similarity": sim}

    def _one(self, item: Any, model: torch.nn.Module) -> Dict[str, Any]:
        from medfm.data.segmentation import percentile_unit

        core = seg_core(model)
        inf = core.inference
        overlap = inf["overlap"] if self.overlap is None else self.overlap  # default_inference fills it in
        image, brain_mask = _split_item(item)
        if (brain_mask is not None) != (inf["intensity"] == "brain_percentile"):
            if brain_mask is None:
                raise SegmentationInputError(
                    "this model scales each channel by percentiles inside the brain and crops to it "
                    "(inference.intensity 'brain_percentile'): pass the case's brain mask, "
                    "pipe({'image': ..., 'brain_mask': 'brainmask.nii.gz'})")
            raise SegmentationInputError(f"brain_mask is only used by models with inference.intensity 'brain_percentile'; "
                                         f"this one records {inf['intensity']!r}")
        channels = core.encoder.in_chans if core.spatial_dims == 3 else 1  # channels of one input volume
        data = read_channels(image, channels) if channels > 1 else read_input(image, core.encoder.in_chans, self.volumetric)
        arr = data["array"]
        if not self.volumetric:
            mask = predict_labels(model, arr, overlap=overlap)
        elif inf["intensity"] == "brain_percentile":
            from medfm.data.brats import brain_bbox, brain_percentile_unit, paste_back

            vol = arr if arr.ndim == 4 else arr[None]
            brain = read_brain_mask(brain_mask, vol.shape[1:], data["affine"])
            box = brain_bbox(brain, inf["crop_margin"])
            x = np.stack([brain_percentile_unit(c, brain, tuple(inf["percentiles"]))[box] for c in vol])
            mask = paste_back(predict_labels(model, x, overlap=overlap), box, brain.shape)
        else:  # one (X, Y, Z) volume (3D or 2.5D model), or (C, X, Y, Z) channels
            if inf["intensity"] == "percentile":
                arr = np.stack([percentile_unit(c) for c in arr]) if channels > 1 else percentile_unit(arr)
            else:
                arr = check_unit_volume(arr)
            mask = predict_labels(model, arr[None] if arr.ndim == 3 and not inf["context_slices"] else arr,
                                  overlap=overlap)
        nifti = None
        if data["affine"] is not None:
            import nibabel as nib

            header = data["header"].copy()
            header.set_data_dtype(np.uint8)
            nifti = nib.Nifti1Image(mask, data["affine"], header)
        return {"mask": mask, "label_names": list(core.label_names), "affine": data["affine"], "nifti": nifti}

    def __call__(self, inputs: Union[Any, List[Any]], output_path: Optional[Union[str, os.PathLike]] = None,
                 target: Optional[str] = None, query: Optional[str] = None):
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        model, about = self._view(target, query)
        out = [{**self._one(it, model), **about} for it in items]
        if output_path is not None:
            if not single or out[0]["nifti"] is None:
                raise SegmentationInputError("output_path needs exactly one NIfTI input")
            save_nifti(out[0]["nifti"], output_path)
        return out[0] if single else out


def save_nifti(image: Any, path: Union[str, os.PathLike]) -> Path:
    """Write a ``nibabel`` image to ``path`` (``.nii`` or ``.nii.gz``) atomically."""
    import nibabel as nib

    from medfm.io import atomic_path

    path = Path(path)
    if not _is_nifti(path):
        raise SegmentationInputError(f"NIfTI output paths end in .nii or .nii.gz, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        # nibabel picks compression from the suffix: keep it on the temporary name
        real_tmp = tmp.with_name(tmp.name + (".nii.gz" if path.name.lower().endswith(".gz") else ".nii"))
        nib.save(image, str(real_tmp))
        os.replace(real_tmp, tmp)
    return path


__all__ = ["predict_probs", "predict_labels", "ImageSegmentationPipeline", "read_input", "read_channels",
           "read_brain_mask", "save_nifti", "SegmentationInputError", "seg_core", "check_unit_volume", "IMAGES_2D"]
