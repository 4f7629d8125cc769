"""MedMNIST npz loading: samples, fast batch path, metadata, md5, downloads and every error."""
from __future__ import annotations

import hashlib
import io
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import medfm.data.medmnist as mm
import medfm.data.medmnist_info as mi
from medfm.data import (
    MEDMNIST_FLAGS,
    ChecksumError,
    CorruptFileError,
    DataFileMissingError,
    DataShapeError,
    DownloadError,
    MedMNISTDataset,
    UnknownDatasetError,
    UnknownSplitError,
    UnsupportedSizeError,
    dataset_info,
    label_fraction_indices,
)
from medfm.data.medmnist_info import INFO

FLAGS_2D = ["pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist", "breastmnist",
            "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist"]
FLAGS_3D = ["organmnist3d", "nodulemnist3d", "adrenalmnist3d", "fracturemnist3d", "vesselmnist3d", "synapsemnist3d"]


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- metadata

def test_flags_cover_medmnist_v2():
    assert list(MEDMNIST_FLAGS) == FLAGS_2D + FLAGS_3D
    assert mm.MEDMNIST_3D_FLAGS == tuple(FLAGS_3D)


_NO_INFO_PY = ("import importlib.util\nfind = importlib.util.find_spec\n"  # the package's info.py cannot be located
               "importlib.util.find_spec = lambda name, *a: None if name == 'medmnist' else find(name, *a)\n")


@pytest.mark.parametrize("before, loaded, same_dict", [
    ("", [], False),  # medfm first: the package's info.py run on its own, nothing of the package imported
    ("import medmnist\n", ["medmnist", "medmnist.info", "torch"], True),  # the package first: its INFO itself
    (_NO_INFO_PY, ["medmnist", "medmnist.info", "torch"], True),  # no info.py where expected: import medmnist.info
])
def test_medfm_info_is_the_medmnist_package_table_and_leaves_the_package_alone(before, loaded, same_dict):
    """medfm's INFO is the medmnist package's table (every flag and md5), read without running the
    package's __init__ (torch, pandas, scikit-learn: seconds) unless it already ran. The table used to be
    registered as ``medmnist.info``, so that a later ``import medmnist`` had no ``info`` attribute."""
    import subprocess
    import sys

    script = (before + "import sys\nimport medfm.data.medmnist_info as mi\n"
              "print(sorted(m for m in ('torch', 'medmnist', 'medmnist.info') if m in sys.modules))\n"
              "import medmnist\n"
              "info = medmnist.info\n"  # an AttributeError with the old sys.modules registration
              "print(mi.INFO == info.INFO, mi.INFO is info.INFO, sys.modules['medmnist.info'] is info)\n"
              "md5s = {f'{f}.npz' if k == 'MD5' else f'{f}_{k[4:]}.npz': v for f, i in info.INFO.items()\n"
              "        for k, v in i.items() if k.startswith('MD5')}\n"
              "print(mi.MEDMNIST_FLAGS == tuple(info.INFO), mi.npz_md5s() == md5s, len(md5s))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.stdout.splitlines() == [str(loaded), f"True {same_dict} True", "True True 60"], out.stdout + out.stderr


@pytest.mark.parametrize("flag", FLAGS_2D + FLAGS_3D)
def test_dataset_info_from_medmnist_info(flag):
    info = dataset_info(flag)
    assert info["label_names"] == [INFO[flag]["label"][str(i)] for i in range(len(INFO[flag]["label"]))]
    assert info["num_classes"] == len(info["label_names"])
    assert info["task"] == INFO[flag]["task"] and info["license"] == INFO[flag]["license"]
    assert info["is_3d"] == (flag in FLAGS_3D)
    assert info["sizes"] == ((28, 64) if flag in FLAGS_3D else (28, 64, 128, 224))


def test_dataset_info_examples():
    chest = dataset_info("chestmnist")
    assert chest["task"] == "multi-label, binary-class" and chest["num_classes"] == 14
    assert chest["label_names"][0] == "atelectasis" and chest["label_names"][13] == "hernia"
    assert dataset_info("bloodmnist")["n_channels"] == 3
    assert dataset_info("retinamnist")["task"] == "ordinal-regression"
    assert dataset_info("pneumoniamnist")["n_samples"] == {"train": 4708, "val": 524, "test": 624}


def test_file_names_follow_medmnist(tmp_path):
    assert mm.medmnist_path("pneumoniamnist", 28, tmp_path) == tmp_path / "medmnist" / "pneumoniamnist.npz"
    assert mm.medmnist_path("pathmnist", 224, tmp_path) == tmp_path / "medmnist" / "pathmnist_224.npz"
    assert mm.medmnist_path("vesselmnist3d", 64, tmp_path) == tmp_path / "medmnist" / "vesselmnist3d_64.npz"


# ---------------------------------------------------------------- samples and batches

CASES = [  # flag, size, sample image shape, label shape, label dtype
    ("pneumoniamnist", 28, (1, 28, 28), (), torch.int64),
    ("bloodmnist", 28, (3, 28, 28), (), torch.int64),
    ("retinamnist", 28, (3, 28, 28), (), torch.int64),
    ("chestmnist", 28, (1, 28, 28), (14,), torch.float32),
    ("adrenalmnist3d", 28, (1, 28, 28, 28), (), torch.int64),
    ("breastmnist", 64, (1, 64, 64), (), torch.int64),
]


@pytest.mark.parametrize("flag,size,img_shape,label_shape,label_dtype", CASES)
def test_samples_and_batches(write_medmnist, medmnist_arrays, flag, size, img_shape, label_shape, label_dtype):
    root = write_medmnist(flag, size)
    ds = MedMNISTDataset(flag, "train", size=size, data_root=root)
    arrays = medmnist_arrays(flag, size)
    assert len(ds) == 6 and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.images, arrays["train_images"])
    np.testing.assert_array_equal(ds.labels, arrays["train_labels"])
    assert ds.n_channels == img_shape[0] and ds.num_classes == len(ds.label_names)
    assert ds.task == INFO[flag]["task"] and ds.is_3d == (len(img_shape) == 4)

    s = ds[2]
    assert s["image"].shape == img_shape and s["image"].dtype == torch.float32
    assert s["label"].shape == label_shape and s["label"].dtype == label_dtype
    assert float(s["image"].min()) >= 0.0 and float(s["image"].max()) <= 1.0
    # channel-first float32 equals the stored uint8 / 255 (RGB stored channel-last)
    raw = arrays["train_images"][2]
    ref = np.moveaxis(raw, -1, 0) if raw.ndim == 3 and raw.shape[-1] == 3 else raw[None]
    np.testing.assert_array_equal(s["image"].numpy(), ref.astype(np.float32) / np.float32(255))
    expected_label = arrays["train_labels"][2] if label_shape else arrays["train_labels"][2, 0]
    np.testing.assert_array_equal(s["label"].numpy(), expected_label)

    idx = torch.tensor([4, 0, 2, 2, -1])
    batch = ds.get_batch(idx)
    assert batch["image"].shape == (5, *img_shape) and batch["label"].shape == (5, *label_shape)
    assert batch["image"].is_contiguous()
    stacked_img = torch.stack([ds[int(i)]["image"] for i in idx])
    stacked_lbl = torch.stack([ds[int(i)]["label"] for i in idx])
    assert torch.equal(batch["image"], stacked_img) and torch.equal(batch["label"], stacked_lbl)
    assert batch["image"].min() == 0.0 and batch["image"].max() == 1.0  # full uint8 range maps to [0, 1]
    assert torch.equal(ds.get_batch([4, 0])["image"], batch["image"][:2])  # list input


def test_splits_are_read_separately(write_medmnist):
    root = write_medmnist("pneumoniamnist")
    assert [len(MedMNISTDataset("pneumoniamnist", s, data_root=root)) for s in ("train", "val", "test")] == [6, 3, 4]


@pytest.mark.parametrize("flag,shape", [("pneumoniamnist", (3, 28, 28)), ("adrenalmnist3d", (3, 28, 28, 28)),
                                        ("bloodmnist", (3, 28, 28))])
def test_as_rgb(write_medmnist, flag, shape):
    root = write_medmnist(flag)
    ds = MedMNISTDataset(flag, data_root=root, as_rgb=True)
    gray = MedMNISTDataset(flag, data_root=root)
    assert ds.n_channels == 3 and ds[1]["image"].shape == shape
    batch = ds.get_batch(torch.arange(3))["image"]
    assert batch.shape == (3, *shape) and batch.is_contiguous()
    for c in range(3):  # grayscale repeated; RGB unchanged
        ref = gray.get_batch(torch.arange(3))["image"]
        assert torch.equal(batch[:, c], ref[:, c if ref.shape[1] == 3 else 0])


def test_get_batch_rejects_bad_indices(write_medmnist):
    ds = MedMNISTDataset("pneumoniamnist", data_root=write_medmnist("pneumoniamnist"))
    with pytest.raises(ValueError, match="1-D integer"):
        ds.get_batch(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="1-D integer"):
        ds.get_batch(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(IndexError):
        ds.get_batch(torch.tensor([0, 6]))


def test_dataloader_collates_dict_samples(write_medmnist):
    ds = MedMNISTDataset("chestmnist", data_root=write_medmnist("chestmnist"))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False)))
    ref = ds.get_batch(torch.arange(4))
    assert torch.equal(batch["image"], ref["image"]) and torch.equal(batch["label"], ref["label"])


# ---------------------------------------------------------------- md5

def test_md5_verified_and_cached(write_medmnist, monkeypatch):
    root = write_medmnist("pneumoniamnist")
    ds = MedMNISTDataset("pneumoniamnist", data_root=root)
    assert ds.md5 == hashlib.md5(ds.path.read_bytes()).hexdigest()

    def no_hashing(*a, **k):
        raise AssertionError("md5 recomputed")

    monkeypatch.setattr(mi, "io_file_md5", no_hashing)
    MedMNISTDataset("pneumoniamnist", "val", data_root=root)  # cached: no re-hash
    monkeypatch.undo()  # restores the hashing function and INFO's md5
    write_medmnist("pneumoniamnist")  # same bytes rewritten: new mtime -> hashed again
    os.utime(ds.path, ns=(1, 1))
    monkeypatch.setattr(mi, "io_file_md5", no_hashing)
    with pytest.raises(AssertionError, match="recomputed"):
        MedMNISTDataset("pneumoniamnist", data_root=root)


def test_md5_mismatch(write_medmnist, monkeypatch):
    root = write_medmnist("breastmnist")
    monkeypatch.setitem(INFO["breastmnist"], "MD5", "0" * 32)
    with pytest.raises(ChecksumError) as e:
        MedMNISTDataset("breastmnist", data_root=root)
    msg = _one_line(e)
    assert "breastmnist.npz" in msg and "0" * 32 in msg and isinstance(e.value, ValueError)
    assert len(MedMNISTDataset("breastmnist", data_root=root, verify=False)) == 6


# ---------------------------------------------------------------- errors

def test_unknown_flag_suggests_close_match():
    with pytest.raises(UnknownDatasetError) as e:
        MedMNISTDataset("pneumonimnist")
    assert "did you mean 'pneumoniamnist'" in _one_line(e) and isinstance(e.value, ValueError)
    with pytest.raises(UnknownDatasetError, match="did you mean 'pneumoniamnist'"):
        dataset_info("PneumoniaMNIST")


def test_unknown_split_and_unsupported_size(write_medmnist):
    root = write_medmnist("adrenalmnist3d")
    with pytest.raises(UnknownSplitError, match="'validation'.*train, val, test"):
        MedMNISTDataset("adrenalmnist3d", "validation", data_root=root)
    with pytest.raises(UnsupportedSizeError, match=r"size 128.*\[28, 64\]"):
        MedMNISTDataset("adrenalmnist3d", size=128, data_root=root)
    with pytest.raises(UnsupportedSizeError):
        MedMNISTDataset("pathmnist", size=32, data_root=root)


def test_missing_file_names_path_and_remedy(tmp_path):
    with pytest.raises(DataFileMissingError) as e:
        MedMNISTDataset("dermamnist", size=64, data_root=tmp_path)
    msg = _one_line(e)
    expected = tmp_path / "medmnist" / "dermamnist_64.npz"
    assert str(expected) in msg and "'dermamnist'" in msg and "download=True" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_truncated_npz(write_medmnist, monkeypatch):
    root = write_medmnist("pneumoniamnist")
    path = root / "medmnist" / "pneumoniamnist.npz"
    write_medmnist("pneumoniamnist", raw=path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptFileError) as e:
        MedMNISTDataset("pneumoniamnist", data_root=root)  # md5 of the truncated file patched in
    assert str(path) in _one_line(e) and isinstance(e.value, ValueError)
    monkeypatch.setitem(INFO["pneumoniamnist"], "MD5", "1" * 32)  # the intact file's md5
    with pytest.raises(ChecksumError):  # so with verify=True the md5 check catches it first
        MedMNISTDataset("pneumoniamnist", data_root=root)


@pytest.mark.parametrize("raw", [b"not an npz at all", b"PK\x03\x04garbage" * 10])
def test_garbage_file_is_corrupt(write_medmnist, raw):
    root = write_medmnist("pneumoniamnist", raw=raw)
    with pytest.raises(CorruptFileError, match="pneumoniamnist.npz"):
        MedMNISTDataset("pneumoniamnist", data_root=root, verify=False)


def test_pickled_arrays_are_never_loaded(write_medmnist, medmnist_arrays):
    arrays = medmnist_arrays("pneumoniamnist")
    arrays["train_labels"] = np.array([{"x": 1}] * 6, dtype=object)
    root = write_medmnist("pneumoniamnist", arrays=arrays)
    with pytest.raises(CorruptFileError, match="pickled"):
        MedMNISTDataset("pneumoniamnist", data_root=root)


def _modified(medmnist_arrays, flag, key, fn):
    arrays = medmnist_arrays(flag)
    arrays[key] = fn(arrays[key])
    return arrays


BAD_ARRAYS = [  # flag, key, change, expected message fragment
    ("pneumoniamnist", "train_images", lambda a: a[:, :27, :27], "expected (N, 28, 28) uint8"),
    ("pneumoniamnist", "train_images", lambda a: a.astype(np.float32), "float32"),
    ("bloodmnist", "train_images", lambda a: a[..., 0], "expected (N, 28, 28, 3) uint8"),
    ("adrenalmnist3d", "train_images", lambda a: a[:, 0], "expected (N, 28, 28, 28) uint8"),
    ("pneumoniamnist", "train_labels", lambda a: a[:-1], "expected (6, 1)"),
    ("chestmnist", "train_labels", lambda a: a[:, :1], "expected (6, 14)"),
    ("pneumoniamnist", "train_labels", lambda a: a + 2, "expected [0, 1]"),
    ("chestmnist", "train_labels", lambda a: a * 3, "expected [0, 1]"),
    ("pneumoniamnist", "train_labels", lambda a: a.astype(np.float32), "expected integers"),
]


@pytest.mark.parametrize("flag,key,change,fragment", BAD_ARRAYS)
def test_wrong_arrays(write_medmnist, medmnist_arrays, flag, key, change, fragment):
    root = write_medmnist(flag, arrays=_modified(medmnist_arrays, flag, key, change))
    with pytest.raises(DataShapeError) as e:
        MedMNISTDataset(flag, data_root=root)
    msg = _one_line(e)
    assert fragment in msg and key in msg and f"{flag}.npz" in msg


def test_missing_key(write_medmnist, medmnist_arrays):
    arrays = medmnist_arrays("pneumoniamnist")
    del arrays["val_labels"]
    root = write_medmnist("pneumoniamnist", arrays=arrays)
    assert len(MedMNISTDataset("pneumoniamnist", "train", data_root=root)) == 6
    with pytest.raises(DataShapeError, match=r"lacks array\(s\) \['val_labels'\]"):
        MedMNISTDataset("pneumoniamnist", "val", data_root=root)


# ---------------------------------------------------------------- download (never touches the network)

def test_download_offline_fails_fast_naming_file_and_folder(tmp_path, monkeypatch):
    def offline(url, timeout):
        assert timeout <= 30 and url == INFO["octmnist"]["url_64"]
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(mm.urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError) as e:
        MedMNISTDataset("octmnist", size=64, data_root=tmp_path, download=True)
    msg = _one_line(e)
    assert "octmnist_64.npz" in msg and str(tmp_path / "medmnist") in msg and "name resolution" in msg
    assert list((tmp_path / "medmnist").iterdir()) == []  # no partial file left


def test_download_writes_verified_file(tmp_path, monkeypatch, medmnist_arrays):
    buf = io.BytesIO()
    np.savez_compressed(buf, **medmnist_arrays("bloodmnist"))
    payload = buf.getvalue()
    monkeypatch.setattr(mm.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    monkeypatch.setitem(INFO["bloodmnist"], "MD5", hashlib.md5(payload).hexdigest())
    ds = MedMNISTDataset("bloodmnist", "test", data_root=tmp_path, download=True)
    assert len(ds) == 4 and ds.path.read_bytes() == payload
    assert sorted(p.name for p in (tmp_path / "medmnist").iterdir()) == ["bloodmnist.npz"]

    monkeypatch.setitem(INFO["bloodmnist"], "MD5_64", "f" * 32)  # corrupted transfer
    with pytest.raises(ChecksumError, match="bloodmnist_64.npz"):
        MedMNISTDataset("bloodmnist", size=64, data_root=tmp_path, download=True)
    assert sorted(p.name for p in (tmp_path / "medmnist").iterdir()) == ["bloodmnist.npz"]


# ---------------------------------------------------------------- label fractions

def test_label_fraction_plain():
    a = label_fraction_indices(1000, 0.1, seed=3)
    assert a.dtype == np.int64 and len(a) == 100 and len(np.unique(a)) == 100
    assert np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 1000
    assert np.array_equal(a, label_fraction_indices(1000, 0.1, seed=3))
    assert not np.array_equal(a, label_fraction_indices(1000, 0.1, seed=4))
    assert np.array_equal(label_fraction_indices(7, 1.0), np.arange(7))
    assert len(label_fraction_indices(10, 0.001)) == 1  # at least one sample


def test_label_fraction_stratified_and_nested():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10, dtype=np.uint8)[:, None]  # (N, 1) as stored
    a = label_fraction_indices(labels, 0.1, seed=0)
    counts = np.bincount(labels[a, 0], minlength=3)
    assert counts.tolist() == [90, 9, 1]
    small = label_fraction_indices(labels, 0.01, seed=0)
    assert np.bincount(labels[small, 0], minlength=3).tolist() == [9, 1, 1]  # every class kept
    assert set(small.tolist()) <= set(a.tolist())  # same seed: 1% is inside 10%


def test_label_fraction_multi_label_keeps_every_label_and_is_nested():
    """ChestMNIST-like (N, L) labels: the rare label (20 of 5,000) survives a 1 % draw (a plain
    random draw of 50 misses it with probability 0.996^50 = 0.82), every label keeps about its
    share, and 1 % stays inside 10 %."""
    rng = np.random.default_rng(0)
    n = 5000
    labels = np.zeros((n, 3), dtype=np.uint8)
    labels[:, 0] = rng.random(n) < 0.3
    labels[:, 1] = rng.random(n) < 0.1
    labels[rng.choice(n, 20, replace=False), 2] = 1  # rare, co-occurring with the others at random
    for frac in (0.01, 0.1):
        idx = label_fraction_indices(torch.from_numpy(labels), frac, seed=1)
        got = labels[idx].sum(axis=0)
        want = frac * labels.sum(axis=0)
        assert abs(len(idx) - frac * n) <= 2, (frac, len(idx))
        assert np.all(np.abs(got - want) <= np.maximum(2, 0.15 * want)), (frac, got, want)
        assert got[2] >= 1
    small, large = (label_fraction_indices(labels, f, seed=1) for f in (0.01, 0.1))
    assert set(small.tolist()) <= set(large.tolist())
    with pytest.raises(ValueError, match="multi-label labels must be 0/1"):
        label_fraction_indices(np.full((4, 2), 0.5), 0.5)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_label_fraction_rejects_bad_fraction(bad):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        label_fraction_indices(10, bad)
    with pytest.raises(ValueError, match="empty"):
        label_fraction_indices(0, 0.5)


# ---------------------------------------------------------------- real files (fast: 28 px)

def _shared_medmnist() -> Path:
    env = os.environ.get("MEDFM_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    return root


REAL = [("pneumoniamnist", (4708, 524, 624), ["normal", "pneumonia"]),
        ("breastmnist", (546, 78, 156), ["malignant", "normal, benign"]),
        ("adrenalmnist3d", (1188, 98, 298), ["normal", "hyperplasia"]),
        ("vesselmnist3d", (1335, 191, 382), ["vessel", "aneurysm"])]


@pytest.mark.parametrize("flag,counts,names", REAL)
def test_real_medmnist_file(flag, counts, names):
    root = _shared_medmnist()
    if not (root / "medmnist" / f"{flag}.npz").is_file():
        pytest.skip(f"real {flag}.npz not found under {root}/medmnist (set MEDFM_DATA)")
    splits = [MedMNISTDataset(flag, s, data_root=root, verify=True) for s in ("train", "val", "test")]
    assert tuple(len(d) for d in splits) == counts
    assert splits[0].label_names == names and splits[0].license == "CC BY 4.0"
    b = splits[2].get_batch(torch.arange(8))
    assert b["image"].dtype == torch.float32 and 0.0 <= float(b["image"].min()) <= float(b["image"].max()) <= 1.0
    assert set(splits[0].labels.ravel().tolist()) == {0, 1}
