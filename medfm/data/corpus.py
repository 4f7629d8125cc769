"""The multi-source image-text pretraining corpus: every real training image, one size, one channel.

Sources (each read from ``<data_root>/<folder>/``; read its PROVENANCE.md for licences):

============  ======================================  ==============================================
source        what enters                              text per image
============  ======================================  ==============================================
medmnist      train split of every MedMNIST 2D npz     modality description ("a chest X-ray"; the
                                                       canonical one of ``MODALITY_TEXTS``)
medmnist3d    3 central orthogonal slices per train    shape/modality description
              volume of every MedMNIST 3D npz
mednist       first 80 % of each class's sorted files  modality description (class = modality)
vqa_rad       images of the *train* QA pairs,          "<question> <answer>" of that pair
              one sample per train QA pair
chase_db1     Image_01L ... Image_10R (the             "a retinal fundus photograph" (whole) /
              segmentation train split): whole image   vessel-crop description (3x3 crop grid)
              + 3x3 grid of half-height crops
lgg           segmentation train patients              sequence description (FLAIR, pre-/post-
              (``lgg_patients("train")``); non-blank   contrast); a sequence identical to FLAIR
              cropped to the head                      (missing in the source) is left out
hippocampus   segmentation train cases                 "a brain MRI crop around the hippocampus"
              (``hippocampus_cases("train")``); 3
              slices per axis (35/50/65 %)
============  ======================================  ==============================================

Rules that keep evaluation clean: no MedMNIST val/test image, no MedNIST test file (last
20 % per class, :func:`mednist_split`), no VQA-RAD *test* question (its images that also
carry train questions do enter: the MEVF split shares 203 images between train and test), no
CHASE_DB1 image 11-14, no LGG/hippocampus segmentation test patient. Texts
of MedMNIST images describe only the modality, never the class, so zero-shot evaluation on
a MedMNIST set measures transfer to labels never seen in text.

Images are converted to grayscale (ITU-R 601 luma, as PIL's "L"), zero-padded to a square
and resized with antialiased bilinear interpolation to 28 or 64 px. The result is cached
once per (size, sources, input files) as ``<cache>/corpus/corpus-v<CORPUS_VERSION>-<S>px-<hash>.npz`` with a
JSON manifest holding its sha256 (written atomically; a file whose checksum does not match
is rebuilt).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from medfm.arg_checks import is_integer
from medfm.data.errors import (CorruptFileError, DataFileMissingError, DataShapeError, MedFMDataError,
                               UnsupportedSizeError)
from medfm.data.images import read_image
from medfm.data.root import PathLike, resolve_data_root
from medfm.data.segmentation import check_voxels, hippocampus_cases, lgg_patients, load_nifti
from medfm.data.uint8_sets import batch_indices
from medfm.registry import close_match_hint

log = logging.getLogger(__name__)

CORPUS_VERSION = 3
CORPUS_SIZES: Tuple[int, ...] = (28, 64)
SOURCES: Tuple[str, ...] = ("medmnist", "medmnist3d", "mednist", "vqa_rad", "chase_db1", "lgg", "hippocampus")
SOURCE_FOLDERS: Dict[str, str] = {
    "medmnist": "medmnist", "medmnist3d": "medmnist", "mednist": "mednist_medical_mnist_subset",
    "vqa_rad": "vqa_rad", "chase_db1": "chase_db1", "lgg": "lgg_tcga_flair_seg_3ch",
    "hippocampus": "msd_task04_hippocampus",
    # fine-tuning only (model cards read folder and licence here); deliberately NOT in SOURCES:
    # its non-commercial licence would bind every checkpoint pretrained on the corpus
    "brats2015": "brats2015_deepmedic_examples",
}
SOURCE_LICENSES: Dict[str, str] = {
    "medmnist": "CC BY 4.0", "medmnist3d": "CC BY 4.0", "mednist": "CC BY-SA 4.0", "vqa_rad": "CC0 1.0",
    "chase_db1": "not confirmed (see PROVENANCE.md)", "lgg": "not confirmed; TCIA data usage policy",
    "hippocampus": "CC BY-SA 4.0",
    "brats2015": "CC BY-NC-SA 3.0 Switzerland (non-commercial use only, share-alike)",
}


def check_corpus_size(size: Any, where: str = "") -> None:
    """Refuse a corpus image side the corpus is not built at (:data:`CORPUS_SIZES`): the rule of
    :func:`build_corpus`, :class:`PretrainCorpus` and a pretraining recipe's ``data.size``
    (:class:`medfm.training.recipes.DataConfig`, checked when the recipe is read).

    Args:
        size: the side in px as given.
        where: what gave it, put first (``"data.size"``); none for the library's own arguments.

    Raises:
        UnsupportedSizeError: ``"[<where>: ]the pretraining corpus is built at [28, 64] px, not 32"``.
    """
    if not is_integer(size) or size not in CORPUS_SIZES:  # not 28.0 nor True
        prefix = f"{where}: " if where else ""
        raise UnsupportedSizeError(f"{prefix}the pretraining corpus is built at {list(CORPUS_SIZES)} px, not {size!r}")


# -- split rules shared with the downstream datasets (documented, deterministic) ----------
MEDNIST_TEST_FRACTION = 0.2
#: the segmentation issue's fixed splits (medfm.data.segmentation), so no held-out patient enters pretraining
LGG_SPLIT_RULE = "segmentation train split: sorted case folders, index % 3 != 2"
HIPPOCAMPUS_SPLIT_RULE = "segmentation train split: sorted case ids, index % 5 != 4"
CHASE_TRAIN_IDS: Tuple[int, ...] = tuple(range(1, 11))
MEDNIST_MODALITY = {"AbdomenCT": "abdominal_ct", "BreastMRI": "breast_mri", "CXR": "chest_xray",
                    "ChestCT": "chest_ct", "Hand": "hand_xray", "HeadCT": "head_ct"}
VQA_ORGAN_MODALITY = {"CHEST": "chest_radiology", "ABD": "abdominal_radiology", "HEAD": "head_radiology"}
LGG_SEQUENCES = ("brain_mri_pre_contrast", "brain_mri_flair", "brain_mri_post_contrast")  # channel order


def first_fraction(items: Sequence[str], fraction: float) -> Tuple[List[str], List[str]]:
    """Split ids by rule: sort, the first ``round(fraction * n)`` (half up) are train, the rest held out."""
    ordered = sorted(set(items))
    k = int(len(ordered) * fraction + 0.5)
    return ordered[:k], ordered[k:]


def mednist_split(files: Sequence[str]) -> Tuple[List[str], List[str]]:
    """MedNIST split of one class's file names: the last 20 % in sorted order are the test part."""
    return first_fraction(files, 1.0 - MEDNIST_TEST_FRACTION)


def lgg_patient(case: str) -> str:
    """TCGA-LGG patient id of a case folder (``TCGA_CS_4942_19970222`` -> ``TCGA_CS_4942``)."""
    return "_".join(case.split("_")[:3])


class SourceMissing(MedFMDataError):
    """A corpus source is absent from the data root; the corpus skips it with this message."""


# -- image helpers ---------------------------------------------------------------------------
def to_gray(img: np.ndarray) -> np.ndarray:
    """``(..., H, W)`` uint8 or ``(..., H, W, 3)`` RGB -> ``(..., H, W)`` uint8 (ITU-R 601 luma)."""
    if img.ndim >= 3 and img.shape[-1] == 3:
        y = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return img.astype(np.uint8, copy=False)


def pad_square(img: np.ndarray) -> np.ndarray:
    """Zero-pad a ``(H, W)`` image to ``(L, L)``, ``L = max(H, W)``, content centred."""
    h, w = img.shape
    side = max(h, w)
    out = np.zeros((side, side), dtype=img.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = img
    return out


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W)`` uint8 -> ``(N, size, size)`` uint8, antialiased bilinear (identity when equal)."""
    if images.shape[1:] == (size, size):
        return images.astype(np.uint8, copy=False)
    x = torch.from_numpy(np.ascontiguousarray(images)).float().unsqueeze(1)
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()


def fit(img: np.ndarray, size: int) -> np.ndarray:
    """One ``(H, W)`` or RGB image -> ``(size, size)`` uint8: gray, pad to square, resize."""
    return resize_batch(pad_square(to_gray(img))[None], size)[0]


# -- sources -------------------------------------------------------------------------------------
class _Sink:
    """Collects (images, text, modality) of one source."""

    def __init__(self) -> None:
        self.images: List[np.ndarray] = []
        self.texts: List[str] = []
        self.modalities: List[str] = []

    def add(self, images: np.ndarray, modality: str, texts: Optional[Sequence[str]] = None) -> None:
        from medfm.text.prompts import modality_texts

        if images.ndim == 2:
            images = images[None]
        if texts is None:  # the canonical description: one text per modality, so same text = same modality
            texts = [modality_texts(modality)[0]] * len(images)
        self.images.append(images)
        self.texts.extend(texts)
        self.modalities.extend([modality] * len(images))


def _folder(root: Path, source: str) -> Path:
    folder = root / SOURCE_FOLDERS[source]
    if not folder.is_dir():
        raise SourceMissing(f"{source}: folder {folder} not found")
    return folder


def _medmnist_files(root: Path, size: int, three_d: bool) -> List[Tuple[str, int]]:
    from medfm.data.medmnist import MEDMNIST_2D_FLAGS, MEDMNIST_3D_FLAGS, available_sizes, medmnist_path

    found = []
    for flag in (MEDMNIST_3D_FLAGS if three_d else MEDMNIST_2D_FLAGS):
        sizes = [s for s in (size, 28) if s in available_sizes(flag)]
        for s in sizes:
            if medmnist_path(flag, s, root).is_file():
                found.append((flag, s))
                break
    return found


def _src_medmnist(root: Path, size: int, sink: _Sink, progress: Callable, three_d: bool = False) -> Dict[str, Any]:
    from medfm.data.medmnist import MedMNISTDataset
    from medfm.text.prompts import modality_of

    _folder(root, "medmnist3d" if three_d else "medmnist")
    files = _medmnist_files(root, size, three_d)
    if not files:
        raise SourceMissing(f"{'medmnist3d' if three_d else 'medmnist'}: no MedMNIST {'3D' if three_d else '2D'} npz "
                            f"in {root / 'medmnist'}")
    used = {}
    for flag, file_size in progress(files, desc="medmnist 3D" if three_d else "medmnist 2D"):
        ds = MedMNISTDataset(flag, "train", size=file_size, data_root=root)
        images = to_gray(ds.images)
        if three_d:
            n, d, h, w = images.shape
            slices = np.concatenate([images[:, d // 2], images[:, :, h // 2], images[:, :, :, w // 2]])
            images = slices[(slices > 0).mean(axis=(1, 2)) >= 0.01]
        sink.add(resize_batch(images, size), modality_of(flag))
        used[flag] = {"file_size": file_size, "n": int(len(images))}
    return {"files": used}


def mednist_train_files(folder: Path) -> Tuple[Dict[str, List[str]], int]:
    """MedNIST files that may enter the corpus: ``({class: [relative paths, sorted]}, n_held_out)``.

    The listing is :class:`medfm.data.imagefolder.ImageFolderDataset`'s (``labels.csv`` when
    present, else class sub-folders, every image extension), and the held-out part is its
    ``split_rule="sorted"`` val+test complement: per class, the files after the first
    ``int(0.8 * n + 0.5)`` in sorted order (:func:`mednist_split`). Using the downstream
    listing means no file of the downstream "sorted" test split can enter the corpus.

    Raises:
        DataFileMissingError, DataShapeError, CorruptFileError: a bad ``labels.csv``.
        EmptyClassFolderError: a class folder holding no image (:func:`medfm.data.imagefolder.scan_image_folder`: a
            broken MedNIST copy is named, not skipped; a :class:`~medfm.data.errors.DataShapeError`, which
            :func:`build_corpus` raises rather than skipping the source).
    """
    from medfm.data.imagefolder import scan_image_folder

    files, labels = scan_image_folder(folder)
    out: Dict[str, List[str]] = {}
    held_out = 0
    for cls in MEDNIST_MODALITY:
        train, test = mednist_split([f for f, lab in zip(files, labels) if lab == cls])
        out[cls] = train
        held_out += len(test)
    return out, held_out


def _src_mednist(root: Path, size: int, sink: _Sink, progress: Callable) -> Dict[str, Any]:
    folder = _folder(root, "mednist")
    per_class, held_out = mednist_train_files(folder)
    for cls, modality in progress(list(MEDNIST_MODALITY.items()), desc="mednist"):
        if per_class[cls]:
            sink.add(np.stack([fit(read_image(folder / f, what="MedNIST image"), size) for f in per_class[cls]]),
                     modality)
    if not sink.images:
        raise SourceMissing(f"mednist: no images of the classes {sorted(MEDNIST_MODALITY)} in {folder}")
    return {"held_out_test_files": held_out, "rule": "last 20% of sorted file names per class held out"}


def _src_vqa_rad(root: Path, size: int, sink: _Sink, progress: Callable) -> Dict[str, Any]:
    folder = _folder(root, "vqa_rad")
    train_json = folder / "trainset.json"
    if not train_json.is_file():
        raise SourceMissing(f"vqa_rad: {train_json} not found")
    from medfm.data.vqa_rad import parse_records

    try:
        records = json.loads(train_json.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"cannot parse {train_json}: {err}") from None
    parse_records(records, where=str(train_json))  # DataShapeError for a non-list or a record lacking a key
    cache: Dict[str, np.ndarray] = {}
    for rec in progress(records, desc="vqa_rad"):
        name = str(rec["image_name"])
        if name not in cache:
            cache[name] = fit(read_image(folder / "images" / name, what="VQA-RAD image"), size)
        text = f"{str(rec['question']).strip()} {str(rec['answer']).strip()}"
        modality = VQA_ORGAN_MODALITY.get(str(rec.get("image_organ", "")).strip().upper(), "radiology")
        sink.add(cache[name], modality, [text])
    return {"qa_pairs": len(records), "images": len(cache), "split": "MEVF trainset.json only"}


def _src_chase(root: Path, size: int, sink: _Sink, progress: Callable) -> Dict[str, Any]:
    folder = _folder(root, "chase_db1") / "CHASEDB1"
    names = [f"Image_{i:02d}{eye}.jpg" for i in CHASE_TRAIN_IDS for eye in "LR"]
    present = [n for n in names if (folder / n).is_file()]
    if not present:
        raise SourceMissing(f"chase_db1: none of Image_01L.jpg ... Image_10R.jpg in {folder}")
    for name in progress(present, desc="chase_db1"):
        img = to_gray(read_image(folder / name, what="CHASE_DB1 image"))
        sink.add(fit(img, size), "retinal_fundus")
        h, w = img.shape
        side = min(h, w) // 2
        for top in np.linspace(0, h - side, 3).astype(int):
            for left in np.linspace(0, w - side, 3).astype(int):
                crop = img[top:top + side, left:left + side]
                if (crop > 20).mean() >= 0.5:  # mostly inside the field of view
                    sink.add(fit(crop, size), "retinal_fundus_crop")
    return {"images": present, "rule": "images 01-10 (segmentation train split)"}


def _src_lgg(root: Path, size: int, sink: _Sink, progress: Callable) -> Dict[str, Any]:
    folder = _folder(root, "lgg") / "images"
    cases = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not cases:
        raise SourceMissing(f"lgg: no case folders in {folder}")
    keep = set(lgg_patients("train", root))
    for case in progress([c for c in cases if c in keep], desc="lgg"):
        for png in sorted((folder / case).glob("*.png")):
            if png.stem.endswith("_mask"):
                continue
            img = read_image(png, "RGB", what="LGG slice")  # as medfm.data.segmentation.load_lgg_slice
            flair = img[..., 1]
            if (flair > 10).mean() < 0.05:
                continue
            ys, xs = np.nonzero(img.max(axis=-1) > 10)
            y0, y1 = max(0, ys.min() - 4), min(img.shape[0], ys.max() + 5)
            x0, x1 = max(0, xs.min() - 4), min(img.shape[1], xs.max() + 5)
            for ch, modality in enumerate(LGG_SEQUENCES):
                if ch != 1 and np.array_equal(img[..., ch], flair):
                    continue  # sequence missing in the source (replaced by FLAIR there)
                sink.add(fit(img[y0:y1, x0:x1, ch], size), modality)
    return {"train_patients": sorted(keep), "rule": LGG_SPLIT_RULE}


def _src_hippocampus(root: Path, size: int, sink: _Sink, progress: Callable) -> Dict[str, Any]:
    folder = _folder(root, "hippocampus") / "imagesTr"
    cases = sorted(p.name[: -len(".nii.gz")] for p in folder.glob("*.nii.gz")) if folder.is_dir() else []
    if not cases:
        raise SourceMissing(f"hippocampus: no .nii.gz volumes in {folder}")
    train = hippocampus_cases("train", root)
    for case in progress(train, desc="hippocampus"):
        path = folder / f"{case}.nii.gz"
        vol = load_nifti(path)[0]
        if vol.ndim != 3:
            raise DataShapeError(f"{path}: expected a 3D volume, got shape {vol.shape}")
        check_voxels(vol, path, "image")
        vol = np.asarray(vol, dtype=np.float32)
        lo, hi = np.percentile(vol, [0.5, 99.5])
        vol = np.clip(np.rint((vol - lo) / max(hi - lo, 1e-6) * 255), 0, 255).astype(np.uint8)
        for axis in range(3):
            for frac in (0.35, 0.5, 0.65):
                sl = np.take(vol, int(vol.shape[axis] * frac), axis=axis)
                if (sl > 0).mean() >= 0.05:
                    sink.add(fit(sl, size), "hippocampus_mri")
    return {"train_cases": len(train), "rule": "first 80% of sorted case ids"}


_BUILDERS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "medmnist": _src_medmnist,
    "medmnist3d": lambda root, size, sink, progress: _src_medmnist(root, size, sink, progress, three_d=True),
    "mednist": _src_mednist, "vqa_rad": _src_vqa_rad, "chase_db1": _src_chase, "lgg": _src_lgg,
    "hippocampus": _src_hippocampus,
}


# -- building and caching ---------------------------------------------------------------------
def _input_fingerprint(root: Path, sources: Sequence[str], size: int) -> str:
    """sha256 over the corpus version, size, sources and (path, size, mtime) of their input files."""
    h = hashlib.sha256(json.dumps({"version": CORPUS_VERSION, "size": size, "sources": list(sources)}).encode())
    for folder_name in sorted({SOURCE_FOLDERS[s] for s in sources}):
        folder = root / folder_name
        if not folder.is_dir():
            h.update(f"{folder_name}:absent\n".encode())
            continue
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _check_sources(sources: Optional[Sequence[str]]) -> List[str]:
    chosen = list(SOURCES if sources is None else sources)
    bad = [s for s in chosen if s not in SOURCES]
    if bad or not chosen:
        if not bad:
            raise ValueError("corpus needs at least one source")
        hint = close_match_hint(bad[0], SOURCES, n=2, cutoff=0.6, fallback=None)
        raise ValueError(f"unknown corpus source {bad[0]!r}{hint} (known: {', '.join(SOURCES)})")
    return chosen


def build_corpus(size: int = 28, data_root: Optional[PathLike] = None, sources: Optional[Sequence[str]] = None,
                 progress: bool = True) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Read every available source and return the corpus arrays and a manifest.

    Returns:
        ``(arrays, manifest)``: arrays ``images`` (N, S, S) uint8, ``text_index`` (N,) int32
        into ``texts`` (T,) str, ``modality_index``/``modalities`` and ``source_index``/
        ``sources`` likewise; manifest with per-source counts and details, ``skipped``
        {source: reason} and the split rules.

    Raises:
        UnsupportedSizeError: size not in (28, 64); DataFileMissingError: no source found;
        CorruptFileError / other medfm data errors from a source's files.
    """
    check_corpus_size(size)
    chosen = _check_sources(sources)
    root = resolve_data_root(data_root)
    from tqdm.auto import tqdm

    def bar(items, desc):
        return tqdm(items, desc=f"corpus {size}px: {desc}", leave=False, mininterval=1.0, disable=not progress)

    images, texts, modalities, source_of = [], [], [], []
    details: Dict[str, Any] = {}
    skipped: Dict[str, str] = {}
    for source in chosen:
        sink = _Sink()
        try:
            details[source] = _BUILDERS[source](root, size, sink, bar)
        except SourceMissing as err:
            skipped[source] = str(err)
            log.warning("pretraining corpus: skipping %s", err)
            continue
        n = sum(len(a) for a in sink.images)
        details[source]["n"] = n
        images.extend(sink.images)
        texts.extend(sink.texts)
        modalities.extend(sink.modalities)
        source_of.extend([source] * n)
    if not images:
        raise DataFileMissingError(f"no pretraining corpus source found under {root}: {'; '.join(skipped.values())}")

    def index(values: List[str]) -> Tuple[np.ndarray, np.ndarray]:
        uniq = list(dict.fromkeys(values))
        pos = {v: i for i, v in enumerate(uniq)}
        return np.array([pos[v] for v in values], dtype=np.int32), np.array(uniq, dtype=str)

    arrays: Dict[str, np.ndarray] = {"images": np.concatenate(images).astype(np.uint8)}
    arrays["text_index"], arrays["texts"] = index(texts)
    arrays["modality_index"], arrays["modalities"] = index(modalities)
    arrays["source_index"], arrays["sources"] = index(source_of)
    manifest = {
        "version": CORPUS_VERSION, "size": size, "n": int(len(arrays["images"])), "n_texts": int(len(arrays["texts"])),
        "sources": details, "skipped": skipped, "data_root": str(root),
        "split_rules": {"mednist_test_fraction": MEDNIST_TEST_FRACTION, "lgg": LGG_SPLIT_RULE,
                        "hippocampus": HIPPOCAMPUS_SPLIT_RULE,
                        "chase_train_ids": list(CHASE_TRAIN_IDS), "medmnist": "train split only",
                        "vqa_rad": "train QA pairs only"},
    }
    return arrays, manifest


def corpus_path(size: int, data_root: Optional[PathLike] = None, sources: Optional[Sequence[str]] = None,
                cache_dir: Optional[PathLike] = None) -> Path:
    """Where the cached corpus for these inputs lives (``<cache>/corpus/corpus-v<version>-<S>px-<hash16>.npz``)."""
    from medfm.text.cache import medfm_cache_dir

    fp = _input_fingerprint(resolve_data_root(data_root), _check_sources(sources), size)
    return medfm_cache_dir(cache_dir) / "corpus" / f"corpus-v{CORPUS_VERSION}-{size}px-{fp[:16]}.npz"


def _load_cached(path: Path) -> Optional[Tuple[Dict[str, np.ndarray], Dict[str, Any]]]:
    """The cached arrays + manifest, or None when absent, unreadable or failing its checksum."""
    from medfm.io import file_sha256

    manifest_path = path.with_suffix(".json")
    if not (path.is_file() and manifest_path.is_file()):
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if file_sha256(path) != manifest.get("sha256"):
            raise ValueError("sha256 mismatch")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError, EOFError) as err:
        log.warning("cached corpus %s is unusable (%s); rebuilding it", path, err)
        return None
    return arrays, manifest


def _save(path: Path, arrays: Dict[str, np.ndarray], manifest: Dict[str, Any]) -> None:
    from medfm.io import atomic_path, atomic_write_json, file_sha256

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        manifest["sha256"] = file_sha256(tmp)
    atomic_write_json(path.with_suffix(".json"), manifest)


class PretrainCorpus(Dataset):
    """Every real training image of the data root as one captioned, 1-channel dataset.

    Samples are dicts ``{"image": (1, S, S) float32 in [0, 1], "text": str, "modality": str,
    "source": str}``; :meth:`get_batch` gathers ``{"image": (B, 1, S, S), "text": [B str],
    "modality": [B str], "source": [B str]}`` with one indexing op. Labels are never included.

    Args:
        size: 28 or 64 px.
        data_root: see :func:`medfm.data.root.resolve_data_root`.
        sources: subset of :data:`SOURCES` (default: all; absent ones are skipped with a message).
        cache_dir: medfm cache folder for the preprocessed file (see ``medfm_cache_dir``).
        rebuild: ignore an existing cached file.
        progress: show progress bars while building.

    Attributes:
        images (N, S, S) uint8, texts / unique_texts, modalities, sources, manifest, path.

    Raises:
        UnsupportedSizeError, DataFileMissingError (no source at all), CorruptFileError,
        ValueError (unknown source name, with close matches).
    """

    flag = "corpus"
    n_channels = 1

    def __init__(self, size: int = 28, data_root: Optional[PathLike] = None, sources: Optional[Sequence[str]] = None,
                 cache_dir: Optional[PathLike] = None, rebuild: bool = False, progress: bool = True) -> None:
        check_corpus_size(size)
        self.size = size
        self.path = corpus_path(size, data_root, sources, cache_dir)
        loaded = None if rebuild else _load_cached(self.path)
        if loaded is None:
            arrays, manifest = build_corpus(size, data_root, sources, progress)
            _save(self.path, arrays, manifest)
        else:
            arrays, manifest = loaded
            for source, reason in manifest.get("skipped", {}).items():
                log.warning("pretraining corpus: skipped %s", reason)
        self.manifest = manifest
        self.images = arrays["images"]
        self.unique_texts: List[str] = [str(t) for t in arrays["texts"]]
        self.modalities: List[str] = [str(t) for t in arrays["modalities"]]
        self.sources: List[str] = [str(t) for t in arrays["sources"]]
        self._images_t = torch.from_numpy(self.images)
        self._text_index = torch.from_numpy(arrays["text_index"].astype(np.int64))
        self._modality_index = torch.from_numpy(arrays["modality_index"].astype(np.int64))
        self._source_index = torch.from_numpy(arrays["source_index"].astype(np.int64))

    def __len__(self) -> int:
        return int(self._images_t.shape[0])

    def __getitem__(self, index: int) -> Dict[str, Any]:
        """Sample ``index``: image (1, S, S) float32 in [0, 1], text, modality, source."""
        i = int(index)
        return {"image": self._images_t[i].unsqueeze(0).float().div_(255.0),
                "text": self.unique_texts[int(self._text_index[i])],
                "modality": self.modalities[int(self._modality_index[i])],
                "source": self.sources[int(self._source_index[i])]}

    def get_batch(self, indices: Union[torch.Tensor, Sequence[int], np.ndarray]) -> Dict[str, Any]:
        """Batch of ``indices`` ``(B,)``: image (B, 1, S, S) float32 and B-long lists of str.

        Raises:
            ValueError: indices not 1-D integers; IndexError: out of range.
        """
        idx = batch_indices(indices)
        return {"image": self._images_t[idx].unsqueeze(1).float().div_(255.0),
                "text": [self.unique_texts[j] for j in self._text_index[idx].tolist()],
                "modality": [self.modalities[j] for j in self._modality_index[idx].tolist()],
                "source": [self.sources[j] for j in self._source_index[idx].tolist()]}

    def counts(self) -> Dict[str, int]:
        """Number of samples per source."""
        n = torch.bincount(self._source_index, minlength=len(self.sources)).tolist()
        return dict(zip(self.sources, n))

    def metadata(self) -> Dict[str, Any]:
        """What a checkpoint records about its pretraining data."""
        return {
            "dataset": "corpus", "size": self.size, "n_train": len(self), "n_texts": len(self.unique_texts),
            "sources": self.counts(), "skipped": self.manifest.get("skipped", {}),
            "license": "; ".join(f"{s}: {SOURCE_LICENSES[s]}" for s in self.sources), "license_id": "other",
            "description": "medfm multi-source image-text pretraining corpus (training splits only; texts name "
                           "modality/organ or are VQA-RAD train questions and answers, never class labels)",
            "splits": json.dumps(self.manifest.get("split_rules", {}), sort_keys=True),
            "sha256": self.manifest.get("sha256"),
        }

    def __repr__(self) -> str:
        return (f"PretrainCorpus(size={self.size}, n={len(self)}, texts={len(self.unique_texts)}, "
                f"sources={self.counts()})")


__all__ = [
    "CORPUS_SIZES", "SOURCES", "PretrainCorpus", "build_corpus", "check_corpus_size", "corpus_path", "first_fraction",
    "mednist_split",
    "mednist_train_files",
    "read_image",
    "lgg_patient", "to_gray", "pad_square", "resize_batch", "fit", "SourceMissing",
    "MEDNIST_TEST_FRACTION", "LGG_SPLIT_RULE", "HIPPOCAMPUS_SPLIT_RULE", "CHASE_TRAIN_IDS",
]
