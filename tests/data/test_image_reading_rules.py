"""The TIFF rule of :func:`medfm.data.images.read_image`, the reader of every data set and image folder.

A multi-page TIFF used to be read as its page 0 and a TIFF with more than 8 bits per colour channel as its high
bytes (12-bit data nearly black), without a word, while the 2D pipelines refused both
(:func:`medfm.pipelines.inputs.check_tiff`). Now both use :func:`medfm.data.images.check_tiff`, each with its own
advice (:class:`medfm.data.images.TiffAdvice`); the pipelines' words are pinned in
tests/pipelines/test_pipeline_api_audit.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medfm.data.errors import CorruptFileError
from medfm.data.imagefolder import ImageFolderDataset
from medfm.data.images import FILE_TIFF_ADVICE, check_tiff, read_image
from tests.conftest import write_class_folders, write_deep_colour_tiff

RNG = np.random.default_rng(0)


def _pages_tiff(path, values=(10, 200, 90)):
    """A TIFF of one (30, 40) grey page per value."""
    pages = [Image.fromarray(np.full((30, 40), v, np.uint8)) for v in values]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


def test_a_multi_page_tiff_is_refused_naming_the_file(tmp_path):
    path = _pages_tiff(tmp_path / "stack.tif")
    with pytest.raises(CorruptFileError) as err:
        read_image(path, what="MedNIST image")  # was page 0 (all 10), without a word
    assert str(err.value) == (f"MedNIST image {path} is a TIFF of 3 frames (a stack, a volume or an animation?); medfm "
                              "reads one 2D image per file: save each frame as its own image file (a volume as NIfTI)")


@pytest.mark.parametrize("channels, mode", [(3, "RGB"), (4, "RGBA")])
def test_a_16_bit_colour_tiff_is_refused_not_read_as_its_high_bytes(tmp_path, channels, mode):
    twelve_bit = RNG.integers(0, 4096, (30, 40, channels)).astype(np.uint16)
    path = write_deep_colour_tiff(tmp_path / "deep.tif", twelve_bit)
    with Image.open(path) as im:
        assert im.mode == mode and np.asarray(im)[..., :3].max() <= 15  # what Pillow gives: nearly black
    for read_as in (None, "L", "RGB"):
        with pytest.raises(CorruptFileError) as err:
            read_image(path, read_as, what="CHASE_DB1 image")
        assert str(err.value) == (f"CHASE_DB1 image {path} is an {mode} TIFF with 16 bits per channel, which Pillow "
                                  "reads as 8 bits by keeping the high byte (12-bit data comes out nearly black); "
                                  "save it as 8-bit RGB or 16-bit grayscale")


def test_an_image_folder_with_a_tiff_stack_is_refused_not_trained_on_its_first_page(tmp_path):
    write_class_folders(tmp_path, ("a", "b"), 3, RNG)
    _pages_tiff(tmp_path / "b" / "stack.tif")
    with pytest.raises(CorruptFileError, match=r"^image .*stack\.tif is a TIFF of 3 frames \(a stack, a volume or an "
                                               r"animation\?\)"):
        ImageFolderDataset(tmp_path)


def test_tiffs_pillow_reads_right_still_read(tmp_path):
    gray = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
    one_page = _pages_tiff(tmp_path / "one.tif", values=(77,))
    assert np.array_equal(read_image(one_page), np.full((30, 40), 77, np.uint8))
    rgb = tmp_path / "rgb.tif"
    Image.fromarray(np.stack([gray] * 3, -1)).save(rgb)
    assert np.array_equal(read_image(rgb), np.stack([gray] * 3, -1))
    gray16 = tmp_path / "gray16.tif"  # 16-bit grayscale: min-max scaled, not refused
    Image.fromarray(gray.astype(np.uint16) * 16).save(gray16)
    assert np.array_equal(read_image(gray16), np.rint((gray - gray.min()) * (255 / np.ptp(gray))).astype(np.uint8))


def test_a_tiff_page_the_user_took_out_passes(tmp_path):
    """A page copied out of a stack (what the pipelines' message says to do) is a plain image, no TIFF."""
    with Image.open(_pages_tiff(tmp_path / "stack.tif")) as im:
        im.seek(1)
        page = im.copy()
    check_tiff(page, FILE_TIFF_ADVICE)  # passes: no format, one attribute read


def test_the_rule_raises_the_callers_error_with_the_callers_advice(tmp_path):
    advice = FILE_TIFF_ADVICE._replace(frames="do this")
    with Image.open(_pages_tiff(tmp_path / "stack.tif")) as im, pytest.raises(KeyError) as err:
        check_tiff(im, advice, "my.tif", KeyError)
    assert err.value.args == ("my.tif is a TIFF of 3 frames (a stack, a volume or an animation?); do this",)
