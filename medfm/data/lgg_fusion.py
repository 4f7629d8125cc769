"""TCGA-LGG as a missing-modality data set: three MR sequences + a clinical/genomic table per slice.

Data: ``<root>/lgg_tcga_flair_seg_3ch`` (Buda et al., Comput. Biol. Med. 2019; Mazurowski
et al., J Neurooncol 2017). Each slice PNG holds [pre-contrast, FLAIR, post-contrast] as
its RGB channels; the data set README says missing sequences "are replaced with FLAIR".
:func:`flair_copies` detects that (a channel equal to FLAIR on **all** of a patient's
slices) and the sequence is then treated as missing: its key is absent from the sample.

Samples (:meth:`LGGFusionSet.__getitem__`)::

    {"pre": (1, S, S) float32 in [0, 1], "flair": ..., "post": ...,   # a key absent = missing
     "clinical": (F,) float32 with NaN for missing table values,
     "label": int (1 = FLAIR abnormality present: the full-resolution mask is non-empty),
     "mask": (S, S) bool, "patient": str}

Batches follow :mod:`medfm.data.multimodal` (NaN rows + ``present`` masks). The split is the
project's fixed patient split (:func:`medfm.data.segmentation.lgg_patients`).

Clinical columns (:data:`CLINICAL_COLUMNS`): all 16 genomic-cluster, histology, site and
demographic columns of ``data.csv`` as numeric codes. Excluded: ``Patient`` (identifier) and
``death01`` (an outcome, not known at imaging time). None of the used columns is derived
from the slice masks, so the slice-level label does not leak; they are patient-level, so
on their own they can only learn patient-level base rates.
"""
from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from medfm.arg_checks import check_number
from medfm.data.corpus import lgg_patient
from medfm.data.errors import CorruptFileError, DataFileMissingError, DataShapeError
from medfm.data.multimodal import MISSING_FILL, PRESENT_KEY, collate_modalities
from medfm.data.root import PathLike, dataset_dir
from medfm.data.segmentation import LGG_FOLDER, lgg_patients, lgg_slices, load_lgg_patient, resize_image, resize_mask

log = logging.getLogger(__name__)

IMAGE_MODALITIES = ("pre", "flair", "post")
MODALITIES = IMAGE_MODALITIES + ("clinical",)
CHANNEL = {"pre": 0, "flair": 1, "post": 2}
CLINICAL_COLUMNS = (
    "RNASeqCluster", "MethylationCluster", "miRNACluster", "CNCluster", "RPPACluster", "OncosignCluster",
    "COCCluster", "histological_type", "neoplasm_histologic_grade", "tumor_tissue_site", "laterality",
    "tumor_location", "gender", "age_at_initial_pathologic", "race", "ethnicity",
)
EXCLUDED_COLUMNS = {"Patient": "identifier (join key)", "death01": "outcome, not known at imaging time"}


def flair_copies(images: np.ndarray) -> Dict[str, bool]:
    """Which sequences of one patient are copies of FLAIR (i.e. missing).

    Args:
        images: ``(S, H, W, 3)`` uint8, all slices of one patient, channels
            [pre-contrast, FLAIR, post-contrast].

    Returns:
        ``{"pre": bool, "post": bool}``: True when that channel equals FLAIR on every slice.

    Raises:
        DataShapeError: not a ``(S, H, W, 3)`` array with at least one slice.
    """
    a = np.asarray(images)
    if a.ndim != 4 or a.shape[-1] != 3 or a.shape[0] < 1:
        raise DataShapeError(f"flair_copies expects (S, H, W, 3) slices of one patient, got shape {a.shape}")
    flair = a[..., CHANNEL["flair"]]
    return {m: bool(np.array_equal(a[..., CHANNEL[m]], flair)) for m in ("pre", "post")}


def load_clinical(data_root: Optional[PathLike] = None) -> Dict[str, np.ndarray]:
    """The clinical/genomic table: ``{patient id: (F,) float32}`` over :data:`CLINICAL_COLUMNS`, NaN = missing.

    Raises:
        DataFileMissingError: ``data.csv`` is missing or lacks a used column.
        CorruptFileError: not UTF-8 text / not parsable as CSV.
        DataShapeError: a row with too few cells, no patient id, or a non-numeric value
            (names the file, line and column).
    """
    path = dataset_dir(LGG_FOLDER, data_root) / "data.csv"
    if not path.is_file():
        raise DataFileMissingError(f"LGG clinical table not found at {path}")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as err:
        raise CorruptFileError(f"cannot parse LGG clinical table {path}: {type(err).__name__}: {err}") from None
    absent = [c for c in ("Patient", *CLINICAL_COLUMNS) if rows and c not in rows[0]]
    if not rows or absent:
        raise DataFileMissingError(f"{path} lacks column(s) {absent or ['all rows']}")
    table: Dict[str, np.ndarray] = {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        short = [c for c in ("Patient", *CLINICAL_COLUMNS) if row.get(c) is None]
        if short or not row["Patient"].strip():
            raise DataShapeError(f"{path} line {line}: " + (f"too few cells (no {short[0]!r})" if short
                                                            else "empty Patient id"))
        values = []
        for c in CLINICAL_COLUMNS:
            cell = row[c].strip()
            try:
                values.append(float(cell) if cell else np.nan)
            except ValueError:
                raise DataShapeError(f"{path} line {line}: column {c!r} is {cell!r}, expected a number or "
                                     "empty") from None
        table[row["Patient"].strip()] = np.array(values, dtype=np.float32)
    return table


def _read_patients(patients: Sequence[str], img_size: int, data_root: Optional[PathLike]) -> Dict[str, np.ndarray]:
    images, masks, labels, owner, available = [], [], [], [], []
    for p_i, case in enumerate(patients):
        patient = load_lgg_patient(case, data_root)
        full = patient["image"]
        if full.shape[1] != full.shape[2]:
            raise DataShapeError(f"LGG slices of {case!r} are {full.shape[1]}x{full.shape[2]} px; expected square "
                                 "slices")
        copies = flair_copies(full)
        avail = [not copies.get(m, False) for m in IMAGE_MODALITIES]
        scale = img_size / full.shape[1]
        for im, mk in zip(full, patient["mask"]):
            images.append(resize_image(im, scale).transpose(2, 0, 1))
            masks.append(resize_mask(mk, scale))
            labels.append(int(mk.any()))
            owner.append(p_i)
            available.append(avail)
    return {"images": np.stack(images).astype(np.uint8), "masks": np.stack(masks), "labels": np.array(labels, np.int64),
            "owner": np.array(owner, np.int64), "available": np.array(available, bool)}


CACHE_KEYS = ("images", "masks", "labels", "owner", "available")


def _cache_key(patients: Sequence[str], img_size: int, data_root: Optional[PathLike]) -> str:
    """16 hex digits of sha1 over the patients, size and (name, bytes, mtime) of every slice and mask file,
    so a changed, added or removed input file gives a new cache file instead of stale arrays."""
    h = hashlib.sha1(("|".join(patients) + f"|{img_size}|v2").encode())
    for case in patients:
        for _, image, mask in lgg_slices(case, data_root):
            for f in (image, mask):
                st = f.stat()
                h.update(f"|{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _load_cache(file: Path) -> Optional[Dict[str, np.ndarray]]:
    """The cached arrays, or None (with a warning) when absent, unreadable or lacking an array."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in CACHE_KEYS}
    except Exception as err:  # truncated zip, bad CRC, missing key, not an npz: rebuild
        log.warning("LGG fusion cache %s is unusable (%s: %s); rebuilding it", file, type(err).__name__,
                    (str(err).splitlines() or [""])[0])
        return None
    return arrays


class LGGFusionSet:
    """Slices of some TCGA-LGG patients, decoded once and held in memory at ``img_size``.

    Args:
        split: "train" or "test" (:func:`lgg_patients`), ignored when ``patients`` is given.
        img_size: slice side after resizing 256 -> ``img_size`` (PIL bilinear).
        data_root: data root (``--data-root`` > ``$MEDFM_DATA`` > ``~/.cache/medfm``).
        cache_dir: if given, decoded arrays are cached there as ``.npz`` (written atomically;
            keyed by patients, size and the slice files' names, sizes and mtimes; an
            unreadable cache file is rebuilt with a warning).
        patients: explicit case folder names (overrides ``split``).

    Attributes:
        images ``(N, 3, S, S)`` uint8; masks ``(N, S, S)`` bool; labels ``(N,)`` int64;
        owner ``(N,)`` patient index; available ``(N, 3)`` bool (sequence not a FLAIR copy);
        clinical ``(N, F)`` float32 with NaN; patients list; missing ``{patient: [modalities]}``.

    Raises:
        DataFileMissingError, CorruptFileError, DataShapeError from the readers;
        ValueError: ``img_size`` not an integer >= 1 (``img_size must be an integer >= 1 (pixels), got 64.0``).
    """

    modalities = MODALITIES

    def __init__(self, split: str = "train", img_size: int = 64, data_root: Optional[PathLike] = None,
                 cache_dir: Optional[PathLike] = None, patients: Optional[Sequence[str]] = None) -> None:
        self.img_size = check_number("img_size", img_size, ge=1, integer=True, hint=" (pixels)")
        self.patients = list(patients) if patients is not None else lgg_patients(split, data_root)
        arrays = self._load(data_root, cache_dir)
        self.images = torch.from_numpy(arrays["images"])
        self.masks = torch.from_numpy(arrays["masks"])
        self.labels = torch.from_numpy(arrays["labels"])
        self.owner = torch.from_numpy(arrays["owner"])
        self.available = torch.from_numpy(arrays["available"])
        table = load_clinical(data_root)
        ids = [lgg_patient(c) for c in self.patients]
        unknown = [i for i in ids if i not in table]
        if unknown:
            raise DataFileMissingError(f"patients {unknown} are not in the LGG clinical table data.csv")
        self.clinical = torch.from_numpy(np.stack([table[i] for i in ids]))[self.owner]
        self.missing = {c: [m for j, m in enumerate(IMAGE_MODALITIES) if not self.available[self.owner == k][0, j]]
                        for k, c in enumerate(self.patients)}

    def _load(self, data_root: Optional[PathLike], cache_dir: Optional[PathLike]) -> Dict[str, np.ndarray]:
        if cache_dir is None:
            return _read_patients(self.patients, self.img_size, data_root)
        from medfm.io import atomic_path

        file = Path(cache_dir) / f"lgg_fusion_{self.img_size}_{_cache_key(self.patients, self.img_size, data_root)}.npz"
        cached = _load_cache(file)
        if cached is not None:
            return cached
        arrays = _read_patients(self.patients, self.img_size, data_root)
        file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(file) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        return arrays

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> Dict[str, Any]:
        """One sample dict (module docstring); absent sequences have no key."""
        i = int(i)
        out: Dict[str, Any] = {}
        for j, m in enumerate(IMAGE_MODALITIES):
            if self.available[i, j]:
                out[m] = self.images[i, j:j + 1].float() / 255.0
        out["clinical"] = self.clinical[i].clone()
        out["label"] = int(self.labels[i])
        out["mask"] = self.masks[i]
        out["patient"] = self.patients[int(self.owner[i])]
        return out

    def presence(self, indices: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """``{modality: (B,) bool}``: which samples of ``indices`` (``(B,)`` integer; None: all ``N``) have each
        modality (:data:`MODALITIES`; the clinical table: every sample), the data's own missingness: the
        ``present`` masks of :meth:`get_batch`, read from :attr:`available` without building the images."""
        idx = slice(None) if indices is None else torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        have = self.available[idx]
        return {**{m: have[:, j].clone() for j, m in enumerate(IMAGE_MODALITIES)},
                "clinical": torch.ones(len(have), dtype=torch.bool)}

    def get_batch(self, indices: torch.Tensor) -> Dict[str, Any]:
        """Batch of ``indices`` in the :mod:`medfm.data.multimodal` layout (same result as
        :func:`collate_modalities` of the samples, built without per-sample dicts; its ``present`` masks:
        :meth:`presence`)."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        batch: Dict[str, Any] = {PRESENT_KEY: self.presence(idx)}
        for j, m in enumerate(IMAGE_MODALITIES):
            have = batch[PRESENT_KEY][m]
            if have.any():
                x = self.images[idx, j:j + 1].float() / 255.0
                x[~have] = MISSING_FILL
                batch[m] = x
        batch["clinical"] = self.clinical[idx].clone()
        batch["label"] = self.labels[idx].clone()
        batch["mask"] = self.masks[idx].clone()
        batch["patient"] = [self.patients[int(k)] for k in self.owner[idx]]
        return batch

    def collate(self, samples: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        """:func:`collate_modalities` over this set's modalities."""
        return collate_modalities(samples, MODALITIES)


def missing_sequences(data_root: Optional[PathLike] = None,
                      patients: Optional[Sequence[str]] = None) -> Dict[str, List[str]]:
    """``{case folder: [missing sequences]}`` for every LGG patient (FLAIR-copy detection at 256 px)."""
    out = {}
    for case in (patients if patients is not None else lgg_patients(None, data_root)):
        full = load_lgg_patient(case, data_root)["image"]
        out[case] = [m for m, copy in flair_copies(full).items() if copy]
    return out


__all__ = ["LGGFusionSet", "flair_copies", "missing_sequences", "load_clinical", "CLINICAL_COLUMNS",
           "EXCLUDED_COLUMNS", "IMAGE_MODALITIES", "MODALITIES", "CHANNEL"]
