"""``medfm segment --init MISSING`` names the missing checkpoint before any data set is read.

Before, :func:`medfm.training.segmentation.run_segmentation` (2D, 2.5D and 3D recipes) read the
training cases (seconds for CHASE_DB1 and MSD Hippocampus, longer for BraTS) and only then failed
on the missing ``--init`` inside ``create_encoder``; with no data there, the data error hid the
init error. The text-conditioned runner also wrote ``config.yaml`` and ``init.json`` into the
output folder first. ``medfm finetune`` and ``medfm vqa`` already checked first
(``tests/training/test_finetune_init_before_data.py``, ``tests/training/test_vqa_init_before_data.py``).
"""
from __future__ import annotations

import re

import pytest

import medfm.training.segmentation as seg
import medfm.training.text_segmentation as text_seg
from medfm.config import from_dict
from medfm.hub import CheckpointError
from tests.conftest import cli_error

TRAIN = {"epochs": 1, "batch_size": 2, "precision": "fp32"}
RECIPES = {
    "2d": {"data": {"dataset": "chase_db1", "patch": [32, 32]}, "encoder": {"name": "resnet_test"}, "train": TRAIN},
    "2.5d": {"data": {"dataset": "msd_hippocampus", "context_slices": 1, "patch": [32, 32]},
             "encoder": {"name": "resnet_test"}, "train": TRAIN},
    "3d": {"data": {"dataset": "msd_hippocampus", "patch": [16, 16, 16]}, "encoder": {"name": "resnet3d_10"},
           "train": TRAIN},
}
TEXT = {"tasks": [{"name": "vessel", "data": {"dataset": "chase_db1", "patch": [32, 32]}}],
        "encoder": {"name": "resnet_test"}, "train": TRAIN}


@pytest.fixture
def no_data(monkeypatch):
    """Both runners' ``build_task`` fail the test: no data set may be read."""
    def fail(*a, **k):
        pytest.fail("the data set was read before the missing --init was reported")

    monkeypatch.setattr(seg, "build_task", fail)
    monkeypatch.setattr(text_seg, "build_task", fail)


@pytest.mark.parametrize("kind", list(RECIPES))
def test_a_missing_local_init_is_refused_before_the_data_is_read(tmp_path, no_data, kind):
    recipe = from_dict(seg.SegmentationRecipe, RECIPES[kind])
    with pytest.raises(CheckpointError, match=re.escape(f"no checkpoint directory at '{tmp_path / 'nope'}'")):
        seg.run_segmentation(recipe, tmp_path / "run", init=str(tmp_path / "nope"), data_root=str(tmp_path))
    pretrained = from_dict(seg.SegmentationRecipe, {**RECIPES[kind], "encoder": {
        **RECIPES[kind]["encoder"], "pretrained": str(tmp_path / "nope")}})
    with pytest.raises(CheckpointError, match="no checkpoint directory"):  # the recipe's encoder.pretrained too
        seg.run_segmentation(pretrained, tmp_path / "run", data_root=str(tmp_path))
    assert not (tmp_path / "run").exists()


def test_text_conditioned_runner_refuses_a_missing_init_before_writing_or_reading(tmp_path, no_data):
    recipe = from_dict(text_seg.TextSegRecipe, TEXT)
    with pytest.raises(CheckpointError, match=re.escape(f"no checkpoint directory at '{tmp_path / 'nope'}'")):
        text_seg.run_text_segmentation(recipe, tmp_path / "run", init=str(tmp_path / "nope"), data_root=str(tmp_path))
    assert not (tmp_path / "run").exists()  # was: config.yaml and init.json written, then the data read


class DataRead(Exception):
    """Raised by the stub ``build_task``: the runner went on to the data."""


def test_text_conditioned_runner_reads_the_data_before_writing(tmp_path, monkeypatch):
    """A missing data set leaves no run folder behind (was: ``config.yaml`` and ``init.json``),
    as the other segmentation runners, which read their data before writing."""
    def read(*a, **k):
        raise DataRead

    monkeypatch.setattr(text_seg, "build_task", read)
    with pytest.raises(DataRead):
        text_seg.run_text_segmentation(from_dict(text_seg.TextSegRecipe, TEXT), tmp_path / "run", data_root=str(tmp_path))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("init", ["timm", "hf-hub:org/name"])
def test_remote_inits_are_not_checked_as_local_folders(tmp_path, monkeypatch, init):
    def read(*a, **k):
        raise DataRead

    monkeypatch.setattr(seg, "build_task", read)
    with pytest.raises(DataRead):  # passed the init check (fetched when the encoder is built), went on to the data
        seg.run_segmentation(from_dict(seg.SegmentationRecipe, RECIPES["2d"]), tmp_path / "run", init=init,
                             data_root=str(tmp_path))


@pytest.mark.parametrize("recipe", ["seg_unet_chase_db1.yaml", "seg_unet3d_hippocampus.yaml", "seg_text_chase_lgg.yaml"])
def test_cli_names_the_missing_init_not_the_missing_data(tmp_path, capsys, recipe):
    from pathlib import Path

    (tmp_path / "empty").mkdir()  # a data root without the data sets (the CLI refuses a missing root)
    path = Path(__file__).resolve().parents[2] / "finetune" / recipe
    code, err = cli_error(capsys, ["segment", path, "--output", tmp_path / "run", "--init", tmp_path / "nope",
                                   "--data-root", tmp_path / "empty"])
    assert code != 0 and f"no checkpoint directory at '{tmp_path / 'nope'}'" in err  # was: the data set not found
    assert not (tmp_path / "run").exists()
