"""The multi-source pretraining corpus: split rules, texts, caching, skip messages (tiny fake sources)."""
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medfm.data.corpus import (
    PretrainCorpus,
    SOURCES,
    build_corpus,
    first_fraction,
    lgg_patient,
    mednist_split,
)
from medfm.data.errors import DataFileMissingError, UnsupportedSizeError

pytestmark = pytest.mark.usefixtures("tmp_medfm_cache")


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def fake_sources(root: Path, write_medmnist) -> Path:
    """Tiny versions of every source; held-out items are pure white (255), train items darker."""
    rng = np.random.default_rng(0)
    write_medmnist("pneumoniamnist")
    write_medmnist("adrenalmnist3d")
    for cls in ("CXR", "Hand"):  # MedNIST: 10 files per class, the last 2 are the test part
        for i in range(10):
            _png(root / "mednist_medical_mnist_subset" / cls / f"{i:06d}.jpeg",
                 np.full((64, 64), 255 if i >= 8 else 40 + i, np.uint8))
    vqa = root / "vqa_rad"
    for name, value in (("a.jpg", 30), ("b.jpg", 60), ("c.jpg", 255)):  # c.jpg: test questions only
        _png(vqa / "images" / name, np.full((40, 50, 3), value, np.uint8))
    rec = {"answer_type": "CLOSED", "question_type": "PRES", "phrase_type": "freeform"}
    (vqa / "trainset.json").write_text(json.dumps([
        {**rec, "qid": 1, "image_name": "a.jpg", "image_organ": "CHEST", "question": "Is there a mass?", "answer": "no"},
        {**rec, "qid": 2, "image_name": "a.jpg", "image_organ": "CHEST", "question": "Is this a CT?", "answer": "yes"},
        {**rec, "qid": 3, "image_name": "b.jpg", "image_organ": "HEAD ", "question": "Which lobe?", "answer": 2}]))
    (vqa / "testset.json").write_text(json.dumps([
        {**rec, "qid": 4, "image_name": "c.jpg", "image_organ": "ABD", "question": "TEST QUESTION?", "answer": "yes"}]))
    chase = root / "chase_db1" / "CHASEDB1"
    _png(chase / "Image_01L.jpg", np.full((60, 64, 3), 120, np.uint8))
    _png(chase / "Image_11L.jpg", np.full((60, 64, 3), 255, np.uint8))  # segmentation test split
    for k, case in enumerate(["TCGA_AA_0001_20000101", "TCGA_AA_0002_20000101", "TCGA_BB_0003_20000101",
                              "TCGA_BB_0004_20000101"]):  # sorted index % 3 == 2 is held out
        img = rng.integers(50, 200, (32, 32, 3), dtype=np.uint8)
        if k == 1:
            img[..., 0] = img[..., 1]  # pre-contrast missing (replaced by FLAIR in the source)
        if k == 2:
            img[:] = 255
        _png(root / "lgg_tcga_flair_seg_3ch" / "images" / case / f"{case}_1.png", img)
        _png(root / "lgg_tcga_flair_seg_3ch" / "images" / case / f"{case}_1_mask.png", np.zeros((32, 32), np.uint8))
    import nibabel as nib

    hip = root / "msd_task04_hippocampus" / "imagesTr"
    hip.mkdir(parents=True)
    (hip.parent / "labelsTr").mkdir()
    for i in range(1, 6):  # sorted index % 5 == 4 is held out: the first 4 of 5 cases are train
        vol = rng.uniform(1, 100, (10, 12, 8)).astype(np.float32)
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(hip / f"hippocampus_{i:03d}.nii.gz"))
        nib.save(nib.Nifti1Image(np.zeros((10, 12, 8), np.uint8), np.eye(4)),
                 str(hip.parent / "labelsTr" / f"hippocampus_{i:03d}.nii.gz"))
    return root


@pytest.fixture
def fake_root(tmp_path, write_medmnist):
    return fake_sources(tmp_path, write_medmnist)


def test_split_rules():
    assert first_fraction(["c", "a", "b", "d"], 0.7) == (["a", "b", "c"], ["d"])
    assert first_fraction([f"id{i:03d}" for i in range(260)], 0.8)[0][-1] == "id207"
    train, test = mednist_split([f"{i:06d}.jpeg" for i in range(1500)])
    assert (len(train), len(test), test[0]) == (1200, 300, "001200.jpeg")
    assert lgg_patient("TCGA_CS_4942_19970222") == "TCGA_CS_4942"


def test_every_source_enters_with_its_split_rule(fake_root):
    ds = PretrainCorpus(28, data_root=fake_root, progress=False)
    counts = ds.counts()
    assert set(counts) == set(SOURCES)
    assert counts["medmnist"] == 6  # pneumoniamnist train split only (val/test: 3 and 4)
    assert counts["medmnist3d"] == 6 * 3  # 3 central slices per train volume
    assert counts["mednist"] == 2 * 8
    assert counts["vqa_rad"] == 3  # one per train QA pair
    assert counts["chase_db1"] == 1 + 9  # Image_01L whole + 3x3 crops; Image_11L held out
    assert counts["lgg"] == 3 + 2 + 3  # 3 train patients; a sequence equal to FLAIR is left out
    assert counts["hippocampus"] == 4 * 9
    assert ds.manifest["sources"]["lgg"]["train_patients"] == ["TCGA_AA_0001_20000101", "TCGA_AA_0002_20000101",
                                                             "TCGA_BB_0004_20000101"]
    for i in range(len(ds)):
        s = ds[i]
        if s["source"] not in ("medmnist", "medmnist3d", "hippocampus"):
            assert s["image"].max() < 0.99, f"held-out (white) image entered from {s['source']}"
    texts = set(ds.unique_texts)
    assert {"Is there a mass? no", "Is this a CT? yes", "Which lobe? 2"} <= texts
    assert not any("TEST QUESTION" in t for t in texts)
    medmnist_texts = {ds[i]["text"] for i in range(len(ds)) if ds[i]["source"] == "medmnist"}
    assert medmnist_texts == {"a chest X-ray"}  # modality only, never the class
    assert {ds[i]["modality"] for i in range(len(ds)) if ds[i]["source"] == "vqa_rad"} == {"chest_radiology",
                                                                                            "head_radiology"}


def test_samples_and_batches(fake_root):
    ds = PretrainCorpus(28, data_root=fake_root, progress=False)
    s = ds[0]
    assert s["image"].shape == (1, 28, 28) and s["image"].dtype == torch.float32
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    idx = torch.tensor([5, 0, len(ds) - 1])
    batch = ds.get_batch(idx)
    assert torch.equal(batch["image"], torch.stack([ds[int(i)]["image"] for i in idx]))
    assert batch["text"] == [ds[int(i)]["text"] for i in idx]
    assert batch["source"] == [ds[int(i)]["source"] for i in idx]
    with pytest.raises(ValueError, match="1-D integer"):
        ds.get_batch(torch.tensor([[0]]))
    meta = ds.metadata()
    assert meta["n_train"] == len(ds) and meta["sources"] == ds.counts() and meta["sha256"]


def test_cached_once_then_loaded_and_rebuilt_when_corrupt(fake_root, monkeypatch, caplog):
    first = PretrainCorpus(28, data_root=fake_root, sources=["mednist", "vqa_rad"], progress=False)
    assert first.path.is_file() and first.path.with_suffix(".json").is_file()
    monkeypatch.setattr("medfm.data.corpus.build_corpus", lambda *a, **k: pytest.fail("rebuilt a valid cache"))
    again = PretrainCorpus(28, data_root=fake_root, sources=["mednist", "vqa_rad"], progress=False)
    assert np.array_equal(again.images, first.images) and again.unique_texts == first.unique_texts
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(Path(first.path).parents[2]))
    first.path.write_bytes(first.path.read_bytes()[:-10])
    with caplog.at_level(logging.WARNING):
        rebuilt = PretrainCorpus(28, data_root=fake_root, sources=["mednist", "vqa_rad"], progress=False)
    assert "rebuilding" in caplog.text and np.array_equal(rebuilt.images, first.images)


def test_new_input_files_change_the_cache_file(fake_root):
    a = PretrainCorpus(28, data_root=fake_root, sources=["mednist"], progress=False)
    _png(fake_root / "mednist_medical_mnist_subset" / "CXR" / "000010.jpeg", np.zeros((64, 64), np.uint8))
    b = PretrainCorpus(28, data_root=fake_root, sources=["mednist"], progress=False)
    assert a.path != b.path


def test_size_64(fake_root):
    ds = PretrainCorpus(64, data_root=fake_root, sources=["mednist", "chase_db1"], progress=False)
    assert ds[0]["image"].shape == (1, 64, 64)


def test_missing_sources_are_skipped_with_a_message(tmp_path, write_medmnist, caplog):
    root = write_medmnist("pneumoniamnist")
    with caplog.at_level(logging.WARNING):
        ds = PretrainCorpus(28, data_root=root, progress=False)
    assert ds.counts() == {"medmnist": 6}
    for source in ("mednist", "vqa_rad", "chase_db1", "lgg", "hippocampus", "medmnist3d"):
        assert f"skipping {source}" in caplog.text
    assert set(ds.manifest["skipped"]) == set(SOURCES) - {"medmnist"}


def test_errors(tmp_path):
    with pytest.raises(DataFileMissingError, match="no pretraining corpus source"):
        build_corpus(28, data_root=tmp_path, progress=False)
    with pytest.raises(UnsupportedSizeError, match="28, 64"):
        PretrainCorpus(32, data_root=tmp_path)
    with pytest.raises(ValueError, match="did you mean 'mednist'"):
        PretrainCorpus(28, data_root=tmp_path, sources=["mednst"])


@pytest.mark.slow
def test_real_corpus_has_every_source_and_no_test_image(real_data_root):
    ds = PretrainCorpus(28, data_root=real_data_root, progress=False)
    counts = ds.counts()
    assert set(counts) == set(SOURCES) and min(counts.values()) > 0, counts
    test = np.load(real_data_root / "medmnist" / "pneumoniamnist.npz")["test_images"]
    test_hashes = {hashlib.md5(x.tobytes()).hexdigest() for x in test}
    assert not any(hashlib.md5(x.tobytes()).hexdigest() in test_hashes for x in ds.images)
    vqa_train = json.loads((real_data_root / "vqa_rad" / "trainset.json").read_text())
    assert counts["vqa_rad"] == len(vqa_train)
    from medfm.text.prompts import MODALITY_TEXTS

    descriptions = {d for texts in MODALITY_TEXTS.values() for d in texts}
    non_vqa = {ds[i]["text"] for i in range(0, len(ds), 7) if ds[i]["source"] != "vqa_rad"}
    assert non_vqa <= descriptions  # MedMNIST/MedNIST/... images carry modality texts only
