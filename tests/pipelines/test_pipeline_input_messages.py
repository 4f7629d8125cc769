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
from medfm.pipelines.classification import ImageClassificationPipeline
from medfm.pipelines.inputs import PipelineInputError
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
    with pytest.raises(PipelineInputError, match=r"^vol\.nii\.gz is a NIfTI file nibabel cannot read \(.*\); this VQA "
                                                 r"model takes image files \(PNG, JPEG, TIFF, \.\.\.\), "):
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
    with pytest.raises(PipelineInputError, match=r"got shape \(30, 40, 4\) \(RGBA\? drop the alpha channel, "
                                                 r"array\[\.\.\., :3\]\)$"):  # not the channels-first hint
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


#: how every 2D pipeline names what it takes, after "this 2D classifier takes " etc.
IMAGES_2D = (r"image files \(PNG, JPEG, TIFF, \.\.\.\), PIL images or \(H, W\) / \(H, W, 1\|3\) arrays \(uint8, or "
             r"float in \[0, 1\]\)")


def test_a_nifti_slice_given_to_a_2d_pipeline_is_called_a_slice_with_how_to_pass_it(pneumonia_pipeline, seg,
                                                                                      tmp_path):
    """A 2D NIfTI slice given to a 2D pipeline was called a volume: "slice.nii.gz is a NIfTI volume;
    this classifier takes 2D images (a 3D volume needs a 3D classifier ...)" (classification), "it is
    a NIfTI volume, not a 2D image (3D volumes need a 3D model)" (VQA); the segmentation pipeline
    said "this is a 2D image model ... not NIfTI files" for slices and volumes alike. Every 2D
    pipeline now says what the file is (a 2D slice, or a volume with its shape), what the model
    takes, and how to pass a slice (load it with nibabel, pass the array); a missing NIfTI file is
    "not found", no longer "a NIfTI volume"."""
    import nibabel as nib

    pipes = [(pneumonia_pipeline, PipelineInputError, "2D classifier"), (seg, SegmentationInputError,
             "2D segmentation model"), (lambda p: vqa_image_tensor(p, 1, 28), PipelineInputError, "VQA model")]
    unit = IMG / 255.0
    for name, arr in (("slice.nii.gz", unit), ("slab.nii", unit[..., None]), ("slab4d.nii", unit[..., None, None])):
        nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / name))
        for pipe, error, kind in pipes:
            with pytest.raises(error, match=rf"^{name} is a 2D NIfTI slice of shape \({arr.shape[0]}, {arr.shape[1]}.*\); "
                                            rf"this {kind} takes {IMAGES_2D}, not NIfTI files: load it with nibabel "
                                            r"and pass the array, np\.asarray\(nib\.load\(path\)\.dataobj\)\.squeeze\(\), "
                                            r"as a float array scaled to \[0, 1\] or as uint8$"):
                pipe(tmp_path / name)
        loaded = np.asarray(nib.load(str(tmp_path / name)).dataobj).squeeze()  # what the message says to pass
        assert pneumonia_pipeline(loaded) == pneumonia_pipeline(IMG)
        assert np.array_equal(seg(loaded)["mask"], seg(IMG)["mask"])
        assert torch.equal(vqa_image_tensor(loaded, 1, 28), vqa_image_tensor(IMG, 1, 28))
    nib.save(nib.Nifti1Image(np.zeros((30, 40, 5), np.float32), np.eye(4)), str(tmp_path / "vol.nii.gz"))
    needs_3d = [r"a 3D volume needs a 3D classifier, e\.g\. one fine-tuned with encoder resnet3d_10",
                r"a 3D volume needs a 3D or 2\.5D segmentation model", r"a VQA model answers about one 2D image: "
                r"pass a slice of the volume as an array"]
    for (pipe, error, kind), needs in zip(pipes, needs_3d):
        with pytest.raises(error, match=rf"^vol\.nii\.gz is a 3D NIfTI of shape \(30, 40, 5\); this {kind} takes "
                                        rf"{IMAGES_2D} \({needs}\)$"):
            pipe(tmp_path / "vol.nii.gz")
        with pytest.raises(error, match=r"(not found|no such input file): .*missing\.nii\.gz$"):
            pipe(tmp_path / "missing.nii.gz")


@pytest.mark.parametrize("shape, n", [((30, 40), 2), ((30, 40, 1), 2), ((1, 30, 1, 40), 2), ((30, 40, 5), 3),
                                      ((30, 40, 5, 2), 4), ((30, 1, 1), 1), ((1, 1), 0), ((), 0)])
def test_one_rule_says_how_many_axes_are_longer_than_1(shape, n):
    """The "2D slice" test of every pipeline message (a NIfTI slice for a 2D model, a slice or a 4D
    series for a volumetric one, a 2D array for a multi-channel 3D model) is one helper: it was
    written out three times (classification ``nifti_shape_note`` / ``check_not_nifti``,
    ``seg_inputs``), as ``== 2`` in two places and ``<= 2`` in the third."""
    from medfm.pipelines.inputs import axes_longer_than_1, nifti_shape_note

    assert axes_longer_than_1(shape) == n
    assert axes_longer_than_1(np.zeros(shape).shape) == n  # numpy shapes too
    if len(shape) >= 2:
        assert ("(needs a 2D model)" in nifti_shape_note(shape, "needs a 2D model")) == (n == 2)


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
