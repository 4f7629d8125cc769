"""A suite's data loading for one image folder (:func:`medfm.evaluation.suite_data.prepare_dataset`) lists the folder
once and decodes each image once.

Was: the folder was listed for its classes (:func:`medfm.evaluation.suite_data.classes_on_disk`), then for each split
loaded (the scored split; again when a grey folder met an RGB encoder, the ``as_rgb`` reload, which decoded every
image of the scored split a second time; the train and val splits of the linear and knn protocols): up to 5 listings,
each printing the folder's "skipped entries" warning again.
"""
import warnings

import numpy as np
import pytest
from PIL import Image

import medfm.data.imagefolder as imagefolder
from medfm.data.imagefolder import ImageFolderDataset
from medfm.evaluation.evaluate import ChannelMismatchError
from medfm.evaluation.suite_data import DatasetSkipped
from medfm.evaluation.suite_spec import DatasetSpec
from tests.helpers.stand_in_checkpoint import prepare_with_stand_in

#: the suites run here: (protocol, the encoder's channels, linear_c)
SUITES = [("as-is", 1, None), ("as-is", 3, None), ("linear", 3, "val"), ("linear", 1, None), ("knn", 3, None)]


def _folder(root, colours=()):
    """An image folder at ``root``: classes a, b of 10 random 10 x 10 grey PNGs each (``a/0.png`` first), the files
    named in ``colours`` RGB instead, and ``a/notes.txt``, an entry the reader skips with a warning."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            shape = (10, 10, 3) if f"{cls}/{i}.png" in colours else (10, 10)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "a" / "notes.txt").write_text("not an image")
    return root


def _prepare(root, protocol, in_chans, linear_c=None, monkeypatch=None):
    """:func:`prepare_dataset` of a one-dataset suite over ``root`` with a stand-in checkpoint whose encoder takes
    ``in_chans`` channels at 8 px (the images are resized); returns ``(result or error, warning messages)``."""
    options = {"linear_c": linear_c} if linear_c else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = prepare_with_stand_in(monkeypatch, DatasetSpec(folder=str(root)), protocol, in_chans, 8, **options)
        except (DatasetSkipped, ChannelMismatchError) as err:
            out = err
    return out, [str(w.message) for w in caught]


@pytest.mark.parametrize("protocol,in_chans,linear_c", SUITES)
def test_a_suite_lists_an_image_folder_once(tmp_path, monkeypatch, protocol, in_chans, linear_c):
    listed = []
    scan = imagefolder.scan_image_folder
    monkeypatch.setattr(imagefolder, "scan_image_folder", lambda root: listed.append(root) or scan(root))
    _, messages = _prepare(_folder(tmp_path / "f"), protocol, in_chans, linear_c, monkeypatch)
    assert listed == [tmp_path / "f"]  # was 2 to 5 listings
    assert len([m for m in messages if "skipped 1 entry of its class folders (e.g. a/notes.txt)" in m]) == 1


def test_a_grey_folder_for_an_rgb_encoder_is_decoded_once(tmp_path, monkeypatch):
    decoded = []
    read = imagefolder.read_image
    monkeypatch.setattr(imagefolder, "read_image", lambda path, *a, **k: decoded.append(path) or read(path, *a, **k))
    out, _ = _prepare(_folder(tmp_path / "f"), "linear", 3, "val", monkeypatch)
    assert out["ds"].n_channels == 3
    assert len(decoded) == len(set(decoded)) == 20  # test, train and val: each image once (the test split was twice)


def _old_channels(root, protocol, in_chans):
    """The old code's choice for a folder: ``in_chans`` of its splits' loads (3: ``as_rgb``, else None), or the
    error type, from its scored split loaded as stored (test, the suite's default ``split_rule``)."""
    stored = ImageFolderDataset(str(root), split="test", size=8, split_rule=DatasetSpec(folder=str(root)).split_rule)
    if stored.n_channels == in_chans:
        return None
    if protocol == "as-is":
        return ChannelMismatchError
    return DatasetSkipped if stored.n_channels == 3 else 3


@pytest.mark.parametrize("colours", [(), ("b/3.png",), ("a/8.png",), ("a/0.png", "a/8.png", "b/3.png")],
                         ids=["grey", "grey first, one RGB", "RGB first in the scored split", "RGB first"])
@pytest.mark.parametrize("protocol,in_chans,linear_c", SUITES)
def test_the_loaded_splits_are_those_of_the_old_loading(tmp_path, monkeypatch, colours, protocol, in_chans, linear_c):
    """Guard: the images, labels, files and md5 of the scored split (or the error) are the old code's, grey and RGB
    images mixed (a grey folder's RGB image is converted to grey when loaded grey, so the RGB load is not a grey
    load's channels repeated); the fitting splits are loaded with the scored split's channels (the old code loaded
    them by their own first image: test_the_fitting_splits_take_the_scored_splits_channels)."""
    root = _folder(tmp_path / "f", colours)
    out, _ = _prepare(root, protocol, in_chans, linear_c, monkeypatch)
    old = _old_channels(root, protocol, in_chans)
    if old in (ChannelMismatchError, DatasetSkipped):
        assert type(out) is old
        return
    rule = DatasetSpec(folder=str(root)).split_rule
    for key, split in (("ds", "test"), ("train", "train"), ("val", "val")):
        if out[key] is None:
            continue
        chans = old if key == "ds" else out["ds"].n_channels
        was = ImageFolderDataset(str(root), split=split, size=8, in_chans=chans, name=root.name, split_rule=rule)
        assert np.array_equal(out[key].images, was.images) and out[key].images.dtype == was.images.dtype
        assert (out[key].files, out[key].md5, out[key].n_channels) == (was.files, was.md5, was.n_channels)
        assert np.array_equal(out[key].labels, was.labels) and out[key].label_names == was.label_names


@pytest.mark.parametrize("colours,in_chans", [(("a/8.png",), 3), (("a/0.png", "a/8.png"), 3), (("a/0.png",), 1)],
                         ids=["RGB test, grey train and val", "RGB test and train, grey val", "grey test, RGB train"])
def test_the_fitting_splits_take_the_scored_splits_channels(tmp_path, monkeypatch, colours, in_chans):
    """Was: each split's channels were its first image's: a linear probe for an RGB encoder was fitted on grey
    train images (1 channel) and scored on RGB test images; a grey encoder's probe got RGB train images."""
    out, _ = _prepare(_folder(tmp_path / "f", colours), "linear", in_chans, "val", monkeypatch)
    assert [out[key].n_channels for key in ("ds", "train", "val")] == [in_chans] * 3


def test_a_corrupt_grey_folder_for_an_rgb_encoder_is_still_skipped_for_its_file(tmp_path, monkeypatch):
    """Guard: a grey folder loaded as RGB at once still fails on its unreadable image, with the same reason."""
    root = _folder(tmp_path / "f")
    for split in ("test", "train"):
        bad = root / ImageFolderDataset(str(root), split=split).files[1]
        bad.write_bytes(b"not a png")
    out, _ = _prepare(root, "linear", 3, None, monkeypatch)
    assert isinstance(out, DatasetSkipped) and str(out).startswith(f"cannot read image {root / 'a'}")


def test_a_listing_of_another_folder_is_refused(tmp_path):
    listing = imagefolder.list_image_folder(_folder(tmp_path / "f"))
    _folder(tmp_path / "g")
    with pytest.raises(ValueError, match=r"^the listing given is of the image folder .*/f, not of .*/g$"):
        imagefolder.folder_split(tmp_path / "g", listing=listing)


def test_an_empty_split_is_skipped_for_being_empty(tmp_path, monkeypatch):
    """Was skipped with "images in <folder> have different sizes []; pass size= to resize them" (a split that the
    fractions give no image: one image per class, all in train)."""
    root = tmp_path / "f"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / cls / "0.png")
    out, _ = _prepare(root, "knn", 1, None, monkeypatch)
    assert isinstance(out, DatasetSkipped) and str(out) == (f"the test split of image folder {root} holds no images: "
                                                            "the split fractions (0.7, 0.1, 0.2) give it no image of "
                                                            "any class")
