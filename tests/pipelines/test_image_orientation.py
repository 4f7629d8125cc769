"""Images carrying an EXIF Orientation tag are read upright, as viewers and transformers'
``load_image`` (``PIL.ImageOps.exif_transpose``) show them.

Phone photos of films and some JPEG / TIFF exports store the pixels rotated or mirrored with an
Orientation (2-8) saying how to show them. Before, :func:`medfm.data.images.read_image` and
:func:`medfm.data.images.pil_to_uint8` (shared by the data sets and every 2D pipeline) returned
the pixels as stored: a (2, 3) picture saved with Orientation 6 came back as a (3, 2) array, turned
by 90 degrees. Images without the tag (every MedNIST, VQA-RAD, CHASE_DB1 and TCGA-LGG file) are
read exactly as before. TIFFs, which Pillow turns itself while loading (scrambling uncompressed
L / P / I;16 / RGBA / CMYK ones with Orientation 5-8), are read upright in every mode too
(:func:`medfm.data.images.load_upright`).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import medfm
from medfm.adapters.segmentation import SegmentationModel
from medfm.data.errors import CorruptFileError
from medfm.data.images import ORIENTATION_TAG, exif_upright, pil_to_uint8, read_image
from medfm.pipelines.segmentation import ImageSegmentationPipeline
from medfm.pipelines.vqa import vqa_image_tensor

UPRIGHT = np.arange(6 * 9, dtype=np.uint8).reshape(6, 9) * 4  # as the picture should be seen: (H, W) = (6, 9)
#: Orientation -> the stored pixels of UPRIGHT (EXIF 2.3 4.6.4 tag 274: where row 0 / column 0 are shown)
STORED = {
    1: UPRIGHT,
    2: UPRIGHT[:, ::-1],           # mirrored left-right
    3: UPRIGHT[::-1, ::-1],        # turned 180 degrees
    4: UPRIGHT[::-1, :],           # mirrored top-bottom
    5: UPRIGHT.T,                  # mirrored about the main diagonal
    6: np.rot90(UPRIGHT, 1),       # turned 90 degrees anticlockwise: shown turned back clockwise
    7: UPRIGHT[::-1, ::-1].T,      # mirrored about the other diagonal
    8: np.rot90(UPRIGHT, -1),      # turned 90 degrees clockwise
}


def _save(path, pixels, orientation, **kw):
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, exif=exif, **kw)
    return path


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_every_orientation_is_read_upright(tmp_path, orientation):
    path = _save(tmp_path / "film.png", STORED[orientation], orientation)  # PNG eXIf chunk: lossless
    assert np.array_equal(read_image(path), UPRIGHT)  # was: STORED[orientation], e.g. (9, 6) for 5-8
    assert np.array_equal(read_image(path, "RGB"), np.repeat(UPRIGHT[..., None], 3, axis=2))
    with Image.open(path) as im:
        assert np.array_equal(pil_to_uint8(im, "L"), UPRIGHT)


def test_a_rotated_rgb_jpeg_is_its_decoded_pixels_turned(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    path = _save(tmp_path / "phone.jpg", rgb, 6, quality=95)
    with Image.open(path) as im:
        stored = np.asarray(im.convert("RGB"))  # the decoded (lossy) pixels, as stored: (16, 24, 3)
    got = read_image(path)
    assert got.shape == (24, 16, 3) and np.array_equal(got, np.rot90(stored, -1))  # shown turned clockwise


def test_every_2d_pipeline_sees_the_upright_image(tmp_path, pneumonia_pipeline):
    path = _save(tmp_path / "film.png", STORED[8], 8)
    with Image.open(path) as im:
        im.load()
    assert pneumonia_pipeline(str(path)) == pneumonia_pipeline(im) == pneumonia_pipeline(UPRIGHT)
    assert pneumonia_pipeline(UPRIGHT) != pneumonia_pipeline(np.ascontiguousarray(STORED[8]))  # the check can fail
    assert torch.equal(vqa_image_tensor(path, 1, 28), vqa_image_tensor(UPRIGHT, 1, 28))
    assert torch.equal(vqa_image_tensor(im, 1, 28), vqa_image_tensor(UPRIGHT, 1, 28))
    torch.manual_seed(0)
    seg = ImageSegmentationPipeline(SegmentationModel(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), 2))
    assert np.array_equal(seg(path)["mask"], seg(UPRIGHT)["mask"]) and seg(im)["mask"].shape == UPRIGHT.shape


def test_images_without_the_tag_are_untouched(tmp_path):
    plain = Image.fromarray(UPRIGHT)
    assert exif_upright(plain) is plain  # no copy, no transpose
    path = _save(tmp_path / "one.png", UPRIGHT, 1)
    with Image.open(path) as im:
        im.load()
        assert exif_upright(im) is im
    Image.fromarray(STORED[6]).save(tmp_path / "no_exif.png")
    assert np.array_equal(read_image(tmp_path / "no_exif.png"), STORED[6])  # nothing says to turn it


def test_an_exif_block_pil_cannot_parse_leaves_the_pixels_as_stored(monkeypatch):
    def broken(self):
        raise SyntaxError("not a TIFF file")  # what PIL raises for a damaged EXIF block

    im = Image.fromarray(STORED[6])
    monkeypatch.setattr(Image.Image, "getexif", broken)
    assert exif_upright(im) is im and np.array_equal(pil_to_uint8(im), STORED[6])


def _in_mode(pixels, mode):
    """``pixels`` (uint8 values) as a PIL image in ``mode`` (16-bit, 32-bit int and float ones keep the values)."""
    if mode == "I;16":
        return Image.frombytes("I;16", pixels.shape[::-1], pixels.astype("<u2").tobytes())
    if mode in ("I", "F"):
        return Image.fromarray(pixels.astype(np.int32 if mode == "I" else np.float32))
    return Image.fromarray(pixels).convert(mode)


@pytest.mark.parametrize("mode", ["L", "I;16", "I", "F", "P", "RGB", "RGBA", "CMYK"])
def test_a_tiff_is_read_upright_in_every_mode(tmp_path, mode):
    """Pillow turns a TIFF upright itself while loading it. An uncompressed one opened by file name in a
    mode Pillow memory-maps (L, P, I;16, RGBA, CMYK) with Orientation 5-8 came back scrambled (the stored
    pixels mapped with the shown, swapped, width and height): a grayscale scan read through medfm, as a
    path or as a lazily opened PIL image, was not the picture. (I, F, RGB came back right.)"""
    want = pil_to_uint8(_in_mode(UPRIGHT, mode), "L")  # the picture in memory, no orientation to apply
    for orientation, stored in STORED.items():
        path = tmp_path / f"scan{orientation}.tif"
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = orientation
        _in_mode(np.ascontiguousarray(stored), mode).save(path, exif=exif)
        assert np.array_equal(read_image(path, "L"), want), orientation  # was scrambled for L, P, I;16, ... at 5-8
        with Image.open(path) as lazy:
            assert np.array_equal(pil_to_uint8(lazy, "L"), want), orientation


def test_the_2d_pipelines_see_a_rotated_grayscale_tiff_upright(tmp_path, pneumonia_pipeline):
    path = tmp_path / "scan.tif"
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    Image.fromarray(np.ascontiguousarray(STORED[6])).save(path, exif=exif)
    with Image.open(path) as lazy:
        assert pneumonia_pipeline(str(path)) == pneumonia_pipeline(lazy) == pneumonia_pipeline(UPRIGHT)
    assert torch.equal(vqa_image_tensor(path, 1, 28), vqa_image_tensor(UPRIGHT, 1, 28))
    torch.manual_seed(0)
    seg = ImageSegmentationPipeline(SegmentationModel(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), 2))
    assert np.array_equal(seg(path)["mask"], seg(UPRIGHT)["mask"])


@pytest.mark.parametrize("name, orientation", [("scan.tif", 6), ("scan.tif", 1), ("film.png", 6)])
def test_a_file_is_loaded_and_turned_once(tmp_path, monkeypatch, name, orientation):
    """read_image ran load_upright on the image, then pil_to_uint8 ran it again on the result (a second
    load and EXIF look-up per decoded image, corpus building and data set readers included)."""
    import medfm.data.images as images

    calls = []
    monkeypatch.setattr(images, "load_upright", lambda im, real=images.load_upright: calls.append(im) or real(im))
    assert np.array_equal(read_image(_save(tmp_path / name, STORED[orientation], orientation), "L"), UPRIGHT)
    assert len(calls) == 1  # was 2


def test_a_rotated_tiff_whose_file_was_closed_is_refused(tmp_path):
    """Not read afresh from a closed file, nor memory-mapped by name behind it (un-oriented pixels):
    the closed-file message, however the file was closed."""
    path = _save(tmp_path / "scan.tif", STORED[6], 6)
    with Image.open(path) as after_with:
        pass
    closed, by_hand = Image.open(path), Image.open(path)
    closed.close()
    by_hand.fp.close()
    for im in (after_with, closed, by_hand):
        with pytest.raises(CorruptFileError, match="its file was closed before the pixels were read"):
            pil_to_uint8(im)
