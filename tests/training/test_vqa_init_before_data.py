"""``medfm vqa --init MISSING`` names the missing checkpoint before VQA-RAD is read.

Before, :func:`medfm.training.vqa.run_vqa` decoded the 314 VQA-RAD images and loaded the text
encoder first (seconds on the real data) and only then failed on the missing ``--init``; with
no data root, the data error hid the init error. ``medfm finetune`` already checked first
(``tests/training/test_finetune_init_before_data.py``).
"""
from __future__ import annotations

import pytest

from medfm.config import from_dict
from medfm.hub import CheckpointError
from medfm.training.vqa import VQARecipe, run_vqa

RECIPE = {"data": {"size": 28, "in_chans": 1}, "encoder": {"name": "resnet_test"}, "requires_init": True,
          "train": {"epochs": 1, "precision": "fp32"}}


def test_missing_init_is_reported_before_the_data_is_read(tmp_path):
    recipe = from_dict(VQARecipe, RECIPE)
    with pytest.raises(CheckpointError, match="no checkpoint directory at"):  # was: MedFMDataError (VQA-RAD not found)
        run_vqa(recipe, tmp_path / "run", init=str(tmp_path / "no_such_ckpt"), data_root=str(tmp_path / "nodata"))
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.parametrize("init", ["timm", "hf-hub:org/name"])
def test_remote_inits_are_not_checked_as_local_folders(tmp_path, init):
    from medfm.data.errors import MedFMDataError

    with pytest.raises(MedFMDataError, match="VQA-RAD not found"):  # passes the init check, fails on the data
        run_vqa(from_dict(VQARecipe, RECIPE), tmp_path / "run", init=init, data_root=str(tmp_path / "nodata"))
