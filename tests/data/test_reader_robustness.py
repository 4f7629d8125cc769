"""Bad input to every medfm.data reader gives one medfm data error naming the file (tiny files in tmp_path).

Each test reproduces a bug found in the data-reader audit: before the fix these inputs
raised a bare numpy/PIL/csv/zip error, or were accepted silently.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medfm.data import segmentation as seg
from medfm.data.errors import ChecksumError, CorruptFileError, DataFileMissingError, DataShapeError
from medfm.data.images import read_image


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _one_line(err: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg


# -- the shared image reader ---------------------------------------------------------------
@pytest.mark.parametrize("damage", ["garbage", "truncated", "folder", "missing"])
def test_read_image_bad_files_raise_data_errors(tmp_path, damage):
    path = tmp_path / "x.png"
    if damage == "garbage":
        path.write_bytes(b"0123456789")
    elif damage == "truncated":
        _png(path, np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8))
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "folder":
        path.mkdir()
    expected = DataFileMissingError if damage in ("folder", "missing") else CorruptFileError
    with pytest.raises(expected) as err:
        read_image(path, "L", what="test mask")
    _one_line(err, "test mask", str(path))


def test_read_image_modes_and_wide_pixels(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    p = _png(tmp_path / "rgb.png", rgb)
    assert np.array_equal(read_image(p), rgb) and np.array_equal(read_image(p, "RGB"), rgb)
    assert np.array_equal(read_image(p, "L"), np.asarray(Image.fromarray(rgb).convert("L")))
    wide = _png(tmp_path / "i16.png", np.array([[0, 1000], [2000, 4000]], np.uint16))
    assert read_image(wide, "L").tolist() == [[0, 64], [128, 255]]  # min-max scaled, not clipped at 255
    nan = np.zeros((3, 3), np.float32)
    nan[1, 1] = np.nan
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    with pytest.raises(CorruptFileError, match="non-finite"):
        read_image(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match="mode"):
        read_image(p, "CMYK")


# -- TCGA-LGG and MSD hippocampus readers ----------------------------------------------------
def _lgg_patient(root: Path, case: str, sizes) -> Path:
    d = root / "lgg_tcga_flair_seg_3ch" / "images" / case
    d.mkdir(parents=True)
    for n, side in enumerate(sizes, start=1):
        _png(d / f"{case}_{n}.png", np.zeros((side, side, 3), np.uint8))
        _png(d / f"{case}_{n}_mask.png", np.zeros((side, side), np.uint8))
    return d


def test_lgg_patient_without_slices_or_with_mixed_sizes(tmp_path):
    from medfm.data.lgg_fusion import missing_sequences

    _lgg_patient(tmp_path, "TCGA_AA_0001_20000101", [])
    with pytest.raises(DataFileMissingError) as err:
        seg.load_lgg_patient("TCGA_AA_0001_20000101", tmp_path)
    _one_line(err, "TCGA_AA_0001_20000101", "no slices")
    with pytest.raises(DataFileMissingError, match="no slices"):
        missing_sequences(tmp_path, ["TCGA_AA_0001_20000101"])
    _lgg_patient(tmp_path, "TCGA_AA_0002_20000101", [8, 9])
    with pytest.raises(DataShapeError) as err:
        seg.load_lgg_patient("TCGA_AA_0002_20000101", tmp_path)
    _one_line(err, "TCGA_AA_0002_20000101_2.png", "(9, 9)", "(8, 8)")


def _hippocampus(root: Path, image: np.ndarray, label: np.ndarray) -> None:
    import nibabel as nib

    for sub, arr in (("imagesTr", image), ("labelsTr", label)):
        (root / "msd_task04_hippocampus" / sub).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(arr, np.eye(4)), str(root / "msd_task04_hippocampus" / sub / "hippocampus_001.nii.gz"))


@pytest.mark.parametrize("bad_label, shown", [(-1, "-1"), (0.4, "0.4"), (np.nan, "non-finite"), (7, "7")])
def test_hippocampus_bad_label_values_are_named(tmp_path, bad_label, shown):
    label = np.zeros((4, 5, 6), np.float32 if isinstance(bad_label, float) else np.int16)
    label[1, 2, 3] = bad_label
    _hippocampus(tmp_path, np.ones((4, 5, 6), np.float32), label)
    with pytest.raises(DataShapeError) as err:
        seg.load_hippocampus("hippocampus_001", tmp_path)
    _one_line(err, "labelsTr/hippocampus_001.nii.gz", shown)


@pytest.mark.parametrize("image", [np.full((4, 5, 6), np.nan, np.float32), np.zeros((4, 5, 6), np.complex64)])
def test_hippocampus_bad_image_voxels(tmp_path, image):
    _hippocampus(tmp_path, image, np.zeros((4, 5, 6), np.uint8))
    with pytest.raises(DataShapeError) as err:
        seg.load_hippocampus("hippocampus_001", tmp_path)
    _one_line(err, "imagesTr/hippocampus_001.nii.gz")


def test_hippocampus_valid_labels_unchanged(tmp_path):
    label = np.zeros((4, 5, 6), np.float32)
    label[0, 0, :3] = [1, 2, 2]
    _hippocampus(tmp_path, np.arange(120, dtype=np.float32).reshape(4, 5, 6), label)
    out = seg.load_hippocampus("hippocampus_001", tmp_path)
    assert out["label"].dtype == np.uint8 and out["label"].sum() == 5 and out["image"].max() == 1.0


# -- LGG clinical table and fusion cache ------------------------------------------------------
def _lgg_with_table(root: Path, table_text) -> str:
    case = "TCGA_AA_0001_20000101"
    _lgg_patient(root, case, [8, 8])
    path = root / "lgg_tcga_flair_seg_3ch" / "data.csv"
    path.write_bytes(table_text if isinstance(table_text, bytes) else table_text.encode())
    return case


def _table(cells) -> str:
    from medfm.data.lgg_fusion import CLINICAL_COLUMNS

    return "Patient," + ",".join(CLINICAL_COLUMNS) + "\n" + ",".join(["TCGA_AA_0001", *cells]) + "\n"


@pytest.mark.parametrize("text, error, shown", [
    (_table(["1"] * 15 + ["abc"]), DataShapeError, "line 2"),
    (_table(["1"] * 10), DataShapeError, "line 2"),
    (b"\xff\xfe\x00\x01garbage", CorruptFileError, "data.csv"),
])
def test_lgg_clinical_table_errors_name_file_and_line(tmp_path, text, error, shown):
    from medfm.data.lgg_fusion import load_clinical

    _lgg_with_table(tmp_path, text)
    with pytest.raises(error) as err:
        load_clinical(tmp_path)
    _one_line(err, "data.csv", shown)


def test_lgg_fusion_cache_is_rebuilt_when_damaged_or_stale(tmp_path, caplog):
    from medfm.data.lgg_fusion import LGGFusionSet

    case = _lgg_with_table(tmp_path, _table(["1"] * 16))
    cache = tmp_path / "cache"
    first = LGGFusionSet(patients=[case], img_size=4, data_root=tmp_path, cache_dir=cache)
    assert first.labels.tolist() == [0, 0]
    (file,) = cache.glob("*.npz")
    file.write_bytes(file.read_bytes()[:100])  # truncated cache file: rebuilt with a warning
    again = LGGFusionSet(patients=[case], img_size=4, data_root=tmp_path, cache_dir=cache)
    assert again.labels.tolist() == [0, 0] and "unusable" in caplog.text
    mask = tmp_path / "lgg_tcga_flair_seg_3ch" / "images" / case / f"{case}_1_mask.png"
    _png(mask, np.full((8, 8), 255, np.uint8))  # changed input: the cache must not serve stale labels
    assert LGGFusionSet(patients=[case], img_size=4, data_root=tmp_path, cache_dir=cache).labels.tolist() == [1, 0]


def test_lgg_fusion_non_square_slices(tmp_path):
    from medfm.data.lgg_fusion import LGGFusionSet

    case = _lgg_with_table(tmp_path, _table(["1"] * 16))
    d = tmp_path / "lgg_tcga_flair_seg_3ch" / "images" / case
    for n in (1, 2):
        _png(d / f"{case}_{n}.png", np.zeros((8, 6, 3), np.uint8))
        _png(d / f"{case}_{n}_mask.png", np.zeros((8, 6), np.uint8))
    with pytest.raises(DataShapeError) as err:
        LGGFusionSet(patients=[case], img_size=4, data_root=tmp_path)
    _one_line(err, case, "8x6")


# -- MedMNIST npz ------------------------------------------------------------------------------
def _set_md5(monkeypatch, path: Path) -> None:
    from medfm.data.medmnist_info import INFO

    monkeypatch.setitem(INFO["pneumoniamnist"], "MD5", hashlib.md5(path.read_bytes()).hexdigest())


def test_medmnist_npy_or_non_array_member_is_corrupt(tmp_path, monkeypatch):
    from medfm.data.medmnist import MedMNISTDataset

    path = tmp_path / "medmnist" / "pneumoniamnist.npz"
    path.parent.mkdir()
    with open(path, "wb") as fh:  # a bare .npy array saved under the .npz name
        np.save(fh, np.zeros(3, np.uint8))
    _set_md5(monkeypatch, path)
    with pytest.raises(CorruptFileError) as err:
        MedMNISTDataset("pneumoniamnist", data_root=tmp_path)
    _one_line(err, str(path), ".npy")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # zip members without the .npy header
        z.writestr("train_images.npy", b"garbage")
        z.writestr("train_labels.npy", b"garbage")
    path.write_bytes(buf.getvalue())
    _set_md5(monkeypatch, path)
    with pytest.raises(CorruptFileError) as err:
        MedMNISTDataset("pneumoniamnist", data_root=tmp_path)
    _one_line(err, str(path), "train_images")


def test_medmnist_changed_file_detected_even_with_restored_mtime(write_medmnist, monkeypatch):
    from medfm.data.medmnist import MedMNISTDataset
    from medfm.data.medmnist_info import INFO

    root = write_medmnist("pneumoniamnist")
    path = root / "medmnist" / "pneumoniamnist.npz"
    MedMNISTDataset("pneumoniamnist", data_root=root)  # verified, md5 cached for this process
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF  # same size, different bytes, mtime set back (as cp -p / touch -r / rsync -t do)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ChecksumError) as err:
        MedMNISTDataset("pneumoniamnist", data_root=root)
    _one_line(err, str(path), INFO["pneumoniamnist"]["MD5"])


# -- image folders and VQA-RAD -----------------------------------------------------------------
@pytest.mark.parametrize("rows, error, shown", [
    (b"\xff\xfe\x00garbage\x00", CorruptFileError, "labels.csv"),
    (b"file,label\nA/0.png\n", DataShapeError, "line 2"),
    (b"file,label\nA/0.png,A\nA/1.png,\n", DataShapeError, "line 3"),
    (b"file,label\nA/0.png,A\nA/1.png,B\nA/0.png,B\n", DataShapeError, "listed twice"),
])
def test_image_folder_bad_labels_csv(tmp_path, rows, error, shown):
    from medfm.data.imagefolder import ImageFolderDataset

    for i in range(2):
        _png(tmp_path / "A" / f"{i}.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "labels.csv").write_bytes(rows)
    with pytest.raises(error) as err:
        ImageFolderDataset(tmp_path)
    _one_line(err, "labels.csv", shown)


def test_vqa_rad_empty_split_file(tmp_path):
    from medfm.data.vqa_rad import VQARadDataset

    (tmp_path / "vqa_rad" / "images").mkdir(parents=True)
    (tmp_path / "vqa_rad" / "trainset.json").write_text("[]")
    with pytest.raises(DataShapeError) as err:
        VQARadDataset("train", data_root=tmp_path)
    _one_line(err, "trainset.json", "no QA records")


# -- pretraining corpus sources ----------------------------------------------------------------
@pytest.mark.usefixtures("tmp_medfm_cache")
@pytest.mark.parametrize("records", [{"not": "a list"}, [{"qid": 1, "image_name": "a.png", "question": "q?"}]])
def test_corpus_vqa_bad_records(tmp_path, records):
    from medfm.data.corpus import build_corpus

    _png(tmp_path / "vqa_rad" / "images" / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "vqa_rad" / "trainset.json").write_text(json.dumps(records))
    with pytest.raises(DataShapeError) as err:
        build_corpus(28, tmp_path, ["vqa_rad"], progress=False)
    _one_line(err, "trainset.json")


@pytest.mark.usefixtures("tmp_medfm_cache")
def test_corpus_grey_lgg_slice_and_2d_hippocampus(tmp_path):
    from medfm.data.corpus import build_corpus

    d = tmp_path / "lgg_tcga_flair_seg_3ch" / "images" / "TCGA_AA_0001_20000101"
    _png(d / "TCGA_AA_0001_20000101_1.png", np.full((16, 16), 100, np.uint8))  # grey, read as RGB like seg
    _png(d / "TCGA_AA_0001_20000101_1_mask.png", np.zeros((16, 16), np.uint8))
    arrays, manifest = build_corpus(28, tmp_path, ["lgg"], progress=False)
    assert manifest["sources"]["lgg"]["n"] == 1 and list(arrays["modalities"]) == ["brain_mri_flair"]
    _hippocampus(tmp_path, np.ones((6, 7), np.float32), np.zeros((6, 7), np.uint8))
    with pytest.raises(DataShapeError) as err:
        build_corpus(28, tmp_path, ["hippocampus"], progress=False)
    _one_line(err, "hippocampus_001.nii.gz", "3D")


@pytest.mark.usefixtures("tmp_medfm_cache")
def test_corpus_mednist_never_takes_a_sorted_test_file(tmp_path):
    """Class folder with .png files sorting before the .jpeg files: the corpus must hold out
    exactly the files ImageFolderDataset(split_rule="sorted") tests on."""
    from medfm.data.corpus import build_corpus
    from medfm.data.imagefolder import ImageFolderDataset

    folder = tmp_path / "mednist_medical_mnist_subset"
    for i in range(5):  # each file a distinct constant value, so corpus images identify their file
        _png(folder / "CXR" / f"a{i}.png", np.full((8, 8), 10 + i, np.uint8))
        _png(folder / "CXR" / f"b{i}.jpeg", np.full((8, 8), 100 + 20 * i, np.uint8))
    test = ImageFolderDataset(folder, split="test", split_rule="sorted")
    arrays, _ = build_corpus(28, tmp_path, ["mednist"], progress=False)
    corpus_values = {int(np.median(im)) for im in arrays["images"]}
    test_values = {int(np.median(im)) for im in test.images}
    assert len(test_values) == 2 and not corpus_values & test_values, (sorted(corpus_values), test.files)
    assert len(arrays["images"]) == 8  # the 8 train + val files of the sorted rule, .png ones included


# -- real data: the unified image reader returns the arrays the old per-reader code returned ----
#: sha256[:16] of arrays returned before the read_image refactor (measured on /work/shared/data)
REAL_HASHES = {
    "chase/01L/image": "uint8(960, 999, 3):2ed3089a092f51fc",
    "chase/01L/mask": "bool(960, 999):a7fe755a8ac690f3",
    "chase/01L/mask2": "bool(960, 999):0e888f349b779404",
    "lgg/TCGA_CS_4942_19970222_1.png": "uint8(256, 256, 3):9eb81440991c83e7",
    "lgg/TCGA_CS_4942_19970222_1_mask.png": "bool(256, 256):de2f256064a0af79",
    "lggpat/TCGA_CS_4942_19970222": "uint8(20, 256, 256, 3):614116d83344d01c",
    "hip/hippocampus_001": "float32(35, 51, 35):1627c0aacd26dc51uint8(35, 51, 35):0753eac710a88592",
    "vqa/synpic100132.jpg": "uint8(1384, 2321):fb49816850c9ad6f",
}


def _h(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return f"{a.dtype}{a.shape}:" + hashlib.sha256(a.tobytes()).hexdigest()[:16]


@pytest.mark.slow
def test_real_readers_bit_identical_after_refactor(real_data_root):
    from medfm.data.vqa_rad import read_image as vqa_read_image

    got = {f"chase/01L/{k}": _h(v) for k, v in seg.load_chase("01L", real_data_root).items()}
    case = "TCGA_CS_4942_19970222"
    _, image, mask = seg.lgg_slices(case, real_data_root)[0]
    im, mk = seg.load_lgg_slice(image, mask)
    got[f"lgg/{image.name}"], got[f"lgg/{mask.name}"] = _h(im), _h(mk)
    got[f"lggpat/{case}"] = _h(seg.load_lgg_patient(case, real_data_root)["image"])
    hip = seg.load_hippocampus("hippocampus_001", real_data_root)
    got["hip/hippocampus_001"] = _h(hip["image"]) + _h(hip["label"])
    got["vqa/synpic100132.jpg"] = _h(vqa_read_image(real_data_root / "vqa_rad" / "images" / "synpic100132.jpg"))
    assert got == REAL_HASHES
