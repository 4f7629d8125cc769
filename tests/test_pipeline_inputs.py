"""Pipelines fed what users have: 16-bit scans, float arrays, empty lists, the wrong checkpoint."""
import numpy as np
import pytest
import torch
from PIL import Image

import medfm
from medfm.adapters.segmentation import SegmentationModel
from medfm.pipelines.inputs import PipelineInputError
from medfm.pipelines.segmentation import ImageSegmentationPipeline, SegmentationInputError
from medfm.registry import OBJECTIVES

IMG = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)


def test_16_bit_and_float_pil_images_are_scaled_not_clipped(pneumonia_pipeline, tmp_path):
    ref = pneumonia_pipeline(IMG)
    wide = IMG.astype(np.uint16) * 256 + 7  # a 16-bit scan of the same picture
    assert pneumonia_pipeline(Image.fromarray(wide)) == ref  # PIL's convert("L") alone would clip it to white
    assert pneumonia_pipeline(Image.fromarray(IMG.astype(np.float32) * 3.0)) == ref
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    seg = ImageSegmentationPipeline(SegmentationModel(enc, 2))
    Image.fromarray(wide).save(tmp_path / "scan.png")
    assert np.array_equal(seg(str(tmp_path / "scan.png"))["mask"], seg(IMG)["mask"])
    assert np.array_equal(seg(Image.fromarray(wide))["mask"], seg(IMG)["mask"])


def test_classifier_pipeline_edge_inputs(pneumonia_pipeline):
    assert pneumonia_pipeline([]) == []
    with pytest.raises(PipelineInputError, match="top_k must be a positive integer"):
        pneumonia_pipeline(IMG, top_k=-1)
    with pytest.raises(PipelineInputError, match="empty image"):
        pneumonia_pipeline(IMG[:0])
    with pytest.raises(PipelineInputError, match=r"\(H, W\) or \(H, W, 1\|3\) image, got shape \(3, 28, 28\)"):
        pneumonia_pipeline(np.stack([IMG] * 3))  # channels-first is not accepted silently
    with pytest.raises(PipelineInputError, match="got Tensor"):
        pneumonia_pipeline(torch.rand(1, 28, 28))


def test_classifier_pipeline_rejects_a_non_classifier_up_front():
    simclr = OBJECTIVES.build("simclr", encoder=medfm.create_encoder("resnet_test", in_chans=1, img_size=28),
                              hidden_dim=16, proj_dim=8)
    with pytest.raises(PipelineInputError, match="SimCLR is not an image classifier"):
        medfm.pipeline("image-classification", model=simclr)


def test_segmentation_rejects_float_images_outside_unit_range():
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    seg = ImageSegmentationPipeline(SegmentationModel(enc, 2))
    with pytest.raises(SegmentationInputError, match=r"float images must be in \[0, 1\], got values in \[0, 255\]"):
        seg(IMG.astype(np.float32))
    bad = IMG.astype(np.float32) / 255
    bad[3, 4] = np.nan
    with pytest.raises(SegmentationInputError, match="1 NaN/inf pixel"):
        seg(bad)
    assert seg(IMG.astype(np.float32) / 255)["mask"].shape == (28, 28)


def test_the_input_error_is_still_importable_from_the_classification_module():
    """PipelineInputError moved to medfm.pipelines.inputs; code that catches it under its old import
    path catches the same class."""
    from medfm.pipelines import classification, inputs

    assert classification.PipelineInputError is inputs.PipelineInputError
