"""``medfm eval --suite ... --max-samples N``'s early check
(:func:`medfm.evaluation.suite_data.check_max_samples`) lists an image folder once.

Was: it listed the folder for its classes (:func:`medfm.evaluation.suite_data.classes_on_disk`), then again for its
scored split (:func:`medfm.data.imagefolder.folder_split`): a folder's "skipped entries" warning was printed twice by
the check, and the check took about twice as long on a large folder.
"""
import warnings

import numpy as np
import pytest

import medfm.data.imagefolder as imagefolder
from medfm.config import ConfigError
from medfm.evaluation.suite_data import check_max_samples
from medfm.evaluation.suite_spec import DatasetSpec, Suite
from tests.conftest import write_class_folders


@pytest.fixture
def folder(tmp_path):
    """An image folder ``tmp_path/folder``: classes a, b, c of 10 8 x 8 grey PNGs each, and ``a/notes.txt``, an
    entry the reader skips with a warning."""
    root = tmp_path / "folder"
    root.mkdir()
    write_class_folders(root, ("a", "b", "c"), 10, np.random.default_rng(0), size=(8, 8))
    (root / "a" / "notes.txt").write_text("not an image")
    return root


def _check(folder, max_samples):
    """The warnings :func:`check_max_samples` gives on a one-dataset suite over ``folder``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_max_samples(Suite(name="t", datasets=[DatasetSpec(folder=str(folder), max_samples=max_samples)]),
                          str(folder.parent))
    return [str(w.message) for w in caught]


def test_the_skipped_entries_warning_is_given_once_by_the_check(folder):
    skipped = [m for m in _check(folder, 5) if "skipped 1 entry of its class folders (e.g. a/notes.txt)" in m]
    assert len(skipped) == 1, skipped  # was 2: the folder's classes, then its split


def test_the_check_lists_an_image_folder_once(folder, monkeypatch):
    listed = []
    scan = imagefolder.scan_image_folder
    monkeypatch.setattr(imagefolder, "scan_image_folder", lambda root: listed.append(root) or scan(root))
    _check(folder, 5)
    assert listed == [folder]  # was [folder, folder]


def test_a_max_samples_below_the_classes_of_a_listed_once_folder_is_still_refused(folder):
    """Guard: one listing still gives the classes of the scored split, and the message is unchanged."""
    with pytest.raises(ConfigError, match=r"^datasets\[0\] \(folder\): max_samples 2 is below folder's 3 classes in "
                                          r"its test split: the stratified subset keeps at least one image of each "
                                          r"class; raise max_samples \(--max-samples\)$"):
        _check(folder, 2)


@pytest.mark.parametrize("layout", ["not there", "a file", "an empty class folder"])
def test_a_folder_the_run_skips_is_not_checked(tmp_path, layout):
    """Guard: a folder not on disk, or one the reader refuses, is skipped by the check (the run skips it with its
    reason), as when its classes were listed first."""
    root = tmp_path / "folder"
    if layout == "a file":
        root.write_text("x")
    elif layout == "an empty class folder":
        root.mkdir()
        write_class_folders(root, ("a",), 3, np.random.default_rng(0), size=(8, 8))
        (root / "b").mkdir()
    assert _check(root, 1) == []
