"""MedMNIST v2 (12 2D + 6 3D sets) read from the official npz files.

Source: Yang et al., "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D
biomedical image classification", Scientific Data 10, 41 (2023). All metadata (task,
label names, channels, license, split sizes, zenodo URLs, md5 per size) come from the
``medmnist`` package's ``INFO`` table, read by :mod:`medfm.data.medmnist_info` (torch-free;
its names are re-exported here); nothing is hard-coded here. Files are
``<data_root>/medmnist/<flag>.npz`` at 28 px and ``<flag>_<size>.npz`` otherwise, with
arrays ``{train,val,test}_{images,labels}`` (images uint8, labels integer ``(N, L)``).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from medfm.arg_checks import check_bool, check_label_fraction, check_number, shown
from medfm.data.errors import (
    ChecksumError,
    CorruptFileError,
    DataFileMissingError,
    DataShapeError,
    DownloadError,
    MedFMDataError,
)
from medfm.data.medmnist_info import (
    INFO,
    MEDMNIST_2D_FLAGS,
    MEDMNIST_3D_FLAGS,
    MEDMNIST_FLAGS,
    MULTI_LABEL_TASK,
    SPLITS,
    available_sizes,
    check_medmnist_split,
    check_split,
    dataset_info,
    expected_md5,
    file_md5,
    medmnist_path,
    npz_md5s,
    npz_name,
    npz_url,
    verify_md5,
)
from medfm.data.root import PathLike
from medfm.data.uint8_sets import UInt8ImageSet

DOWNLOAD_TIMEOUT_S = 15.0


def download_medmnist(
    flag: str, size: int = 28, data_root: Optional[PathLike] = None, timeout: float = DOWNLOAD_TIMEOUT_S
) -> Path:
    """Download the official npz from zenodo (URL and md5 from INFO) into ``<root>/medmnist/``.

    Streams into a temporary file in the target folder, checks the md5, then renames it
    into place, so a failed or interrupted download never leaves a partial ``.npz``.

    Args:
        timeout: socket timeout in seconds; offline the call fails at once or after this.

    Returns:
        Path of the verified file.

    Raises:
        DownloadError: no network, HTTP error, timeout, or the folder cannot be written;
            the message names the file, its URL and the folder to put it in by hand.
        ChecksumError: the downloaded bytes do not match the published md5.
    """
    url, md5 = npz_url(flag, size), expected_md5(flag, size)
    dest = medmnist_path(flag, size, data_root)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as e:
        raise DownloadError(f"cannot write {dest.name} into {dest.parent} ({e.strerror or e})") from None
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        out.write(chunk)
                        h.update(chunk)
            except (OSError, http.client.HTTPException) as e:
                reason = getattr(e, "reason", None) or e
                raise DownloadError(
                    f"could not download {dest.name} from {url} ({reason}); "
                    f"download it by hand and put it in {dest.parent}"
                ) from None
        if h.hexdigest() != md5:
            raise ChecksumError(f"md5 mismatch for {dest.name} downloaded from {url}: got {h.hexdigest()}, expected "
                                f"{md5}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def read_split_arrays(path: Path, split: str,
                      arrays: Tuple[str, ...] = ("images", "labels")) -> Tuple[np.ndarray, ...]:
    """Read ``<split>_<name>`` of a MedMNIST npz for each name of ``arrays``, never unpickling: by default the
    uint8 ``(N, H, W[, 3])`` / ``(N, D, H, W)`` images and the int ``(N, L)`` labels (:class:`MedMNISTDataset`);
    ``("labels",)`` reads no image (:func:`medfm.evaluation.suite_data.check_max_samples`). Unchecked arrays.

    Raises:
        CorruptFileError: not an npz archive, truncated or corrupt, a member that is not a .npy array.
        DataShapeError: an array missing (not an official MedMNIST npz).
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array under an .npz name
            raise CorruptFileError(f"{path} is a single .npy array, not an npz archive; delete it and download it "
                                   "again")
        with loaded as npz:
            keys = [f"{split}_{name}" for name in arrays]
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataShapeError(f"{path} lacks array(s) {missing} (has {sorted(npz.files)}); not an official "
                                     "MedMNIST npz")
            read = tuple(npz[k] for k in keys)
        for key, arr in zip(keys, read):
            if not isinstance(arr, np.ndarray):  # a zip member without the .npy header comes back as bytes
                raise CorruptFileError(f"{path}: member {key} is not a .npy array; delete the file and download it "
                                       "again")
        return read
    except MedFMDataError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError, zlib.error) as e:
        detail = str(e).splitlines()[0] if str(e) else ""
        raise CorruptFileError(
            f"cannot read {path}: truncated or corrupt npz ({type(e).__name__}: {detail}); delete it and download it "
            "again"
        ) from None


def _check_arrays(images: np.ndarray, labels: np.ndarray, path: Path, split: str, info: Dict[str, Any],
                  size: int) -> None:
    """Raise DataShapeError unless the arrays match the official layout for this flag/size."""
    if info["is_3d"]:
        per_item: Tuple[int, ...] = (size, size, size)
    else:
        per_item = (size, size) if info["n_channels"] == 1 else (size, size, info["n_channels"])
    if images.dtype != np.uint8 or images.ndim != 1 + len(per_item) or images.shape[1:] != per_item:
        expected = "(N, " + ", ".join(map(str, per_item)) + ") uint8"
        raise DataShapeError(
            f"{path}: {split}_images is {tuple(images.shape)} {images.dtype}, expected {expected} for {info['flag']!r} "
            f"at size {size}"
        )
    multi = info["task"] == MULTI_LABEL_TASK
    n_cols = info["num_classes"] if multi else 1
    if labels.shape != (images.shape[0], n_cols):
        raise DataShapeError(
            f"{path}: {split}_labels is {tuple(labels.shape)}, expected ({images.shape[0]}, {n_cols}) "
            f"(one row per image, {n_cols} column(s) for task {info['task']!r})"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataShapeError(f"{path}: {split}_labels has dtype {labels.dtype}, expected integers")
    upper = 2 if multi else info["num_classes"]
    if labels.size and (labels.min() < 0 or labels.max() >= upper):
        raise DataShapeError(
            f"{path}: {split}_labels values span [{labels.min()}, {labels.max()}], expected [0, {upper - 1}] for "
            f"{info['flag']!r}"
        )


class MedMNISTDataset(UInt8ImageSet):
    """One split of a MedMNIST v2 set, held in memory as uint8.

    Samples are dicts ``{"image": x, "label": y}``:

    - ``image``: ``(C, H, W)`` float32 in [0, 1] for 2D, ``(C, D, H, W)`` for 3D
      (C = ``n_channels``; 1 for grayscale and 3D unless ``as_rgb``).
    - ``label``: int64 scalar tensor for binary-class, multi-class and ordinal-regression
      tasks; float32 ``(n_labels,)`` of 0/1 for the multi-label task (chestmnist).

    :meth:`get_batch` is the fast path used by the training loop: it gathers a whole
    batch from a uint8 tensor with one indexing op (no per-sample Python loop) and is
    bit-exact with stacking ``__getitem__``.

    Args:
        flag: MedMNIST flag (see ``MEDMNIST_FLAGS``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: image side in px: 28/64/128/224 (2D), 28/64 (3D).
        data_root: see :func:`medfm.data.root.resolve_data_root`; files in ``<root>/medmnist/``.
        download: fetch the file from zenodo when missing (never in tests).
        verify: check the file's md5 against INFO (cached per path/mtime/size).
        as_rgb: repeat single-channel images to 3 channels (2D and 3D, as medmnist does).

    Attributes:
        flag, split, size, task, label_names, n_channels, num_classes, is_3d, license,
        md5 (expected digest), path, images (uint8 ``(N, H, W[, 3])`` or ``(N, D, H, W)``),
        labels (integer ``(N, L)`` as stored).

    Raises:
        UnknownDatasetError, UnknownSplitError, UnsupportedSizeError: bad flag/split/size
            (a size is an integer: ``28.0`` is refused).
        ValueError: ``download``, ``verify`` or ``as_rgb`` not a bool (``download must be true or
            false, got 'no' (str)``).
        DataFileMissingError: file absent and ``download=False`` (names the path).
        DownloadError, ChecksumError, CorruptFileError, DataShapeError: see their docs.
    """

    def __init__(
        self,
        flag: str,
        split: str = "train",
        size: int = 28,
        data_root: Optional[PathLike] = None,
        download: bool = False,
        verify: bool = True,
        as_rgb: bool = False,
    ) -> None:
        info = dataset_info(flag)
        # a switch given as "no" would be taken as True (download="no" used to reach the network)
        download, verify, as_rgb = (check_bool(n, v) for n, v in
                                    (("download", download), ("verify", verify), ("as_rgb", as_rgb)))
        check_medmnist_split(flag, split)
        url = npz_url(flag, size)  # also checks the size
        self.flag, self.split, self.size = flag, split, size
        self.task: str = info["task"]
        self.label_names = list(info["label_names"])
        self.num_classes: int = info["num_classes"]
        self.is_3d: bool = info["is_3d"]
        self.license: str = info["license"]
        self.md5: str = expected_md5(flag, size)
        self.path = medmnist_path(flag, size, data_root)
        if not self.path.is_file():
            if not download:
                raise DataFileMissingError(
                    f"MedMNIST {flag!r} (size {size}) not found at {self.path}; put {self.path.name} "
                    f"(from {url}) in {self.path.parent}, or point --data-root / "
                    "$MEDFM_DATA at a folder holding medmnist/, or pass download=True in Python"
                )
            download_medmnist(flag, size, data_root)
        if verify:
            verify_md5(self.path, self.md5)
        images, labels = read_split_arrays(self.path, split)
        _check_arrays(images, labels, self.path, split, info, size)
        self.images, self.labels = images, labels
        self.multi_label = self.task == MULTI_LABEL_TASK
        self.n_channels = 3 if as_rgb else info["n_channels"]
        self._hold(images, labels, self.multi_label,  # the tensor shares memory with self.images
                   channel_last=not self.is_3d and info["n_channels"] == 3,
                   repeat_rgb=as_rgb and info["n_channels"] == 1)

    def __repr__(self) -> str:
        return (
            f"MedMNISTDataset(flag={self.flag!r}, split={self.split!r}, size={self.size}, n={len(self)}, "
            f"task={self.task!r}, n_channels={self.n_channels}, path={str(self.path)!r})"
        )


def label_fraction_indices(
    n_or_labels: Union[int, np.ndarray, torch.Tensor, Sequence[int]], fraction: float, seed: int = 0
) -> np.ndarray:
    """Indices of a fixed random ``fraction`` of a training set (label-efficiency runs).

    The draw is stratified by group, each group keeping ``round(fraction * n_g)`` of its
    samples, at least one:

    * single-label ``labels`` (``(N,)`` or ``(N, 1)``): the groups are the classes;
    * multi-label ``(N, L)`` 0/1 labels (ChestMNIST): each sample joins the group of its
      rarest positive label (samples without a positive label form one more group). With
      a label at 0.2 % of the images (hernia in NIH ChestX-ray14), a plain random draw of
      785 (1 % of ChestMNIST's train split) misses it with probability 0.998^785, about
      0.2; this way every label with a positive keeps at least one sample and the rare
      labels keep their share, as in iterative stratification (Sechidis, Tsoumakas &
      Vlahavas, ECML PKDD 2011), which also serves the rarest label first;
    * ``N`` alone: a plain random draw of ``round(fraction * N)`` (at least one).

    Each group's order is one permutation of ``seed``, so with the same seed a smaller
    fraction is a subset of a larger one.

    Returns:
        Sorted int64 numpy array of indices into ``[0, N)``.

    Raises:
        ValueError: ``fraction`` not a number in (0, 1] (NaN, ``True``, ``"0.1"`` refused:
            ``fraction must be in (0, 1], got '0.1' (str)``, :func:`medfm.arg_checks.check_label_fraction`), ``seed``
            not an integer >= 0 (``None`` would draw a different subset on each call), an empty set,
            ``n_or_labels`` neither an int nor integer-valued ``(N,)`` / ``(N, L)`` labels, or
            multi-label labels that are not 0/1.
    """
    fraction = check_label_fraction(fraction, "fraction")
    seed = check_number("seed", seed, ge=0, integer=True)
    groups: Optional[np.ndarray] = None
    if isinstance(n_or_labels, (int, np.integer)) and not isinstance(n_or_labels, bool):
        n = int(n_or_labels)
    else:
        arr = np.asarray(n_or_labels)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        # a float count (10.0), a 0-d tensor, a string or (N, L, K) labels were taken as an empty set or
        # drawn from without strata; 0.5-valued class labels were strata of their own ((N, L) labels: 0/1 below)
        if arr.ndim not in (1, 2) or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)
                                          or (np.issubdtype(arr.dtype, np.floating) and
                                              (arr.ndim == 2 or np.array_equal(arr, np.round(arr))))):
            raise ValueError("label_fraction_indices takes a count N (an int) or integer labels (N,) / (N, L), "
                             f"got {shown(n_or_labels) if arr.ndim == 0 else f'{arr.dtype} {tuple(arr.shape)}'}")
        n = int(arr.shape[0])
        if arr.ndim == 1:
            groups = arr
        elif n:
            groups = _rarest_label_groups(arr)
    if n <= 0:
        raise ValueError(f"cannot draw a fraction of an empty set (n={n})")
    rng = np.random.default_rng(seed)

    def take(members: np.ndarray) -> np.ndarray:
        k = max(1, int(np.floor(fraction * len(members) + 0.5)))
        return rng.permutation(members)[:k]

    if groups is None:
        chosen = take(np.arange(n))
    else:
        chosen = np.concatenate([take(np.flatnonzero(groups == c)) for c in np.unique(groups)])
    return np.sort(chosen).astype(np.int64)


def _rarest_label_groups(labels: np.ndarray) -> np.ndarray:
    """``(N,)`` group per sample of ``(N, L)`` 0/1 labels: the index of its rarest positive
    label (ties: the lower index), ``L`` when it has none."""
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("multi-label labels must be 0/1 (an (N, L) array), got other values")
    pos = labels.astype(bool)
    counts = pos.sum(axis=0)
    order = np.argsort(counts, kind="stable")  # rarest label first
    first = np.argmax(pos[:, order], axis=1)
    return np.where(pos.any(axis=1), order[first], labels.shape[1])


__all__ = [  # the metadata names are medfm.data.medmnist_info's, re-exported
    "INFO", "MEDMNIST_FLAGS", "MEDMNIST_2D_FLAGS", "MEDMNIST_3D_FLAGS", "SPLITS", "MULTI_LABEL_TASK",
    "available_sizes", "dataset_info", "npz_name", "npz_url", "expected_md5", "npz_md5s", "medmnist_path",
    "file_md5", "verify_md5", "DOWNLOAD_TIMEOUT_S", "download_medmnist", "MedMNISTDataset", "label_fraction_indices",
    "check_split", "check_medmnist_split", "read_split_arrays",
]
