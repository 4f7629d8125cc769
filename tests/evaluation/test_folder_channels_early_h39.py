"""A suite refuses an image folder whose channels the encoder does not take before decoding any image of it
(:func:`medfm.evaluation.suite_data.prepare_dataset`): the channels are those of the scored split's first image, read
from its header (:func:`medfm.data.imagefolder.split_loads_grey`).

Was: the scored split was loaded (every image decoded; 1,800 images of the MedNIST folder) and then refused, with the
same error: an ``as-is`` checkpoint of other channels (ChannelMismatchError), or RGB data for an encoder that does not
take 3 channels under ``linear``/``knn`` (DatasetSkipped).
"""
import numpy as np
import pytest
from PIL import Image

import medfm.data.imagefolder as imagefolder
import medfm.evaluation.suite_data as suite_data
from medfm.data.imagefolder import ImageFolderDataset, folder_split
from medfm.evaluation.evaluate import ChannelMismatchError
from medfm.evaluation.suite_data import DatasetSkipped
from medfm.evaluation.suite_spec import DatasetSpec
from tests.helpers.stand_in_checkpoint import prepare_with_stand_in

#: (folder colour, protocol, the encoder's channels, the refusal's type and words; "{}": the folder's name)
REFUSED = [("grey", "as-is", n, ChannelMismatchError, f"checkpoint ckpt expects {n}-channel images but {{}} has 1 "
            "channel(s)") for n in (2, 3, 4)]
REFUSED += [("rgb", "as-is", n, ChannelMismatchError, f"checkpoint ckpt expects {n}-channel images but {{}} has 3 "
             "channel(s)") for n in (1, 4)]
REFUSED += [("rgb", protocol, n, DatasetSkipped, f"RGB data but the encoder takes {n} channel(s)")
            for protocol in ("linear", "knn") for n in (1, 4)]
#: new, not a rewording: grey data for an encoder of neither 1 nor 3 channels was loaded as RGB and the whole run
#: stopped at feature extraction with the encoder's channel error (the dataset was not skipped)
GREY_NOT_RGB = [("grey", protocol, n, DatasetSkipped, f"grey data but the encoder takes {n} channel(s) (grey images "
                 "are repeated to 3 channels for an RGB encoder only)") for protocol, n in (("linear", 4), ("knn", 2))]
REFUSED += GREY_NOT_RGB
IDS = [f"{colour}-{protocol}-{n}ch" for colour, protocol, n, _, _ in REFUSED]


def _images(root, colour):
    """``root`` with classes x and y of 6 random 12 x 12 PNGs each, grey (``colour`` "grey") or RGB."""
    rng = np.random.default_rng(1)
    shape = (12, 12) if colour == "grey" else (12, 12, 3)
    for cls in ("x", "y"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.fixture
def decoded(monkeypatch):
    """The images decoded (:func:`medfm.data.images.read_image` as the folder reader calls it), in order."""
    paths = []
    read = imagefolder.read_image
    monkeypatch.setattr(imagefolder, "read_image", lambda path, *a, **k: paths.append(path) or read(path, *a, **k))
    return paths


def _run(root, protocol, in_chans, monkeypatch):
    """:func:`prepare_dataset` of ``root`` in a one-dataset suite, scored by a stand-in checkpoint ``ckpt`` whose 2D
    encoder takes ``in_chans`` channels at 8 px; returns its result, or the error it raised."""
    try:
        return prepare_with_stand_in(monkeypatch, DatasetSpec(folder=str(root)), protocol, in_chans, 8)
    except (DatasetSkipped, ChannelMismatchError) as err:
        return err


@pytest.mark.parametrize("colour,protocol,in_chans,error,words", REFUSED, ids=IDS)
def test_a_folder_of_other_channels_is_refused_before_any_image_is_decoded(tmp_path, monkeypatch, decoded, colour,
                                                                           protocol, in_chans, error, words):
    out = _run(_images(tmp_path / colour, colour), protocol, in_chans, monkeypatch)
    assert type(out) is error
    assert decoded == []  # was every image of the scored split


@pytest.mark.parametrize("colour,protocol,in_chans,error,words", REFUSED, ids=IDS)
def test_the_refusal_is_worded_as_before(tmp_path, monkeypatch, colour, protocol, in_chans, error, words):
    """Guard (but for GREY_NOT_RGB, new): the refusal's type and words are those the suite gave once the folder was
    loaded."""
    out = _run(_images(tmp_path / colour, colour), protocol, in_chans, monkeypatch)
    assert type(out) is error and str(out) == words.format(colour)


#: (folder colour, protocol, the encoder's channels, the channels the old code loaded the splits with)
ACCEPTED = [("grey", "as-is", 1, 1), ("grey", "linear", 1, 1), ("grey", "knn", 3, 3), ("grey", "linear", 3, 3),
            ("rgb", "as-is", 3, 3), ("rgb", "linear", 3, 3)]


@pytest.mark.parametrize("colour,protocol,in_chans,chans", ACCEPTED,
                         ids=[f"{c}-{p}-{n}ch" for c, p, n, _ in ACCEPTED])
def test_an_accepted_folder_loads_as_before(tmp_path, monkeypatch, decoded, colour, protocol, in_chans, chans):
    """Guard: a folder the encoder takes is loaded as it was (a grey one for an RGB encoder as RGB, its images
    decoded once), the fitting splits with the scored split's channels."""
    root = _images(tmp_path / colour, colour)
    out = _run(root, protocol, in_chans, monkeypatch)
    loaded = sum(len(out[key]) for key in ("ds", "train", "val") if out[key] is not None)
    assert len(decoded) == len(set(decoded)) == loaded  # each image once
    rule = DatasetSpec(folder=str(root)).split_rule
    for key, split in (("ds", "test"), ("train", "train")):
        if out[key] is None:
            continue
        was = ImageFolderDataset(str(root), split=split, size=8, in_chans=chans, name=colour, split_rule=rule)
        assert out[key].n_channels == chans and out[key].md5 == was.md5 and out[key].files == was.files
        assert np.array_equal(out[key].images, was.images) and np.array_equal(out[key].labels, was.labels)


def test_a_folder_whose_first_image_is_unreadable_is_skipped_as_before(tmp_path, monkeypatch):
    """Guard: a scored split whose first image's header cannot be read (its channels unknown) is skipped with the
    reader's error, whatever the encoder's channels."""
    root = _images(tmp_path / "grey", "grey")
    first = folder_split(root, "test", split_rule=DatasetSpec(folder=str(root)).split_rule)[1][0]
    (root / first).write_bytes(b"not a png")
    out = _run(root, "as-is", 4, monkeypatch)
    assert type(out) is DatasetSkipped and first in str(out)


@pytest.mark.parametrize("protocol,in_chans", [("linear", 4), ("knn", 2)])
def test_a_grey_medmnist_set_for_an_encoder_of_neither_1_nor_3_channels_is_skipped(tmp_path, monkeypatch, protocol,
                                                                                  in_chans):
    """The same rule for a MedMNIST set (its channels from its metadata): skipped before it is loaded, where it was
    loaded as RGB and the run stopped at feature extraction."""
    from tests.conftest import write_medmnist_npz

    write_medmnist_npz(tmp_path, "pneumoniamnist")
    monkeypatch.setattr(suite_data, "load_split", lambda *a, **k: pytest.fail("the set was loaded"))
    with pytest.raises(DatasetSkipped, match=rf"^grey data but the encoder takes {in_chans} channel\(s\)"):
        prepare_with_stand_in(monkeypatch, DatasetSpec(flag="pneumoniamnist"), protocol, in_chans, 28,
                              data_root=str(tmp_path))
