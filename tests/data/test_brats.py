"""BraTS 2015 (medfm.data.brats, BratsTask): reading, brain-percentile scaling, crop/paste-back,
BraTS region metrics, bad files, and a tiny ``medfm segment`` run, all on generated NIfTI volumes
in the provider's layout (``<root>/brats2015_deepmedic_examples/<split>/<case>/*.nii.gz``)."""
import json

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")  # optional dependency (the "seg" extra)

from medfm.data import brats  # noqa: E402
from medfm.data.errors import CorruptFileError, DataFileMissingError, DataShapeError, UnknownSplitError  # noqa: E402
from medfm.evaluation.segmentation import case_metrics, summarize_cases  # noqa: E402

SHAPE = (20, 24, 16)
CASES = {"train": ["brats_2013_pat0005_1", "brats_2013_pat0006_1"], "validation": ["brats_2013_pat0003_1"],
         "test": ["brats_2013_pat0001_1"]}


def _save(arr, path, dtype):
    nib.Nifti1Image(np.asarray(arr, dtype=dtype), np.eye(4)).to_filename(str(path))


def _write_case(folder, seed=0, label=None):
    """One case: brain = box [5:15, 6:18, 4:12]; FLAIR/T1c z-score-like values; a tumour blob."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    brain = np.zeros(SHAPE, bool)
    brain[5:15, 6:18, 4:12] = True
    if label is None:
        label = np.zeros(SHAPE, np.float32)
        label[7:13, 8:14, 5:10] = 2
        label[9:11, 10:12, 6:8] = 4
        label[9, 10, 6] = 1
    for name, _ in ((brats.BRATS_CHANNELS[0][1], 0), (brats.BRATS_CHANNELS[1][1], 1)):
        vol = np.where(brain, rng.normal(0, 1, SHAPE), -1.5).astype(np.float32)
        vol[label > 0] += 3.0
        _save(vol, folder / name, np.float32)
    _save(label, folder / brats.BRATS_LABEL_FILE, np.float32)
    _save(brain * 0.99999997, folder / brats.BRATS_MASK_FILE, np.float64)


@pytest.fixture
def brats_root(tmp_path, monkeypatch):
    monkeypatch.setattr(brats, "BRATS_SHAPE", SHAPE)  # the real volumes are 240x240x155
    root = tmp_path / "data"
    for split, ids in CASES.items():
        for n, cid in enumerate(ids):
            _write_case(root / brats.BRATS_FOLDER / split / cid, seed=n + len(split))
    return root


def test_reads_case_channels_labels_and_mask(brats_root):
    assert brats.brats_cases("train", brats_root) == CASES["train"]
    d = brats.load_brats("brats_2013_pat0001_1", "test", brats_root)
    assert d["image"].shape == (2, *SHAPE) and d["image"].dtype == np.float32
    assert 0.0 <= d["image"].min() and d["image"].max() <= 1.0
    assert d["label"].dtype == np.uint8 and set(np.unique(d["label"])) == {0, 1, 2, 4}
    assert d["brain"].dtype == bool and d["brain"].sum() == 10 * 12 * 8  # 0.99999997 thresholded at 0.5
    assert d["spacing"] == (1.0, 1.0, 1.0)
    raw = np.asarray(nib.load(str(brats_root / brats.BRATS_FOLDER / "test" / "brats_2013_pat0001_1"
                                  / brats.BRATS_CHANNELS[0][1])).dataobj)
    assert np.array_equal(d["image"][0], brats.brain_percentile_unit(raw, d["brain"]))  # channel 0 is FLAIR
    with pytest.raises(UnknownSplitError, match="validation"):
        brats.brats_cases("val", brats_root)


def test_brain_percentile_unit_uses_brain_voxels_only_and_clips():
    vol = np.full((10, 10, 11), -50.0, np.float32)  # background far below the brain
    brain = np.zeros(vol.shape, bool)
    brain[:, :, :10] = True
    vol[brain] = np.arange(1000, dtype=np.float32)
    out = brats.brain_percentile_unit(vol, brain)
    lo, hi = np.percentile(np.arange(1000.0), [0.5, 99.5])  # 4.995, 994.005
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert out[vol == 500][0] == pytest.approx((500 - lo) / (hi - lo), abs=1e-6)
    assert (out[~brain] == 0).all()  # background below the brain's 0.5 percentile is clipped to 0
    vol[0, 0, 0] = 1e6  # one extreme voxel does not move the scale
    assert brats.brain_percentile_unit(vol, brain)[vol == 500][0] == pytest.approx(0.5, abs=0.01)
    assert not brats.brain_percentile_unit(vol, np.zeros(vol.shape, bool)).any()
    with pytest.raises(DataShapeError, match="differ in shape"):
        brats.brain_percentile_unit(vol, brain[:5])


def test_crop_and_paste_back_round_trip_is_exact():
    rng = np.random.default_rng(0)
    brain = np.zeros((30, 32, 20), bool)
    brain[2:25, 10:30, 0:18] = True
    label = np.where(brain, rng.integers(0, 5, brain.shape), 0).astype(np.uint8)
    box = brats.brain_bbox(brain, margin=4)
    assert box == (slice(0, 29), slice(6, 32), slice(0, 20))  # widened by 4, clipped at the edges
    back = brats.paste_back(label[box], box, label.shape)
    assert back.dtype == np.uint8 and np.array_equal(back, label)
    assert brats.brain_bbox(np.zeros((4, 5, 6), bool)) == (slice(0, 4), slice(0, 5), slice(0, 6))
    with pytest.raises(ValueError, match="does not fit box"):
        brats.paste_back(label[box][1:], box, label.shape)


def test_region_metrics_match_a_hand_computed_case():
    ref = np.zeros((10, 10, 10), np.uint8)
    ref[2:6, 2:6, 2:6] = 2          # whole tumour: a 4x4x4 cube (64 voxels)
    ref[3:5, 3:5, 3:5] = 1          # tumour core: 8 necrosis voxels inside; no enhancing tumour
    pred = np.zeros_like(ref)
    pred[3:7, 2:6, 2:6] = 2         # the cube shifted by one voxel along axis 0
    pred[4:6, 3:5, 3:5] = 4         # core shifted by one voxel, predicted as enhancing
    res = case_metrics(pred, ref, brats.BRATS_LABELS, spacing=(1.0, 1.0, 1.0), regions=brats.BRATS_REGIONS)
    assert list(res) == ["whole_tumour", "tumour_core", "enhancing_tumour"]
    wt, tc, et = res["whole_tumour"], res["tumour_core"], res["enhancing_tumour"]
    # WT: overlap 48 of 64 + 64 -> Dice 0.75; 20 of the 56 surface voxels of each cube are 1 mm
    # from the other surface, the rest on it -> both directed 95th percentiles are 1 mm
    assert wt["dice"] == pytest.approx(0.75) and wt["hd95"] == pytest.approx(1.0)
    assert tc["dice"] == pytest.approx(2 * 4 / 16)  # core {1, 3, 4}: 2x2x2 cubes overlapping in 4 voxels
    assert et["dice"] == 0.0 and np.isnan(et["hd95"])  # enhancing predicted, none in the reference
    per_class = case_metrics(pred, ref, brats.BRATS_LABELS)
    assert per_class["necrosis"]["dice"] == 0.0 and per_class["oedema"]["dice"] == pytest.approx(2 * 36 / (56 + 56))
    summ = summarize_cases({"a": res, "b": case_metrics(ref, ref, [], regions=brats.BRATS_REGIONS)})
    assert summ["per_class"]["whole_tumour"]["dice"]["mean"] == pytest.approx((0.75 + 1.0) / 2)
    with pytest.raises(ValueError, match="at least one label"):
        case_metrics(pred, ref, [], regions={"empty": ()})


def test_bad_files_give_one_line_errors(brats_root):
    case = brats_root / brats.BRATS_FOLDER / "test" / "brats_2013_pat0001_1"
    flair = case / brats.BRATS_CHANNELS[0][1]
    flair.unlink()
    with pytest.raises(DataFileMissingError, match="Flair_subtrMeanDivStd.nii.gz"):
        brats.load_brats("brats_2013_pat0001_1", "test", brats_root)
    _save(np.zeros((20, 24, 15)), flair, np.float32)
    with pytest.raises(DataShapeError, match=r"flair is \(20, 24, 15\), expected \(20, 24, 16\)"):
        brats.load_brats("brats_2013_pat0001_1", "test", brats_root)
    flair.write_bytes(b"not a nifti")
    with pytest.raises(CorruptFileError, match="cannot read NIfTI"):
        brats.load_brats("brats_2013_pat0001_1", "test", brats_root)
    with pytest.raises(DataFileMissingError, match="BraTS 2015 case 'nope'"):
        brats.load_brats("nope", "test", brats_root)
    for bad in (5.0, 1.5, -1.0):
        other = brats_root / "bad" / f"v{bad}"
        label = np.zeros(SHAPE, np.float32)
        label[5, 5, 5] = bad
        _write_case(other, label=label)
        (brats_root / brats.BRATS_FOLDER / "test" / f"bad{bad}").symlink_to(other)
        with pytest.raises(DataShapeError, match=r"labels must be integers in \{0, 1, 2, 3, 4\}"):
            brats.load_brats(f"bad{bad}", "test", brats_root)


def test_task_crops_inputs_and_pastes_predictions_back(brats_root):
    from medfm.training.seg_tasks import SegDataConfig, build_task

    task = build_task(SegDataConfig(dataset="brats2015", patch=[16, 16, 16]), str(brats_root))
    arrays = task.train_set()
    assert arrays.images.shape == (2, 2, 18, 20, 16) and arrays.valid[0].tolist() == [18, 20, 16]  # 10+8, 12+8, 8+8 clipped
    case = task.load_case("brats_2013_pat0001_1")
    assert case.image.shape == (2, 18, 20, 16) and case.reference.shape == SHAPE
    meta = task.metadata()
    assert meta["validation_ids"] == CASES["validation"] and meta["regions"]["tumour_core"] == [1, 3, 4]


def test_tiny_segment_run_scores_classes_and_regions(brats_root, tmp_path):
    from medfm.config import from_dict
    from medfm.training.segmentation import SegmentationRecipe, run_segmentation

    recipe = from_dict(SegmentationRecipe, {
        "data": {"dataset": "brats2015", "patch": [16, 16, 16], "repeats": 1, "foreground_p": 0.5},
        "encoder": {"name": "resnet3d_test"}, "decoder": {"stem_channels": 4}, "mode": "full",
        "train": {"epochs": 1, "batch_size": 2, "lr": 1e-3, "precision": "fp32", "log_every": 1, "num_threads": 1},
        "eval": {"overlays": 1, "sw_batch_size": 2}})
    res = run_segmentation(recipe, tmp_path / "run", data_root=str(brats_root))
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    cid = "brats_2013_pat0001_1"
    assert set(saved["per_case"][cid]) == {"necrosis", "oedema", "non_enhancing", "enhancing"}
    assert set(saved["regions"]["per_case"][cid]) == {"whole_tumour", "tumour_core", "enhancing_tumour"}
    assert saved["regions"]["definition"]["whole_tumour"] == [1, 2, 3, 4]
    assert (tmp_path / "run" / "overlays" / f"{cid}.png").is_file()
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "CC BY-NC-SA 3.0" in card and "non-commercial" in card and "BraTS 2015" in card
    from huggingface_hub import ModelCard

    meta = ModelCard(card).data  # hub metadata: not a bare "other" licence
    assert (meta.license, meta.license_name) == ("other", "cc-by-nc-sa-3.0-ch")
    assert meta.license_link == "https://creativecommons.org/licenses/by-nc-sa/3.0/ch/"
    assert "region whole_tumour (labels 1, 2, 3, 4) | Dice" in card
    assert "uint8 / 255" not in card and "inside the brain mask" in card and "(NIfTI or array)" not in card
    assert res["regions"]["summary"]["n_cases"] == 1


def test_foreground_oversampling_centres_crops_on_tumour():
    import torch

    from medfm.training.segmentation import random_crop

    images = torch.zeros(1, 1, 40, 40, 40)
    masks = torch.zeros(1, 40, 40, 40, dtype=torch.long)
    masks[0, 37, 2, 20] = 4  # one tumour voxel near a corner
    valid = torch.tensor([[40, 40, 40]])
    gen = torch.Generator().manual_seed(0)
    hits = [int(random_crop(images, masks, valid, [8, 8, 8], gen, foreground_p=1.0)[1].sum() > 0) for _ in range(20)]
    assert sum(hits) == 20  # always inside the crop, even at the border (crop clamped to the volume)
    gen = torch.Generator().manual_seed(0)
    uniform = [int(random_crop(images, masks, valid, [8, 8, 8], gen)[1].sum() > 0) for _ in range(20)]
    assert sum(uniform) < 5  # uniform crops rarely see it ((8/33)^3 of placements)
    empty = torch.zeros_like(masks)  # no foreground: a uniform crop instead of an error
    assert random_crop(images, empty, valid, [8, 8, 8], gen, foreground_p=1.0)[1].shape == (1, 8, 8, 8)
