"""BraTS 2015 (DeepMedic example cases): 3D FLAIR + T1c brain-tumour segmentation, 5 labels.

Data (``<root>/brats2015_deepmedic_examples/{train,validation,test}/<case>/``; read its
PROVENANCE.md): 6 cases of the BraTS 2015 training set (Menze et al., "The Multimodal
Brain Tumor Image Segmentation Benchmark (BRATS)", IEEE TMI 34(10):1993-2024, 2015), as
shipped with DeepMedic (Kamnitsas et al., Med. Image Anal. 36:61-78, 2017). Each case has
``Flair_subtrMeanDivStd.nii.gz``, ``T1c_subtrMeanDivStd.nii.gz`` (z-scored within the brain
by the provider), ``OTMultiClass.nii.gz`` (labels 0 background, 1 necrosis, 2 oedema,
3 non-enhancing tumour, 4 enhancing tumour, stored as float32) and ``brainmask.nii.gz``
(float64, thresholded at 0.5); all ``(240, 240, 155)`` at 1 mm isotropic.

**Licence: CC BY-NC-SA 3.0 (Switzerland): non-commercial use only, share-alike.** For that
reason the folder is never a source of the pretraining corpus (:mod:`medfm.data.corpus`):
its licence would bind every pretrained checkpoint.

Split: the provider's folder split, kept as is: ``train`` (2 cases), ``validation`` (2),
``test`` (2).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from medfm.arg_checks import check_number
from medfm.data.errors import DataShapeError, UnknownSplitError
from medfm.data.images import missing_file
from medfm.data.root import PathLike, dataset_dir
from medfm.data.segmentation import check_voxels, load_nifti, percentile_unit

BRATS_FOLDER = "brats2015_deepmedic_examples"
BRATS_SPLITS = ("train", "validation", "test")
BRATS_SHAPE = (240, 240, 155)
#: input channels, in model channel order
BRATS_CHANNELS = (("flair", "Flair_subtrMeanDivStd.nii.gz"), ("t1c", "T1c_subtrMeanDivStd.nii.gz"))
BRATS_LABEL_FILE = "OTMultiClass.nii.gz"
BRATS_MASK_FILE = "brainmask.nii.gz"
BRATS_LABELS = ["background", "necrosis", "oedema", "non_enhancing", "enhancing"]
#: the BraTS evaluation regions (Menze et al. 2015): whole tumour, tumour core, enhancing tumour
BRATS_REGIONS: Dict[str, Tuple[int, ...]] = {"whole_tumour": (1, 2, 3, 4), "tumour_core": (1, 3, 4),
                                             "enhancing_tumour": (4,)}
BRATS_SPLIT_RULE = "the provider's folders: train (2 cases) / validation (2, not used by the runner) / test (2)"
#: robust intensity range (percentiles inside the brain mask) mapped to [0, 1]
BRATS_PERCENTILES = (0.5, 99.5)
#: voxels of margin around the brain-mask bounding box kept by :func:`brain_bbox`
BRATS_MARGIN = 4


def brats_cases(split: str, data_root: Optional[PathLike] = None) -> List[str]:
    """Sorted case ids (``"brats_2013_pat0001_1"``, ...) of one split folder.

    Raises:
        UnknownSplitError: ``split`` not in ("train", "validation", "test").
        DataFileMissingError: the split folder is missing.
    """
    if split not in BRATS_SPLITS:
        raise UnknownSplitError(f"unknown split {split!r}; BraTS 2015 has {BRATS_SPLITS}")
    folder = dataset_dir(BRATS_FOLDER, data_root) / split
    if not folder.is_dir():
        raise missing_file(folder, f"BraTS 2015 {split} folder")
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def brain_percentile_unit(volume: np.ndarray, brain: np.ndarray,
                          percentiles: Tuple[float, float] = BRATS_PERCENTILES) -> np.ndarray:
    """Map one MR channel to [0, 1]: percentiles ``(low, high)`` of the voxels inside the brain
    mask go to 0 and 1, everything is clipped to [0, 1] (float32).

    Why: medfm encoders refuse inputs outside [0, 1]
    (:func:`medfm.encoders.base.check_input`), and the provider's within-brain z-scores are
    unbounded (about -4.8 .. 9.3) with a constant background value. Percentiles computed
    inside the brain ignore the background (about 85 % of the volume) and the 0.5 % tails,
    so one bright vessel or artefact does not compress the tumour contrast.

    Shape: ``(X, Y, Z)`` volume and ``(X, Y, Z)`` bool mask -> ``(X, Y, Z)`` float32 in [0, 1];
    all zeros when the brain is empty or constant.

    Raises:
        DataShapeError: volume and mask shapes differ.
    """
    v = np.asarray(volume, dtype=np.float32)
    brain = np.asarray(brain, dtype=bool)
    if v.shape != brain.shape:
        raise DataShapeError(f"volume {v.shape} and brain mask {brain.shape} differ in shape")
    return percentile_unit(v, *percentiles, mask=brain)


def brain_bbox(brain: np.ndarray, margin: int = BRATS_MARGIN) -> Tuple[slice, ...]:
    """Bounding box of the mask's foreground, widened by ``margin`` voxels per side and clipped
    to the volume, as one slice per axis (the whole volume when the mask is empty).

    Raises:
        ValueError: ``margin`` not an integer >= 0 (``2.5``, ``True`` and NaN are refused too).
    """
    margin = check_number("margin", margin, ge=0, integer=True)
    brain = np.asarray(brain, dtype=bool)
    if not brain.any():
        return tuple(slice(0, s) for s in brain.shape)
    out = []
    for axis, size in enumerate(brain.shape):
        hit = np.flatnonzero(brain.any(axis=tuple(a for a in range(brain.ndim) if a != axis)))
        out.append(slice(max(0, int(hit[0]) - margin), min(size, int(hit[-1]) + 1 + margin)))
    return tuple(out)


def paste_back(crop: np.ndarray, bbox: Sequence[slice], shape: Sequence[int], fill: int = 0) -> np.ndarray:
    """Put a label map predicted on a :func:`brain_bbox` crop back into a full-size volume.

    Shape: ``crop`` ``(x, y, z)`` (the bbox's size) -> ``shape``, same dtype; voxels outside
    the box get ``fill`` (background).

    Raises:
        ValueError: ``crop`` does not have the size of ``bbox`` or ``bbox`` leaves ``shape``.
    """
    crop = np.asarray(crop)
    size = tuple(s.stop - s.start for s in bbox)
    if crop.shape != size or len(shape) != len(bbox) or any(s.start < 0 or s.stop > n for s, n in zip(bbox, shape)):
        raise ValueError(f"crop {crop.shape} does not fit box {[(s.start, s.stop) for s in bbox]} in {tuple(shape)}")
    out = np.full(tuple(shape), fill, dtype=crop.dtype)
    out[tuple(bbox)] = crop
    return out


def load_brats(case_id: str, split: str, data_root: Optional[PathLike] = None) -> Dict[str, Any]:
    """One BraTS case at full size, channels scaled by :func:`brain_percentile_unit`.

    Returns:
        ``{"image": (2, 240, 240, 155) float32 in [0, 1] ([FLAIR, T1c]), "label": (240, 240, 155)
        uint8 in {0..4}, "brain": (240, 240, 155) bool, "affine": (4, 4), "spacing": (3,) mm}``.

    Raises:
        UnknownSplitError: bad ``split``.
        DataFileMissingError: the case folder or one of its four NIfTI files is missing.
        CorruptFileError: an unreadable NIfTI file.
        DataShapeError: a volume not ``(240, 240, 155)``, non-finite voxels, labels outside
            the integers {0, 1, 2, 3, 4}.
    """
    if split not in BRATS_SPLITS:
        raise UnknownSplitError(f"unknown split {split!r}; BraTS 2015 has {BRATS_SPLITS}")
    folder = dataset_dir(BRATS_FOLDER, data_root) / split / case_id
    if not folder.is_dir():
        raise missing_file(folder, f"BraTS 2015 case {case_id!r}")

    def read(name: str, what: str) -> Tuple[np.ndarray, np.ndarray, Tuple[float, ...]]:
        path = folder / name
        arr, affine, spacing = load_nifti(path)
        if arr.shape != BRATS_SHAPE:
            raise DataShapeError(f"{path}: {what} is {arr.shape}, expected {BRATS_SHAPE}")
        check_voxels(arr, path, what)
        return arr, affine, spacing

    brain = read(BRATS_MASK_FILE, "brain mask")[0] > 0.5
    channels, affine, spacing = [], None, None
    for name, file in BRATS_CHANNELS:
        arr, affine, spacing = read(file, name)
        channels.append(brain_percentile_unit(arr, brain))
    label = read(BRATS_LABEL_FILE, "label")[0]
    if label.min() < 0 or label.max() > 4 or (label.dtype.kind == "f" and not np.array_equal(label, np.rint(label))):
        raise DataShapeError(f"{folder / BRATS_LABEL_FILE}: labels must be integers in {{0, 1, 2, 3, 4}}, found "
                             f"{np.unique(label)[:8].tolist()}")
    return {"image": np.stack(channels), "label": label.astype(np.uint8), "brain": brain, "affine": affine,
            "spacing": spacing}


__all__ = ["BRATS_FOLDER", "BRATS_SPLITS", "BRATS_SHAPE", "BRATS_CHANNELS", "BRATS_LABELS", "BRATS_REGIONS",
           "BRATS_SPLIT_RULE", "BRATS_PERCENTILES", "BRATS_MARGIN", "brats_cases", "brain_percentile_unit",
           "brain_bbox", "paste_back", "load_brats"]
