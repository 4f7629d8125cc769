"""Segmentation metrics (Dice, HD95, surface Dice), per-case aggregation and PNG overlays.

Definitions (binary masks ``A`` = prediction, ``B`` = reference, 2D or 3D; bool or 0/1
values, anything else such as a probability map or NaN is rejected with a ValueError):

* Dice (Dice 1945; Sørensen 1948): ``2 |A ∩ B| / (|A| + |B|)``; 1.0 when both are empty.
* Surface voxels: a voxel of the mask whose 1-connected neighbourhood (binary erosion
  with the cross structuring element, outside of the image counting as background) is not
  all foreground, i.e. ``mask XOR erode(mask)``.
* HD95 (95th-percentile Hausdorff distance, Huttenlocher et al. 1993; as MONAI's
  ``compute_hausdorff_distance(percentile=95)``): the larger of the two directed 95th
  percentiles (linear interpolation) of the Euclidean distances from each surface voxel
  of one mask to the nearest surface voxel of the other, in the units of ``spacing``
  (mm for NIfTI spacing, pixels by default). 0.0 when both masks are empty, NaN when
  exactly one is empty (undefined).
* Surface Dice at tolerance ``tau`` (normalised surface distance, Nikolov et al.,
  "Clinically applicable segmentation of head and neck anatomy for radiotherapy",
  JMIR 2021; as MONAI's ``compute_surface_dice`` without sub-voxel areas): surface voxels
  of either mask within ``tau`` of the other surface, over all surface voxels. NaN when
  both are empty, 0.0 when exactly one is.

These are medfm's own implementations (scipy's exact Euclidean distance transform); the
tests check them against MONAI's metrics on hand-made masks.
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from medfm.arg_checks import check_number, check_string_list, number_fits

#: a numpy array or a torch tensor (moved to CPU and converted)
ArrayLike = Any


def _as_bool(mask: Any, what: str) -> np.ndarray:
    try:
        import torch

        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(mask)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{what} must be a 2D (H, W) or 3D (D, H, W) mask, got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{what} must be a numeric or boolean mask, got dtype {arr.dtype}")
        binary = (arr == 0) | (arr == 1)  # NaN fails both comparisons
        if not binary.all():
            bad = arr[~binary].ravel()[0].item()
            raise ValueError(f"{what} must be a binary mask (bool or 0/1), found value {bad!r}; threshold "
                             "probabilities or select one label (labels == k) first")
    return arr.astype(bool)


def _pair(pred: Any, ref: Any) -> tuple:
    a, b = _as_bool(pred, "prediction"), _as_bool(ref, "reference")
    if a.shape != b.shape:
        raise ValueError(f"prediction {a.shape} and reference {b.shape} masks differ in shape")
    return a, b


def _spacing(spacing: Optional[Union[float, Sequence[float]]], ndim: int) -> np.ndarray:
    """``(ndim,)`` voxel spacing from None (1 each), one value or ``ndim`` values, each a finite number
    > 0 (:func:`medfm.arg_checks.number_fits`: ``True`` was taken as 1 and inf accepted)."""
    if spacing is None:
        return np.ones(ndim)
    values = (np.asarray(spacing).reshape(-1).tolist() if isinstance(spacing, np.ndarray)
              else list(spacing) if isinstance(spacing, (list, tuple)) else [spacing])
    if len(values) not in (1, ndim) or not all(number_fits(v, gt=0) for v in values):
        raise ValueError(f"spacing must be one positive value or {ndim} positive values (finite numbers), "
                         f"got {spacing}")
    return np.repeat(np.asarray(values, dtype=np.float64), ndim // len(values))


def dice_score(pred: ArrayLike, ref: ArrayLike) -> float:
    """Dice coefficient of two binary masks ``(H, W)`` or ``(D, H, W)`` (1.0 if both empty).

    Raises:
        ValueError: masks of different shapes, of rank other than 2/3, or with values other
            than 0/1 (probability maps, NaN).
        TypeError: non-numeric masks.
    """
    a, b = _pair(pred, ref)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a boolean mask: ``mask XOR binary_erosion(mask)`` (cross element)."""
    from scipy.ndimage import binary_erosion

    return mask ^ binary_erosion(mask, border_value=0)


def surface_distances(pred: ArrayLike, ref: ArrayLike, spacing: Optional[Union[float, Sequence[float]]] = None):
    """Directed surface distances ``(d(pred -> ref), d(ref -> pred))`` as 1-D float arrays.

    Each entry is the Euclidean distance (in ``spacing`` units) from one surface voxel to
    the nearest surface voxel of the other mask. Empty arrays when a mask is empty.

    The distance transforms run on the bounding box of the two surfaces only: every voxel
    whose distance is read, and every voxel it is measured to, lies inside it, so the
    distances are exactly those of the whole image (a small tumour in a 240x240x155 MR volume
    costs a box of its own size, not the volume).

    Raises:
        ValueError: see :func:`dice_score`; bad ``spacing``.
    """
    a, b = _pair(pred, ref)
    return _surface_distances(a, b, _spacing(spacing, a.ndim))


def _surface_distances(a: np.ndarray, b: np.ndarray, sp: np.ndarray):
    from scipy.ndimage import distance_transform_edt

    sa, sb = surface(a), surface(b)
    if not sa.any() or not sb.any():
        return np.zeros(0), np.zeros(0)
    both = sa | sb
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(both))
    sa, sb = sa[box], sb[box]
    dist_to_b = distance_transform_edt(~sb, sampling=sp)
    dist_to_a = distance_transform_edt(~sa, sampling=sp)
    return dist_to_b[sa], dist_to_a[sb]


def _distance_metrics(a: np.ndarray, b: np.ndarray, sp: np.ndarray, percentile: float,
                      tolerance: float) -> Tuple[float, float]:
    """(HD at ``percentile``, surface Dice at ``tolerance``) of two checked boolean masks from one
    pair of distance transforms, with the empty-mask conventions of the module docstring."""
    if not a.any() and not b.any():
        return 0.0, float("nan")
    if not a.any() or not b.any():
        return float("nan"), 0.0
    d_ab, d_ba = _surface_distances(a, b, sp)
    hd = float(max(np.percentile(d_ab, percentile), np.percentile(d_ba, percentile)))
    sdice = float((np.sum(d_ab <= tolerance) + np.sum(d_ba <= tolerance)) / (d_ab.size + d_ba.size))
    return hd, sdice


def hd95(pred: ArrayLike, ref: ArrayLike, spacing: Optional[Union[float, Sequence[float]]] = None,
         percentile: float = 95.0) -> float:
    """95th-percentile symmetric Hausdorff distance (see module docstring).

    Returns:
        Distance in ``spacing`` units; 0.0 if both masks are empty, NaN if one is.

    Raises:
        ValueError: see :func:`dice_score`; ``percentile`` not a number in [0, 100].
    """
    percentile = check_number("percentile", percentile, ge=0, le=100)
    a, b = _pair(pred, ref)
    return _distance_metrics(a, b, _spacing(spacing, a.ndim), percentile, 0.0)[0]


def surface_dice(pred: ArrayLike, ref: ArrayLike, tolerance: float,
                 spacing: Optional[Union[float, Sequence[float]]] = None) -> float:
    """Surface Dice (normalised surface distance) at ``tolerance`` (``spacing`` units).

    Raises:
        ValueError: see :func:`dice_score`; ``tolerance`` not a finite number >= 0.
    """
    tolerance = check_number("tolerance", tolerance, ge=0)
    a, b = _pair(pred, ref)
    return _distance_metrics(a, b, _spacing(spacing, a.ndim), 95.0, tolerance)[1]


def case_metrics(pred_labels: ArrayLike, ref_labels: ArrayLike, label_names: Sequence[str],
                 spacing: Optional[Union[float, Sequence[float]]] = None, tolerance: float = 1.0,
                 distances: bool = True,
                 regions: Optional[Mapping[str, Sequence[int]]] = None) -> Dict[str, Dict[str, float]]:
    """Per-class (or per-region) Dice, HD95 and surface Dice of one case's label maps.

    Args:
        pred_labels, ref_labels: integer label maps ``(H, W)`` or ``(D, H, W)``.
        label_names: K names; class ``k`` is ``labels == k``; index 0 (background) skipped.
        spacing: voxel size (e.g. mm from the NIfTI header).
        tolerance: surface Dice tolerance in ``spacing`` units.
        distances: False skips HD95/surface Dice (costly on large 2D images).
        regions: instead of one mask per class, one mask per named region, the union of its
            labels (``numpy.isin(labels, region)``), e.g. the BraTS regions whole tumour
            (1, 2, 3, 4), tumour core (1, 3, 4) and enhancing tumour (4) (Menze et al., IEEE TMI
            2015); ``label_names`` is then unused.

    Returns:
        ``{class_or_region_name: {"dice": .., "hd95": .., "surface_dice": ..}}``.

    Raises:
        ValueError: label maps of different shapes (see :func:`dice_score`), an empty region, a
            ``tolerance`` that is not a finite number >= 0 (with ``distances``), ``label_names`` (without
            ``regions``) not a list of names (:func:`medfm.arg_checks.check_string_list`; integers accepted:
            ``"bv"`` was read as the classes ``b`` and ``v``).
    """
    pred = np.asarray(pred_labels)
    ref = np.asarray(ref_labels)
    if distances:
        tolerance = check_number("tolerance", tolerance, ge=0)
    sp = None
    if regions is not None:
        if any(not len(labels) for labels in regions.values()):
            raise ValueError(f"every region needs at least one label, got {dict(regions)}")
        sets = [(str(name), list(labels)) for name, labels in regions.items()]
    else:
        names = check_string_list("label_names", label_names, what="a list of class names", integers=True)
        sets = [(name, [k]) for k, name in enumerate(names) if k != 0]
    out: Dict[str, Dict[str, float]] = {}
    for name, labels in sets:
        a, b = np.isin(pred, labels), np.isin(ref, labels)
        row = {"dice": dice_score(a, b)}
        if distances:  # one pair of distance transforms for both
            sp = _spacing(spacing, a.ndim) if sp is None else sp
            row["hd95"], row["surface_dice"] = _distance_metrics(a, b, sp, 95.0, tolerance)
        out[str(name)] = row
    return out


def summarize_cases(per_case: Mapping[str, Mapping[str, Mapping[str, float]]]) -> Dict[str, Any]:
    """Mean, std, median of each class metric over the cases where it is finite, plus the class mean.

    Non-finite values (NaN, inf) are left out of a metric's statistics, and ``n`` reports how many cases
    each one rests on; ``left_out`` counts, per class and metric, the cases left out that way, so a
    mean over fewer cases is visible next to it. With :func:`case_metrics`' conventions this means: a
    case whose HD95 is NaN (exactly one of the two masks empty) is left out of that class's HD95 mean,
    std and median (and counted in ``left_out``), while a case with both masks empty counts as HD95 0.0
    (and Dice 1.0); a surface Dice of NaN (both empty) is left out. ``std`` is the population standard
    deviation (``numpy.std`` with ``ddof=0``, i.e. divided by ``n``, not ``n - 1``).

    Args:
        per_case: ``{case_id: {class: {metric: value}}}`` as :func:`case_metrics` returns.

    Returns:
        ``{"n_cases": N, "per_class": {class: {metric: {"mean", "std", "median", "n"}}},
        "mean": {metric: mean over classes of the class means}, "left_out": {class: {metric: count}}}``:
        ``n_cases`` counts every case, ``n`` the finite values of that class metric (``mean``/``std``/
        ``median`` are NaN when ``n`` is 0), ``left_out`` the non-finite ones (only classes and metrics
        with at least one; ``{}`` when no case was left out); the class mean averages the finite class
        means (NaN when none is).

    Raises:
        TypeError: ``per_case`` not nested as above, or a value that is not a real number.
    """
    classes: Dict[str, Dict[str, List[float]]] = {}
    for case, res in per_case.items():
        if not isinstance(res, Mapping) or not all(isinstance(m, Mapping) for m in res.values()):
            raise TypeError(f"per_case[{case!r}] must be {{class: {{metric: value}}}} as case_metrics returns, "
                            f"got {res!r}")
        for cls, metrics in res.items():
            for m, v in metrics.items():
                if isinstance(v, bool) or not isinstance(v, numbers.Real):  # NaN/inf pass: left out below
                    raise TypeError(f"per_case[{case!r}][{cls!r}][{m!r}] must be a number, got {v!r}")
                classes.setdefault(cls, {}).setdefault(m, []).append(float(v))
    per_class: Dict[str, Dict[str, Dict[str, float]]] = {}
    left_out: Dict[str, Dict[str, int]] = {}
    for cls, metrics in classes.items():
        per_class[cls] = {}
        for m, vals in metrics.items():
            arr = np.asarray(vals, dtype=np.float64)
            ok = arr[np.isfinite(arr)]
            per_class[cls][m] = {"mean": float(ok.mean()) if ok.size else float("nan"),
                                 "std": float(ok.std()) if ok.size else float("nan"),
                                 "median": float(np.median(ok)) if ok.size else float("nan"), "n": int(ok.size)}
            if ok.size < arr.size:
                left_out.setdefault(cls, {})[m] = int(arr.size - ok.size)
    metric_names = sorted({m for c in per_class.values() for m in c})
    mean = {}
    for m in metric_names:
        vals = np.asarray([per_class[c][m]["mean"] for c in per_class if m in per_class[c]], dtype=np.float64)
        mean[m] = float(vals[np.isfinite(vals)].mean()) if np.isfinite(vals).any() else float("nan")
    return {"n_cases": len(per_case), "per_class": per_class, "mean": mean, "left_out": left_out}


# -- overlays ---------------------------------------------------------------------------------
def overlay_image(image: np.ndarray, pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """RGB uint8 overlay ``(H, W, 3)``: true positives yellow, false positives red, misses green.

    Args:
        image: ``(H, W)`` or ``(H, W, 3)``, uint8 or float in [0, 1].
        pred, ref: boolean masks ``(H, W)``.

    Raises:
        ValueError: shapes that do not agree.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got {image.shape}")
    p, r = _pair(pred, ref)
    if p.ndim != 2 or p.shape != img.shape[:2]:
        raise ValueError(f"masks {p.shape} must be 2D and match the image {img.shape[:2]}")
    out = (img.astype(np.float32) * 0.6)
    colours = {(True, True): (255, 255, 0), (True, False): (255, 0, 0), (False, True): (0, 255, 0)}
    for (pv, rv), col in colours.items():
        sel = (p == pv) & (r == rv)
        out[sel] = 0.4 * img[sel] + 0.6 * np.asarray(col, dtype=np.float32)
    return out.round().clip(0, 255).astype(np.uint8)


def save_overlay(path: Union[str, Path], image: np.ndarray, pred: np.ndarray, ref: np.ndarray) -> Path:
    """Write :func:`overlay_image` as a PNG (atomically), creating its folder. For volumes pass one slice.

    Raises:
        NotADirectoryError: a folder above ``path`` is a file, named in the words of medfm's writers
            (:func:`medfm.io.make_dir`; was mkdir's ``[Errno 17] File exists`` naming a folder below the file).
    """
    from PIL import Image

    from medfm.io import atomic_path, make_dir

    path = Path(path)
    make_dir(path.parent, target=path)
    with atomic_path(path) as tmp:
        Image.fromarray(overlay_image(image, pred, ref)).save(tmp, format="PNG")
    return path


def largest_slice(mask: np.ndarray, axis: int = 0) -> int:
    """Index along ``axis`` of the slice of a 3D mask with the most foreground (middle if empty)."""
    mask = np.asarray(mask).astype(bool)
    counts = mask.sum(axis=tuple(i for i in range(mask.ndim) if i != axis))
    return int(np.argmax(counts)) if counts.any() else mask.shape[axis] // 2


__all__ = ["dice_score", "hd95", "surface_dice", "surface_distances", "surface", "case_metrics",
           "summarize_cases", "overlay_image", "save_overlay", "largest_slice"]
