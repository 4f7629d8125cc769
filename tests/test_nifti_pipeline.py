"""``medfm.pipeline("image-segmentation")``: masks in the input's geometry; NIfTI affine kept."""
import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import medfm
from medfm.adapters.segmentation import SegmentationModel
from medfm.hub import save_pretrained
from medfm.pipelines.segmentation import SegmentationInputError, predict_labels




AFFINE = np.array([[0.0, -0.8, 0.1, 12.5],
                   [1.2, 0.0, 0.0, -40.0],
                   [0.0, 0.05, 2.0, 7.25],
                   [0.0, 0.0, 0.0, 1.0]])


def _volume(path, shape=(20, 18, 13), unit=False):
    """Save a volume in scanner-like units (about 100 +- 20; ``unit``: in [0, 1], for "unit" models)."""
    rng = np.random.default_rng(0)
    vol = rng.random(shape, dtype=np.float32) if unit else rng.normal(100, 20, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, AFFINE), str(path))
    return vol


def test_nifti_round_trip_keeps_affine(tmp_path):
    torch.manual_seed(0)
    model = SegmentationModel(medfm.create_encoder("resnet3d_test", in_chans=1, img_size=16), 3,
                              ["background", "anterior", "posterior"], decoder={"stem_channels": 4},
                              inference={"intensity": "percentile"}).eval()
    ckpt = save_pretrained(model, tmp_path / "ckpt")
    vol = _volume(tmp_path / "case.nii.gz")
    pipe = medfm.pipeline("image-segmentation", model=str(ckpt))
    out = pipe(str(tmp_path / "case.nii.gz"), output_path=tmp_path / "mask.nii.gz")
    assert out["mask"].shape == vol.shape and out["mask"].dtype == np.uint8
    assert out["label_names"] == ["background", "anterior", "posterior"]
    written = nib.load(str(tmp_path / "mask.nii.gz"))
    source = nib.load(str(tmp_path / "case.nii.gz"))
    assert np.array_equal(written.affine, source.affine)
    assert np.array_equal(written.header.get_zooms(), source.header.get_zooms())
    assert np.array_equal(np.asarray(written.dataobj), out["mask"])
    # the pipeline's mask is the model's prediction on the normalised volume (sliding window, 16^3 windows)
    from medfm.data.segmentation import percentile_unit

    assert np.array_equal(predict_labels(model, percentile_unit(vol)[None]), out["mask"])


def test_2_5d_model_on_nifti(tmp_path):
    enc = medfm.create_encoder("resnet_test", in_chans=3, img_size=16)
    model = SegmentationModel(enc, 2, inference={"context_slices": 1, "slice_axis": 2, "intensity": "percentile"}).eval()
    vol = _volume(tmp_path / "v.nii")
    out = medfm.pipeline("image-segmentation", model=model)(str(tmp_path / "v.nii"))
    assert out["mask"].shape == vol.shape and np.array_equal(out["nifti"].affine, nib.load(str(tmp_path / "v.nii")).affine)


def test_2d_image_mask_in_input_geometry(tmp_path):
    torch.manual_seed(0)
    model = SegmentationModel(medfm.create_encoder("resnet_test", in_chans=3, img_size=28), 2,
                              inference={"scale": 0.5}).eval()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    pipe = medfm.pipeline("image-segmentation", model=model)
    out = pipe(str(tmp_path / "x.png"))
    assert out["mask"].shape == (50, 70) and out["affine"] is None and out["nifti"] is None
    gray = pipe([np.zeros((30, 40), np.uint8), np.ones((33, 41), np.float32)])
    assert [o["mask"].shape for o in gray] == [(30, 40), (33, 41)]


def test_bad_inputs(tmp_path):
    model = SegmentationModel(medfm.create_encoder("resnet_test", in_chans=3, img_size=28), 2).eval()
    pipe = medfm.pipeline("image-segmentation", model=model)
    _volume(tmp_path / "v.nii.gz")
    with pytest.raises(SegmentationInputError, match=r"3D NIfTI of shape \(20, 18, 13\); this 2D segmentation model "
                                                     r"takes image files .* \(a 3D volume needs a 3D or 2\.5D "):
        pipe(str(tmp_path / "v.nii.gz"))
    with pytest.raises(SegmentationInputError, match="no such input file"):
        pipe(str(tmp_path / "missing.png"))
    with pytest.raises(SegmentationInputError, match="uint8 or float"):
        pipe(np.zeros((10, 10), np.int32))
    with pytest.raises(SegmentationInputError, match="one NIfTI input"):
        pipe(np.zeros((30, 30), np.uint8), output_path=tmp_path / "m.nii.gz")
    with pytest.raises(ValueError, match="did you mean 'image-segmentation'"):
        medfm.pipeline("image-segmentaton", model=model)
    with pytest.raises(SegmentationInputError, match="text-conditioned"):
        pipe(np.zeros((30, 30), np.uint8), target="vessel")


def test_pipeline_overlap_defaults_to_the_evaluated_one(tmp_path, monkeypatch):
    """The checkpoint records the sliding-window overlap it was evaluated with; the pipeline uses it
    unless told otherwise (old checkpoints without it: 0.5)."""
    import medfm.pipelines.segmentation as seg

    enc = medfm.create_encoder("resnet3d_test", in_chans=1, img_size=16)
    ckpt = save_pretrained(SegmentationModel(enc, 2, inference={"overlap": 0.25}).eval(), tmp_path / "ckpt")
    _volume(tmp_path / "v.nii.gz", unit=True)  # intensity "unit": the volume must already be in [0, 1]
    seen = []
    real = seg.predict_labels
    monkeypatch.setattr(seg, "predict_labels", lambda *a, **k: (seen.append(k["overlap"]), real(*a, **k))[1])
    medfm.pipeline("image-segmentation", model=str(ckpt))(str(tmp_path / "v.nii.gz"))
    medfm.pipeline("image-segmentation", model=str(ckpt), overlap=0.5)(str(tmp_path / "v.nii.gz"))
    legacy = SegmentationModel(enc, 2).eval()  # as a checkpoint written before the overlap was recorded loads
    medfm.pipeline("image-segmentation", model=legacy)(str(tmp_path / "v.nii.gz"))
    assert seen == [0.25, 0.5, 0.5]
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\), got 1\.0"):
        medfm.pipeline("image-segmentation", model=str(ckpt), overlap=1.0)
    with pytest.raises(ValueError, match=r"inference\.overlap must be in \[0, 1\), got -0\.1"):
        SegmentationModel(enc, 2, inference={"overlap": -0.1})
