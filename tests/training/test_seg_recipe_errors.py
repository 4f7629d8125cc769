"""Bad ``data:`` values of a segmentation recipe, as ``medfm segment <recipe>`` reports them.

Each one is refused while the recipe is read (before any data or model), with one line naming
the recipe key. Plus the Hippocampus task on the real data (``@slow``): case geometry, 2.5D
slice stacks and the overlay slice.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from tests.conftest import REPO_ROOT, cli_error

CHASE = "seg_unet_chase_db1.yaml"  # 2D, data.normalize: channel_zscore
HIP3D = "seg_unet3d_hippocampus.yaml"
HIP25 = "seg_unet25d_hippocampus.yaml"  # 2.5D: context_slices 2, patch [48, 32]
BRATS = "seg_unet3d_brats.yaml"


def _segment_error(tmp_path, monkeypatch, capsys, recipe: str, data: dict):
    """(exit code, stderr line) of ``medfm segment`` on the shipped ``recipe`` with ``data`` changed;
    ``$MEDFM_DATA`` is an empty folder, so a recipe that passes validation fails on the data instead."""
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "no_data"))
    r = yaml.safe_load((REPO_ROOT / "finetune" / recipe).read_text())
    r["data"].update(data)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    code, err = cli_error(capsys, ["segment", tmp_path / "r.yaml", "--output", tmp_path / "out"])
    assert not (tmp_path / "out").exists()
    return code, err


@pytest.mark.parametrize("recipe, data, key, shown", [
    (CHASE, {"dataset": "chase_db"}, "dataset", "did you mean 'chase_db1'"),
    (CHASE, {"dataset": "liver"}, "dataset", "known: brats2015, chase_db1"),
    (CHASE, {"scale": 0}, "data.scale", "got 0"),
    (CHASE, {"scale": 4.5}, "data.scale", "got 4.5"),
    (CHASE, {"patch": []}, "data.patch", "got []"),
    (CHASE, {"patch": [4, 128]}, "data.patch", "got [4, 128]"),
    (CHASE, {"patch": [128]}, "data.patch", "give 2 values"),
    (HIP3D, {"patch": [32, 32]}, "data.patch", "give 3 values"),
    (HIP25, {"patch": [48, 32, 32]}, "data.patch", "give 2 values"),
    (CHASE, {"foreground_p": 1.5}, "data.foreground_p", "got 1.5"),
    (CHASE, {"repeats": 0}, "data.repeats", "got 0"),
    (HIP3D, {"context_slices": -1}, "data.context_slices", "got -1"),
    (CHASE, {"missing_sequence_p": 2}, "data.missing_sequence_p", "got 2"),
    (CHASE, {"missing_sequence_fill": -1}, "data.missing_sequence_fill", "got -1"),
    (CHASE, {"normalize": "zscore"}, "data.normalize", "got 'zscore'"),
    (CHASE, {"max_train": 0}, "data.max_train", "got 0"),
    (CHASE, {"max_test": -2}, "data.max_test", "got -2"),
    (HIP25, {"normalize": "channel_zscore"}, "data.normalize", "2.5D"),
    (CHASE, {"flip_axes": [2]}, "data.flip_axes", "got [2]"),
    (HIP25, {"slice_axis": 3}, "data.slice_axis", "got 3"),
    # the fixes (each used to pass validation or name another key):
    (CHASE, {"context_slices": 2}, "data.context_slices", "not chase_db1"),  # used to blame data.normalize
    (HIP3D, {"scale": 0.5}, "data.scale", "got 0.5"),
    (HIP25, {"scale": 0.5}, "data.scale", "got 0.5"),
    (BRATS, {"scale": 2}, "data.scale", "got 2"),
    (CHASE, {"missing_sequence_p": 0.3, "missing_sequence_fill": 3}, "data.missing_sequence_fill", "0..2 of chase_db1"),
    (HIP3D, {"missing_sequence_p": 0.3}, "data.missing_sequence_fill", "0..0 of msd_hippocampus, got 1"),
])
def test_bad_data_value_is_named_before_any_data_is_read(tmp_path, monkeypatch, capsys, recipe, data, key, shown):
    code, err = _segment_error(tmp_path, monkeypatch, capsys, recipe, data)
    assert code == 2 and err.startswith("medfm: error: r.yaml"), err
    assert "r.yaml.data: data." not in err, err  # the location once (it used to be doubled)
    assert key in err and shown in err, err


def test_scale_of_a_2_5d_recipe_used_to_reach_inference_only(tmp_path):
    """The old failure the data.scale check prevents: 2.5D Hippocampus slices were trained at full
    resolution (the task ignores data.scale), but the model recorded inference.scale and shrank every
    slice at prediction time. Volume recipes without data.scale still load."""
    from medfm.config import ConfigError, from_dict
    from medfm.training.segmentation import SegmentationRecipe

    for name in (HIP3D, HIP25, BRATS):
        r = yaml.safe_load((REPO_ROOT / "finetune" / name).read_text())
        assert "scale" not in r["data"]
        assert from_dict(SegmentationRecipe, r, name).data.scale == 1.0
        r["data"]["scale"] = 1.0  # the default, written out: fine
        from_dict(SegmentationRecipe, r, name)
        r["data"]["scale"] = 0.5
        with pytest.raises(ConfigError, match=r"data\.scale applies to 2D image data sets only"):
            from_dict(SegmentationRecipe, r, name)


@pytest.mark.slow
def test_hippocampus_cases_and_2_5d_stacks_on_real_data(real_data_root):
    """One real case per mode: 3D ``(1, X, Y, Z)`` / 2.5D ``(X, Y, Z)`` inputs, labels {0, 1, 2} in the
    input's geometry; training stacks of ``2k + 1`` slices along ``slice_axis`` with masks that match;
    the overlay is the axis-0 slice with the most hippocampus."""
    from medfm.data.segmentation import slice_stack
    from medfm.evaluation.segmentation import largest_slice
    from medfm.training.seg_tasks import SegDataConfig, build_task

    if not (real_data_root / "msd_task04_hippocampus" / "imagesTr").is_dir():
        pytest.skip("MSD Task04 Hippocampus not in the real data folder")
    for k, axis in [(0, 0), (2, 0), (1, 2)]:
        task = build_task(SegDataConfig(dataset="msd_hippocampus", context_slices=k, slice_axis=axis, max_train=1,
                                        max_test=1, patch=[32, 32] if k else [32, 32, 32]), str(real_data_root))
        assert task.in_chans == (2 * k + 1 if k else 1) and task.spatial_dims == (2 if k else 3)
        case = task.load_case(task.test_cases()[0])
        volume = case.image if k else case.image[0]
        assert case.image.dtype == np.float32 and case.image.shape == ((volume.shape if k else (1, *volume.shape)))
        assert volume.shape == case.reference.shape and case.reference.dtype == np.uint8
        assert set(np.unique(case.reference)) == {0, 1, 2} and 0 <= volume.min() and volume.max() <= 1
        assert len(case.spacing) == 3 and case.extra["affine"].shape == (4, 4)
        image, pred, ref = task.overlay(case, case.reference)
        z = largest_slice(case.reference, 0)
        assert np.array_equal(image, volume[z]) and np.array_equal(ref, case.reference[z] > 0) and np.array_equal(pred, ref)
        train = task.train_set()
        item = train[0]
        if k:
            assert item["image"].shape[0] == 2 * k + 1 and item["image"].shape[1:] == item["mask"].shape
            stack = slice_stack(volume, k, axis)
            assert stack.shape == (volume.shape[axis], 2 * k + 1, *np.delete(volume.shape, axis))
            assert np.array_equal(stack[3, k], np.take(volume, 3, axis)) and np.array_equal(stack[0, 0], np.take(volume, 0, axis))
        else:
            assert item["image"].shape[0] == 1 and item["image"].shape[1:] == item["mask"].shape


@pytest.mark.parametrize("args, why", [
    ({"context_slices": 1, "patch": [32, 32, 32], "normalize": "none"}, "with data.context_slices: 1 (2.5D)"),
    ({"patch": [32, 32]}, "(data.context_slices > 0 trains 2.5D on 2-D slice crops)"),
])
def test_patch_length_error_says_what_sets_the_crop_dimension(args, why):
    """The message said "training crops are 2-D here" without naming context_slices, which decides it."""
    from medfm.training.seg_tasks import SegDataConfig

    with pytest.raises(ValueError, match=re.escape(why)):
        SegDataConfig(dataset="msd_hippocampus", **args)
