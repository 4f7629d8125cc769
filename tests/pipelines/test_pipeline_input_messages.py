"""What users pass to the pipelines by mistake (a closed PIL image; DICOM, NIfTI and numpy files;
folders; image stacks and channels-first arrays), each answered with one line saying what the input
is and what to do. Found with real checkpoints on MedNIST, CHASE_DB1, VQA-RAD and MSD Hippocampus
files. Was: a bare ``AssertionError`` (closed image), "cannot identify image file" (DICOM, NIfTI,
``.npy``), "no such input file" (an existing folder), "a 3D volume" (a MedMNIST stack).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.segmentation import SegmentationModel
from medfm.data.errors import CorruptFileError
from medfm.data.images import non_image_hint, pil_to_uint8, read_image
from medfm.pipelines.classification import ImageClassificationPipeline, PipelineInputError
from medfm.pipelines.segmentation import ImageSegmentationPipeline, SegmentationInputError
from medfm.pipelines.vqa import vqa_image_tensor

IMG = np.random.default_rng(0).integers(0, 256, (30, 40), dtype=np.uint8)


@pytest.fixture(scope="module")
def clf3d():
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet3d_test", in_chans=1, img_size=16)
    return ImageClassificationPipeline(ImageClassifier(enc, 2, "binary-class", ["normal", "hyperplasia"]))


@pytest.fixture(scope="module")
def seg():
    torch.manual_seed(0)
    return ImageSegmentationPipeline(SegmentationModel(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), 2))


@pytest.fixture()
def png(tmp_path):
    Image.fromarray(IMG).save(tmp_path / "x.png")
    return tmp_path / "x.png"


def _dicom(path):
    """A file with DICOM's preamble and ``DICM`` magic (PS3.10 7.1), which PIL cannot decode."""
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + b"\0" * 64)
    return path


def _same(got, want):
    """Per-image rankings equal, scores to float precision (a batch may round differently)."""
    assert [[d["label"] for d in r] for r in got] == [[d["label"] for d in r] for r in want]
    np.testing.assert_allclose([[d["score"] for d in r] for r in got], [[d["score"] for d in r] for r in want],
                               atol=1e-6)


def test_a_pil_image_whose_file_was_closed_is_named_in_every_pipeline(pneumonia_pipeline, seg, png):
    with Image.open(png) as closed:
        pass  # used after the block: PIL's load() raised a bare AssertionError
    shut = Image.open(png)
    shut.close()  # explicitly closed: PIL's ValueError "Operation on closed image"
    for im in (closed, shut):
        with pytest.raises(PipelineInputError, match=r"its file was closed before the pixels were read; call "
                                                     r"im\.load\(\)"):
            pneumonia_pipeline(im)
        with pytest.raises(SegmentationInputError, match="its file was closed"):
            seg(im)
        with pytest.raises(PipelineInputError, match="its file was closed"):
            vqa_image_tensor(im, 1, 28)
        with pytest.raises(CorruptFileError, match="its file was closed"):
            pil_to_uint8(im, "L")
    with Image.open(png) as loaded:
        loaded.load()  # loaded inside the block: fine afterwards, as a lazily opened image is
    assert pneumonia_pipeline(loaded) == pneumonia_pipeline(Image.open(png)) == pneumonia_pipeline(IMG)


def test_dicom_nifti_and_numpy_files_are_named_not_just_unidentified(pneumonia_pipeline, seg, tmp_path, png):
    for dicom in (_dicom(tmp_path / "scan.dcm"), _dicom(tmp_path / "IM0001")):  # DICOM often has no suffix
        with pytest.raises(PipelineInputError, match=r"it is a DICOM file, which medfm does not decode: export it "
                                                     r"to PNG, or pass its pixels as a PIL image") as err:
            pneumonia_pipeline(str(dicom))
        assert "\n" not in str(err.value)
        with pytest.raises(SegmentationInputError, match="it is a DICOM file"):
            seg(dicom)
        with pytest.raises(PipelineInputError, match="it is a DICOM file"):
            vqa_image_tensor(dicom, 1, 28)
    (tmp_path / "vol.nii.gz").write_bytes(b"\x1f\x8b not really")
    with pytest.raises(PipelineInputError, match=r"vol\.nii\.gz: it is a NIfTI volume, not a 2D image"):
        vqa_image_tensor(str(tmp_path / "vol.nii.gz"), 1, 28)
    np.save(tmp_path / "img.npy", IMG)
    with pytest.raises(PipelineInputError, match=r"img\.npy: it is a numpy array file, not an image file: pass "
                                                 r"np\.load\(path\) instead"):
        pneumonia_pipeline(tmp_path / "img.npy")
    assert np.array_equal(read_image(png), IMG)  # real images are untouched
    assert non_image_hint(png) is None and non_image_hint(tmp_path / "missing") is None


def test_a_folder_is_called_a_folder_by_segmentation_and_the_3d_classifier(seg, clf3d, tmp_path):
    with pytest.raises(SegmentationInputError, match=rf"no such input file: {tmp_path} \(a folder\)"):
        seg(str(tmp_path))
    with pytest.raises(PipelineInputError, match=rf"no such volume file: {tmp_path} \(a folder\)"):
        clf3d(tmp_path)
    torch.manual_seed(0)
    multi = ImageSegmentationPipeline(SegmentationModel(medfm.create_encoder("resnet3d_test", in_chans=2,
                                                                             img_size=16), 2))
    with pytest.raises(SegmentationInputError, match=rf"no such input file: {tmp_path} \(a folder\)"):
        multi({"image": [tmp_path, tmp_path / "t1c.nii.gz"]})
    with pytest.raises(SegmentationInputError, match=r"no such input file: \S+missing\.png$"):
        seg(str(tmp_path / "missing.png"))  # a missing file is still just missing


def test_image_stacks_and_channels_first_arrays_say_a_batch_is_a_list(pneumonia_pipeline, clf3d):
    stack = np.stack([IMG] * 10)  # as MedMNIST's npz stores a split: (N, H, W) uint8
    with pytest.raises(PipelineInputError, match=r"shape \(10, 30, 40\) \(a 3D volume needs a 3D classifier.*; a "
                                                 r"stack of 2D images is a batch: pass a list, list\(array\)\)"):
        pneumonia_pipeline(stack)
    for arr in (stack[:3], IMG[None]):
        with pytest.raises(PipelineInputError, match=r"\(channels first\? pass array\.transpose\(1, 2, 0\); several "
                                                     r"images\? pass a list, list\(array\)\)"):
            pneumonia_pipeline(arr)
    _same(pneumonia_pipeline(list(stack[:3])), [pneumonia_pipeline(IMG)] * 3)
    _same([pneumonia_pipeline(IMG[None].transpose(1, 2, 0))], [pneumonia_pipeline(IMG)])
    with pytest.raises(PipelineInputError, match=r"got shape \(30, 40, 4\)$"):  # RGBA: no channels-first hint
        pneumonia_pipeline(np.zeros((30, 40, 4), np.uint8))
    vols = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 16), dtype=np.uint8)
    with pytest.raises(PipelineInputError, match=r"volume has 5 channels .* but the model takes 1 \(a stack of "
                                                 r"volumes is a batch: pass a list, list\(array\)\)"):
        clf3d(vols)
    _same(clf3d(list(vols[:2])), [clf3d(vols[0]), clf3d(vols[1])])


def test_every_pipeline_refuses_a_model_of_another_kind_with_its_input_error(pneumonia_pipeline, seg):
    """The segmentation pipeline raised ``TypeError`` for a checkpoint that is not a segmenter, the
    classification and VQA pipelines their ``ValueError`` input error: now all do the latter."""
    from medfm.pipelines.vqa import VisualQuestionAnsweringPipeline

    with pytest.raises(SegmentationInputError, match=r"^ImageClassifier is not a medfm segmentation model \(medfm "
                                                     r"adapter 'segmentation'\); fine-tune one with `medfm segment`$"):
        ImageSegmentationPipeline(pneumonia_pipeline.model)
    with pytest.raises(PipelineInputError, match="SegmentationModel is not an image classifier"):
        ImageClassificationPipeline(seg.model)
    with pytest.raises(PipelineInputError, match="SegmentationModel is not a VQA model"):
        VisualQuestionAnsweringPipeline(seg.model)


def test_a_nifti_slice_given_to_a_2d_segmenter_says_what_a_2d_model_takes(seg, tmp_path):
    """A 2D NIfTI slice said "expected a 3D NIfTI volume" (as if a volume were wanted), a 3D one
    "pass images, not NIfTI volumes"; both now name what a 2D model takes and how to pass a slice."""
    import nibabel as nib

    for name, shape in (("slice.nii.gz", (30, 40)), ("slab.nii", (30, 40, 1)), ("vol.nii.gz", (30, 40, 5))):
        nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), str(tmp_path / name))
        with pytest.raises(SegmentationInputError, match=rf"^this is a 2D image model: it takes image files \(PNG, "
                                                         rf"JPEG, TIFF, \.\.\.\), PIL images or \(H, W\) / \(H, W, "
                                                         rf"1\|3\) arrays .*, not NIfTI files \({name}\); pass a 2D "
                                                         r"slice as a uint8 array or a float array scaled to \[0, 1\]$"):
            seg(tmp_path / name)
    assert seg(np.zeros((30, 40), np.float32))["mask"].shape == (30, 40)  # the slice itself, as an array


def test_classification_pipeline_takes_top_k_at_construction_as_vqa_does(pneumonia_pipeline):
    """``medfm.pipeline("image-classification", ..., top_k=1)`` was a TypeError; the VQA pipeline
    took ``top_k`` there. The default (all classes) is unchanged and a call's ``top_k`` overrides."""
    every = pneumonia_pipeline(IMG)
    assert len(every) == 2 and pneumonia_pipeline.top_k is None
    one = medfm.pipeline("image-classification", model=pneumonia_pipeline.model, top_k=1)
    assert one(IMG) == every[:1]
    assert one([IMG, IMG]) == [every[:1]] * 2
    assert one(IMG, top_k=2) == every
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(PipelineInputError, match=r"^top_k must be a positive integer or None \(all classes\), "
                                                     rf"got {bad!r}$".replace("?", r"\?")):
            medfm.pipeline("image-classification", model=pneumonia_pipeline.model, top_k=bad)
