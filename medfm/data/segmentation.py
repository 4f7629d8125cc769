"""Segmentation data: CHASE_DB1 vessels, MSD Task04 Hippocampus (NIfTI), TCGA-LGG FLAIR slices.

Every split is a fixed, documented rule on sorted ids (recorded in each run's results):

* **CHASE_DB1** (Fraz et al., IEEE TBME 2012; ``<root>/chase_db1/CHASEDB1/``): 28 fundus
  images ``Image_<child><eye>.jpg``, children 01-14, both eyes. Train = children 01-10
  (20 images), test = children 11-14 (8 images); both eyes of a child are on the same
  side. Truth = first observer (``_1stHO.png``); the second observer (``_2ndHO.png``)
  gives the human reference.
* **MSD Task04 Hippocampus** (Antonelli et al., Nat. Commun. 2022;
  ``<root>/msd_task04_hippocampus/{imagesTr,labelsTr}/hippocampus_XXX.nii.gz``), labels
  0 background, 1 anterior, 2 posterior. Sorted case ids; the case at sorted position
  ``i`` is **test when i % 5 == 4** (52 of 260, 20 %), else train (208).
* **TCGA-LGG FLAIR abnormality** (Buda et al., Comput. Biol. Med. 2019;
  ``<root>/lgg_tcga_flair_seg_3ch/images/<patient>/<patient>_<n>[_mask].png``): RGB
  slices [pre-contrast, FLAIR, post-contrast], masks {0, 255}. Split by patient, never by
  slice: sorted patient folders; the patient at sorted position ``i`` is **test when
  i % 3 == 2** (7 of 23), else train (16).

The readers (``chase_ids``/``load_chase``, ``hippocampus_cases``/``load_hippocampus``,
``lgg_patients``/``lgg_slices``/``load_lgg_slice``/``load_lgg_patient``) are small and
reusable; :class:`SegmentationArrays` holds a training set in memory with the fast
``get_batch`` path of :class:`medfm.training.loop.Trainer`.
"""
from __future__ import annotations

import operator
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from medfm.arg_checks import check_number, number_fits, shown
from medfm.data.errors import DataFileMissingError, DataShapeError, UnknownSplitError
from medfm.data.images import corrupt_file_error, missing_file, read_image
from medfm.data.root import PathLike, dataset_dir

CHASE_FOLDER = "chase_db1"
HIPPOCAMPUS_FOLDER = "msd_task04_hippocampus"
LGG_FOLDER = "lgg_tcga_flair_seg_3ch"
CHASE_LABELS = ["background", "vessel"]
HIPPOCAMPUS_LABELS = ["background", "anterior", "posterior"]
LGG_LABELS = ["background", "flair_abnormality"]
SPLITS = ("train", "test")

SPLIT_RULES = {
    "chase_db1": "children 01-10 (both eyes) train, 11-14 test; truth = first observer",
    "msd_hippocampus": "sorted case ids; position i % 5 == 4 -> test (52), else train (208)",
    "lgg_flair": "sorted patient ids; position i % 3 == 2 -> test (7), else train (16); all slices of a patient "
                 "together",
}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise UnknownSplitError(f"unknown split {split!r}; segmentation sets have {SPLITS}")
    return split


# -- CHASE_DB1 ------------------------------------------------------------------------------
def chase_ids(split: str) -> List[str]:
    """Image ids (``"01L"``, ``"01R"``, ...) of a CHASE_DB1 split ("train": children 01-10, "test": 11-14)."""
    children = range(1, 11) if _check_split(split) == "train" else range(11, 15)
    return [f"{c:02d}{eye}" for c in children for eye in "LR"]


def load_chase(image_id: str, data_root: Optional[PathLike] = None) -> Dict[str, np.ndarray]:
    """One CHASE_DB1 image and both observers' vessel masks.

    Returns:
        ``{"image": (960, 999, 3) uint8, "mask": (960, 999) bool (first observer),
        "mask2": (960, 999) bool (second observer)}``.

    Raises:
        DataFileMissingError, CorruptFileError, DataShapeError (masks not matching the image).
    """
    if not re.fullmatch(r"\d{2}[LR]", str(image_id)):
        raise ValueError(f"CHASE_DB1 image ids look like '01L' or '14R', got {image_id!r}")
    folder = dataset_dir(CHASE_FOLDER, data_root) / "CHASEDB1"
    image = read_image(folder / f"Image_{image_id}.jpg", "RGB", what="CHASE_DB1 image")
    out = {"image": image}
    for key, obs in (("mask", "1stHO"), ("mask2", "2ndHO")):
        m = read_image(folder / f"Image_{image_id}_{obs}.png", "L", what=f"CHASE_DB1 {obs} mask") > 0
        if m.shape != image.shape[:2]:
            raise DataShapeError(f"mask {obs} of {image_id} is {m.shape}, image is {image.shape[:2]}")
        out[key] = m
    return out


# -- MSD Task04 Hippocampus ------------------------------------------------------------------
def load_nifti(path: PathLike) -> Tuple[np.ndarray, np.ndarray, Tuple[float, ...]]:
    """A NIfTI file's voxel array (as stored, axes i, j, k), 4x4 affine and voxel size (mm).

    Raises:
        DataFileMissingError, CorruptFileError.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "NIfTI file")
    try:
        img = nib.load(str(path))
        arr = np.asarray(img.dataobj)
    except Exception as err:  # nibabel raises several types for bad files
        raise corrupt_file_error(path, "NIfTI", err) from None
    return arr, np.asarray(img.affine, dtype=np.float64), tuple(float(z) for z in img.header.get_zooms()[:arr.ndim])


def hippocampus_cases(split: Optional[str] = None, data_root: Optional[PathLike] = None) -> List[str]:
    """Sorted case ids (``"hippocampus_001"``, ...) with both image and label, optionally of one split.

    Raises:
        DataFileMissingError: the folder or its ``imagesTr`` is missing.
    """
    folder = dataset_dir(HIPPOCAMPUS_FOLDER, data_root)
    if not (folder / "imagesTr").is_dir():
        raise missing_file(folder / "imagesTr", "MSD Task04 Hippocampus")
    ids = sorted(p.name[:-len(".nii.gz")] for p in (folder / "imagesTr").glob("hippocampus_*.nii.gz")
                 if (folder / "labelsTr" / p.name).is_file())
    if split is None:
        return ids
    test = _check_split(split) == "test"
    return [c for i, c in enumerate(ids) if (i % 5 == 4) == test]


def percentile_unit(volume: np.ndarray, low: float = 0.5, high: float = 99.5,
                    mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Intensities clipped to the [low, high] percentiles and rescaled to [0, 1] (float32).

    With ``mask`` (bool, the volume's shape) the percentiles are taken over the masked voxels
    only (e.g. the brain, ignoring background); the whole volume is rescaled. All zeros when
    the percentiles are equal or the mask is empty.

    Raises:
        ValueError: ``low`` / ``high`` not numbers with ``0 <= low < high <= 100`` (``low > high`` gave
            an all-zero volume).
    """
    if not (number_fits(low, ge=0) and number_fits(high, le=100) and low < high):
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got low={shown(low)}, high={shown(high)}")
    v = np.asarray(volume, dtype=np.float32)
    values = v if mask is None else v[mask]
    if not values.size:
        return np.zeros_like(v)
    lo, hi = np.percentile(values, [low, high])
    if not hi > lo:
        return np.zeros_like(v)
    return np.clip((v - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def load_hippocampus(case_id: str, data_root: Optional[PathLike] = None) -> Dict[str, Any]:
    """One Hippocampus case.

    Returns:
        ``{"image": (X, Y, Z) float32 in [0, 1] (percentile-normalised), "label": (X, Y, Z)
        uint8 in {0, 1, 2}, "affine": (4, 4), "spacing": (3,) mm}``.

    Raises:
        DataFileMissingError, CorruptFileError, DataShapeError (shape or label mismatch).
    """
    folder = dataset_dir(HIPPOCAMPUS_FOLDER, data_root)
    image_path, label_path = folder / "imagesTr" / f"{case_id}.nii.gz", folder / "labelsTr" / f"{case_id}.nii.gz"
    image, affine, spacing = load_nifti(image_path)
    label, _, _ = load_nifti(label_path)
    if image.shape != label.shape or image.ndim != 3:
        raise DataShapeError(f"{case_id}: image {image.shape} and label {label.shape} must be equal 3D shapes")
    check_voxels(image, image_path, "image")
    check_voxels(label, label_path, "label")
    if label.size and (label.min() < 0 or label.max() > 2
                       or (label.dtype.kind == "f" and not np.array_equal(label, np.rint(label)))):
        raise DataShapeError(f"{label_path}: labels must be integers in {{0, 1, 2}}, found values in "
                             f"[{label.min()}, {label.max()}] ({np.unique(label)[:6].tolist()}...)")
    return {"image": percentile_unit(image), "label": label.astype(np.uint8), "affine": affine, "spacing": spacing}


def check_voxels(volume: np.ndarray, path: PathLike, what: str) -> None:
    """Raise :class:`DataShapeError` unless ``volume`` is real-valued (bool/int/float) and finite.

    Raises:
        DataShapeError: complex, object or other non-numeric dtype, or NaN/inf voxels (names
            the file and the count).
    """
    if volume.dtype.kind not in "biuf":
        raise DataShapeError(f"{path}: {what} voxels have dtype {volume.dtype}, expected real numbers")
    if volume.dtype.kind == "f":
        bad = int(volume.size - np.count_nonzero(np.isfinite(volume)))
        if bad:
            raise DataShapeError(f"{path}: {what} has {bad} non-finite (NaN/inf) voxel(s)")


# -- TCGA-LGG --------------------------------------------------------------------------------
def lgg_patients(split: Optional[str] = None, data_root: Optional[PathLike] = None) -> List[str]:
    """Sorted patient folders (``"TCGA_CS_4942_19970222"``, ...), optionally of one split.

    Raises:
        DataFileMissingError: the ``images`` folder is missing.
    """
    folder = dataset_dir(LGG_FOLDER, data_root) / "images"
    if not folder.is_dir():
        raise missing_file(folder, "TCGA-LGG images folder")
    ids = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if split is None:
        return ids
    test = _check_split(split) == "test"
    return [c for i, c in enumerate(ids) if (i % 3 == 2) == test]


def lgg_slices(patient: str, data_root: Optional[PathLike] = None) -> List[Tuple[int, Path, Path]]:
    """``(slice_number, image_path, mask_path)`` of one patient, in slice order (1, 2, ...).

    Raises:
        DataFileMissingError: unknown patient or an image without its mask.
    """
    folder = dataset_dir(LGG_FOLDER, data_root) / "images" / patient
    if not folder.is_dir():
        raise missing_file(folder, f"LGG patient {patient!r}")
    out = []
    for p in folder.glob(f"{patient}_*.png"):
        m = re.fullmatch(rf"{re.escape(patient)}_(\d+)\.png", p.name)
        if not m:
            continue
        mask = folder / f"{patient}_{m.group(1)}_mask.png"
        if not mask.is_file():
            raise missing_file(mask, "LGG mask")
        out.append((int(m.group(1)), p, mask))
    return sorted(out)


def load_lgg_slice(image_path: PathLike, mask_path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """One LGG slice: ``(256, 256, 3)`` uint8 [pre-contrast, FLAIR, post-contrast] and a ``(256, 256)`` bool mask.

    Raises:
        DataFileMissingError, CorruptFileError, DataShapeError.
    """
    image = read_image(image_path, "RGB", what="LGG slice")
    mask = read_image(mask_path, "L", what="LGG mask")
    if mask.shape != image.shape[:2]:
        raise DataShapeError(f"mask {mask_path} is {mask.shape}, image is {image.shape[:2]}")
    return image, mask > 127


def stack_slices(patient: str, pairs: Sequence[Tuple[np.ndarray, np.ndarray]],
                 paths: Sequence[PathLike]) -> Tuple[np.ndarray, np.ndarray]:
    """Stack one patient's ``(image, mask)`` slices: ``((S, H, W, 3) uint8, (S, H, W) bool)``.

    Raises:
        DataFileMissingError: no slices. DataShapeError: slices of different sizes (names the
            first slice file whose size differs from the first slice's).
    """
    if not pairs:
        raise DataFileMissingError(f"LGG patient {patient!r} has no slices (<patient>_<n>.png files)")
    first = pairs[0][0].shape
    for (image, _), path in zip(pairs, paths):
        if image.shape != first:
            raise DataShapeError(f"LGG slice {path} is {image.shape[:2]}, the first slice of {patient!r} is "
                                 f"{first[:2]}")
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def load_lgg_patient(patient: str, data_root: Optional[PathLike] = None) -> Dict[str, np.ndarray]:
    """All slices of a patient: ``{"image": (S, 256, 256, 3) uint8, "mask": (S, 256, 256) bool}``.

    Raises:
        DataFileMissingError (no such patient, no slices, a missing mask), CorruptFileError,
        DataShapeError (a mask not matching its slice, slices of different sizes).
    """
    files = lgg_slices(patient, data_root)
    images, masks = stack_slices(patient, [load_lgg_slice(i, m) for _, i, m in files], [i for _, i, _ in files])
    return {"image": images, "mask": masks}


# -- in-memory training arrays ----------------------------------------------------------------
def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize a ``(H, W)`` / ``(H, W, C)`` uint8 image by ``scale`` (PIL bilinear, antialiased).

    Raises:
        ValueError: ``scale`` not a finite number > 0 (0 failed in PIL with ``Cannot handle this data type``).
    """
    from PIL import Image

    scale = check_number("scale", scale, gt=0)
    if scale == 1:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def resize_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    """Resize a boolean ``(H, W)`` mask by ``scale``: bilinear coverage >= 0.5."""
    if scale == 1:
        return mask.astype(bool)
    return resize_image(mask.astype(np.uint8) * 255, scale) >= 128


class SegmentationArrays:
    """A segmentation training set held in memory, padded to one shape.

    Args:
        images: list of ``(C, *S_i)`` uint8 or float32 (values in [0, 1]) arrays
            (:meth:`standardize_channels` z-scores them afterwards, if a recipe asks).
        masks: list of ``(*S_i)`` integer label maps.
        repeats: samples per epoch = ``repeats * len(images)`` (patch training draws
            several random crops per image and epoch).

    ``get_batch(indices)`` returns ``{"image": (B, C, *S) float32 in [0, 1] (z-scored per
    channel after :meth:`standardize_channels`), "mask":
    (B, *S) int64, "valid": (B, dims) int64}`` where ``S`` is the largest shape
    (zero-padded at the end) and ``valid`` the unpadded size of each item.

    Raises:
        DataShapeError: mismatched image/mask shapes or ranks, or a mask that is not integer labels
            in 0..255 (they are held as uint8: a label 300 became 44 and -1 became 255).
        ValueError: ``repeats`` not an integer >= 1 (0 made an empty set, 1.5 was truncated).
    """

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], repeats: int = 1) -> None:
        if len(images) != len(masks) or not len(images):
            raise DataShapeError(f"need as many masks as images (got {len(images)} and {len(masks)}), at least one")
        repeats = check_number("repeats", repeats, ge=1, integer=True)
        dims = images[0].ndim - 1
        for i, (im, m) in enumerate(zip(images, masks)):
            if im.ndim != dims + 1 or m.shape != im.shape[1:]:
                raise DataShapeError(f"item {i}: image {im.shape} and mask {m.shape} do not fit (C, *S) / (*S)")
            m = np.asarray(m)
            if not (np.issubdtype(m.dtype, np.integer)
                    or m.dtype == np.bool_) or (m.size and (m.min() < 0 or m.max() > 255)):
                raise DataShapeError(f"item {i}: mask must hold integer labels in 0..255, got {m.dtype} values "
                                     f"{m.min() if m.size else ''}..{m.max() if m.size else ''}")
        shape = tuple(max(im.shape[1 + d] for im in images) for d in range(dims))
        scale = 255.0 if images[0].dtype == np.uint8 else 1.0
        self.images = torch.zeros((len(images), images[0].shape[0], *shape), dtype=torch.float32)
        self.masks = torch.zeros((len(images), *shape), dtype=torch.uint8)
        self.valid = torch.tensor([im.shape[1:] for im in images], dtype=torch.long)
        for i, (im, m) in enumerate(zip(images, masks)):
            region = (i, slice(None), *[slice(0, s) for s in im.shape[1:]])
            self.images[region] = torch.from_numpy(np.asarray(im, dtype=np.float32) / scale)
            self.masks[(i, *[slice(0, s) for s in m.shape])] = torch.from_numpy(np.asarray(m, dtype=np.uint8))
        self.repeats = int(repeats)
        self.n_items = len(images)

    def __len__(self) -> int:
        return self.n_items * self.repeats

    def get_batch(self, indices: torch.Tensor) -> Dict[str, torch.Tensor]:
        """A batch of items; ``indices`` ``(B,)`` int are taken modulo the number of items (repeats).

        Returns:
            ``{"image": (B, C, *S) float32, "mask": (B, *S) int64, "valid": (B, dims) int64}``;
            images in [0, 1], or z-scored after :meth:`standardize_channels`; padding is 0.
        """
        idx = torch.as_tensor(indices, dtype=torch.long) % self.n_items
        return {"image": self.images[idx], "mask": self.masks[idx].long(), "valid": self.valid[idx]}

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        """Sample ``i`` of ``len(self)`` (``get_batch`` of one index, without the batch axis).

        Raises:
            IndexError: ``i`` outside ``[-len, len)`` (it wrapped around, so ``list(arrays)`` never ended).
        """
        if not -len(self) <= operator.index(i) < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        b = self.get_batch(torch.tensor([i % len(self)]))
        return {k: v[0] for k, v in b.items()}

    def standardize_channels(self) -> None:
        """Replace each item's image, in place, by :func:`channel_zscore` of its unpadded region
        (statistics of the image itself, never of the zero padding; padding stays 0)."""
        for i in range(self.n_items):
            region = (i, slice(None), *[slice(0, int(s)) for s in self.valid[i]])
            self.images[region] = channel_zscore(self.images[region][None])[0]


#: Input normalisations of segmentation models (``data.normalize`` / ``inference.normalize``).
NORMALIZATIONS = ("none", "channel_zscore")


def channel_zscore(images: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-image, per-channel z-score: each channel of each image minus its mean, over its std.

    The image-level normalisation nnU-Net applies to non-CT inputs (Isensee et al., Nature
    Methods 2021). For colour fundus photographs it also removes each image's colour cast
    (CHASE_DB1 child 13 has about two thirds of the training images' mean red), which
    fixed-range scaling (uint8 / 255) keeps. Whole images (or volumes) are normalised, before
    cropping or sliding windows, so training crops and inference windows see one scaling.

    Shape: ``(B, C, *S)`` float -> ``(B, C, *S)`` float32, zero mean and unit (population)
    std per item and channel; a constant channel becomes 0.

    Raises:
        ValueError: not a torch tensor, or fewer than 3 dimensions.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"channel_zscore expects a (B, C, *S) torch.Tensor, got {type(images).__name__}")
    if images.ndim < 3:
        raise ValueError(f"channel_zscore expects (B, C, *S) images, got shape {tuple(images.shape)}")
    x = images.float()
    dims = tuple(range(2, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True, unbiased=False)
    return (x - mean) / std.clamp_min(eps)


def slice_stack(volume: np.ndarray, context: int, axis: int = 0) -> np.ndarray:
    """2.5D inputs: for each slice along ``axis``, the slice and ``context`` neighbours each side.

    Shape: ``(X, Y, Z)`` -> ``(n_slices, 2 * context + 1, *other two axes)``; edges repeat
    the first/last slice.

    Raises:
        ValueError: ``context`` not an integer >= 0 (-1 gave zero-width stacks, 1.5 an IndexError).
    """
    context = check_number("context", context, ge=0, integer=True)
    v = np.moveaxis(np.asarray(volume), axis, 0)
    n = v.shape[0]
    idx = np.clip(np.arange(n)[:, None] + np.arange(-context, context + 1)[None, :], 0, n - 1)
    return v[idx]


__all__ = ["chase_ids", "load_chase", "hippocampus_cases", "load_hippocampus", "load_nifti", "percentile_unit",
           "lgg_patients", "lgg_slices", "load_lgg_slice", "load_lgg_patient", "stack_slices", "check_voxels",
           "SegmentationArrays", "slice_stack",
           "resize_image", "resize_mask", "channel_zscore", "NORMALIZATIONS", "SPLIT_RULES", "CHASE_LABELS",
           "HIPPOCAMPUS_LABELS", "LGG_LABELS"]
