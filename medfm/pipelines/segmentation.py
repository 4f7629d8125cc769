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
The inputs are read and checked by :mod:`medfm.pipelines.seg_inputs`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from medfm.pipelines.inputs import NIFTI_SAVE, each_input, is_nifti, is_real_dtype, refuse_masked
from medfm.pipelines.seg_inputs import (TAKES_2D, SegmentationInputError, check_not_empty, check_not_rgb_like,
                                        check_not_single_slice, check_unit_volume, read_brain_mask, read_channels,
                                        read_input, split_item)


def seg_core(model: torch.nn.Module) -> torch.nn.Module:
    """The :class:`SegmentationModel` inside a (possibly peft-wrapped) model.

    Raises:
        TypeError: ``model`` is not a segmentation model.
    """
    core = model.base_model.model if hasattr(model, "base_model") and hasattr(model.base_model, "model") else model
    if not hasattr(core, "inference") or not hasattr(core, "num_classes"):
        raise TypeError(f"{type(core).__name__} is not a medfm segmentation model")
    return core


def _window(model: torch.nn.Module, x: torch.Tensor, roi: Sequence[int], overlap: float,
            sw_batch_size: int) -> torch.Tensor:
    from monai.inferers import sliding_window_inference

    if list(x.shape[2:]) == list(roi):
        return model(x).float()
    return sliding_window_inference(x, roi_size=list(roi), sw_batch_size=sw_batch_size,
                                    predictor=lambda t: model(t).float(),
                                    overlap=overlap, mode="gaussian", padding_mode="constant", cval=0.0)


def _real_valued(arr: Union[np.ndarray, torch.Tensor]) -> bool:
    """Whether an array or tensor holds real numbers (ints or floats; not bools, complex numbers,
    strings or objects): what :func:`predict_probs` takes."""
    if isinstance(arr, torch.Tensor):
        return arr.dtype != torch.bool and not arr.is_complex()
    return is_real_dtype(arr.dtype)


#: how :func:`predict_probs` says to pass a volume it refuses as RGB(A)-like
PIPELINE_NIFTI = ("segment a volume with medfm.pipeline('image-segmentation') from a NIfTI file (always a volume), "
                  f"{NIFTI_SAVE}")


@torch.no_grad()
def predict_probs(model: torch.nn.Module, image: Union[np.ndarray, torch.Tensor], overlap: float = 0.5,
                  sw_batch_size: int = 4, *, check_rgb: bool = True) -> torch.Tensor:
    """Class probabilities of one image or volume, in its own geometry.

    Args:
        model: a segmentation model (or its peft wrapper) in eval mode.
        image: 2D model: ``(C, H, W)`` float in [0, 1]; 3D model: ``(C, X, Y, Z)``; 2.5D
            model (``inference.context_slices > 0``): a ``(X, Y, Z)`` volume in [0, 1]. A volume
            shaped like an RGB(A) image (``(X, Y, 3)``, ``(3, X, Y)``, ``(X, Y, 4)``, ``(4, X, Y)`` with both
            other axes at least 4 times as long, :func:`medfm.pipelines.inputs.rgb_like_axis`) is refused,
            as the pipeline refuses such arrays (:func:`medfm.pipelines.seg_inputs.check_not_rgb_like`).
        overlap: sliding-window overlap fraction in [0, 1).
        sw_batch_size: windows per forward pass, an integer >= 1.
        check_rgb: refuse RGB(A)-like volumes (above); False only where the input is known to be a
            volume (the pipeline: a NIfTI file, or an array it has checked itself).

    Returns:
        ``(K, *S)`` float32 probabilities, ``S`` the input's spatial shape.

    Raises:
        SegmentationInputError: an input that is not a real-valued array or tensor (strings, objects,
            bools, complex numbers; was a torch ``TypeError``), a numpy masked array
            (:func:`medfm.pipelines.inputs.refuse_masked`: ``np.asarray`` dropped its mask), wrong rank or
            channel count for this model, an empty input (a zero-length axis), a volume shaped like an RGB(A)
            image (see above).
        ValueError: ``overlap`` not a number in [0, 1) or ``sw_batch_size`` not an integer >= 1 (were
            MONAI's ``range() arg 3 must not be zero`` / a ``TypeError``; ``True`` was taken as 1).
        TypeError: ``model`` is not a segmentation model.
    """
    from medfm.adapters.segmentation import check_overlap
    from medfm.arg_checks import check_number

    core = seg_core(model)
    inf = core.inference
    overlap = check_overlap(overlap)
    sw_batch_size = check_number("sw_batch_size", sw_batch_size, ge=1, integer=True)
    k = inf["context_slices"]
    refuse_masked(image, "volume" if core.spatial_dims == 3 or k else "image", SegmentationInputError)
    arr = image if isinstance(image, torch.Tensor) else np.asarray(image)
    if not _real_valued(arr):
        raise SegmentationInputError(f"predict_probs takes a real-valued array or tensor (float in [0, 1]), got "
                                     f"{type(image).__name__} of dtype {arr.dtype}")
    x = torch.as_tensor(arr, dtype=torch.float32)
    check_not_empty(x.shape, "the input")
    dev = next(core.parameters()).device
    if k:
        if x.ndim != 3:
            raise SegmentationInputError(f"this 2.5D model segments (X, Y, Z) volumes, got shape {tuple(x.shape)}")
        if check_rgb:
            check_not_rgb_like(x.shape, "this 2.5D model segments (X, Y, Z) volumes", inf["slice_axis"], PIPELINE_NIFTI)
        from medfm.data.segmentation import slice_stack

        axis = inf["slice_axis"]
        stack = torch.from_numpy(slice_stack(x.numpy(), k, axis))  # (n, 2k+1, a, b)
        probs = torch.cat([_predict_2d(model, stack[i:i + 32].to(dev), inf, overlap, sw_batch_size)
                           for i in range(0, stack.shape[0], 32)])  # (n, K, a, b)
        return torch.movedim(probs.permute(1, 0, 2, 3), 1, 1 + axis).cpu()
    dims = core.spatial_dims
    expects = f"({core.encoder.in_chans}, {'X, Y, Z' if dims == 3 else 'H, W'})"
    if x.ndim != dims + 1 or x.shape[0] != core.encoder.in_chans:
        raise SegmentationInputError(f"model expects {expects} input, got shape {tuple(x.shape)}")
    if dims == 3:
        if check_rgb:
            check_not_rgb_like(x.shape, f"this 3D model segments {expects} volumes", None, PIPELINE_NIFTI)
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
    """Arg-max label map (uint8, input geometry) of :func:`predict_probs` (which see for what is refused)."""
    return predict_probs(model, image, **kwargs).argmax(0).numpy().astype(np.uint8)


class ImageSegmentationPipeline:
    """Segment images or NIfTI volumes with a medfm segmentation checkpoint.

    Args:
        model: checkpoint dir / ``hf-hub:`` id, or a loaded segmentation model.
        overlap: sliding-window overlap fraction in [0, 1); None (default) uses the one the
            checkpoint was evaluated with (``inference.overlap``, 0.5 for checkpoints that do
            not record it), so the pipeline reproduces the model card's numbers.
        text_encoder: text-conditioned checkpoints only: the text encoder that embeds ``query=``
            (default: the checkpoint's own, loaded on the first query); refused for other models,
            which would ignore it.

    ``__call__(inputs, output_path=None, target=None, query=None)`` takes one input or a list
    (paths, PIL images, arrays) and returns per input ``{"mask": uint8 label map in the
    input's geometry, "label_names": [...], "affine": (4, 4) or None, "nifti":
    nibabel.Nifti1Image or None}``. With ``output_path`` (single NIfTI input) the mask is
    written there (atomically) with the input's affine and header. A top-level list is
    always a batch of cases; a bad one is named by its index ("image at index 3 of 5: ...",
    :func:`medfm.pipelines.inputs.each_input`).

    Volumetric models (3D, 2.5D) take an ``(X, Y, Z)`` (or ``(C, X, Y, Z)``) array as a volume, except
    one shaped like an RGB(A) image: ``(X, Y, 3)``, ``(3, X, Y)``, ``(X, Y, 4)`` or ``(4, X, Y)`` with both
    other axes at least 4 times as long (:func:`medfm.pipelines.inputs.rgb_like_axis`). An image, or 3-4
    slices? It is refused with how to pass either (:func:`medfm.pipelines.seg_inputs.check_not_rgb_like`):
    a volume as a NIfTI file, or (3D models, 2.5D models slicing along axis 1) with its slices on the
    middle axis; an image to a 2D model. NIfTI files are volumes whatever their shape, and so are smaller
    arrays such as ``(8, 8, 3)`` or ``(11, 40, 3)`` (another axis shorter than 12, or 16 beside a 4): no
    image medfm meets is that small (MedMNIST's, the smallest, are 28 x 28), while tiny test volumes are.

    Multi-channel 3D models (``in_chans`` C > 1, e.g. BraTS [FLAIR, T1c]) take per case a list
    of C per-channel 3D NIfTI paths in the model's channel order (same shape and affine; the
    mask gets the first file's affine and header), a 4D ``(X, Y, Z, C)`` NIfTI path or a
    ``(C, X, Y, Z)`` array; ``pipe({"image": [flair, t1c]})`` or, in a batch,
    ``pipe([[flair, t1c], ...])``. How intensities are prepared follows the checkpoint's
    ``inference.intensity``: "unit" takes volumes as given, already in [0, 1] (values more than
    1e-3 outside are refused, :func:`medfm.pipelines.seg_inputs.check_unit_volume`: a raw NIfTI
    in scanner units needs scaling first); "percentile" rescales each channel by its
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
            :func:`medfm.pipelines.seg_inputs.read_input`); a single 2D slice (a length-1 spatial axis)
            for a 3D model (:func:`medfm.pipelines.seg_inputs.check_not_single_slice`); an array shaped
            like an RGB(A) image for a volumetric model (see above); volumes outside [0, 1] for a
            "unit" model; a wrong channel count; a "brain_percentile" model
            called without ``brain_mask`` (or a brain mask given to another model); ``target`` /
            ``query`` missing for a text-conditioned model, or given to a plain one (so is
            ``text_encoder``, which it used to ignore); an ``output_path`` that is not a ``.nii`` /
            ``.nii.gz`` path (checked before segmenting, :func:`nifti_output_path`).
        UnknownNameError: an unknown target name (with the close matches; a ``KeyError``).
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
        if text_encoder is not None and not self.text_conditioned:
            raise SegmentationInputError("text_encoder= needs a text-conditioned segmentation checkpoint (it "
                                         f"embeds query= text); this model segments {self.core.label_names} and "
                                         "would ignore it")

    @property
    def volumetric(self) -> bool:
        """True when the model takes whole volumes: a 3D encoder or a 2.5D model (``context_slices > 0``)."""
        return self.core.spatial_dims == 3 or self.core.inference["context_slices"] > 0

    @property
    def takes(self) -> str:
        """What this model takes, as its input errors say it: kind (2D, 2.5D, 3D), dim order, channels."""
        inf, chans = self.core.inference, self.core.encoder.in_chans
        one = "one (X, Y, Z) volume per input: a 3D NIfTI file or an (X, Y, Z) array"
        if not self.volumetric:
            return TAKES_2D
        if inf["context_slices"]:
            return (f"this 2.5D segmentation model (a 2D encoder on stacks of {2 * inf['context_slices'] + 1} slices "
                    f"along axis {inf['slice_axis']}) takes {one}")
        size = f"any size ({'x'.join(str(n) for n in inf['roi_size'])} windows)"
        return (f"this 3D segmentation model takes {one}, {size}" if chans == 1 else
                f"this 3D segmentation model takes {chans} channels per case, ({chans}, X, Y, Z), {size}")

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
        image, brain_mask = split_item(item)
        if (brain_mask is not None) != (inf["intensity"] == "brain_percentile"):
            if brain_mask is None:
                raise SegmentationInputError(
                    "this model scales each channel by percentiles inside the brain and crops to it "
                    "(inference.intensity 'brain_percentile'): pass the case's brain mask, "
                    "pipe({'image': ..., 'brain_mask': 'brainmask.nii.gz'})")
            raise SegmentationInputError("brain_mask is only used by models with inference.intensity "
                                         f"'brain_percentile'; this one records {inf['intensity']!r}")
        channels = core.encoder.in_chans if core.spatial_dims == 3 else 1  # channels of one input volume
        data = (read_channels(image, channels) if channels > 1 else
                read_input(image, core.encoder.in_chans, self.volumetric, self.takes))
        arr = data["array"]
        if self.volumetric and not data["nifti"]:  # an (X, Y, 3) or (3, X, Y) array: an RGB image or 3 slices?
            check_not_rgb_like(arr.shape, self.takes, inf["slice_axis"] if inf["context_slices"] else None)
        if core.spatial_dims == 3:
            check_not_single_slice(arr.shape, self.takes)
        if not self.volumetric:
            mask = predict_labels(model, arr, overlap=overlap)
        elif inf["intensity"] == "brain_percentile":
            from medfm.data.brats import brain_bbox, brain_percentile_unit, paste_back

            vol = arr if arr.ndim == 4 else arr[None]
            brain = read_brain_mask(brain_mask, vol.shape[1:], data["affine"])
            box = brain_bbox(brain, inf["crop_margin"])
            x = np.stack([brain_percentile_unit(c, brain, tuple(inf["percentiles"]))[box] for c in vol])
            mask = paste_back(predict_labels(model, x, overlap=overlap, check_rgb=False), box, brain.shape)
        else:  # one (X, Y, Z) volume (3D or 2.5D model), or (C, X, Y, Z) channels
            if inf["intensity"] == "percentile":
                arr = np.stack([percentile_unit(c) for c in arr]) if channels > 1 else percentile_unit(arr)
            else:
                arr = check_unit_volume(arr)
            mask = predict_labels(model, arr[None] if arr.ndim == 3 and not inf["context_slices"] else arr,
                                  overlap=overlap, check_rgb=False)  # checked above (arrays) or a NIfTI volume
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
        if output_path is not None:
            nifti_output_path(output_path)
        model, about = self._view(target, query)
        out = [{**r, **about} for r in each_input(items, lambda it: self._one(it, model), batch=not single,
                                                  noun="volume" if self.volumetric else "image",
                                                  error=SegmentationInputError)]
        if output_path is not None:
            if not single or out[0]["nifti"] is None:
                raise SegmentationInputError("output_path needs exactly one NIfTI input")
            save_nifti(out[0]["nifti"], output_path)
        return out[0] if single else out


def nifti_output_path(path: Any) -> Path:
    """``path`` as the ``Path`` of a NIfTI file to write (checked before any work is done).

    Raises:
        SegmentationInputError: not a ``str`` / ``os.PathLike`` (was pathlib's ``TypeError``, after the
            segmentation had run), or a name not ending in ``.nii`` / ``.nii.gz``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise SegmentationInputError(f"output_path must be a file path ending in .nii or .nii.gz, got "
                                     f"{type(path).__name__}")
    path = Path(path)
    if not is_nifti(path):
        raise SegmentationInputError(f"NIfTI output paths end in .nii or .nii.gz, got {path.name}")
    return path


def save_nifti(image: Any, path: Union[str, os.PathLike]) -> Path:
    """Write a ``nibabel`` image to ``path`` (``.nii`` or ``.nii.gz``) atomically.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        SegmentationInputError: ``image`` is not a nibabel image (e.g. a mask array: wrap it,
            ``nib.Nifti1Image(mask, affine)``), ``path`` is not a path or does not end in ``.nii`` /
            ``.nii.gz`` (were an ``AttributeError`` / ``TypeError`` from nibabel or pathlib).
        NotADirectoryError: a folder above ``path`` is a file, named in the atomic writers' words
            (:func:`medfm.io.in_the_way_error`; was mkdir's ``[Errno 17] File exists`` / ``[Errno 20] Not a
            directory``, naming a folder below the file).
    """
    import nibabel as nib

    from medfm.io import atomic_path, make_dir

    if not isinstance(image, nib.spatialimages.SpatialImage):
        raise SegmentationInputError(f"save_nifti writes a nibabel image, e.g. nib.Nifti1Image(mask, affine), got "
                                     f"{type(image).__name__}")
    path = nifti_output_path(path)
    make_dir(path.parent, target=path)
    with atomic_path(path) as tmp:
        # nibabel picks compression from the suffix: keep it on the temporary name
        real_tmp = tmp.with_name(tmp.name + (".nii.gz" if path.name.lower().endswith(".gz") else ".nii"))
        nib.save(image, str(real_tmp))
        os.replace(real_tmp, tmp)
    return path


__all__ = ["predict_probs", "predict_labels", "ImageSegmentationPipeline", "save_nifti", "nifti_output_path",
           "SegmentationInputError", "seg_core"]
