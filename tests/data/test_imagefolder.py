"""medfm.data.imagefolder: class folders or labels.csv, splits, resizing, batches, errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from medfm.data.errors import CorruptFileError, DataFileMissingError, DataShapeError, UnknownSplitError
from medfm.data.imagefolder import ImageFolderDataset, folder_classes, stratified_split


def _folder(root, classes=("b_cls", "a_cls"), n=10, size=16, mode="L"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            shape = (size, size) if mode == "L" else (size, size, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / c / f"{i:03d}.png")
    return root


def test_folders_give_sorted_classes_and_exact_pixels(tmp_path):
    root = _folder(tmp_path / "f")
    ds = ImageFolderDataset(root)
    assert ds.label_names == ["a_cls", "b_cls"] == folder_classes(root) and len(ds) == 20
    assert ds.n_channels == 1 and ds.task == "multi-class" and ds.labels.shape == (20, 1)
    first = np.array(Image.open(root / "a_cls" / "000.png"))
    batch = ds.get_batch([0, 19])
    assert batch["image"].shape == (2, 1, 16, 16) and batch["image"].dtype == torch.float32
    assert torch.equal(batch["image"][0, 0], torch.from_numpy(first).float() / 255)
    assert batch["label"].tolist() == [0, 1]
    assert torch.equal(ds[19]["image"], batch["image"][1])
    with pytest.raises(ValueError, match="1-D integer"):
        ds.get_batch(torch.zeros(2, 2, dtype=torch.long))


def test_splits_are_stratified_disjoint_and_seeded(tmp_path):
    root = _folder(tmp_path / "f")
    parts = {s: ImageFolderDataset(root, split=s) for s in ("train", "val", "test")}
    files = [set(p.files) for p in parts.values()]
    assert [len(p) for p in parts.values()] == [14, 2, 4]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert np.bincount(parts["test"].labels[:, 0]).tolist() == [2, 2]
    assert parts["test"].files == ImageFolderDataset(root, split="test").files
    assert parts["test"].files != ImageFolderDataset(root, split="test", split_seed=1).files
    assert len(stratified_split(np.zeros(7), "all")) == 7
    with pytest.raises(UnknownSplitError, match="expected one of"):
        ImageFolderDataset(root, split="validation")


def test_labels_csv_resize_rgb_and_errors(tmp_path):
    root = _folder(tmp_path / "f", mode="RGB")
    (root / "labels.csv").write_text("file,label\na_cls/000.png,x\nb_cls/001.png,y\nb_cls/002.png,y\n")
    ds = ImageFolderDataset(root, size=8)
    assert ds.label_names == ["x", "y"] and len(ds) == 3 and ds.n_channels == 3
    assert ds.get_batch([0])["image"].shape == (1, 3, 8, 8)
    assert ImageFolderDataset(root, size=8, in_chans=1).n_channels == 1
    (root / "labels.csv").write_text("file,label\na_cls/missing.png,x\n")
    with pytest.raises(DataFileMissingError, match="missing.png"):
        ImageFolderDataset(root)
    (root / "labels.csv").write_text("path,class\n")
    with pytest.raises(DataShapeError, match="columns"):
        ImageFolderDataset(root)
    with pytest.raises(DataFileMissingError, match="not found"):
        ImageFolderDataset(tmp_path / "nowhere")
    bad = _folder(tmp_path / "g", classes=("c",), n=1)
    (bad / "c" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CorruptFileError, match="broken.png"):
        ImageFolderDataset(bad)


@pytest.mark.slow
def test_real_mednist_subset(real_data_root):
    ds = ImageFolderDataset("mednist_medical_mnist_subset", split="test", data_root=real_data_root)
    assert ds.label_names == ["AbdomenCT", "BreastMRI", "CXR", "ChestCT", "Hand", "HeadCT"]
    assert len(ds) == 1800 and ds.size == 64 and ds.n_channels == 1


def test_sorted_rule_holds_out_the_corpus_test_images(tmp_path):
    from medfm.data.corpus import mednist_split

    root = _folder(tmp_path / "f", n=13)
    parts = {s: ImageFolderDataset(root, split=s, split_rule="sorted") for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [18, 2, 6]  # per class: int(9.1+.5)=9, int(10.4+.5)=10, 13
    for c in ("a_cls", "b_cls"):
        names = sorted(p.name for p in (root / c).iterdir())
        _, held = mednist_split(names)
        assert sorted(f.split("/")[-1] for f in parts["test"].files if f.startswith(c)) == held
        assert [f.split("/")[-1] for f in parts["train"].files if f.startswith(c)] == names[:9]
    assert parts["test"].files == ImageFolderDataset(root, split="test", split_rule="sorted", split_seed=5).files
    with pytest.raises(ValueError, match="split rule"):
        ImageFolderDataset(root, split="test", split_rule="by-name")
    with pytest.raises(ValueError, match="one key"):
        stratified_split(np.zeros(4), "test", rule="sorted")


@pytest.mark.slow
def test_real_mednist_sorted_split_equals_the_corpus_rule(real_data_root):
    from medfm.data.corpus import mednist_split

    test = ImageFolderDataset("mednist_medical_mnist_subset", split="test", split_rule="sorted", data_root=real_data_root)
    held = set()
    for c in test.label_names:
        names = sorted(p.name for p in (test.root / c).glob("*.jpeg"))
        held |= {f"{c}/{n}" for n in mednist_split(names)[1]}
    assert len(test) == 1800 and set(test.files) == held
