"""VQA-RAD (Lau et al., Scientific Data 5:180251, 2018) in the MEVF JSON layout.

Folder ``<data_root>/vqa_rad/`` as distributed by the MEVF authors (Nguyen et al., MICCAI
2019, aioz-ai/MICCAI19-MedVQA): ``trainset.json`` (3,064 QA records), ``testset.json`` (451)
and ``images/`` (315 radiology images). Each record has the keys ``qid``, ``image_name``,
``image_organ``, ``answer``, ``answer_type``, ``question_type``, ``question`` and
``phrase_type``.

* Answers are normalised by :func:`normalize_answer` (case, whitespace, punctuation, ints
  such as ``2``); answer types by :func:`normalize_answer_type` (``"CLOSED "`` -> ``"CLOSED"``).
* The answer vocabulary (:class:`AnswerVocab`) is the set of normalised *training* answers
  (the closed-set classification protocol of MEVF and PubMedCLIP); a test answer outside
  it keeps ``answer_id == -1`` and can only be scored wrong.
* Images of any size and mode (RGB, L, P, RGBA, 16-bit ``I;16``/``I``, float ``F``) are
  converted to grayscale (ITU-R 601 luma; 16-bit and float images min-max scaled to
  0-255), zero-padded to a square and resized with antialiased bilinear interpolation
  (the helpers of :mod:`medfm.data.corpus`). Every referenced image is decoded once per
  process and size into one ``(N_images, S, S)`` uint8 array shared by all questions and
  both splits.
"""
from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from medfm.arg_checks import check_number
from medfm.data.corpus import pad_square, resize_batch, to_gray
from medfm.data.errors import CorruptFileError, DataFileMissingError, DataShapeError, UnknownSplitError
from medfm.data.images import read_image as read_any_image
from medfm.data.root import PathLike, dataset_dir
from medfm.data.uint8_sets import batch_indices

FOLDER = "vqa_rad"
SPLIT_FILES: Dict[str, str] = {"train": "trainset.json", "test": "testset.json"}
ANSWER_TYPES: Tuple[str, str] = ("CLOSED", "OPEN")
RECORD_KEYS: Tuple[str, ...] = ("qid", "image_name", "answer", "answer_type", "question")
_PUNCT = re.compile("[" + re.escape(string.punctuation.replace(".", "")) + "]")
_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")  # a dot not between two digits ("3.4 cm" keeps its dot)
_IMAGE_CACHE: Dict[Tuple[str, int, Tuple[str, ...]], Tuple[np.ndarray, Dict[str, int]]] = {}


def normalize_answer(answer: Any) -> str:
    """Canonical form of an answer (or a prediction) for vocabulary building and exact match.

    Lower case; every punctuation mark replaced by a space except a dot between two digits;
    runs of whitespace (tabs, newlines) collapsed to one space; ends stripped. Ints and
    floats are written with ``str`` first (``2`` -> ``"2"``). Articles are kept (strict).

    Examples: ``"Yes"`` -> ``"yes"``, ``" X-ray. "`` -> ``"x ray"``, ``"3.4 cm"`` -> ``"3.4 cm"``.
    """
    text = str(answer).lower()
    text = _DOT.sub(" ", _PUNCT.sub(" ", text))
    return " ".join(text.split())


def normalize_answer_type(value: Any) -> str:
    """``"CLOSED"`` or ``"OPEN"`` from a raw ``answer_type`` (case and surrounding spaces ignored).

    Raises:
        DataShapeError: any other value.
    """
    text = str(value).strip().upper()
    if text not in ANSWER_TYPES:
        raise DataShapeError(f"unknown VQA-RAD answer_type {value!r}; expected one of {ANSWER_TYPES}")
    return text


@dataclass(frozen=True)
class VQARecord:
    """One question-answer pair; ``answer`` and ``answer_type`` already normalised."""

    qid: str
    image_name: str
    question: str
    answer: str
    answer_type: str
    question_type: str = ""
    image_organ: str = ""


def parse_records(raw: Any, where: str = "records") -> List[VQARecord]:
    """Validate and normalise a list of MEVF JSON records.

    Raises:
        DataShapeError: not a list of objects, a record lacking a required key, an empty
            question or answer, or an unknown answer type (names the record).
    """
    if not isinstance(raw, list):
        raise DataShapeError(f"{where}: expected a JSON list of QA records, got {type(raw).__name__}")
    out = []
    for i, rec in enumerate(raw):
        if not isinstance(rec, dict):
            raise DataShapeError(f"{where}: record {i} is a {type(rec).__name__}, not an object")
        missing = [k for k in RECORD_KEYS if k not in rec]
        if missing:
            raise DataShapeError(f"{where}: record {i} (qid {rec.get('qid')!r}) lacks key(s) {missing}")
        question, answer = " ".join(str(rec["question"]).split()), normalize_answer(rec["answer"])
        if not question or not answer:
            raise DataShapeError(f"{where}: record {i} (qid {rec['qid']!r}) has an empty question or answer")
        try:
            atype = normalize_answer_type(rec["answer_type"])
        except DataShapeError as err:
            raise DataShapeError(f"{where}: record {i} (qid {rec['qid']!r}): {err}") from None
        out.append(VQARecord(str(rec["qid"]), str(rec["image_name"]), question, answer, atype,
                             " ".join(str(rec.get("question_type", "")).split()).upper(),
                             str(rec.get("image_organ", "")).strip().upper()))
    return out


def vqa_rad_dir(data_root: Optional[PathLike] = None) -> Path:
    """``<data_root>/vqa_rad``; raises :class:`DataFileMissingError` (saying what to put there) if absent."""
    folder = dataset_dir(FOLDER, data_root)
    if not folder.is_dir():
        raise DataFileMissingError(
            f"VQA-RAD not found at {folder}: put the MEVF data_RAD files (trainset.json, testset.json, images/) "
            "there (see https://osf.io/89kps/ and aioz-ai/MICCAI19-MedVQA), or pass --data-root")
    return folder


def load_records(split: str, data_root: Optional[PathLike] = None) -> List[VQARecord]:
    """The normalised QA records of ``split`` ("train" or "test").

    Raises:
        UnknownSplitError, DataFileMissingError, CorruptFileError (unparsable JSON),
        DataShapeError (bad records, or none).
    """
    if split not in SPLIT_FILES:
        raise UnknownSplitError(f"unknown VQA-RAD split {split!r}; expected one of {sorted(SPLIT_FILES)}")
    path = vqa_rad_dir(data_root) / SPLIT_FILES[split]
    if not path.is_file():
        raise DataFileMissingError(f"VQA-RAD {split} file missing: {path}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"cannot parse {path}: {err}") from None
    records = parse_records(raw, where=str(path))
    if not records:
        raise DataShapeError(f"{path} holds no QA records")
    return records


class AnswerVocab:
    """Answer vocabulary: normalised answers, most frequent first (ties alphabetical).

    Args:
        answers: the answer strings (already normalised).
        closed / opened: the subsets seen with answer type CLOSED / OPEN in training (for
            type masks; ``opened`` defaults to all answers).

    ``index(answer) -> int`` gives the class id, ``-1`` for an answer outside the vocabulary.
    """

    def __init__(self, answers: Sequence[str], closed: Iterable[str] = (),
                 opened: Optional[Iterable[str]] = None) -> None:
        self.answers = [str(a) for a in answers]
        if len(set(self.answers)) != len(self.answers) or not self.answers:
            raise ValueError("an answer vocabulary needs at least one answer and no duplicates")
        self._ids = {a: i for i, a in enumerate(self.answers)}
        self.closed = sorted(set(closed) & set(self.answers))
        self.open = sorted(set(opened if opened is not None else self.answers) & set(self.answers))

    @classmethod
    def from_records(cls, records: Sequence[VQARecord]) -> "AnswerVocab":
        """Vocabulary of the answers of ``records`` (use the training records only)."""
        counts = Counter(r.answer for r in records)
        ordered = sorted(counts, key=lambda a: (-counts[a], a))
        return cls(ordered, closed={r.answer for r in records if r.answer_type == "CLOSED"},
                   opened={r.answer for r in records if r.answer_type == "OPEN"})

    def index(self, answer: str) -> int:
        """Class id of a normalised answer, ``-1`` when it is not in the vocabulary."""
        return self._ids.get(answer, -1)

    def __len__(self) -> int:
        return len(self.answers)


def read_image(path: Path) -> np.ndarray:
    """One image file -> ``(H, W)`` uint8 grayscale (any PIL mode; 16-bit/float min-max scaled).

    Raises:
        DataFileMissingError: no such file. CorruptFileError: unreadable or truncated file.
    """
    return to_gray(read_any_image(path, what="VQA-RAD image"))


def decode_images(folder: Path, names: Sequence[str], size: int,
                  progress: bool = False) -> Tuple[np.ndarray, Dict[str, int]]:
    """Decode ``names`` from ``folder`` once: ``((N, size, size) uint8, {name: row})``.

    Each image: grayscale, zero-pad to square, antialiased bilinear resize. Results are
    memoised per (folder, size, names) for the process, so train and test share one array.

    Raises:
        DataFileMissingError / CorruptFileError: the first missing or unreadable image (named).
    """
    key = (str(folder), int(size), tuple(sorted(set(names))))
    if key not in _IMAGE_CACHE:
        ordered = list(key[2])
        items: Iterable[str] = ordered
        if progress:
            from tqdm.auto import tqdm

            items = tqdm(ordered, desc=f"decode VQA-RAD images ({size}px)", leave=False)
        arr = np.stack([resize_batch(pad_square(read_image(folder / n))[None], size)[0] for n in items]) if ordered \
            else np.zeros((0, size, size), np.uint8)
        _IMAGE_CACHE[key] = (arr, {n: i for i, n in enumerate(ordered)})
    return _IMAGE_CACHE[key]


class VQARadDataset(Dataset):
    """VQA-RAD questions of one split with images decoded once.

    Args:
        split: "train" or "test".
        size: image side ``S`` in px (the encoder's ``img_size``).
        in_chans: 1 (grayscale) or 3 (gray repeated) channels, the encoder's ``in_chans``.
        data_root: see :func:`medfm.data.root.resolve_data_root`.
        vocab: answer vocabulary; default: built from this split (pass the train split's
            vocabulary to the test split).
        progress: tqdm bar while decoding images.

    Attributes:
        records: list of :class:`VQARecord`; ``images``: ``(N_img, S, S)`` uint8;
        ``image_index``: ``(Q,)`` int64 row of each question's image; ``answer_ids``:
        ``(Q,)`` int64 (-1: out of vocabulary); ``questions``, ``answers``, ``answer_types``.
        The image array holds every image referenced by either split (same rows for both).

    ``get_batch(indices)`` -> ``{"image": (B, C, S, S) float32 in [0, 1], "image_index": (B,),
    "question": list[str], "answer": (B,) int64, "answer_text": list[str],
    "answer_type": list[str], "index": (B,)}``.

    Raises:
        UnknownSplitError, DataFileMissingError, CorruptFileError, DataShapeError; ValueError
        for ``in_chans`` not 1 or 3 or ``size`` not an integer >= 1.
    """

    def __init__(self, split: str, size: int = 28, in_chans: int = 1, data_root: Optional[PathLike] = None,
                 vocab: Optional[AnswerVocab] = None, progress: bool = False) -> None:
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
        # int(28.5) was 28 silently; size 0 failed in the resize with a torch RuntimeError
        self.split, self.in_chans = split, int(in_chans)
        self.size = check_number("size", size, ge=1, integer=True, hint=" (pixels)")
        self.folder = vqa_rad_dir(data_root)
        self.records = load_records(split, data_root)
        self.vocab = vocab if vocab is not None else AnswerVocab.from_records(self.records)
        # decode the images of *both* splits: one array shared by train and test (203 images overlap)
        names = [r.image_name for r in self.records]
        for other in SPLIT_FILES:
            if other != split and (self.folder / SPLIT_FILES[other]).is_file():
                names += [r.image_name for r in load_records(other, data_root)]
        self.images, rows = decode_images(self.folder / "images", names, self.size, progress)
        self.image_index = torch.tensor([rows[r.image_name] for r in self.records], dtype=torch.long)
        self.answer_ids = torch.tensor([self.vocab.index(r.answer) for r in self.records], dtype=torch.long)
        self.questions = [r.question for r in self.records]
        self.answers = [r.answer for r in self.records]
        self.answer_types = [r.answer_type for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def image_tensor(self, rows: Union[torch.Tensor, Sequence[int], None] = None) -> torch.Tensor:
        """Images ``(N, C, S, S)`` float32 in [0, 1] of the given image rows (default: all)."""
        arr = self.images if rows is None else self.images[np.asarray(rows, dtype=np.int64)]
        x = torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(1).float().div_(255.0)
        return x.expand(-1, self.in_chans, -1, -1).contiguous() if self.in_chans == 3 else x

    def get_batch(self, indices: Union[torch.Tensor, Sequence[int], np.ndarray]) -> Dict[str, Any]:
        """The batch dict of question ``indices`` ``(B,)`` (see the class docstring).

        Raises:
            ValueError: indices not 1-D integers; IndexError: out of range.
        """
        idx = batch_indices(indices)
        rows = self.image_index[idx]
        return {"image": self.image_tensor(rows), "image_index": rows,
                "question": [self.questions[i] for i in idx.tolist()],
                "answer": self.answer_ids[idx], "answer_text": [self.answers[i] for i in idx.tolist()],
                "answer_type": [self.answer_types[i] for i in idx.tolist()], "index": idx}

    def __getitem__(self, index: int) -> Dict[str, Any]:
        batch = self.get_batch([index])
        return {k: (v[0] if isinstance(v, (list, torch.Tensor)) else v) for k, v in batch.items()}

    def oov_fraction(self) -> float:
        """Fraction of questions whose answer is outside the vocabulary."""
        return float((self.answer_ids < 0).float().mean()) if len(self) else 0.0


def data_md5s(data_root: Optional[PathLike] = None) -> Dict[str, str]:
    """md5 of trainset.json and testset.json, for result provenance."""
    from medfm.io import file_md5

    folder = vqa_rad_dir(data_root)
    return {name: file_md5(folder / name) for name in SPLIT_FILES.values() if (folder / name).is_file()}


__all__ = ["ANSWER_TYPES", "AnswerVocab", "VQARecord", "VQARadDataset", "normalize_answer", "normalize_answer_type",
           "parse_records", "load_records", "read_image", "decode_images", "vqa_rad_dir", "data_md5s"]
