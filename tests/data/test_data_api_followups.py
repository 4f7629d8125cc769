"""Follow-ups of the data Python-API audit (tests/data/test_data_api_audit.py): the views' brightness has an
upper bound, the views draw 1 px views (non-square batches, once refused here: tests/data/test_views_non_square.py),
``corrupted_sets`` checks ``workers``, ``cache_path`` checks the severity, an image folder given as a file and a
MedMNIST size given as a bool get messages that say what is wrong (the comment on each case says what the old code
did). Generated arrays and files only: no real data, and no medmnistc needed.
"""
import numpy as np
import pytest
import torch

from medfm.data import errors
from medfm.data.corruptions import UnknownCorruptionError, cache_path, corrupted_sets
from medfm.data.imagefolder import ImageFolderDataset, folder_classes
from medfm.data.medmnist import MedMNISTDataset, npz_name
from medfm.data.views import RandomViews, ViewConfig

X = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def _gen():
    return torch.Generator().manual_seed(0)


def _raises_one_line(error, pattern, call):
    with pytest.raises(error, match=pattern) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("brightness", [1.0, 1.5, 1e9])
def test_a_brightness_of_1_or_more_is_refused(brightness):
    """was accepted: a shift drawn from [-1.5, 1.5] clamps most views to a blank 0 or 1 image."""
    _raises_one_line(ValueError, r"^views\.brightness must be < 1 \(a shift of \+/- brightness on \[0, 1\] "
                                 r"intensities; 1 or more can blank the image\), got ",
                     lambda: ViewConfig(brightness=brightness))


def test_a_brightness_below_1_still_builds_and_nan_keeps_its_message():
    """A guard (passes on the old code too): the new bound does not reach below 1 nor change the NaN message."""
    assert ViewConfig(brightness=0.99).brightness == 0.99
    _raises_one_line(ValueError, r"^views\.brightness must be a finite number >= 0, got nan$",
                     lambda: ViewConfig(brightness=float("nan")))


@pytest.mark.parametrize("out_size, side", [(1, 16), (None, 1)])
def test_a_one_pixel_view_is_drawn(out_size, side):
    """was: RuntimeError from the blur's reflect padding ("Padding size should be less than the
    corresponding input dimension") for out_size=1 or a 1 x 1 batch."""
    views = RandomViews(ViewConfig(blur_p=1.0), out_size=out_size)
    out = views(torch.rand(4, 2, side, side, generator=_gen()), _gen())
    assert out.shape == (4, 2, 1, 1) and torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("workers", [-1, 1.5, "2", True, None])
def test_corrupted_sets_refuses_a_bad_worker_count(workers):
    """was: -1 (joblib's "all cores") ran in this process; 1.5 / "2" failed with a TypeError once a set had to
    be generated; True was one worker. Refused before medmnistc is looked at."""
    _raises_one_line(ValueError, r"^workers must be an integer >= 0 \(0 or 1: in this process\), got ",
                     lambda: corrupted_sets(np.zeros((2, 28, 28), np.uint8), "pneumoniamnist", [("pixelate", 1)],
                                            workers=workers, use_cache=False, progress=False))


@pytest.mark.parametrize("jobs, shown", [(3, "3"), ({("pixelate", 1): 0}, r"\{\('pixelate', 1\): 0\}")])
def test_corrupted_sets_refuses_jobs_that_are_no_list(jobs, shown):
    """was: a number failed with ``TypeError: 'int' object is not iterable``; a mapping was read as its keys.
    The list rule of :func:`medfm.arg_checks.check_list`."""
    _raises_one_line(ValueError, r"^jobs must be a list of \(corruption, severity\) pairs, e.g. \[\('pixelate', 3\)\], "
                     rf"got {shown}$",
                     lambda: corrupted_sets(np.zeros((2, 28, 28), np.uint8), "pneumoniamnist", jobs, workers=0,
                                            use_cache=False, progress=False))


def test_corrupted_sets_reads_a_generator_of_jobs_as_its_list():
    """was: the pairs check used the generator up, so no job ran: an unknown corruption (or any job) gave an
    empty result without a word."""
    images = np.zeros((2, 28, 28), np.uint8)
    for jobs in ([("no_such_corruption", 1)], (j for j in [("no_such_corruption", 1)])):
        with pytest.raises(UnknownCorruptionError, match=r"^unknown corruption 'no_such_corruption'"):
            corrupted_sets(images, "pneumoniamnist", jobs, workers=0, use_cache=False, progress=False)


@pytest.mark.parametrize("severity, shown", [(9, "9"), (0, "0"), (2.0, r"2\.0"), (True, r"True \(bool\)")])
def test_cache_path_refuses_a_severity_outside_1_to_5(tmp_path, severity, shown):
    """was: a path ``..._s9_0.npz`` / ``..._s2.0_0.npz`` that no corrupted set could fill."""
    _raises_one_line(ValueError, rf"^severity must be an integer in 1\.\.5 \(medmnistc's levels\), got {shown}$",
                     lambda: cache_path(tmp_path, "pneumoniamnist", 28, "pixelate", severity, 0))
    path = cache_path(tmp_path, "pneumoniamnist", 28, "pixelate", np.int64(3), 0)
    assert path.name == "pneumoniamnist_28_pixelate_s3_0.npz"


@pytest.mark.parametrize("reader", [ImageFolderDataset, folder_classes])
def test_an_image_folder_given_as_a_file_says_so(tmp_path, reader):
    """was: ``image folder not found at <file>.png``, for a file that exists."""
    image = tmp_path / "a.png"
    image.write_bytes(b"not read")
    _raises_one_line(errors.DataFileMissingError, rf"^image folder root must be a folder \(class sub-folders or a "
                                                  rf"labels\.csv\), got the file .*a\.png; pass the folder that holds "
                                                  rf"the images, e\.g\. {tmp_path}$", lambda: reader(image))


def test_a_missing_image_folder_keeps_its_message(tmp_path):
    """A guard (passes on the old code too)."""
    _raises_one_line(errors.DataFileMissingError, r"^image folder not found at .*nowhere$",
                     lambda: ImageFolderDataset(tmp_path / "nowhere"))


@pytest.mark.parametrize("size, shown", [(True, r"True \(bool\)"), ("28", r"'28' \(str\)"), (28.0, r"28\.0")])
def test_a_medmnist_size_that_is_not_an_integer_says_so(tmp_path, size, shown):
    """was: ``... is not released at size True; available: [28, 64, 128, 224]``, as if a bool were a side
    (a ``download=True`` slipped into the size's place)."""
    pattern = (rf"^MedMNIST 'pneumoniamnist' is not released at size {shown}; available: \[28, 64, 128, 224\] "
               r"\(a size is an integer side in px\)$")
    _raises_one_line(errors.UnsupportedSizeError, pattern,
                     lambda: MedMNISTDataset("pneumoniamnist", "train", size, data_root=tmp_path))
    _raises_one_line(errors.UnsupportedSizeError, pattern, lambda: npz_name("pneumoniamnist", size))


def test_an_integer_size_that_is_not_released_keeps_its_message():
    """A guard (passes on the old code too): the integer-size message gains no note."""
    _raises_one_line(errors.UnsupportedSizeError,
                     r"^MedMNIST 'pneumoniamnist' is not released at size 32; available: \[28, 64, 128, 224\]$",
                     lambda: npz_name("pneumoniamnist", 32))
