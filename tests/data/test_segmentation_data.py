"""Segmentation readers on synthetic files in the real formats, plus a real-data check (slow)."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from medfm.data import segmentation as seg
from medfm.data.errors import CorruptFileError, DataFileMissingError, UnknownSplitError
from tests.helpers.segmentation_data import write_chase, write_hippocampus, write_lgg


def test_chase_split_keeps_children_together():
    train, test = seg.chase_ids("train"), seg.chase_ids("test")
    assert len(train) == 20 and len(test) == 8
    assert {i[:2] for i in train}.isdisjoint({i[:2] for i in test})
    assert test[0] == "11L" and train[-1] == "10R"
    with pytest.raises(UnknownSplitError):
        seg.chase_ids("val")


def test_load_chase(tmp_path):
    root = write_chase(tmp_path)
    d = seg.load_chase("01L", root)
    assert d["image"].shape == (36, 40, 3) and d["image"].dtype == np.uint8
    assert d["mask"].dtype == bool and d["mask"].sum() == 4 * 40 and d["mask2"].sum() == 6 * 40
    with pytest.raises(DataFileMissingError, match="Image_02L.jpg"):
        seg.load_chase("02L", root)
    with pytest.raises(ValueError, match="look like"):
        seg.load_chase("1L", root)
    (root / "chase_db1" / "CHASEDB1" / "Image_11L_1stHO.png").write_bytes(b"not a png")
    with pytest.raises(CorruptFileError):
        seg.load_chase("11L", root)


def test_hippocampus_split_and_load(tmp_path):
    root = write_hippocampus(tmp_path)
    ids = seg.hippocampus_cases(data_root=root)
    test = seg.hippocampus_cases("test", root)
    train = seg.hippocampus_cases("train", root)
    assert test == [ids[4], ids[9]] and len(train) == 8 and not set(train) & set(test)
    case = seg.load_hippocampus(ids[1], root)
    assert case["image"].shape == case["label"].shape == (11, 12, 9)
    assert case["image"].dtype == np.float32 and 0 <= case["image"].min() and case["image"].max() <= 1
    assert set(np.unique(case["label"])) == {0, 1, 2} and case["affine"].shape == (4, 4)
    (root / "msd_task04_hippocampus" / "imagesTr" / f"{ids[0]}.nii.gz").write_bytes(b"garbage")
    with pytest.raises(CorruptFileError):
        seg.load_hippocampus(ids[0], root)
    with pytest.raises(DataFileMissingError):
        seg.hippocampus_cases(data_root=tmp_path / "nowhere")


def test_lgg_patients_slices_and_split(tmp_path):
    root = write_lgg(tmp_path)
    pats = seg.lgg_patients(data_root=root)
    assert seg.lgg_patients("test", root) == [pats[2]] and seg.lgg_patients("train", root) == pats[:2]
    sl = seg.lgg_slices(pats[0], root)
    assert [n for n, _, _ in sl] == [1, 2, 10]  # numeric, not lexical, order
    d = seg.load_lgg_patient(pats[0], root)
    assert d["image"].shape == (3, 16, 16, 3) and d["mask"].shape == (3, 16, 16) and d["mask"].dtype == bool
    assert d["mask"][2].sum() == 4 * 2
    os.remove(sl[0][2])
    with pytest.raises(DataFileMissingError, match="mask"):
        seg.lgg_slices(pats[0], root)


def test_arrays_pad_and_batch():
    a = np.full((1, 5, 6), 255, np.uint8)
    b = np.full((1, 7, 4), 255, np.uint8)
    arr = seg.SegmentationArrays([a, b], [np.ones((5, 6), np.uint8), np.full((7, 4), 2, np.uint8)], repeats=3)
    assert len(arr) == 6
    batch = arr.get_batch(torch.tensor([1, 2]))  # index 2 wraps to item 0
    assert batch["image"].shape == (2, 1, 7, 6) and batch["mask"].dtype == torch.int64
    assert batch["valid"].tolist() == [[7, 4], [5, 6]]
    assert batch["image"][0, 0, :, 4:].sum() == 0 and batch["image"][1, 0, :5, :6].min() == 1.0
    assert batch["mask"][0, :, :4].unique().tolist() == [2]


def test_channel_zscore_hand_computed_and_padding_untouched():
    x = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]], [[1.0, 1.0], [1.0, 1.0]]]])  # (1, 2, 2, 2)
    z = seg.channel_zscore(x)
    std = (20 / 4) ** 0.5  # population std of 0, 2, 4, 6 around 3
    assert torch.allclose(z[0, 0], (x[0, 0] - 3) / std)
    assert torch.equal(z[0, 1], torch.zeros(2, 2))  # a constant channel becomes 0, not NaN
    with pytest.raises(ValueError, match="expects"):
        seg.channel_zscore(torch.zeros(4, 4))
    a = np.arange(30, dtype=np.uint8).reshape(1, 5, 6)
    b = np.full((1, 7, 4), 200, np.uint8)
    arr = seg.SegmentationArrays([a, b], [np.zeros((5, 6), np.uint8), np.zeros((7, 4), np.uint8)])
    arr.standardize_channels()
    first = arr.images[0, 0, :5, :6]
    assert abs(float(first.mean())) < 1e-6 and abs(float(first.std(unbiased=False)) - 1) < 1e-5
    assert arr.images[0, 0, 5:, :].abs().sum() == 0 and arr.images[1, 0, :, 4:].abs().sum() == 0  # padding stays 0
    assert torch.equal(arr.images[1, 0, :7, :4], torch.zeros(7, 4))


def test_slice_stack_and_percentile():
    vol = np.arange(4)[:, None, None] * np.ones((4, 2, 3))
    st = seg.slice_stack(vol, 1, axis=0)
    assert st.shape == (4, 3, 2, 3)
    assert st[0, :, 0, 0].tolist() == [0, 0, 1] and st[3, :, 0, 0].tolist() == [2, 3, 3]
    assert seg.slice_stack(vol, 1, axis=2).shape == (3, 3, 4, 2)
    u = seg.percentile_unit(np.linspace(0, 100, 1001), 1, 99)
    assert u.min() == 0 and u.max() == 1 and u.dtype == np.float32


@pytest.mark.slow
def test_real_data_counts_and_splits():
    root = Path(os.environ.get("MEDFM_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data")
    if not (root / "chase_db1").is_dir() or not (root / "lgg_tcga_flair_seg_3ch").is_dir():
        pytest.skip(f"real segmentation data not found under {root}")
    d = seg.load_chase("14R", root)
    assert d["image"].shape == (960, 999, 3)
    assert len(seg.hippocampus_cases(data_root=root)) == 260
    assert len(seg.hippocampus_cases("test", root)) == 52
    pats = seg.lgg_patients(data_root=root)
    assert len(pats) == 23 and len(seg.lgg_patients("test", root)) == 7
    assert sum(len(seg.lgg_slices(p, root)) for p in pats) == 621
    case = seg.load_hippocampus(seg.hippocampus_cases("test", root)[0], root)
    assert set(np.unique(case["label"])) <= {0, 1, 2}
