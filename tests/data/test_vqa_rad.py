"""VQA-RAD loader on synthetic data in the MEVF layout (JSON schema, image modes, clear errors)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medfm.data.corpus import fit
from medfm.data.errors import CorruptFileError, DataFileMissingError, DataShapeError, UnknownSplitError
from medfm.data.vqa_rad import AnswerVocab, VQARadDataset, load_records, normalize_answer, normalize_answer_type

REPO = Path(__file__).resolve().parents[2]


def _rec(qid, image, question, answer, atype, qtype="PRES"):
    return {"qid": qid, "image_name": image, "image_organ": "CHEST", "answer": answer, "answer_type": atype,
            "question_type": qtype, "question": question, "phrase_type": "freeform"}


def write_vqa_rad(root: Path) -> Path:
    """<root>/vqa_rad with 3 images (RGB JPEG 40x30, L PNG 20x50, 16-bit PNG 24x24), 6 train / 3 test QA."""
    folder = root / "vqa_rad"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / "images" / "a.jpg", quality=95)
    Image.fromarray(rng.integers(0, 256, (50, 20), dtype=np.uint8)).save(folder / "images" / "b.png")
    Image.fromarray(np.arange(24 * 24, dtype=np.uint16).reshape(24, 24) * 100 + 1000).save(folder / "images" / "c.png")
    train = [_rec(1, "a.jpg", "Is this normal?", "Yes", "CLOSED"), _rec(2, "b.png", "Is there a mass?", "no", "CLOSED "),
             _rec(3, "c.png", "How many lesions?", 2, "OPEN", "COUNT"), _rec(4, "a.jpg", "Which side?", "Left.", "OPEN", "POS"),
             _rec(5, "b.png", "Is it enlarged?", "yes", "CLOSED"), _rec(6, "c.png", "What plane?", "Axial", "OPEN", "PLANE")]
    test = [_rec(7, "a.jpg", "Is this abnormal?", "NO", "CLOSED"), _rec(8, "b.png", "Where is the lesion?", "x-ray", "OPEN"),
            _rec(9, "c.png", "Which side is it?", "left", "OPEN", "POS")]
    (folder / "trainset.json").write_text(json.dumps(train))
    (folder / "testset.json").write_text(json.dumps(test))
    return root


@pytest.mark.parametrize("raw, norm", [("Yes", "yes"), (" X-ray. ", "x ray"), (2, "2"), ("3.4 cm", "3.4 cm"),
                                       ("On the right shoulder.", "on the right shoulder"),
                                       ("~15 minutes\tpotentially", "15 minutes potentially"),
                                       ("MRI/FLAIR", "mri flair"), ("Ring-enhancing", "ring enhancing")])
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_normalize_answer_type():
    assert normalize_answer_type("CLOSED ") == "CLOSED" and normalize_answer_type(" open") == "OPEN"
    with pytest.raises(DataShapeError, match="answer_type"):
        normalize_answer_type("BOTH")


def test_dataset_schema_vocab_and_images(tmp_path):
    root = write_vqa_rad(tmp_path)
    tr = VQARadDataset("train", size=16, in_chans=1, data_root=root)
    te = VQARadDataset("test", size=16, in_chans=3, data_root=root, vocab=tr.vocab)
    assert len(tr) == 6 and len(te) == 3
    assert tr.answer_types == ["CLOSED", "CLOSED", "OPEN", "OPEN", "CLOSED", "OPEN"]  # "CLOSED " normalised
    assert tr.vocab.answers == ["yes", "2", "axial", "left", "no"]  # frequency, then alphabetical
    assert tr.vocab.closed == ["no", "yes"] and tr.vocab.open == ["2", "axial", "left"]
    assert te.answer_ids.tolist() == [4, -1, 3]  # "x ray" is not a training answer
    assert te.oov_fraction() == pytest.approx(1 / 3)
    # one decoded array for both splits, every image referenced by either split
    assert te.images is tr.images and tr.images.shape == (3, 16, 16) and tr.images.dtype == np.uint8
    jpg = np.asarray(Image.open(root / "vqa_rad" / "images" / "a.jpg"))
    assert np.array_equal(tr.images[tr.image_index[0]], fit(jpg, 16))  # gray, pad square, antialiased resize
    raw16 = np.arange(24 * 24, dtype=np.float64).reshape(24, 24) * 100 + 1000
    scaled = np.rint((raw16 - raw16.min()) * 255.0 / (raw16.max() - raw16.min())).astype(np.uint8)
    assert np.array_equal(tr.images[tr.image_index[2]], fit(scaled, 16))  # 16-bit min-max scaled, not clipped
    b = te.get_batch([0, 2])
    assert b["image"].shape == (2, 3, 16, 16) and b["image"].dtype == torch.float32
    assert float(b["image"].max()) <= 1.0 and torch.equal(b["image"][:, 0], b["image"][:, 1])
    assert b["question"] == ["Is this abnormal?", "Which side is it?"] and b["answer_type"] == ["CLOSED", "OPEN"]
    assert tr[0]["image"].shape == (1, 16, 16)
    with pytest.raises(ValueError, match="1-D integer"):  # was truncated to question 0 and 1 silently
        te.get_batch([0.7, 1.9])
    with pytest.raises(ValueError, match="1-D integer"):  # was flattened silently
        te.get_batch([[0, 1]])


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_unreadable_image_gives_one_clear_error(tmp_path, damage):
    root = write_vqa_rad(tmp_path)
    path = root / "vqa_rad" / "images" / "a.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not an image at all")
    with pytest.raises(CorruptFileError) as err:
        VQARadDataset("train", size=16, data_root=root)
    msg = str(err.value)
    assert "a.jpg" in msg and "\n" not in msg


def test_missing_files_and_bad_records(tmp_path):
    with pytest.raises(DataFileMissingError, match="VQA-RAD not found"):
        load_records("train", tmp_path)
    root = write_vqa_rad(tmp_path)
    with pytest.raises(UnknownSplitError, match="split"):
        load_records("val", root)
    os.remove(root / "vqa_rad" / "images" / "b.png")
    with pytest.raises(DataFileMissingError, match="b.png"):
        VQARadDataset("train", size=16, data_root=root)
    (root / "vqa_rad" / "trainset.json").write_text(json.dumps([{"qid": 1, "question": "q?"}]))
    with pytest.raises(DataShapeError, match="lacks key"):
        load_records("train", root)
    (root / "vqa_rad" / "trainset.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="cannot parse"):
        load_records("train", root)
    with pytest.raises(ValueError, match="duplicates"):
        AnswerVocab(["a", "a"])


def _real_root():
    env = os.environ.get("MEDFM_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (cand / "vqa_rad" / "trainset.json").is_file():
            return cand
    return None


@pytest.mark.slow
def test_real_vqa_rad_counts():
    root = _real_root()
    if root is None:
        pytest.skip("VQA-RAD not found: set MEDFM_DATA or provide ../shared/data/vqa_rad next to the repo")
    tr = VQARadDataset("train", size=28, data_root=root)
    te = VQARadDataset("test", size=28, data_root=root, vocab=tr.vocab)
    assert len(tr) == 3064 and len(te) == 451
    assert tr.images.shape == (314, 28, 28)  # every image referenced by a QA record, decoded once
    assert te.answer_types.count("CLOSED") == 272 and te.answer_types.count("OPEN") == 179
    assert set(tr.answer_types) == {"CLOSED", "OPEN"}  # the two "CLOSED " records normalised
    assert 0 < int((te.answer_ids < 0).sum()) < 60
