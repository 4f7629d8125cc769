"""A 2D image given to a 3D or 2.5D segmentation model is refused with what the model takes
(its kind, the dim order, the channels) and what was given.

Before: a 2D NIfTI said "expected a 3D NIfTI volume, <path> has shape (30, 40)" (no model kind,
no hint); a slice saved as an (X, Y, 1) NIfTI, the usual way tools write one, was segmented by
a 3D model as a volume one voxel thick (windows of zero padding); an RGB PNG or PIL image given
to a 3-channel 2.5D model was taken as an (H, W, 3) volume of 3 slices and segmented; a tensor
was refused without saying how to pass it.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import medfm
from medfm.adapters.segmentation import SegmentationModel
from medfm.pipelines.segmentation import ImageSegmentationPipeline, SegmentationInputError

RNG = np.random.default_rng(0)
TAKES_3D = (r"^this 3D segmentation model takes one \(X, Y, Z\) volume per input: a 3D NIfTI file or an \(X, Y, Z\) "
            r"array, any size \(16x16x16 windows\); ")
TAKES_25D = (r"^this 2\.5D segmentation model \(a 2D encoder on stacks of 3 slices along axis 2\) takes one "
             r"\(X, Y, Z\) volume per input: a 3D NIfTI file or an \(X, Y, Z\) array; ")
NEEDS_2D = r" \(a 2D image needs a 2D segmentation model\)$"


@pytest.fixture(scope="module")
def seg3d():
    torch.manual_seed(0)
    return ImageSegmentationPipeline(SegmentationModel(medfm.create_encoder("resnet3d_test", in_chans=1, img_size=16), 2))


@pytest.fixture(scope="module")
def seg25d():
    torch.manual_seed(0)
    return ImageSegmentationPipeline(SegmentationModel(
        medfm.create_encoder("resnet_test", in_chans=3, img_size=16), 2,
        inference={"context_slices": 1, "slice_axis": 2, "intensity": "percentile"}))


def _nifti(path, shape):
    nib.save(nib.Nifti1Image(RNG.random(shape, dtype=np.float32), np.eye(4)), str(path))
    return path


def test_a_2d_nifti_names_the_3d_model_and_its_input(seg3d, seg25d, tmp_path):
    flat = _nifti(tmp_path / "slice.nii.gz", (30, 40))
    for pipe, takes in ((seg3d, TAKES_3D), (seg25d, TAKES_25D)):
        with pytest.raises(SegmentationInputError, match=takes + r"slice\.nii\.gz is a 2D NIfTI of shape \(30, 40\)"
                                                         + NEEDS_2D):
            pipe(flat)  # was: "expected a 3D NIfTI volume, .../slice.nii.gz has shape (30, 40)"
        with pytest.raises(SegmentationInputError, match=takes + r"got an array of shape \(30, 40\)" + NEEDS_2D):
            pipe(np.zeros((30, 40), np.float32))
    with pytest.raises(SegmentationInputError, match=TAKES_3D + r"slab4d\.nii is a 4D NIfTI of shape \(30, 40, 1, 1\), "
                                                     r"a single 2D slice" + NEEDS_2D):
        seg3d(_nifti(tmp_path / "slab4d.nii", (30, 40, 1, 1)))
    with pytest.raises(SegmentationInputError, match=TAKES_3D + r"series\.nii is a 4D NIfTI of shape \(20, 18, 13, 2\) "
                                                     r"\(its last axis holds channels or time points: pass one volume"):
        seg3d(_nifti(tmp_path / "series.nii", (20, 18, 13, 2)))


def test_a_single_slice_saved_as_a_volume_is_refused_by_a_3d_model(seg3d, seg25d, tmp_path):
    slab = _nifti(tmp_path / "slab.nii.gz", (30, 40, 1))
    with pytest.raises(SegmentationInputError, match=TAKES_3D + r"got a single 2D slice, shape \(30, 40, 1\)" + NEEDS_2D):
        seg3d(slab)  # was: a (30, 40, 1) mask from 16^3 windows of mostly zero padding
    with pytest.raises(SegmentationInputError, match=r"got a single 2D slice, shape \(1, 30, 40\)"):
        seg3d(np.zeros((1, 30, 40), np.float32))
    assert seg25d(slab)["mask"].shape == (30, 40, 1)  # a 2.5D model segments slice by slice: one is fine
    assert seg3d(_nifti(tmp_path / "vol.nii.gz", (20, 18, 13)))["mask"].shape == (20, 18, 13)


def test_the_3d_classifier_and_3d_segmentation_refuse_a_single_slice_in_the_same_words():
    """The two volumetric pipelines ran the same single-slice test with their own messages: segmentation
    named only the last three axes (``shape (30, 40, 1)`` for a ``(2, 30, 40, 1)`` input), the classifier
    the whole shape. One function now (:func:`medfm.pipelines.inputs.refuse_single_slice`)."""
    from medfm.pipelines.classification import volume_to_tensor, volumes_taken
    from medfm.pipelines.inputs import PipelineInputError
    from medfm.pipelines.seg_inputs import check_not_single_slice

    for shape in ((2, 30, 40, 1), (1, 30, 40), (2, 1, 30, 40)):
        with pytest.raises(SegmentationInputError) as seg:
            check_not_single_slice(shape, "TAKES")
        with pytest.raises(PipelineInputError) as cls:
            volume_to_tensor(np.zeros(shape, np.float32), 2, 16)
        assert str(seg.value) == f"TAKES; got a single 2D slice, shape {shape} (a 2D image needs a 2D segmentation model)"
        assert str(cls.value) == (f"{volumes_taken(2, 16)}; got a single 2D slice, shape {shape} "
                                  "(a 2D image needs a 2D classifier)")
    check_not_single_slice((2, 30, 40, 5), "TAKES")  # a volume passes


def test_2d_image_files_and_pil_images_are_not_taken_for_volumes(seg3d, seg25d, tmp_path):
    rgb = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    for pipe, takes in ((seg3d, TAKES_3D), (seg25d, TAKES_25D)):
        with pytest.raises(SegmentationInputError, match=takes + r"photo\.png is not a NIfTI file \(\.nii / \.nii\.gz\): "
                                                         r"a 2D image needs a 2D segmentation model$"):
            pipe(tmp_path / "photo.png")  # was (2.5D, 3 channels): segmented as a (30, 40, 3) volume
        with pytest.raises(SegmentationInputError, match=takes + r"got a 2D PIL image of size \(40, 30\)" + NEEDS_2D):
            pipe(Image.fromarray(rgb))


@pytest.mark.parametrize("name, note", [
    ("scan.nrrd", r"convert it to NIfTI, or pass its voxels as a numpy array"),
    ("scan.mha", r"convert it to NIfTI, or pass its voxels as a numpy array"),
    ("scan.dcm", r"convert it to NIfTI, or pass its voxels as a numpy array"),
    ("vol.npy", r"a numpy volume goes in as an array, np\.load\(path\)"),
    ("slice.TIF", r"a 2D image needs a 2D segmentation model"),
])
def test_a_volume_file_of_another_format_is_not_called_a_2d_image(seg3d, tmp_path, name, note):
    """Every file that is not NIfTI was told "a 2D image needs a 2D segmentation model, and a numpy
    volume goes in as an array" (the 3D classifier: "a 2D image needs a 2D classifier"): an NRRD,
    MetaImage or DICOM volume was called a 2D image. Only image files (suffixes PIL decodes) are."""
    from medfm.pipelines.classification import volume_to_tensor

    (tmp_path / name).write_bytes(b"\0" * 64)
    with pytest.raises(SegmentationInputError, match=TAKES_3D + rf"{name} is not a NIfTI file \(\.nii / \.nii\.gz\): "
                                                     rf"{note}$"):
        seg3d(tmp_path / name)
    if name != "vol.npy":  # the 3D classifier reads .npy files
        with pytest.raises(ValueError, match=rf"; {name} is not a volume file \(\.nii, \.nii\.gz, \.npy\): "
                                             + note.replace("segmentation model", "classifier") + "$"):
            volume_to_tensor(tmp_path / name, 1, 16)


def test_2d_channel_files_for_a_multichannel_model_are_called_2d(tmp_path):
    torch.manual_seed(0)
    pipe = ImageSegmentationPipeline(SegmentationModel(medfm.create_encoder("resnet3d_test", in_chans=2, img_size=16), 2))
    flat = _nifti(tmp_path / "flair.nii.gz", (30, 40))
    with pytest.raises(SegmentationInputError, match=r"each channel file must be a 3D volume, .*flair\.nii\.gz has shape "
                                                     r"\(30, 40\)" + NEEDS_2D):
        pipe({"image": [flat, flat]})
    with pytest.raises(SegmentationInputError, match=r"a \(2, X, Y, Z\) array, got shape \(2, 30, 40\)" + NEEDS_2D):
        pipe(np.zeros((2, 30, 40), np.float32))
    with pytest.raises(SegmentationInputError, match=r"^this 3D segmentation model takes 2 channels per case, "
                                                     r"\(2, X, Y, Z\), any size \(16x16x16 windows\); got a single 2D "
                                                     r"slice, shape \(2, 30, 40, 1\)" + NEEDS_2D):
        pipe(np.zeros((2, 30, 40, 1), np.float32))  # the whole shape, as the 3D classifier says it


def test_a_tensor_volume_is_refused_with_how_to_pass_it(seg3d):
    with pytest.raises(SegmentationInputError, match=r"got Tensor \(a torch tensor: pass tensor\.detach\(\)\.cpu\(\)"
                                                     r"\.numpy\(\)\)$"):
        seg3d(torch.rand(20, 18, 13))
    assert seg3d(torch.rand(20, 18, 13).numpy())["mask"].shape == (20, 18, 13)
