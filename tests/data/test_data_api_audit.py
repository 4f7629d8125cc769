"""Public Python API of medfm.data called as a MONAI/torchvision user would (not through the CLI): bad
arguments give one line naming the problem (a ``ValueError``/``TypeError``/``IndexError`` or a medfm data
error), not a deep error from inside numpy, torch, PIL or medmnistc, nor a silently odd result (found by
/tmp/helperH/probe1-3.py; the comment on each row says what the old code did). Only generated arrays
and files: no real data needed.
"""
import re

import numpy as np
import pytest
import torch

from medfm.data import errors
from medfm.data.imagefolder import ImageFolderDataset, stratified_split
from medfm.data.medmnist import MedMNISTDataset, label_fraction_indices, npz_name
from medfm.data.root import dataset_dir, resolve_data_root
from medfm.data.segmentation import SegmentationArrays, channel_zscore, percentile_unit, resize_image, slice_stack
from medfm.data.views import RandomViews
from medfm.data.vqa_rad import VQARadDataset

LABELS = np.repeat(np.arange(3), 10)
X = torch.rand(2, 1, 16, 16)
GEN = torch.Generator().manual_seed(0)
IMG = np.zeros((1, 4, 4), np.uint8)
MASK = np.zeros((4, 4), np.uint8)

# (call, exception class, message regex); comment: what the old code did
BAD_CALLS = [
    (lambda: npz_name("pneumoniamnist", 28.0), errors.UnsupportedSizeError, r"not released at size 28\.0;"),
    # 'pneumoniamnist.npz': a float size was taken, and MedMNISTDataset.size was 28.0
    (lambda: label_fraction_indices(10, "0.1"), ValueError, r"^fraction must be in \(0, 1\], got '0\.1' \(str\)$"),
    # TypeError: can only concatenate str (not "float") to str
    (lambda: label_fraction_indices(10, True), ValueError, r"^fraction must be in \(0, 1\], got True \(bool\)$"),
    # the whole set (True taken as 1.0)
    (lambda: label_fraction_indices(LABELS, 0.5, seed=None), ValueError, r"^seed must be an integer >= 0, got None"),
    # a different subset on each call
    (lambda: label_fraction_indices(LABELS, 0.5, seed=1.5), ValueError, r"^seed must be an integer >= 0, got 1\.5$"),
    # TypeError: SeedSequence expects int or sequence of ints for entropy not 1.5
    (lambda: label_fraction_indices(10.0, 0.5), ValueError, r"takes a count N \(an int\) or integer labels .*got 10\.0$"),
    # ValueError: cannot draw a fraction of an empty set (n=0)
    (lambda: label_fraction_indices(np.zeros((4, 2, 2), np.int64), 0.5), ValueError, r"got int64 \(4, 2, 2\)$"),
    # a plain random draw, the labels ignored
    (lambda: label_fraction_indices(np.array([0.5, 1.5, 0.5, 1.5]), 0.5), ValueError, r"integer labels"),
    # strata of non-integer "classes"
    (lambda: RandomViews()(X.numpy(), GEN), ValueError, r"^views expect a float torch\.Tensor .*got ndarray$"),
    # AttributeError: 'numpy.ndarray' object has no attribute 'is_floating_point'
    (lambda: RandomViews()(X, 0), ValueError, r"^views: gen must be a CPU torch\.Generator or None, got 0;"),
    # TypeError: rand() received an invalid combination of arguments (many lines)
    (lambda: RandomViews()(X[:0], GEN), ValueError, r"^views expect a non-empty float \(B, C, H, W\) batch, got \(0, 1, 16, 16\)"),
    # ValueError from affine_grid: Expected non-zero, positive output size
    (lambda: RandomViews({"scale": (0.2, 1.0)}), ValueError, r"^views cfg must be a ViewConfig"),
    # AttributeError: 'dict' object has no attribute 'scale' (at the first call)
    (lambda: resolve_data_root(5), ValueError, r"^data_root must be a folder path \(str or pathlib\.Path\), got 5 \(int\)$"),
    # <cwd>/5
    (lambda: stratified_split(LABELS, "train", seed=None), ValueError, r"^split seed must be an integer >= 0, got None"),
    # a different partition on each call
    (lambda: stratified_split(LABELS, "train", (float("nan"), 0.5, 0.5)), ValueError, r"^split fractions must be 3 non-neg"),
    # ValueError: cannot convert float NaN to integer
    (lambda: stratified_split(np.array([]), "train"), errors.DataShapeError, r"^cannot split an empty set"),
    # ValueError: need at least one array to concatenate
    (lambda: SegmentationArrays([IMG], [MASK], repeats=0), ValueError, r"^repeats must be an integer >= 1, got 0$"),
    # a set of length 0
    (lambda: SegmentationArrays([IMG], [np.full((4, 4), 300)]), errors.DataShapeError, r"integer labels in 0\.\.255"),
    # label 300 held as 44 (uint8 wrap)
    (lambda: SegmentationArrays([IMG], [np.full((4, 4), -1)]), errors.DataShapeError, r"integer labels in 0\.\.255"),
    # label -1 held as 255
    (lambda: SegmentationArrays([IMG], [MASK])[1], IndexError, r"^index 1 out of range for 1 samples$"),
    # sample 0 again (modulo), so iterating the set never ended
    (lambda: slice_stack(np.zeros((3, 4, 4)), -1), ValueError, r"^context must be an integer >= 0, got -1$"),
    # (3, 0, 4, 4): zero-width stacks
    (lambda: resize_image(np.zeros((8, 8), np.uint8), 0), ValueError, r"^scale must be > 0, got 0\.0$"),
    # TypeError from PIL: Cannot handle this data type
    (lambda: percentile_unit(np.arange(100.0), 90, 10), ValueError, r"^percentiles must satisfy 0 <= low < high <= 100"),
    # an all-zero volume
    (lambda: channel_zscore(np.zeros((1, 1, 4, 4))), ValueError, r"^channel_zscore expects a \(B, C, \*S\) torch\.Tensor"),
    # AttributeError: 'numpy.ndarray' object has no attribute 'float'
]


@pytest.mark.parametrize("call, error, message", BAD_CALLS)
def test_bad_arguments_give_one_clear_line(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert re.search(message, str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("switch, value", [("download", "no"), ("verify", "no"), ("as_rgb", "yes")])
def test_medmnist_switches_must_be_bools(write_medmnist, tmp_path, switch, value):
    """``download="no"`` was true: with the file absent it went to the network (nothing may download here);
    ``as_rgb="yes"`` gave 3 channels silently."""
    root = write_medmnist("pneumoniamnist") if switch != "download" else tmp_path / "empty"
    with pytest.raises(ValueError, match=rf"^{switch} must be true or false, got '{value}' \(str\)$"):
        MedMNISTDataset("pneumoniamnist", data_root=root, **{switch: value})
    assert not (tmp_path / "empty").exists()  # no download folder made


def test_medmnist_float_size_refused(write_medmnist):
    """``size=28.0`` loaded the 28 px file and reported size 28.0."""
    root = write_medmnist("pneumoniamnist")
    with pytest.raises(errors.UnsupportedSizeError, match=r"not released at size 28\.0"):
        MedMNISTDataset("pneumoniamnist", size=28.0, data_root=root)


def test_data_root_that_is_a_file_is_named(tmp_path, monkeypatch):
    """A root that is a file made every data set say "not found at <file>/medmnist/..." (and the checksum
    listing "data root ... does not exist"); now the cause and its source are named, for the argument and
    for ``$MEDFM_DATA``."""
    file = tmp_path / "data.txt"
    file.write_text("x")
    with pytest.raises(errors.DataFileMissingError, match=r"^data root .*data\.txt \(from --data-root / data_root\) "
                                                          r"is a file, not a folder; point --data-root or \$MEDFM_DATA"):
        MedMNISTDataset("pneumoniamnist", data_root=file)
    monkeypatch.setenv("MEDFM_DATA", str(file))
    with pytest.raises(errors.DataFileMissingError, match=r"\(from \$MEDFM_DATA\) is a file"):
        dataset_dir("vqa_rad")


def test_dataset_index_must_be_an_integer(write_medmnist):
    """``ds["1"]`` failed in torch with ``new(): invalid data type 'str'``."""
    ds = MedMNISTDataset("pneumoniamnist", data_root=write_medmnist("pneumoniamnist"))
    with pytest.raises(TypeError, match=r"^sample index must be an integer, got '1' \(str\)$"):
        ds["1"]
    assert torch.equal(ds[np.int64(1)]["image"], ds[1]["image"])


def test_image_folder_and_vqa_sizes_are_integers(tmp_path):
    """``ImageFolderDataset(size=16.5)`` failed in PIL (``'float' object cannot be interpreted as an
    integer``), ``size=0`` with PIL's ``height and width must be > 0``; ``VQARadDataset(size=28.5)`` was
    truncated to 28 (size 0 failed in torch's resize)."""
    from PIL import Image

    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a" / "x.png")
    for size in (16.5, 0):
        with pytest.raises(ValueError, match=rf"^size must be an integer >= 1 \(pixels\), got {size}$"):
            ImageFolderDataset(tmp_path, size=size)
        with pytest.raises(ValueError, match=rf"^size must be an integer >= 1 \(pixels\), got {size}$"):
            VQARadDataset("test", size=size, data_root=tmp_path)


def test_corruption_arguments():
    """Old: severity 2.0 reached medmnistc (RuntimeError wrapping a TypeError on a list index), True was
    severity 1; seed 1.5 gave seed 1's images, None a TypeError; resolution 'nativ' or None failed in
    ``int()``; start_index 1.5 was taken; one (corruption, severity) pair as ``jobs`` failed to unpack;
    an empty subset gave a KeyError."""
    pytest.importorskip("medmnistc.corruptions.registry", reason="medmnistc / MagickWand not installed")
    from medfm.data.corruptions import corrupt_images, corrupted_sets

    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28), dtype=np.uint8)

    def corrupt(**kw):
        args = dict(images=images, flag="pneumoniamnist", corruption="gaussian_noise", severity=1, resolution="native")
        return corrupt_images(**{**args, **kw})

    cases = [
        (dict(severity=2.0), r"^severity must be an integer in 1\.\.5 \(medmnistc's levels\), got 2\.0$"),
        (dict(severity=True), r"^severity must be an integer in 1\.\.5 .*got True \(bool\)$"),
        (dict(seed=1.5), r"^seed must be an integer, got 1\.5$"),
        (dict(seed=None), r"^seed must be an integer, got None"),
        (dict(resolution="nativ"), r"^resolution must be 'native' or a side in px >= 8, got 'nativ'$"),
        (dict(resolution=None), r"^resolution must be 'native' or a side in px >= 8, got None$"),
        (dict(start_index=1.5), r"^start_index must be an integer >= 0, got 1\.5$"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            corrupt(**kw)
    opts = dict(resolution="native", use_cache=False, workers=0, progress=False)
    with pytest.raises(ValueError, match=r"^jobs must be a list of \(corruption, severity\) pairs"):
        corrupted_sets(images, "pneumoniamnist", ("gaussian_noise", 1), **opts)
    with pytest.raises(ValueError, match=r"^severity must be an integer in 1\.\.5 .*got 2\.0$"):
        corrupted_sets(images, "pneumoniamnist", [("gaussian_noise", 2.0)], **opts)
    with pytest.raises(errors.EmptySplitError, match=r"^corrupted_sets: no image to corrupt"):
        corrupted_sets(images[:0], "pneumoniamnist", [("gaussian_noise", 1)], **opts)
