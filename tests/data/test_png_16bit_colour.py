"""16-bit colour PNGs in :func:`medfm.data.images.read_image` (every data set reader and image folder).

Pillow decodes a 16-bit RGB, RGBA or grey + alpha PNG to 8 bits by keeping the high byte, so 12-bit data
(0-4095) came out as 0-15, a nearly black image, without a word, while a 16-bit grey PNG (``I;16``) is min-max
scaled and a 16-bit colour TIFF was already refused. Now the PNG is refused by the TIFF's rule
(:func:`medfm.data.images.check_tiff`). The PNGs are written here byte by byte (PNG spec, ISO/IEC 15948: IHDR,
one IDAT of filter-0 rows, IEND), since Pillow cannot write 16-bit colour.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from medfm.data.errors import CorruptFileError
from medfm.data.imagefolder import ImageFolderDataset
from medfm.data.images import read_image
from medfm.pipelines.inputs import PipelineInputError, check_tiff as pipeline_check_tiff
from tests.conftest import write_class_folders

RNG = np.random.default_rng(0)
#: PNG colour types (ISO/IEC 15948 11.2.2) by channel count
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}


def write_png16(path, pixels):
    """Write ``pixels`` uint16 ``(H, W)`` or ``(H, W, C)`` (C = 2: grey + alpha, 3: RGB, 4: RGBA) as a 16-bit PNG."""
    pixels = np.asarray(pixels, dtype=">u2")
    h, w = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    rows = b"".join(b"\0" + pixels[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, COLOUR_TYPES[channels], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def _twelve_bit(*shape):
    return RNG.integers(0, 4096, shape).astype(np.uint16)


@pytest.mark.parametrize("channels, kind", [(3, "RGB"), (4, "RGBA"), (2, "LA")])
def test_a_16_bit_colour_png_is_refused_not_read_as_its_high_bytes(tmp_path, channels, kind):
    path = write_png16(tmp_path / "deep.png", _twelve_bit(30, 40, channels))
    with Image.open(path) as im:
        assert np.asarray(im)[..., 0].max() <= 15  # what Pillow gives: nearly black
    for read_as in (None, "L", "RGB"):
        with pytest.raises(CorruptFileError) as err:
            read_image(path, read_as, what="MedNIST image")  # was: a uint8 image of 0-15, without a word
        assert str(err.value) == (f"MedNIST image {path} is an {kind} PNG with 16 bits per channel, which Pillow reads "
                                  "as 8 bits by keeping the high byte (12-bit data comes out nearly black); save it "
                                  "as 8-bit RGB or 16-bit grayscale")


def test_a_16_bit_grey_png_is_still_min_max_scaled(tmp_path):
    """A guard (passes on the old code too): 16-bit grey keeps its min-max scaling to 0-255."""
    grey = _twelve_bit(30, 40)
    out = read_image(write_png16(tmp_path / "grey.png", grey))
    lo, hi = int(grey.min()), int(grey.max())
    assert np.array_equal(out, np.rint((grey - lo) * (255.0 / (hi - lo))).astype(np.uint8))


def test_an_8_bit_rgb_png_reads_as_stored(tmp_path):
    """A guard (passes on the old code too): 8-bit colour PNGs are not touched by the rule."""
    rgb = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb8.png")
    assert np.array_equal(read_image(tmp_path / "rgb8.png"), rgb)


def test_an_image_folder_with_a_16_bit_rgb_png_is_refused_naming_it(tmp_path):
    write_class_folders(tmp_path, ("a", "b"), 2, RNG)
    write_png16(tmp_path / "b" / "deep.png", _twelve_bit(30, 40, 3))
    with pytest.raises(CorruptFileError, match=r"^image .*deep\.png is an RGB PNG with 16 bits per channel"):
        ImageFolderDataset(tmp_path, in_chans=1)  # was: its image read as 0-15 (then grey), without a word


def test_a_pipeline_refuses_an_unloaded_16_bit_rgb_png_in_its_words(tmp_path):
    path = write_png16(tmp_path / "deep.png", _twelve_bit(8, 8, 3))
    with Image.open(path) as im, pytest.raises(PipelineInputError, match=r"^deep\.png is an RGB PNG with 16 bits per "
                                                                          r"channel, .*pass its pixels as a float"):
        pipeline_check_tiff(im, "deep.png")
