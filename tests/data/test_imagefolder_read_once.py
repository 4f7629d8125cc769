""":class:`ImageFolderDataset` reads each file once: the bytes it hashes are the bytes it decodes.

It read every file twice (``read_image(path)`` to decode, ``path.read_bytes()`` for the md5) and the first one a
third time (``image_mode(path)``, to choose grey or RGB). The pixels, labels, mode and md5 stay those of
:func:`medfm.data.images.read_image` and the same digest.
"""
from __future__ import annotations

import builtins
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medfm.data.errors import CorruptFileError
from medfm.data.imagefolder import ImageFolderDataset
from medfm.data.images import ORIENTATION_TAG, image_mode, read_image
from tests.conftest import write_class_folders


def _count_opens(monkeypatch, root: Path):
    """``{file under root: times opened}`` as the reads happen (PIL opens by ``builtins.open``, pathlib by
    ``io.open``)."""
    opened = {}
    real = builtins.open

    def spy(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and str(file).startswith(str(root)):
            opened[str(file)] = opened.get(str(file), 0) + 1
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    return opened


def test_each_image_file_is_read_once(tmp_path, monkeypatch):
    root = write_class_folders(tmp_path, ["a", "b"], 3, np.random.default_rng(0), size=(6, 5))
    opened = _count_opens(monkeypatch, root)
    ds = ImageFolderDataset(root)
    monkeypatch.undo()
    # was {a/0.png: 3, every other file: 2}
    assert opened == {str(root / f): 1 for f in ds.files} and len(ds.files) == 6


def _expected(root, files, mode, size):
    """What the reader gave when it decoded by :func:`read_image` (and resized as it does), and its digest."""
    md5, arrays = hashlib.md5(), []
    for rel in files:
        arr = read_image(root / rel, mode)
        if arr.shape[:2] != (size, size):
            arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR, reducing_gap=None), np.uint8)
        arrays.append(arr)
        md5.update(rel.encode() + b"\0" + (root / rel).read_bytes())
    return np.stack(arrays), md5.hexdigest()


def _mixed_folder(root: Path) -> Path:
    """Grey PNG, 16-bit PNG, RGB JPEG with EXIF Orientation 6, uncompressed TIFF (mode L) with Orientation 6."""
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (6, 4), dtype=np.uint8)).save(root / "a" / "0_grey.png")
    Image.fromarray(rng.integers(0, 65535, (6, 4), dtype=np.uint16)).save(root / "a" / "1_deep.png")
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    Image.fromarray(rng.integers(0, 256, (6, 4, 3), dtype=np.uint8)).save(root / "b" / "0_rot.jpg", exif=exif)
    Image.fromarray(rng.integers(0, 256, (6, 4), dtype=np.uint8)).save(root / "b" / "1_rot.tif", exif=exif)
    return root


@pytest.mark.parametrize("in_chans, mode", [(None, "L"), (1, "L"), (3, "RGB")])
def test_pixels_labels_and_md5_are_those_of_read_image(tmp_path, in_chans, mode):
    """Guard (passes on the old code too): decoding from the bytes changes nothing, EXIF-rotated TIFFs included."""
    root = _mixed_folder(tmp_path / "f")
    ds = ImageFolderDataset(root, size=8, in_chans=in_chans)
    images, md5 = _expected(root, ds.files, mode, 8)
    assert ds.files == ["a/0_grey.png", "a/1_deep.png", "b/0_rot.jpg", "b/1_rot.tif"]
    assert np.array_equal(ds.images, images) and ds.md5 == md5 and ds.labels.ravel().tolist() == [0, 0, 1, 1]
    assert ds.n_channels == (1 if mode == "L" else 3)


def test_an_rgb_first_image_decides_rgb(tmp_path):
    root = tmp_path / "f"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "a" / "0.png")
    Image.fromarray(np.full((4, 4), 9, np.uint8)).save(root / "a" / "1.png")
    ds = ImageFolderDataset(root)
    assert ds.n_channels == 3 and ds.images.shape == (2, 4, 4, 3) and (ds.images[1] == 9).all()


@pytest.mark.parametrize("content", [b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_a_bad_file_is_refused_as_read_image_refuses_it(tmp_path, content):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(CorruptFileError) as want:
        read_image(path, "L")
    with pytest.raises(CorruptFileError) as got:
        read_image(path, "L", data=content)
    assert str(got.value) == str(want.value)
    with pytest.raises(CorruptFileError) as want:
        image_mode(path)
    with pytest.raises(CorruptFileError) as got:
        image_mode(path, data=content)
    assert str(got.value) == str(want.value)


def test_a_multi_frame_file_is_refused_as_read_image_refuses_it(tmp_path):
    path = tmp_path / "stack.tif"
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (0, 9)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(CorruptFileError) as want:
        read_image(path, "L")
    with pytest.raises(CorruptFileError) as got:
        read_image(path, "L", data=path.read_bytes())
    assert str(got.value) == str(want.value) and "2 frames" in str(got.value)


def test_macos_appledouble_files_are_no_images_and_pass_without_a_warning(tmp_path, recwarn):
    # old: a/._0.png was listed as an image and failed to decode ("cannot read image ...")
    root = write_class_folders(tmp_path, ["a", "b"], 2, np.random.default_rng(0), size=(4, 4))
    (root / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07" + b"\0" * 60)  # the AppleDouble magic number
    ds = ImageFolderDataset(root)
    assert "a/._0.png" not in ds.files and len(ds.files) == 4 and not recwarn.list
