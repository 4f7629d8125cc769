"""Python API audit of ``medfm.pipelines``: what a user's wrong or unusual input did before, and does now.

Before:

- ``medfm.pipeline(["image-classification"], ...)`` stopped in ``TypeError: unhashable type: 'list'``;
- ``ImageClassificationPipeline(batch_size=...)`` took ``"8"``, ``2.7`` and ``True`` as 8, 2 and 1, and
  ``None`` stopped in ``int()``;
- an empty image path ``""`` was reported as the folder ``.``;
- ``predict_probs`` passed ``overlap`` and ``sw_batch_size`` to MONAI unchecked (``range() arg 3 must not
  be zero``, a ``TypeError`` for ``"a"``, ``True`` taken as 1, and no check at all when the input is one
  window) and turned strings / objects into a torch ``TypeError``, bools into 0 / 1 images;
- ``save_nifti`` of a mask array stopped in nibabel's ``AttributeError``, and an ``output_path`` that is
  not a path in pathlib's ``TypeError``, after the segmentation had run;
- a complex NIfTI lost its imaginary part with only a ``ComplexWarning`` and was segmented;
- TIFFs Pillow misreads went through every 2D pipeline without a word: a multi-page TIFF as its page 0,
  a 16-bit RGB(A) one as its high bytes (12-bit data nearly black), a TIFF with EXIF Orientation 5-8 that
  Pillow had loaded before medfm saw it with its rows scrambled;
- the VQA pipeline split an ``(H, W, 3)`` image into its ``H`` rows when ``H`` questions came with it,
  paired a set of questions with the images in the set's arbitrary order, and made RGB gray with a float
  luma that is 1 level off PIL's ``"L"`` (which the other pipelines use) on about one pixel in 4096.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import medfm
from medfm.adapters.segmentation import SegmentationModel
from medfm.data.images import ORIENTATION_TAG
from medfm.pipelines.classification import ImageClassificationPipeline, image_to_tensor, volume_to_tensor
from medfm.pipelines.inputs import PipelineInputError, check_tiff
from medfm.pipelines.segmentation import (ImageSegmentationPipeline, SegmentationInputError, predict_probs,
                                          save_nifti)
from medfm.pipelines.vqa import vqa_image_tensor
from tests.conftest import write_deep_colour_tiff

RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
Q = "is there a mass ?"


def _seg(encoder="resnet_test", **inference):
    torch.manual_seed(0)
    return SegmentationModel(medfm.create_encoder(encoder, in_chans=1, img_size=16), 2, inference=inference).eval()


@pytest.fixture(scope="module")
def seg2d():
    return ImageSegmentationPipeline(_seg())


@pytest.fixture(scope="module")
def vqa(vqa_model):
    return medfm.pipeline("visual-question-answering", model=vqa_model, top_k=2)


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# -- options -------------------------------------------------------------------------------------------
def test_a_task_that_is_not_a_string_is_an_unknown_task(pneumonia_pipeline):
    with pytest.raises(ValueError, match=r"^unknown pipeline task \['image-classification'\]"):  # was TypeError
        medfm.pipeline(["image-classification"], model=pneumonia_pipeline.model)


@pytest.mark.parametrize("batch_size", ["8", 2.7, 4.0, True, None, 0])
def test_classification_batch_size_is_an_integer_of_at_least_1(pneumonia_pipeline, batch_size):
    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1, got "):
        ImageClassificationPipeline(pneumonia_pipeline.model, batch_size=batch_size)


@pytest.mark.parametrize("kwargs, message", [
    ({"overlap": -1}, r"overlap must be in \[0, 1\), got -1\.0"),
    ({"overlap": 1.5}, r"overlap must be in \[0, 1\), got 1\.5"),
    ({"overlap": "a"}, r"overlap must be a finite number in \[0, 1\), got 'a' \(str\)"),
    ({"sw_batch_size": 0}, r"sw_batch_size must be an integer >= 1, got 0"),
    ({"sw_batch_size": 2.5}, r"sw_batch_size must be an integer >= 1, got 2\.5"),
    ({"sw_batch_size": True}, r"sw_batch_size must be an integer >= 1, got True \(bool\)"),
])
@pytest.mark.parametrize("side", [16, 40], ids=["one-window", "sliding"])
def test_predict_probs_checks_its_window_options(kwargs, message, side):
    with pytest.raises(ValueError, match=f"^{message}$"):
        predict_probs(_seg(), np.zeros((1, side, side), np.float32), **kwargs)


@pytest.mark.parametrize("image", ["x.png", np.zeros((1, 16, 16), object), np.zeros((1, 16, 16), np.complex64),
                                   np.ones((1, 16, 16), bool), torch.ones(1, 16, 16, dtype=torch.bool)],
                         ids=["str", "object", "complex", "bool", "bool-tensor"])
def test_predict_probs_refuses_what_is_not_real_numbers(image):
    with pytest.raises(SegmentationInputError, match=r"^predict_probs takes a real-valued array or tensor"):
        predict_probs(_seg(), image)


def test_an_empty_path_is_called_empty(pneumonia_pipeline, seg2d):
    with pytest.raises(PipelineInputError, match=r"^image file not found: the path is empty \(''\)$"):  # was '.'
        pneumonia_pipeline("")
    with pytest.raises(SegmentationInputError, match=r"^no such input file: the path is empty"):
        seg2d("")


# -- NIfTI in and out ----------------------------------------------------------------------------------
def test_save_nifti_and_output_path_refuse_other_types(tmp_path):
    with pytest.raises(SegmentationInputError, match=r"^save_nifti writes a nibabel image, e\.g\. "
                                                     r"nib\.Nifti1Image\(mask, affine\), got ndarray$"):
        save_nifti(np.zeros((4, 4, 4), np.uint8), tmp_path / "mask.nii.gz")  # was AttributeError
    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4))
    with pytest.raises(SegmentationInputError, match=r"^output_path must be a file path ending in \.nii or "
                                                     r"\.nii\.gz, got int$"):
        save_nifti(image, 5)  # was TypeError
    volume = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(RNG.random((20, 18, 17), dtype=np.float32), np.eye(4)), str(volume))
    pipe = ImageSegmentationPipeline(_seg("resnet3d_test", intensity="percentile"))
    with pytest.raises(SegmentationInputError, match=r"^output_path must be a file path"):
        pipe(str(volume), output_path=5)
    assert pipe(str(volume), output_path=tmp_path / "mask.nii.gz")["mask"].shape == (20, 18, 17)


def test_a_complex_nifti_is_refused_not_cut_to_its_real_part(tmp_path):
    path = tmp_path / "complex.nii.gz"
    nib.save(nib.Nifti1Image(RNG.random((20, 18, 17)).astype(np.complex64), np.eye(4)), str(path))
    pipe = ImageSegmentationPipeline(_seg("resnet3d_test", intensity="percentile"))
    with pytest.raises(SegmentationInputError, match=r"^NIfTI complex\.nii\.gz holds complex64 voxels, not real "
                                                     r"numbers$"):
        pipe(str(path))  # was a ComplexWarning and a mask
    with pytest.raises(PipelineInputError, match=r"^NIfTI complex\.nii\.gz holds complex64 voxels, not real numbers$"):
        volume_to_tensor(str(path), 1, 16)  # a 3D classifier: the same rule and message


# -- TIFFs Pillow misreads -----------------------------------------------------------------------------
def _2d_pipelines(pneumonia_pipeline, seg2d):
    """Each 2D pipeline as a call on one image, with its error class."""
    return [(pneumonia_pipeline, PipelineInputError), (lambda im: vqa_image_tensor(im, 1, 28), PipelineInputError),
            (seg2d, SegmentationInputError)]


def test_a_multi_page_tiff_is_refused_not_read_as_its_first_page(tmp_path, pneumonia_pipeline, seg2d):
    pages = [Image.fromarray(np.full((30, 40), v, np.uint8)) for v in (10, 200, 90)]
    path = tmp_path / "stack.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    for call, error in _2d_pipelines(pneumonia_pipeline, seg2d):
        with pytest.raises(error, match=r"^stack\.tif is a TIFF of 3 frames \(a stack, a volume or an animation\?\); "
                                        r"this model takes one 2D image: pass one frame as a PIL image, "):
            call(str(path))  # was page 0, without a word
        with Image.open(path) as im, pytest.raises(error, match=r"^the PIL image of stack\.tif is a TIFF of 3 frames"):
            call(im)
    with Image.open(path) as im:  # what the message says to do
        im.seek(1)
        page = im.copy()
    assert pneumonia_pipeline(page) == pneumonia_pipeline(np.full((30, 40), 200, np.uint8))


def test_a_16_bit_rgb_tiff_is_refused_not_read_as_its_high_bytes(tmp_path, pneumonia_pipeline, seg2d):
    twelve_bit = RNG.integers(0, 4096, (30, 40, 3)).astype(np.uint16)
    path = write_deep_colour_tiff(tmp_path / "rgb16.tif", twelve_bit)
    with Image.open(path) as im:
        assert im.mode == "RGB" and np.asarray(im).max() <= 15  # Pillow keeps the high byte: nearly black
    for call, error in _2d_pipelines(pneumonia_pipeline, seg2d):
        with pytest.raises(error, match=r"^rgb16\.tif is an RGB TIFF with 16 bits per channel, which Pillow reads as "
                                        r"8 bits by keeping the high byte") as err:
            call(path)
        assert _one_line(err).endswith("or pass its pixels as a float array (H, W, 3) scaled to [0, 1]")
        with Image.open(path) as im, pytest.raises(error, match=r"^the PIL image of rgb16\.tif is an RGB TIFF with 16"):
            call(im)
    gray16 = tmp_path / "gray16.tif"  # 16-bit grayscale is read right: min-max scaled
    Image.fromarray(GRAY.astype(np.uint16) * 16).save(gray16)
    assert pneumonia_pipeline(str(gray16)) == pneumonia_pipeline(GRAY)


def _rotated_tiff(path, stored, orientation):
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=exif)
    return path


def test_a_tiff_pillow_loaded_scrambled_is_refused(tmp_path, pneumonia_pipeline, seg2d):
    upright = RNG.integers(0, 256, (6, 9), dtype=np.uint8)
    path = _rotated_tiff(tmp_path / "scan.tif", np.rot90(upright, 1), 6)  # shown turned back clockwise
    loaded = Image.open(path)
    loaded.load()  # by the user: Pillow memory-maps it with the swapped size, then transposes
    got = np.asarray(loaded)  # (9, 6): the upright picture is (6, 9), and these are not its pixels turned either
    assert got.shape == (9, 6) and not any(np.array_equal(got, np.rot90(upright, k)) for k in (1, 3))
    for call, error in _2d_pipelines(pneumonia_pipeline, seg2d):
        with pytest.raises(error, match=r"^the PIL image of scan\.tif is an uncompressed TIFF with EXIF Orientation 6 "
                                        r"that Pillow loaded before medfm saw it, with its rows scrambled") as err:
            call(loaded)  # was the scrambled pixels
        assert _one_line(err).endswith("(Image.open(path) without im.load() or np.asarray(im))")
    with Image.open(path) as lazy:  # what the message says: medfm reads it upright
        assert pneumonia_pipeline(lazy) == pneumonia_pipeline(str(path)) == pneumonia_pipeline(upright)


@pytest.mark.parametrize("mode, stored, orientation", [
    ("RGB", np.rot90(GRAY, 1), 6),  # RGB is not memory-mapped: loaded right
    ("L", GRAY[::-1, ::-1], 3),     # no swap of width and height: loaded right
    ("L", GRAY[:30, :30].T, 5),     # square: the swapped size is the same one
])
def test_a_tiff_pillow_loaded_right_still_passes(tmp_path, pneumonia_pipeline, mode, stored, orientation):
    path = tmp_path / "ok.tif"
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).convert(mode).save(path, exif=exif)
    loaded = Image.open(path)
    loaded.load()
    assert pneumonia_pipeline(loaded) == pneumonia_pipeline(str(path))


def test_a_square_loaded_tiff_is_not_read_again(tmp_path, monkeypatch):
    path = tmp_path / "square.tif"  # memory-mapped when loaded; square: never loaded scrambled
    _rotated_tiff(path, GRAY[:30, :30], 6)
    loaded = Image.open(path)
    loaded.load()
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    check_tiff(loaded)
    assert opened == []  # was one header read per image, which cannot change the answer for a square one


# -- VQA pairing and gray ------------------------------------------------------------------------------
def test_vqa_takes_an_rgb_array_as_one_image_whatever_its_height(vqa):
    rgb = RNG.integers(0, 256, (3, 40, 3), dtype=np.uint8)  # 3 rows, 3 questions
    with pytest.raises(PipelineInputError, match=r"^a list of 3 questions for a single image; "):
        vqa(rgb, [Q] * 3)  # was 3 images of shape (40, 3), one per row
    assert len(vqa(np.stack([GRAY, GRAY[::-1]]), [Q, Q])) == 2  # (N, H, W) with N = 2 questions: still a stack


def test_vqa_refuses_sets_which_have_no_order(vqa):
    for images, questions, which in (([GRAY, GRAY[::-1]], {Q, "is there a fracture ?"}, "questions"),
                                     ({"a.png", "b.png"}, [Q, Q], "images")):
        with pytest.raises(PipelineInputError, match=rf"^{which} given as a set, which has no order; questions and "
                                                     r"images are paired by position: pass lists$"):
            vqa(images, questions)


def test_vqa_makes_rgb_gray_as_pil_l_does_like_the_other_pipelines(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pil_l = np.asarray(Image.fromarray(rgb).convert("L"))
    float_luma = np.rint(rgb @ np.array([0.299, 0.587, 0.114]))
    assert (float_luma != pil_l).any()  # the old conversion: 1 level apart somewhere
    want = torch.from_numpy(pil_l.astype(np.float32) / 255)[None]  # 64 px: no pad, no resize
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    for image in (rgb, rgb / 255.0, Image.fromarray(rgb), tmp_path / "rgb.png"):
        assert torch.equal(vqa_image_tensor(image, 1, 64), want)
    assert torch.equal(vqa_image_tensor(rgb, 1, 64), image_to_tensor(rgb, 1, 64))  # the classifier's gray

