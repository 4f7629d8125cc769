"""An image folder's classes by one rule (medfm.data.imagefolder.scan_image_folder), and a report folder that is a
file refused by make_output_dir's rule before an evaluation starts.

Was:
- ``folder_classes`` (the suite's label names) listed every sub-folder, hidden ones and ones holding no image,
  while ``ImageFolderDataset.label_names`` listed the classes holding images: the two could disagree, shifting
  class indices; a class folder with no image was dropped without a word (torchvision's ImageFolder refuses it);
- a sub-folder of a class folder named ``x.png`` was taken for an image (its suffix checked alone) and failed
  as ``image not found at .../x.png``;
- ``earlier_report`` (``medfm eval --data`` / ``--suite``) said ``FileExistsError: output <f> is a file; ...``
  in words of its own, and an output below a file passed, to fail only once the report was written.
"""
import os
import re
from types import SimpleNamespace

import pytest

from medfm.data.errors import DataFileMissingError, DataShapeError
from medfm.data.imagefolder import (IMAGE_EXTENSIONS, EmptyClassFolderError, ImageFolderDataset, folder_classes,
                                    scan_image_folder)
from medfm.evaluation.evaluate import earlier_data_report, earlier_report
from medfm.evaluation.report import check_output_dir, make_output_dir
from medfm.evaluation.suite_data import DatasetSkipped, prepare_dataset
from medfm.evaluation.suite_spec import DatasetSpec
from tests.conftest import load_image_folder, write_grey_image


def _empty_message(root, names, held=""):
    many = len(names) > 1
    return (f"image folder {root}: class folder{'s' * many} {', '.join(repr(c) for c in names)} "
            f"hold{'' if many else 's'} no image file ({', '.join(IMAGE_EXTENSIONS)}{held}); every sub-folder but "
            "hidden ones is a class, as in torchvision's ImageFolder: put its images in it, remove it, or list the "
            "samples in a labels.csv")


def test_hidden_folders_are_not_classes_for_the_dataset_or_folder_classes(tmp_path):
    root = tmp_path / "f"
    write_grey_image(root / "a" / "0.png", 10)
    write_grey_image(root / "c" / "0.png", 20)
    write_grey_image(root / ".ipynb_checkpoints" / "0.png", 30)  # was a class of both, index 0
    (root / ".git").mkdir()  # was a class of folder_classes only
    ds, caught = load_image_folder(root)
    assert ds.label_names == ["a", "c"] == folder_classes(root) and caught == []
    assert ds.files == ["a/0.png", "c/0.png"] and ds.labels[:, 0].tolist() == [0, 1]


@pytest.mark.parametrize("reader", [ImageFolderDataset, folder_classes])
def test_a_class_folder_without_an_image_is_refused_by_name(tmp_path, reader):
    """was: folder_classes gave ['a', 'b', 'c'], the dataset ['a', 'c'] (c's index 2 in one, 1 in the other)."""
    root = tmp_path / "f"
    write_grey_image(root / "a" / "0.png")
    write_grey_image(root / "c" / "0.png")
    (root / "b").mkdir()
    (root / "b" / "notes.txt").write_text("x")
    (root / "b" / ".DS_Store").write_bytes(b"\0")
    with pytest.raises(EmptyClassFolderError) as err:
        reader(root)
    assert str(err.value) == _empty_message(root, ["b"], "; 'b' holds b/notes.txt")
    assert isinstance(err.value, DataShapeError) and isinstance(err.value, FileNotFoundError)  # as torchvision
    assert not isinstance(err.value, DataFileMissingError)  # the folder is there: not the missing-data error
    (root / "d").mkdir()  # nothing at all in it
    (root / "b" / "notes.txt").unlink()
    with pytest.raises(EmptyClassFolderError) as err:
        reader(root)
    assert str(err.value) == _empty_message(root, ["b", "d"])


@pytest.mark.filterwarnings("ignore:image folder .* skipped")
def test_a_folder_named_like_an_image_is_not_an_image(tmp_path):
    """was: ``DataFileMissingError: image not found at .../a/x.png`` (the folder taken for an image)."""
    root = tmp_path / "f"
    write_grey_image(root / "a" / "0.png", 10)
    write_grey_image(root / "a" / "x.png" / "inner.png", 20)
    write_grey_image(root / "b" / "0.png", 30)
    ds, caught = load_image_folder(root)
    assert ds.files == ["a/0.png", "b/0.png"] and ds.label_names == ["a", "b"] == folder_classes(root)
    assert len(caught) == 1 and re.search(r": skipped 1 entry of its class folders \(e\.g\. a/x\.png/\): ", caught[0])
    (root / "c" / "y.JPG").mkdir(parents=True)  # its only "image" is a folder: c holds none
    for reader in (ImageFolderDataset, folder_classes):
        with pytest.raises(EmptyClassFolderError) as err:
            reader(root)
        assert str(err.value) == _empty_message(root, ["c"], "; 'c' holds c/y.JPG/")


@pytest.mark.filterwarnings("ignore:image folder .* skipped")
def test_folder_classes_is_the_datasets_label_names(tmp_path):
    """Skipped entries and a labels.csv (as before), and a folder holding no image: folder_classes gave []."""
    root = tmp_path / "f"
    write_grey_image(root / "b" / "0.png")
    write_grey_image(root / "a" / "0.png")
    (root / "b" / "skip.gif").write_bytes(b"GIF89a")
    ds, _ = load_image_folder(root)
    assert ds.label_names == folder_classes(root) == ["a", "b"]
    (root / "labels.csv").write_text("file,label\na/0.png,z\nb/0.png,y\n")
    assert ImageFolderDataset(root).label_names == folder_classes(root) == ["y", "z"]
    bare = tmp_path / "bare"
    (bare / ".hidden").mkdir(parents=True)
    for reader in (ImageFolderDataset, folder_classes):  # folder_classes gave [] (or ['.hidden'])
        with pytest.raises(DataShapeError, match=r"^no images \(\.jpg, .*\) found in .*bare$"):
            reader(bare)


@pytest.mark.filterwarnings("ignore:image folder .* skipped")
def test_the_folder_scan_stats_no_image_file_and_follows_links(tmp_path, monkeypatch):
    """The scan tells a folder named ``x.png`` from an image by ``os.scandir``'s entries (was one ``stat`` per image,
    about 5x the scan's time); links are followed as ``os.walk`` follows them (torchvision's listing)."""
    root = tmp_path / "f"
    for i in range(3):
        write_grey_image(root / "a" / f"{i}.png")
    (root / "a" / "dir.png").symlink_to(root / "a" / "sub", target_is_directory=True)
    (root / "a" / "sub").mkdir()
    (root / "a" / "dead.png").symlink_to(root / "a" / "gone.png")  # a link leading nowhere is a file, as in os.walk
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: stats.append(str(path)) or real_stat(path, *a, **k))
    files, labels = scan_image_folder(root)
    assert files == ["a/0.png", "a/1.png", "a/2.png", "a/dead.png"] and labels == ["a"] * 4
    assert [s for s in stats if s.endswith(("0.png", "1.png", "2.png"))] == []


def test_a_suite_skips_a_folder_with_an_empty_class_as_there_but_unreadable(tmp_path):
    """The folder is on disk: not counted as missing data (the suite's "no data found" error)."""
    root = tmp_path / "f"
    write_grey_image(root / "a" / "0.png")
    (root / "b").mkdir()
    suite = SimpleNamespace(protocol=SimpleNamespace(name="linear"))  # only its protocol's name is read first
    with pytest.raises(DatasetSkipped) as err:
        prepare_dataset(DatasetSpec(folder=str(root)), suite, [], None, None)
    assert str(err.value) == _empty_message(root, ["b"]) and err.value.missing is False
    with pytest.raises(DatasetSkipped) as err:
        prepare_dataset(DatasetSpec(folder=str(tmp_path / "nowhere")), suite, [], None, None)
    assert err.value.missing is True  # a folder that is not there is missing (unchanged)


def test_an_evaluation_output_that_is_a_file_has_the_report_folders_words(tmp_path):
    """was: ``FileExistsError: output <f> is a file; choose another output folder``, and an output under a file
    passed the check (the evaluation ran, then failed writing its report)."""
    blocker = tmp_path / "taken"
    blocker.write_text("keep")
    for out in (blocker, blocker / "eval" / "x"):
        with pytest.raises(NotADirectoryError) as made:
            make_output_dir(out)
        for check in (lambda: earlier_report(out, lambda res: True, "report", "it"),
                      lambda: earlier_data_report(out, tmp_path / "ckpt"), lambda: check_output_dir(out)):
            with pytest.raises(NotADirectoryError) as err:
                check()
            assert str(err.value) == str(made.value)
    assert str(made.value) == (f"cannot write {str(blocker / 'eval' / 'x')!r}: {str(blocker)!r} is a file, not a "
                               "folder; choose another output folder")
    assert blocker.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    check_output_dir(tmp_path / "new" / "out")  # nothing in the way: nothing raised, nothing created
    assert earlier_report(tmp_path / "new", lambda res: True, "report", "it") is False
    assert not (tmp_path / "new").exists()
