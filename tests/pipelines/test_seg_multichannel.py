"""Multi-channel 3D volumes (e.g. BraTS [FLAIR, T1c]) through ``medfm.pipeline("image-segmentation")``.

The pipeline used to read one single-channel volume per input, so a 2-channel 3D checkpoint could
not be used through it at all, and the BraTS scaling (percentiles inside the brain mask, crop to
the brain, paste back) was left to the caller. Per case it now takes per-channel NIfTI files, a 4D
NIfTI or a ``(C, X, Y, Z)`` array, and ``{"image": ..., "brain_mask": ...}`` for models recording
``inference.intensity == "brain_percentile"``.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

import medfm
from medfm.adapters.segmentation import SegmentationModel
from medfm.data.brats import brain_bbox, brain_percentile_unit, paste_back
from medfm.hub import save_pretrained
from medfm.pipelines.segmentation import SegmentationInputError, predict_labels

AFFINE = np.array([[0.0, -0.8, 0.1, 12.5],
                   [1.2, 0.0, 0.0, -40.0],
                   [0.0, 0.05, 2.0, 7.25],
                   [0.0, 0.0, 0.0, 1.0]])
SHAPE = (20, 18, 13)


def _model(intensity="unit", in_chans=2, seed=0):
    torch.manual_seed(seed)
    enc = medfm.create_encoder("resnet3d_test", in_chans=in_chans, img_size=16)
    model = SegmentationModel(enc, 3, ["background", "a", "b"], decoder={"stem_channels": 4},
                              inference={"intensity": intensity}).eval()
    with torch.no_grad():  # a freshly built head's bias picks one class everywhere: let the input decide
        model.task_head.bias.zero_()
        model.task_head.weight.normal_()
    return model


def _write(path, arr, affine=AFFINE):
    nib.save(nib.Nifti1Image(np.asarray(arr, np.float32), affine), str(path))
    return str(path)


def _unit_case(tmp_path):
    """(2, X, Y, Z) volume in [0, 1] and its two channel files."""
    vol = np.random.default_rng(0).random((2, *SHAPE)).astype(np.float32)
    return vol, [_write(tmp_path / f"ch{i}.nii.gz", vol[i]) for i in range(2)]


def test_channel_files_4d_nifti_and_array_give_the_same_mask(tmp_path):
    model = _model()
    vol, files = _unit_case(tmp_path)
    four_d = _write(tmp_path / "case4d.nii.gz", np.moveaxis(vol, 0, -1))  # (X, Y, Z, C)
    pipe = medfm.pipeline("image-segmentation", model=model)
    expected = predict_labels(model, vol)
    assert len(np.unique(expected)) > 1  # the random model's mask is not trivially one class
    out = pipe({"image": files}, output_path=tmp_path / "mask.nii.gz")
    assert out["mask"].shape == SHAPE and out["mask"].dtype == np.uint8
    assert np.array_equal(out["mask"], expected)
    batch = pipe([tuple(files), four_d, vol])  # in a batch, a nested list / tuple of files is one case
    for o in batch:
        assert np.array_equal(o["mask"], expected)
    assert [o["nifti"] is None for o in batch] == [False, False, True]
    written = nib.load(str(tmp_path / "mask.nii.gz"))
    assert np.array_equal(written.affine, nib.load(files[0]).affine) and np.array_equal(out["affine"], written.affine)
    assert written.shape == SHAPE and np.array_equal(np.asarray(written.dataobj), expected)
    assert np.allclose(written.header.get_zooms(), nib.load(files[0]).header.get_zooms())
    assert batch[1]["nifti"].shape == SHAPE  # from a 4D file: a 3D mask, the file's affine
    assert np.array_equal(batch[1]["affine"], nib.load(four_d).affine)


def test_wrong_channel_count_and_one_3d_volume_are_named(tmp_path):
    pipe = medfm.pipeline("image-segmentation", model=_model())
    vol, files = _unit_case(tmp_path)
    with pytest.raises(SegmentationInputError, match="2 channels per case.*got 3 channel file"):
        pipe({"image": files + files[:1]})
    with pytest.raises(SegmentationInputError, match=r"one 3D volume.*'image': \[channel1"):
        pipe(files[0])
    with pytest.raises(SegmentationInputError, match=r"\(X, Y, Z, 2\) NIfTI.*has shape \(20, 18, 13, 3\)"):
        pipe(_write(tmp_path / "c3.nii.gz", np.zeros((*SHAPE, 3))))
    with pytest.raises(SegmentationInputError, match=r"\(2, X, Y, Z\) array, got shape \(3, 20, 18, 13\)"):
        pipe(np.zeros((3, *SHAPE), np.float32))
    with pytest.raises(SegmentationInputError, match="NaN/inf"):
        pipe(np.full((2, *SHAPE), np.nan, np.float32))
    with pytest.raises(SegmentationInputError, match=r"already scaled to \[0, 1\].*values in \[-1\.9"):
        pipe(vol * 4 - 2)  # a "unit" model is not given raw intensities silently clipped
    with pytest.raises(SegmentationInputError, match="keys 'image'"):
        pipe({"images": files})


def test_channel_files_of_different_shape_or_affine_are_refused(tmp_path):
    pipe = medfm.pipeline("image-segmentation", model=_model())
    vol, files = _unit_case(tmp_path)
    other_shape = _write(tmp_path / "small.nii.gz", vol[1, :-1])
    with pytest.raises(SegmentationInputError, match=r"differ in shape: ch0.nii.gz \(20, 18, 13\), small.nii.gz \(19, 18, 13\)"):
        pipe({"image": [files[0], other_shape]})
    moved = AFFINE.copy()
    moved[0, 3] += 2.0
    other_affine = _write(tmp_path / "moved.nii.gz", vol[1], moved)
    with pytest.raises(SegmentationInputError, match="differ in affine"):
        pipe({"image": [files[0], other_affine]})
    nudged = AFFINE.copy()
    nudged[0, 3] += 1e-5  # float noise between files of one grid is accepted
    out = pipe({"image": [files[0], _write(tmp_path / "nudged.nii.gz", vol[1], nudged)]})
    assert np.array_equal(out["affine"], nib.load(files[0]).affine)


def _raw_case(tmp_path):
    """Provider-like z-scored [FLAIR, T1c] files (outside [0, 1]), and a brain mask smaller than the volume."""
    rng = np.random.default_rng(1)
    vol = rng.normal(0, 2, (2, *SHAPE)).astype(np.float32)
    brain = np.zeros(SHAPE, bool)
    brain[3:17, 2:15, 1:12] = True
    vol[:, ~brain] = -1.5  # constant background, as in the provider's files
    files = [_write(tmp_path / f"raw{i}.nii.gz", vol[i]) for i in range(2)]
    return vol, files, brain, _write(tmp_path / "brainmask.nii.gz", brain.astype(np.float32))


def test_brain_percentile_model_scales_crops_and_pastes_back(tmp_path):
    model = _model("brain_percentile")
    assert model.inference["percentiles"] == [0.5, 99.5] and model.inference["crop_margin"] == 4
    vol, files, brain, mask_file = _raw_case(tmp_path)
    box = brain_bbox(brain, 1)
    model.inference["crop_margin"] = 1  # a box smaller than the volume, so the crop and paste-back matter
    scaled = np.stack([brain_percentile_unit(c, brain, (0.5, 99.5))[box] for c in vol])
    expected = paste_back(predict_labels(model, scaled), box, SHAPE)
    outside = np.ones(SHAPE, bool)
    outside[box] = False
    assert outside.any() and not expected[outside].any() and len(np.unique(expected[box])) > 1
    pipe = medfm.pipeline("image-segmentation", model=model)
    out = pipe({"image": files, "brain_mask": mask_file}, output_path=tmp_path / "seg.nii.gz")
    assert np.array_equal(out["mask"], expected)
    assert np.array_equal(nib.load(str(tmp_path / "seg.nii.gz")).affine, nib.load(files[0]).affine)
    assert np.array_equal(pipe({"image": vol, "brain_mask": brain})["mask"], expected)  # arrays too
    with pytest.raises(SegmentationInputError, match="pass the case's brain mask"):
        pipe({"image": files})
    with pytest.raises(SegmentationInputError, match="pass the case's brain mask"):
        pipe(vol)
    with pytest.raises(SegmentationInputError, match=r"brain mask .* has shape \(20, 18, 12\), the image \(20, 18, 13\)"):
        pipe({"image": files, "brain_mask": _write(tmp_path / "bad.nii.gz", brain[..., :-1])})
    with pytest.raises(SegmentationInputError, match="empty"):
        pipe({"image": vol, "brain_mask": np.zeros(SHAPE, bool)})
    with pytest.raises(SegmentationInputError, match="only used by models with inference.intensity 'brain_percentile'"):
        medfm.pipeline("image-segmentation", model=_model())({"image": vol, "brain_mask": brain})


def test_brain_percentile_is_recorded_for_brats_and_old_unit_checkpoints_still_load(tmp_path):
    from medfm.training.recipes import EncoderConfig
    from medfm.training.seg_tasks import BratsTask, SegDataConfig
    from medfm.training.segmentation import SegmentationRecipe, build_segmenter

    recipe = SegmentationRecipe(data=SegDataConfig(dataset="brats2015", patch=[16, 16, 16]),
                                encoder=EncoderConfig(name="resnet3d_test"), decoder={"stem_channels": 4})
    model = build_segmenter(recipe, BratsTask(recipe.data, str(tmp_path)))
    assert model.inference["intensity"] == "brain_percentile"
    assert model.inference["percentiles"] == [0.5, 99.5] and model.inference["crop_margin"] == 4
    reloaded = medfm.from_pretrained(str(save_pretrained(model, tmp_path / "new")))
    assert reloaded.inference == model.inference
    old = medfm.from_pretrained(str(save_pretrained(_model("unit"), tmp_path / "old")))  # BraTS before: "unit"
    assert old.inference["intensity"] == "unit" and "percentiles" not in old.inference
    enc = medfm.create_encoder("resnet3d_test", in_chans=2, img_size=16)
    with pytest.raises(ValueError, match="only go with intensity 'brain_percentile'"):
        SegmentationModel(enc, 3, inference={"intensity": "unit", "crop_margin": 4})
    with pytest.raises(ValueError, match="percentiles must be"):
        SegmentationModel(enc, 3, inference={"intensity": "brain_percentile", "percentiles": [99.5, 0.5]})
    with pytest.raises(ValueError, match="needs a 3D model"):
        SegmentationModel(medfm.create_encoder("resnet_test", in_chans=2, img_size=16), 3,
                          inference={"intensity": "brain_percentile"})


def test_multichannel_card_snippet_runs_with_the_pipeline(tmp_path, monkeypatch):
    from medfm.cards import build_card
    from medfm.hub import model_config

    model = _model("brain_percentile")
    ckpt = str(save_pretrained(model, tmp_path / "ckpt"))
    text = build_card(model_config(model, {"training": {"data": {"dataset": "brats2015", "input_preprocessing":
                                                                 "[FLAIR, T1c] volumes; scaled in the brain"}}}),
                      None, model_id=ckpt)
    assert "the caller does this scaling" not in text and "given the case's brain mask" in text
    how = text.split("## How to use")[1].split("```python")[1].split("```")[0]
    assert '"brain_mask": "brainmask.nii.gz"' in how and "predict_labels" not in how
    vol, files, brain, mask_file = _raw_case(tmp_path)
    monkeypatch.chdir(tmp_path)
    for i in range(2):  # the snippet's file names
        _write(tmp_path / f"channel{i + 1}.nii.gz", vol[i])
    scope: dict = {}
    exec(how, scope)  # noqa: S102 - the card's own snippet, run as a user would
    assert scope["out"]["mask"].shape == SHAPE and (tmp_path / "mask.nii.gz").is_file()
