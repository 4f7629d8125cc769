"""Input follow-ups: what a user's input did before, and does now.

- an animated PNG (APNG), GIF or WebP was read as its frame 0 without a word by the data readers
  (:func:`medfm.data.images.read_image`, :class:`medfm.data.imagefolder.ImageFolderDataset`) and every 2D pipeline,
  while a multi-page TIFF was refused: one rule and one message for any multi-frame image now
  (:func:`medfm.data.images.check_tiff`);
- a numpy masked array given to a pipeline was used with the values stored under its mask
  (:func:`medfm.pipelines.inputs.refuse_masked`);
- ``TextConditionedSegmenter(template="... {target!r}")`` put the target in Python's quotes (``{target.upper}``: a
  method's repr) while the class-prompt templates refused both: one rule, :func:`medfm.text.prompts.check_template`;
- ``VQAModel.loss`` took a float ``is_closed`` (0.0 / 1.0) that the mask rule of every other mask refuses
  (:func:`medfm.arg_checks.check_mask_tensor`);
- :func:`medfm.io.atomic_dir` under a file said mkdir's ``[Errno 17] File exists`` / ``[Errno 20] Not a directory``
  (naming a folder below the file), and a file at the target its own words: one wording with the atomic writers.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

import medfm
from medfm.adapters.segmentation import SegmentationModel
from medfm.adapters.text_seg import TextConditionedSegmenter
from medfm.data.errors import CorruptFileError
from medfm.data.imagefolder import ImageFolderDataset
from medfm.data.images import read_image
from medfm.io import atomic_dir, atomic_write_text
from medfm.pipelines.classification import image_to_tensor
from medfm.pipelines.inputs import PipelineInputError, each_input, pil_to_array, uint8_image_array
from medfm.pipelines.segmentation import ImageSegmentationPipeline, SegmentationInputError
from medfm.pipelines.seg_inputs import split_item
from medfm.pipelines.vqa import vqa_image_tensor
from medfm.text.prompts import check_template
from tests.conftest import MASKED_HINT, write_class_folders

RNG = np.random.default_rng(0)
VALUES = (10, 200, 90)
WHY = "(a stack, a volume or an animation?)"


def _animated(path, fmt):
    """A (30, 40) grey image of one frame per value of :data:`VALUES`, in format ``fmt``."""
    frames = [Image.fromarray(np.full((30, 40), v, np.uint8)) for v in VALUES]
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100)
    return path


FORMATS = [("anim.png", "PNG"), ("anim.gif", "GIF"), ("anim.webp", "WEBP"), ("stack.tif", "TIFF")]


# -- several frames ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, fmt", FORMATS)
def test_an_image_of_several_frames_is_refused_by_the_data_readers(tmp_path, name, fmt):
    path = _animated(tmp_path / name, fmt)
    with pytest.raises(CorruptFileError) as err:
        read_image(path, what="MedNIST image")  # was frame 0 (all 10), without a word (a TIFF: refused already)
    assert str(err.value) == (f"MedNIST image {path} is a {fmt} of 3 frames {WHY}; medfm reads one 2D image per file: "
                              "save each frame as its own image file (a volume as NIfTI)")


def test_an_image_folder_with_an_animated_png_is_refused(tmp_path):
    write_class_folders(tmp_path, ("a", "b"), 2, RNG)
    _animated(tmp_path / "b" / "anim.png", "PNG")  # an APNG (the folder reads .png, .jpg, .bmp, .tif files)
    with pytest.raises(CorruptFileError, match=rf"^image .*anim\.png is a PNG of 3 frames {re.escape(WHY)}; "):
        ImageFolderDataset(tmp_path)  # was trained on frame 0


@pytest.fixture(scope="module")
def seg2d():
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    return ImageSegmentationPipeline(SegmentationModel(enc, 2).eval())


@pytest.mark.parametrize("name, fmt", FORMATS[:3])
def test_an_image_of_several_frames_is_refused_by_every_2d_pipeline(tmp_path, seg2d, name, fmt):
    path = _animated(tmp_path / name, fmt)
    calls = [(lambda im: image_to_tensor(im, 1, 28), PipelineInputError),
             (lambda im: vqa_image_tensor(im, 1, 28), PipelineInputError), (seg2d, SegmentationInputError)]
    advice = ("this model takes one 2D image: pass one frame as a PIL image, "
              "im = Image.open(path); im.seek(i); im.copy()")
    for call, error in calls:
        with pytest.raises(error) as err:
            call(str(path))  # was frame 0, without a word
        assert str(err.value) == f"{name} is a {fmt} of 3 frames {WHY}; {advice}"
        with Image.open(path) as im, pytest.raises(error, match=rf"^the PIL image of {name} is a {fmt} of 3 frames"):
            call(im)


def test_a_frame_taken_out_and_single_frame_images_pass(tmp_path):
    with Image.open(_animated(tmp_path / "anim.gif", "GIF")) as im:  # what the message says to do
        im.seek(1)
        frame = im.copy()
    assert np.array_equal(pil_to_array(frame, 1), np.full((30, 40), 200, np.uint8))
    for name in ("one.gif", "one.png", "one.webp"):
        Image.fromarray(np.full((30, 40), 77, np.uint8)).save(tmp_path / name)
        assert np.array_equal(read_image(tmp_path / name, "L"), np.full((30, 40), 77, np.uint8))
    with Image.open(tmp_path / "one.gif") as im:  # loaded inside its with-block, used after: still fine
        im.load()
    assert np.array_equal(pil_to_array(im, 1), np.full((30, 40), 77, np.uint8))


def test_an_animated_gif_loaded_inside_its_with_block_is_still_refused(tmp_path):
    path = _animated(tmp_path / "anim.gif", "GIF")
    with Image.open(path) as im:
        im.load()  # the GIF's file is closed after the block: it can no longer look for its second frame itself
    with pytest.raises(PipelineInputError, match=rf"^the PIL image of anim\.gif is a GIF of 3 frames {re.escape(WHY)}"):
        pil_to_array(im, 1)


def test_an_mpo_is_read_as_its_primary_image(tmp_path):
    """A JPEG with a preview (or a stereo pair's other eye) is an MPO to Pillow, 2 frames: its frame 0 is the
    picture."""
    first, preview = (Image.fromarray(np.full((30, 40, 3), v, np.uint8)) for v in (50, 200))
    path = tmp_path / "photo.jpg"
    first.save(path, format="MPO", save_all=True, append_images=[preview])
    with Image.open(path) as im:
        assert im.format == "MPO" and im.n_frames == 2
    assert abs(float(read_image(path).mean()) - 50) < 2  # JPEG rounding


# -- masked arrays ------------------------------------------------------------------------------------------
def _masked(shape=(30, 40), dtype=np.float64):
    data = np.full(shape, 0.5 if dtype != np.uint8 else 128, dtype)
    return np.ma.masked_array(data, mask=np.zeros(shape, bool))


def test_a_masked_array_is_refused_by_every_2d_pipeline(pneumonia_pipeline, seg2d):
    masked = _masked()
    masked[0, 0] = np.ma.masked
    calls = [(pneumonia_pipeline, PipelineInputError), (lambda a: vqa_image_tensor(a, 1, 28), PipelineInputError),
             (seg2d, SegmentationInputError), (uint8_image_array, PipelineInputError)]
    for call, error in calls:  # were the values under the mask (uint8_image_array: rounded garbage there)
        with pytest.raises(error) as err:
            call(masked)
        assert str(err.value) == f"image is {MASKED_HINT}"
    with pytest.raises(PipelineInputError) as err:
        pneumonia_pipeline([np.full((30, 40), 0.5), masked])
    assert str(err.value) == f"image at index 1 of 2: image is {MASKED_HINT}"
    assert pneumonia_pipeline(masked.filled(0.0)) == pneumonia_pipeline(np.where(masked.mask, 0.0, masked.data))


def test_a_masked_volume_and_a_masked_brain_mask_are_refused():
    volume = _masked((8, 8, 8), np.uint8)  # a uint8 volume goes to a 3D classifier without a float check
    with pytest.raises(PipelineInputError, match=rf"^volume is {re.escape(MASKED_HINT)}$"):
        each_input([volume], lambda v: v, batch=False, noun="volume")  # every pipeline's per-input step
    for key in ("image", "brain_mask"):
        item = {"image": "case.nii.gz", key: _masked((8, 8, 8))}
        with pytest.raises(SegmentationInputError, match=rf"^{key} is {re.escape(MASKED_HINT)}$"):
            split_item(item)
    assert split_item({"image": np.zeros((8, 8, 8))})[1] is None


# -- text-conditioned segmentation templates ---------------------------------------------------------------
TARGETS = [{"name": "vessel", "modality": "retinal fundus photograph", "target": "retinal blood vessels"}]
_NEEDS = "template must be a string with the placeholders {modality} and {target}; "


def _segmenter(template):
    return TextConditionedSegmenter(medfm.create_encoder("resnet_test", in_chans=1, img_size=16), TARGETS, 8,
                                    decoder={"stem_channels": 4}, template=template)


@pytest.mark.parametrize("template, rest", [
    ("A {modality} image of {target!r}", "template 'A {modality} image of {target!r}' converts a placeholder "
     "({target!r} puts the text in Python quotes); {modality} and {target} are filled in as plain strings: "
     "write {target}"),  # was "A retinal fundus photograph image of 'retinal blood vessels'"
    ("A {modality} image of {target.upper}", "template 'A {modality} image of {target.upper}' reads an attribute or "
     "index of a placeholder ({target.upper}); {modality} and {target} are filled in as plain strings: write {target}"),
    ("A {modality} image of {target[0]}", "template 'A {modality} image of {target[0]}' reads an attribute or index "
     "of a placeholder ({target[0]}); {modality} and {target} are filled in as plain strings: write {target}"),
    ("A {modality} image", "every template needs a '{target}' placeholder, got 'A {modality} image'"),
    ("A {mod} image of {target}", "template 'A {mod} image of {target}' has field(s) ['mod']; only {modality} and "
     "{target} are filled in"),
    ("A {modality} image of {target:d}", "template 'A {modality} image of {target:d}' cannot be filled in with a "
     "target's text: Unknown format code 'd' for object of type 'str'"),
])
def test_a_segmenter_template_follows_the_class_template_rule(template, rest):
    with pytest.raises(ValueError) as err:
        _segmenter(template)
    assert str(err.value) == _NEEDS + rest
    with pytest.raises(ValueError) as same:  # the rule itself, as medfm.text.prompts has it
        check_template(template, ("modality", "target"), "target", "a target's text")
    assert str(same.value) == rest


def test_plain_segmenter_templates_still_pass():
    assert _segmenter("{target} in {modality}").prompts == ["retinal blood vessels in retinal fundus photograph"]
    assert _segmenter("{target:>22}").prompts == [" retinal blood vessels"]  # a format spec a string takes
    with pytest.raises(ValueError) as err:
        _segmenter(3)  # was "(AttributeError: 'int' object has no attribute 'format')"
    assert str(err.value) == "template must be a string with the placeholders {modality} and {target}, got 3"


# -- VQA is_closed ------------------------------------------------------------------------------------------
def test_vqa_is_closed_follows_the_mask_rule(vqa_model):
    out = vqa_model(torch.rand(2, 1, 28, 28), torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.bool))
    answers = torch.tensor([0, 2])
    with pytest.raises(ValueError, match=r"^is_closed must be \(B,\) bool \(or 0/1 integers\), got a torch\.float32 "
                                         r"tensor of shape \(2,\)$"):
        vqa_model.loss(out, answers, torch.tensor([1.0, 0.0]))  # was taken: a float is no mask
    with pytest.raises(ValueError, match=r"^is_closed must be .*got integer values \[2\] \(an integer mask holds only "
                                         r"0 and 1\)$"):
        vqa_model.loss(out, answers, torch.tensor([2, 0]))
    expected = vqa_model.loss(out, answers, torch.tensor([True, False]))
    for same in (torch.tensor([1, 0]), [True, False], np.array([True, False]), torch.tensor([[True], [False]])):
        assert torch.equal(vqa_model.loss(out, answers, same), expected)


# -- a file in the way of a folder ---------------------------------------------------------------------------
def test_atomic_dir_names_the_file_in_its_way_as_the_atomic_writers_do(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("keep")
    for target in (blocker / "ckpt", blocker / "sub" / "ckpt", blocker):  # were [Errno 17], [Errno 20], own words
        with pytest.raises(NotADirectoryError) as err:
            with atomic_dir(target):
                pass
        assert str(err.value) == f"cannot write {str(target)!r}: {str(blocker)!r} is a file, not a folder"
    json_path = blocker / "sub" / "x.json"
    with pytest.raises(NotADirectoryError) as err:
        atomic_write_text(json_path, "{}")
    assert str(err.value) == f"cannot write {str(json_path)!r}: {str(blocker)!r} is a file, not a folder"
    assert blocker.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]
