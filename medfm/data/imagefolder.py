"""Labelled image-folder datasets (``<root>/<class>/<image>``), e.g. MedNIST.

Layout follows torchvision's ``ImageFolder``: one sub-folder per class (hidden ones, ``.name``, are not
classes; one holding no image is refused, :class:`EmptyClassFolderError`), class indices in
sorted folder-name order, the images its files with torchvision's extensions (:data:`IMAGE_EXTENSIONS`:
JPEG, PNG, PPM/PGM, BMP, TIFF, WebP; not GIF; a sub-folder named ``x.png`` is no image); other entries
of a class folder (a GIF, a DICOM file, a sub-folder, which torchvision would search) are skipped with one
warning naming how many and one of them (hidden ones, ``.DS_Store`` or macOS's ``._x.png``, without a word).
When the folder holds a ``labels.csv`` with columns ``file,label`` (paths relative to the folder), it is the list
of samples instead, and every listed file must exist (one non-empty file and label per row, no file twice). Images
are read once (the bytes for the md5, the pixels decoded from them) and decoded once
(:func:`medfm.data.images.read_image`: 16-bit grey and float images min-max
scaled to 0-255, 16-bit colour PNGs and TIFFs refused, bad files raise one-line data errors) into a uint8 array, resized
to ``size`` (PIL bilinear with antialiasing) when given, and served as float32 in [0, 1],
like :class:`medfm.data.medmnist.MedMNISTDataset`.

Folders rarely ship splits; ``split="train" | "val" | "test"`` picks a stratified
partition (default 70/10/20 per class, :func:`stratified_split`: seeded random, or by sorted
file name with ``split_rule="sorted"``, the pretraining corpus's held-out rule), ``"all"``
every image.
"""
from __future__ import annotations

import csv
import hashlib
import os
import warnings
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from medfm.arg_checks import check_number, number_fits, shown
from medfm.data.errors import (CorruptFileError, DataFileMissingError, DataShapeError, EmptySplitError, MedFMDataError,
                               UnknownSplitError)
from medfm.data.images import image_decode_error, image_mode, missing_file, read_image
from medfm.data.root import PathLike, resolve_data_root
from medfm.data.uint8_sets import UInt8ImageSet

#: the image files of a class folder: torchvision's ``IMG_EXTENSIONS`` (``torchvision.datasets.folder``), so a folder
#: gives the samples torchvision's ``ImageFolder`` finds directly in its class folders (GIF is not one: list GIFs in
#: a labels.csv; multi-frame images are refused either way, :func:`medfm.data.images.read_image`)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
FOLDER_SPLITS = ("all", "train", "val", "test")
#: PIL modes read as grey (1 channel) when ``in_chans`` is not given
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


SPLIT_RULES = ("random", "sorted")


def stratified_split(labels: np.ndarray, split: str, fractions: Tuple[float, float, float] = (0.7, 0.1, 0.2),
                     seed: int = 0, rule: str = "random", keys: Optional[Sequence[str]] = None) -> np.ndarray:
    """Sorted indices of ``split`` in a per-class train/val/test partition.

    ``rule="random"``: each class's indices are permuted with ``numpy.random.default_rng(seed)``;
    the first ``round(f_train * n_c)`` go to train, the next ``round(f_val * n_c)`` to val, the
    rest to test. ``rule="sorted"``: each class's members in ``keys`` (file name) order; the
    first ``int(f_train * n_c + 0.5)`` are train, up to ``int((f_train + f_val) * n_c + 0.5)``
    val, the rest test, i.e. the held-out rule of the pretraining corpus
    (:func:`medfm.data.corpus.mednist_split`: the last 20 % of each class's sorted files), so
    a corpus-pretrained encoder is never tested on an image it saw. Either way the three
    splits are disjoint and cover the class.

    Raises:
        UnknownSplitError: ``split`` not in ``FOLDER_SPLITS``.
        ValueError: fractions that are not 3 finite non-negative numbers summing to 1, a seed that
            is not an integer >= 0 (``None`` drew a new partition on each call), an unknown rule, or
            ``rule="sorted"`` without one key per label.
        DataShapeError: no labels.
    """
    if rule not in SPLIT_RULES:
        raise ValueError(f"unknown split rule {rule!r}; expected one of {', '.join(SPLIT_RULES)}")
    if rule == "sorted" and (keys is None or len(keys) != len(labels)):
        raise ValueError("the 'sorted' split rule needs one key (file name) per label")
    if split not in FOLDER_SPLITS:
        raise UnknownSplitError(f"unknown split {split!r} for an image folder; expected one of "
                                f"{', '.join(FOLDER_SPLITS)}")
    if (not isinstance(fractions, (list, tuple)) or len(fractions) != 3
            or not all(number_fits(f, ge=0) for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6):
        raise ValueError(f"split fractions must be 3 non-negative numbers summing to 1, got {shown(fractions)}")
    # seed=None drew a different partition on each call (train and test could overlap across two calls)
    seed = check_number("split seed", seed, ge=0, integer=True)
    labels = np.asarray(labels).reshape(-1)
    if not len(labels):
        raise DataShapeError("cannot split an empty set (no labels)")
    if split == "all":
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    part = FOLDER_SPLITS.index(split) - 1
    chosen: List[np.ndarray] = []
    for c in np.unique(labels):
        if rule == "sorted":
            members = np.array(sorted(np.flatnonzero(labels == c), key=lambda i: keys[i]), dtype=np.int64)
            n = len(members)
            b1 = int(fractions[0] * n + 0.5)
            bounds = (0, b1, max(b1, int(round(fractions[0] + fractions[1], 9) * n + 0.5)), n)
        else:
            members = rng.permutation(np.flatnonzero(labels == c))
            n_train = int(round(fractions[0] * len(members)))
            n_val = int(round(fractions[1] * len(members)))
            bounds = (0, n_train, n_train + n_val, len(members))
        chosen.append(members[bounds[part]:bounds[part + 1]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


class EmptyClassFolderError(DataShapeError, FileNotFoundError):
    """A class folder of an image folder that holds no image file (:func:`scan_image_folder`): the folder is on disk
    but not laid out as the reader needs, a :class:`~medfm.data.errors.DataShapeError` (as an image folder holding
    no image at all), not missing data (a suite counts it as a skipped data set that is there,
    :class:`medfm.evaluation.suite_data.DatasetSkipped`). A ``FileNotFoundError`` too, as torchvision's ``ImageFolder``
    raises (``FileNotFoundError: Found no valid file for the classes ...``). (Was a
    :class:`~medfm.data.errors.DataFileMissingError`, the suite's missing-data error, which the suite had to
    except by name.)"""


def _is_image_entry(entry: os.DirEntry) -> bool:
    """Whether an entry of a class folder is one of its images: an :data:`IMAGE_EXTENSIONS` name that is not a
    folder (torchvision's rule: ``os.walk`` lists it among the files; a link leading nowhere is one, failing when
    read; a folder named ``x.png`` was taken for an image, its suffix checked alone). ``os.scandir``'s entry knows
    whether it is a folder without a ``stat`` per image (a link: followed, as ``os.walk`` does). A macOS AppleDouble
    file (``._x.png``: the metadata macOS writes beside ``x.png`` on a non-Apple disk, no image) is none and is
    passed over without a word, as hidden entries are (torchvision reads it and fails to decode it)."""
    name = entry.name
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith("._") and not entry.is_dir()


def scan_image_folder(root: Path) -> Tuple[List[str], List[str]]:
    """``(files, labels)`` of an image folder: paths relative to ``root`` and their class names,
    from ``root/labels.csv`` (columns ``file``, ``label``) or else from its class folders: its sub-folders, sorted,
    but hidden ones (``.name``, e.g. ``.ipynb_checkpoints``), each holding at least one image, i.e. a file
    with one of the :data:`IMAGE_EXTENSIONS` (a sub-folder named ``x.png`` is not one). The one rule of
    :class:`ImageFolderDataset`'s samples and label names, :func:`folder_classes` and the pretraining corpus's
    MedNIST listing (:func:`medfm.data.corpus.mednist_train_files`).

    Warns:
        UserWarning: class folders hold other entries (not hidden ones), which are skipped: "image folder <root>:
            skipped 2 entries of its class folders (e.g. b/y.gif): it reads the .jpg, ... files ...", once per call
            (they were skipped without a word).

    Raises:
        EmptyClassFolderError: a class folder holds no image (``image folder <root>: class folder 'b' holds no
            image file ...``; it was dropped from the classes, shifting the indices of those after it, while
            :func:`folder_classes` listed it).
        DataShapeError: the CSV lacks the columns, has an empty cell or lists a file twice.
        CorruptFileError: the CSV cannot be parsed. DataFileMissingError: a listed file is missing.
    """
    csv_path = root / "labels.csv"
    if csv_path.is_file():
        try:
            with open(csv_path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
                    raise DataShapeError(f"{csv_path} must have columns 'file' and 'label', got {reader.fieldnames}")
                rows = [(r["file"], r["label"]) for r in reader]
        except (UnicodeDecodeError, csv.Error) as err:
            raise CorruptFileError(f"cannot parse {csv_path}: {type(err).__name__}: {err}") from None
        seen: Dict[str, int] = {}
        for line, (f, lab) in enumerate(rows, start=2):  # line 1 is the header
            if f is None or lab is None or not f.strip() or not lab.strip():
                raise DataShapeError(f"{csv_path} line {line}: needs a non-empty 'file' and 'label', got {f!r}, "
                                     f"{lab!r}")
            if f in seen:
                raise DataShapeError(f"{csv_path} line {line}: {f!r} is listed twice (also line {seen[f]}); "
                                     "a file must have one label and be in one split")
            seen[f] = line
        missing = [f for f, _ in rows if not (root / f).is_file()]
        if missing:
            raise DataFileMissingError(f"{len(missing)} file(s) listed in {csv_path} are missing, e.g. "
                                       f"{root / missing[0]}")
        return [f for f, _ in rows], [lab for _, lab in rows]
    files, labels, skipped, empty = [], [], [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        n_before, n_skipped = len(files), len(skipped)
        with os.scandir(sub) as entries:
            listed = sorted(entries, key=lambda e: e.name)
        for f in listed:
            if _is_image_entry(f):
                files.append(f"{sub.name}/{f.name}")
                labels.append(sub.name)
            elif not f.name.startswith("."):
                skipped.append(f"{sub.name}/{f.name}" + ("/" if f.is_dir() else ""))
        if len(files) == n_before:
            empty.append((sub.name, skipped[n_skipped] if len(skipped) > n_skipped else None))
    if empty:
        many = len(empty) > 1
        held = next((f"; {c!r} holds {e}" for c, e in empty if e), "")
        raise EmptyClassFolderError(
            f"image folder {root}: class folder{'s' * many} {', '.join(repr(c) for c, _ in empty)} "
            f"hold{'' if many else 's'} no image file ({', '.join(IMAGE_EXTENSIONS)}{held}); every sub-folder "
            "but hidden ones is a class, as in torchvision's ImageFolder: put its images in it, remove it, or list "
            "the samples in a labels.csv")
    if skipped:
        warnings.warn(f"image folder {root}: skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} of its "
                      f"class folders (e.g. {skipped[0]}): it reads the {', '.join(IMAGE_EXTENSIONS)} files directly "
                      "in each class folder (torchvision ImageFolder's extensions), not sub-folders; list other images "
                      "in a labels.csv to read them", stacklevel=2)
    return files, labels


def _resolve(root: PathLike, data_root: Optional[PathLike]) -> Path:
    path = Path(root).expanduser()
    if not path.is_absolute():
        path = resolve_data_root(data_root) / path
    if path.is_file():  # was "image folder not found at <file>", which exists
        raise DataFileMissingError(f"image folder root must be a folder (class sub-folders or a labels.csv), got "
                                   f"the file {path}; pass the folder that holds the images, e.g. {path.parent}")
    if not path.is_dir():
        raise DataFileMissingError(f"image folder not found at {path}")
    return path


class FolderListing(NamedTuple):
    """An image folder's samples, listed once (:func:`list_image_folder`), which :func:`folder_split` and
    :class:`ImageFolderDataset` take instead of listing the folder again (a suite lists it once for its classes and
    the splits it loads: :func:`medfm.evaluation.suite_data.prepare_dataset`).

    Attributes:
        path: the folder. files: its images, paths relative to it (at least one). labels: their class names.
    """

    path: Path
    files: List[str]
    labels: List[str]

    @property
    def label_names(self) -> List[str]:
        """The sorted class names: :class:`ImageFolderDataset`'s ``label_names``."""
        return sorted(set(self.labels))


def list_image_folder(root: PathLike, data_root: Optional[PathLike] = None) -> FolderListing:
    """The :class:`FolderListing` of an image folder (``root`` as :class:`ImageFolderDataset` takes it), without
    decoding images: :func:`scan_image_folder`'s samples, at least one.

    Warns:
        UserWarning: skipped entries of the class folders (:func:`scan_image_folder`), once per listing.

    Raises:
        DataFileMissingError, EmptyClassFolderError, DataShapeError, CorruptFileError: as :class:`ImageFolderDataset`.
    """
    path = _resolve(root, data_root)
    files, labels = scan_image_folder(path)
    if not files:
        raise DataShapeError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {path}")
    return FolderListing(path, files, labels)


def folder_classes(root: PathLike, data_root: Optional[PathLike] = None) -> List[str]:
    """Sorted class names of an image folder, without decoding images: :class:`ImageFolderDataset`'s
    ``label_names``, by the one rule of :func:`scan_image_folder` (it listed every sub-folder, hidden ones and
    ones holding no image too, so a class index could differ from the dataset's).

    Raises:
        DataFileMissingError, EmptyClassFolderError, DataShapeError, CorruptFileError: as :class:`ImageFolderDataset`.
    """
    return list_image_folder(root, data_root).label_names


def _listing_split(listing: FolderListing, split: str, fractions: Tuple[float, float, float], split_seed: int,
                   split_rule: str) -> Tuple[List[str], List[str], np.ndarray]:
    """``(files, label_names, labels)`` of ``split`` of a listed folder (:func:`folder_split`)."""
    label_names = listing.label_names
    index = {c: i for i, c in enumerate(label_names)}
    all_labels = np.array([index[c] for c in listing.labels], dtype=np.int64)
    keep = stratified_split(all_labels, split, fractions, split_seed, rule=split_rule, keys=listing.files)
    return [listing.files[i] for i in keep], label_names, all_labels[keep]


def folder_split(root: PathLike, split: str = "all", data_root: Optional[PathLike] = None,
                 fractions: Tuple[float, float, float] = (0.7, 0.1, 0.2), split_seed: int = 0,
                 split_rule: str = "random", listing: Optional[FolderListing] = None
                 ) -> Tuple[Path, List[str], List[str], np.ndarray]:
    """An image folder's ``split`` without decoding images: ``(path, files, label_names, labels)``, the folder, the
    split's files (relative to it), the sorted class names and the split's int64 ``(N,)`` class indices. The one
    listing of :class:`ImageFolderDataset` (which takes its arguments, same meaning) and of checks that need a
    split's labels before loading it (:func:`medfm.evaluation.suite_data.check_max_samples`).

    ``listing``: the folder's :func:`list_image_folder`, already made (it is not listed again), else None.

    Raises:
        DataFileMissingError, EmptyClassFolderError, DataShapeError, CorruptFileError: as :class:`ImageFolderDataset`.
        UnknownSplitError: an unknown ``split``. ValueError: an unknown ``split_rule``, bad ``fractions`` or
            ``split_seed`` (:func:`stratified_split`), or a ``listing`` of another folder than ``root``.
    """
    if listing is None:
        listing = list_image_folder(root, data_root)
    elif listing.path != _resolve(root, data_root):
        raise ValueError(f"the listing given is of the image folder {listing.path}, not of {root}")
    return (listing.path, *_listing_split(listing, split, fractions, split_seed, split_rule))


def _loads_grey(file: Path, data: Optional[bytes] = None) -> bool:
    """Whether :class:`ImageFolderDataset` (``in_chans`` None) loads a split whose first image is ``file`` as grey:
    its PIL mode (header only; ``data``: its bytes, already read) is one of :data:`GREY_MODES`.

    Raises:
        DataFileMissingError, CorruptFileError: as :func:`medfm.data.images.image_mode`.
    """
    return image_mode(file, data=data) in GREY_MODES


def split_loads_grey(listing: FolderListing, split: str = "all",
                     fractions: Tuple[float, float, float] = (0.7, 0.1, 0.2), split_seed: int = 0,
                     split_rule: str = "random") -> Optional[bool]:
    """Whether :class:`ImageFolderDataset` (``in_chans`` None, the other arguments as :func:`folder_split`'s) loads
    ``split`` of a listed folder as grey, from its first image's header, without decoding it: a caller that wants
    grey data as RGB loads it once with ``in_chans=3`` (a suite loaded a grey folder for an RGB encoder twice, grey
    then RGB). None when the dataset would raise before deciding: no image in the split, its first image missing or
    unreadable, or a split it refuses.
    """
    try:
        files = _listing_split(listing, split, fractions, split_seed, split_rule)[0]
        return _loads_grey(listing.path / files[0]) if files else None
    except (MedFMDataError, ValueError):
        return None


class ImageFolderDataset(UInt8ImageSet):
    """A labelled image folder held in memory as uint8 (single-label, multi-class task).

    Samples are ``{"image": (C, H, W) float32 in [0, 1], "label": int64 scalar}``;
    :meth:`get_batch` gathers a batch in one indexing op.

    Args:
        root: the folder, absolute, or relative to the data root (``--data-root`` >
            ``$MEDFM_DATA`` > ``~/.cache/medfm``), e.g. ``"mednist_medical_mnist_subset"``.
        split: ``"all"``, or ``"train"``/``"val"``/``"test"`` of :func:`stratified_split`.
        size: resize every image to ``size x size`` px (None: keep; then all images must
            share one size).
        in_chans: 1 (grey, PIL "L") or 3 (RGB); default: 1 if the first image is grey.
        fractions, split_seed, split_rule: the partition used for ``split``
            (:func:`stratified_split`; ``split_rule="sorted"`` matches the pretraining
            corpus's held-out MedNIST images).
        data_root: see :func:`medfm.data.root.resolve_data_root`.
        name: dataset name in reports (default: the folder name).
        listing: the folder's :func:`list_image_folder`, already made (not listed again), else None.

    Attributes:
        name, root, split, task (``"multi-class"``), label_names (sorted class
        names), num_classes, n_channels, is_3d (False), images (uint8 ``(N, H, W)`` or
        ``(N, H, W, 3)``), labels (int64 ``(N, 1)``), files, md5 (digest of the listing
        and file bytes of this split).
        size: the images' side in px, an int, when they are square (always with ``size`` given), as
            MedMNIST's ``size``; ``(H, W)`` for non-square images kept as they are (``size=None``; the
            height alone was reported). Records and reports that print "<size> px" (suites) load folders
            at a given size, so they get the int.

    Raises:
        DataFileMissingError: folder or listed files missing, or ``root`` a file rather than a folder.
        EmptyClassFolderError: a class folder (a sub-folder, hidden ones aside) holds no image
            (:func:`scan_image_folder`).
        DataShapeError: no images, a bad labels.csv (missing columns, empty cells, a file
            listed twice), or mixed sizes with ``size=None``.
        CorruptFileError: an image PIL cannot decode or that cannot be read (no permission, an I/O error), one
            Pillow would misread (several frames, 16 bits per colour channel: :func:`medfm.data.images.check_tiff`),
            or a labels.csv that is not UTF-8 CSV.
        UnknownSplitError: bad ``split``.
        EmptySplitError: ``split`` holds no image (``fractions`` give it none of any class).
        ValueError: ``size`` not an integer >= 1, ``in_chans`` not 1 or 3, bad ``fractions`` or
            ``split_seed`` (:func:`stratified_split`).
    """

    task = "multi-class"
    is_3d = False
    multi_label = False

    def __init__(self, root: PathLike, split: str = "all", size: Optional[int] = None, in_chans: Optional[int] = None,
                 fractions: Tuple[float, float, float] = (0.7, 0.1, 0.2), split_seed: int = 0,
                 data_root: Optional[PathLike] = None, name: Optional[str] = None, split_rule: str = "random",
                 listing: Optional[FolderListing] = None) -> None:
        from PIL import Image

        if size is not None:
            size = check_number("size", size, ge=1, integer=True, hint=" (pixels)")
        if in_chans not in (None, 1, 3):
            raise ValueError(f"in_chans must be 1 or 3, got {in_chans!r}")
        path, self.files, self.label_names, labels = folder_split(root, split, data_root, fractions, split_seed,
                                                                  split_rule, listing)
        if not self.files:  # was "images in <folder> have different sizes []; pass size= to resize them"
            raise EmptySplitError(f"the {split} split of image folder {path} holds no images: the split fractions "
                                  f"{shown(tuple(fractions))} give it no image of any class")
        self.name = name or path.name
        self.root, self.split, self.size = path, split, size
        self.labels = labels[:, None]
        self.num_classes = len(self.label_names)
        md5 = hashlib.md5()
        arrays = []
        mode = None
        for rel in self.files:  # each file read once: its bytes hashed, its pixels decoded from them
            file = path / rel
            if not file.is_file():
                raise missing_file(file, "image")
            try:
                data = file.read_bytes()
            except OSError as err:  # no permission, an I/O error: read_image's one-line data error (a suite skips it)
                raise image_decode_error(file, "image", err) from None
            if mode is None:  # the first image decides grey vs RGB unless in_chans says
                mode = "L" if in_chans == 1 or (in_chans is None and _loads_grey(file, data)) else "RGB"
            arr = read_image(file, mode, data=data)
            if size is not None and arr.shape[:2] != (size, size):
                arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR, reducing_gap=None),
                                 dtype=np.uint8)
            arrays.append(arr)
            md5.update(rel.encode() + b"\0" + data)
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise DataShapeError(f"images in {path} have different sizes {sorted(shapes)[:3]}; pass size= to resize "
                                 "them")
        self.images = np.stack(arrays)
        height, width = (int(n) for n in self.images.shape[1:3])
        self.size = height if height == width else (height, width)  # was the height alone
        self.n_channels = 1 if mode == "L" else 3
        self.md5 = md5.hexdigest()
        self._hold(self.images, self.labels, False, channel_last=self.images.ndim == 4, repeat_rgb=False)

    def __repr__(self) -> str:
        return (f"ImageFolderDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, size={self.size}, "
                f"classes={self.num_classes}, n_channels={self.n_channels}, root={str(self.root)!r})")


__all__ = ["IMAGE_EXTENSIONS", "FOLDER_SPLITS", "SPLIT_RULES", "stratified_split", "scan_image_folder",
           "FolderListing", "list_image_folder", "folder_split", "split_loads_grey", "folder_classes",
           "EmptyClassFolderError", "ImageFolderDataset"]
