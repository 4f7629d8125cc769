"""An array shaped like an RGB(A) image is not taken for a volume by any volumetric entry point.

Before: the 3D classifier resized ``(30, 40, 3)``, ``(3, 30, 40)``, ``(30, 40, 4)`` and ``(4, 30, 40)``
arrays to a cube and classified them as volumes 3-4 slices thin; the 3D / 2.5D segmentation pipeline
refused only ``(X, Y, 3)`` (RGB or 3 slices?) and segmented the channels-first and RGBA forms; and
:func:`predict_probs` / :func:`predict_labels` called directly took all of them. One rule now
(:func:`medfm.pipelines.inputs.rgb_like_axis`): a first or last spatial axis of 3 or 4 with both other
axes at least 4 times as long, arrays only (NIfTI files are volumes whatever their shape).
"""
from __future__ import annotations

import re
import zipfile

import nibabel as nib
import numpy as np
import pytest
import torch

import medfm
from medfm.adapters.segmentation import SegmentationModel
from medfm.pipelines.classification import volume_to_tensor, volumes_taken
from medfm.pipelines.inputs import PipelineInputError, rgb_like_axis
from medfm.pipelines.segmentation import (ImageSegmentationPipeline, SegmentationInputError, predict_labels,
                                          predict_probs)

RNG = np.random.default_rng(0)
IMAGE_SHAPES = [  # shape, what the message calls it, axis
    ((30, 40, 3), r"an RGB image \(H, W, 3\)", 2),
    ((3, 30, 40), r"a channels-first RGB image \(3, H, W\)", 0),
    ((30, 40, 4), r"an RGBA image \(H, W, 4\)", 2),
    ((4, 30, 40), r"a channels-first RGBA image \(4, H, W\)", 0),
]
NIFTI = (r"pass a volume as a NIfTI file \(NIfTI files are always volumes\), nib\.save\(nib\.Nifti1Image\(array, "
         r"affine\), 'volume\.nii\.gz'\)")


def _seg(encoder="resnet3d_test", in_chans=1, **inference):
    torch.manual_seed(0)
    return SegmentationModel(medfm.create_encoder(encoder, in_chans=in_chans, img_size=16), 2,
                             inference={"intensity": "percentile", **inference}).eval()


@pytest.mark.parametrize("shape, image, axis", IMAGE_SHAPES)
def test_the_3d_classifier_refuses_an_image_shaped_array(shape, image, axis, tmp_path):
    """Was: resized to a 16^3 cube and classified, without a word."""
    arr = RNG.integers(0, 256, shape, dtype=np.uint8)

    def refused(arr, axis):
        return (rf"^{re.escape(volumes_taken(1, 16))}; got an array of shape {re.escape(str(arr.shape))}: {image} or a "
                rf"volume of {arr.shape[axis]} slices along axis {axis}\? Not guessed: {NIFTI}; a 2D image needs a "
                r"2D classifier$")

    with pytest.raises(PipelineInputError, match=refused(arr, axis)):
        volume_to_tensor(arr, 1, 16)
    with pytest.raises(PipelineInputError, match=refused(arr[None], axis + 1)):
        volume_to_tensor(arr[None], 1, 16)  # as the spatial axes of (C, D, H, W)
    np.save(tmp_path / "image.npy", arr)
    with pytest.raises(PipelineInputError, match=f"{image} or a volume"):
        volume_to_tensor(tmp_path / "image.npy", 1, 16)  # a .npy file is an array
    nib.save(nib.Nifti1Image(arr.astype(np.float32), np.eye(4)), str(tmp_path / "thin.nii.gz"))
    assert volume_to_tensor(tmp_path / "thin.nii.gz", 1, 16).shape == (1, 16, 16, 16)  # a NIfTI is a volume


@pytest.mark.parametrize("shape, image, axis", IMAGE_SHAPES)
def test_volumetric_segmentation_refuses_an_image_shaped_array(shape, image, axis, tmp_path):
    """Was: only (X, Y, 3) refused by the pipeline; (3, X, Y), (X, Y, 4), (4, X, Y) segmented as 3-4 slices,
    and every form taken by predict_probs / predict_labels."""
    arr, n = RNG.random(shape, dtype=np.float32), shape[axis]

    def ambiguous(at):  # the channel axis is at `at` of the array given
        return rf"{image} or a volume of {n} slices along axis {at}\? Not guessed: "

    seg3d, seg25d = _seg(), _seg("resnet_test", 3, context_slices=1, slice_axis=1)
    for model in (seg3d, seg25d):
        pipe = ImageSegmentationPipeline(model)
        refused = (rf"; got an array of shape .*: {ambiguous(axis)}{NIFTI}, or as np\.moveaxis\(array, {axis}, 1\) "
                   r"\(the slices on the middle axis.*; a 2D image needs a 2D segmentation model$")
        with pytest.raises(SegmentationInputError, match=refused):
            pipe(arr)
        nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / "thin.nii.gz"))
        assert pipe(tmp_path / "thin.nii.gz")["mask"].shape == shape  # a NIfTI file is a volume
        assert pipe(np.moveaxis(arr, axis, 1))["mask"].shape == np.moveaxis(arr, axis, 1).shape
    direct = r"segments .* volumes; got an array of shape .*: {}segment a volume with medfm\.pipeline"
    for call in (predict_probs, predict_labels):
        with pytest.raises(SegmentationInputError, match=r"^this 3D model " + direct.format(ambiguous(axis + 1))):
            call(seg3d, arr[None])
        with pytest.raises(SegmentationInputError, match=r"^this 2\.5D model " + direct.format(ambiguous(axis))):
            call(seg25d, arr)
    assert predict_labels(seg3d, arr[None], check_rgb=False).shape == shape  # the pipeline's own, checked, call


def test_a_multichannel_3d_model_refuses_image_shaped_channels(tmp_path):
    pipe = ImageSegmentationPipeline(_seg(in_chans=2))
    arr = RNG.random((2, 30, 40, 3), dtype=np.float32)
    with pytest.raises(SegmentationInputError, match=r"^this 3D segmentation model takes 2 channels per case, .*; got "
                                                     r"an array of shape \(2, 30, 40, 3\): an RGB image \(H, W, 3\) or "
                                                     r"a volume of 3 slices along axis 3\?"):
        pipe(arr)  # was: segmented as 2 channels of 3 slices
    files = []
    for i, channel in enumerate(arr):
        nib.save(nib.Nifti1Image(channel, np.eye(4)), str(tmp_path / f"c{i}.nii.gz"))
        files.append(tmp_path / f"c{i}.nii.gz")
    assert pipe({"image": files})["mask"].shape == (30, 40, 3)  # NIfTI channel files are volumes


@pytest.mark.parametrize("shape, axis", [
    ((30, 40, 3), 2), ((3, 30, 40), 0), ((30, 40, 4), 2), ((4, 30, 40), 0),
    ((3, 12, 12), 0), ((12, 12, 3), 2), ((4, 16, 16), 0), ((1, 30, 40, 3), 3), ((2, 3, 30, 40), 1),
    ((3, 11, 12), None), ((16, 15, 4), None),  # one other axis less than 4 times as long: a small volume
    ((3, 8, 8), None), ((8, 8, 3), None), ((30, 3, 40), None), ((5, 30, 40), None), ((30, 40, 2), None),
    ((28, 28, 28), None), ((64, 64, 64), None), ((35, 51, 35), None), ((240, 240, 155), None),
    ((30, 40), None), ((3, 30, 40, 5), None),
])
def test_the_rule(shape, axis):
    assert rgb_like_axis(shape) == axis


def _npy_shapes(npz):
    """Array shapes of an .npz, from the .npy headers only."""
    with zipfile.ZipFile(npz) as z:
        for name in z.namelist():
            with z.open(name) as f:
                np.lib.format.read_magic(f)
                yield np.lib.format.read_array_header_1_0(f)[0]


def test_no_real_volume_is_taken_for_an_image(real_data_root):
    """Every volume medfm has here (MedMNIST3D 28^3 / 64^3, MSD hippocampus, BraTS) passes the rule."""
    shapes = [nib.load(str(p)).shape for folder in ("msd_task04_hippocampus", "brats2015_deepmedic_examples")
              for p in sorted((real_data_root / folder).rglob("*.nii*"))]
    shapes += [s[1:] for npz in sorted((real_data_root / "medmnist").glob("*3d*.npz"))
               for s in _npy_shapes(npz) if len(s) == 4]
    assert len(shapes) > 500
    assert [s for s in shapes if rgb_like_axis(s[:3]) is not None] == []
