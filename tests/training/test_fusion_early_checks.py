"""``medfm fuse`` checks every model's training set against the batch size before the first model trains.

Issue 8: a single-modality baseline trains on the samples that have its modality only; when those
were fewer than ``train.batch_size`` it was refused only when its turn came, after the recipe's
earlier models had trained (on TCGA-LGG with ``batch_size: 300``: seven models trained, 39 s of one
epoch each, before ``single_post``'s 294 slices were refused, by a message that named no model).
"""
from __future__ import annotations

import pytest
import torch

from medfm.config import ConfigError
from medfm.training import loop
from medfm.training.fusion import check_training_sets, run_fusion, training_rows
from tests.training.runs_helpers import fusion_recipe

# lgg (tests/conftest.py): 2 training patients, 8 slices; 'pre' is in the 4 slices of the first one


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_a_single_modality_set_smaller_than_a_batch_is_refused_before_any_model_trains(lgg, tmp_path, monkeypatch,
                                                                                       task):
    def no_training(self, resume=False):
        pytest.fail("a model trained before the recipe's training sets were checked")

    monkeypatch.setattr(loop.Trainer, "fit", no_training)  # was: 'late' / 'unet' trained first
    with pytest.raises(ConfigError, match=r"^FusionRecipe\.models\.single_pre: the training set has 4 samples, fewer "
                                          r"than one batch of 5 \(train\.batch_size\): a single-modality model "
                                          r"trains on the training samples that have 'pre' only; "
                                          r"lower train\.batch_size") as info:
        run_fusion(fusion_recipe(task, 5), tmp_path / "out", str(lgg))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing written either


class _Set:
    """A training set whose presence is ``present`` (the part of LGGFusionSet that start_run and the check read)."""

    def __init__(self, present):
        self.present = present

    def __len__(self):
        return len(next(iter(self.present.values())))

    def presence(self):
        return dict(self.present)


def test_the_check_takes_what_fits_and_keeps_the_whole_set_rule():
    pre = torch.tensor([True] * 4 + [False] * 4)
    full = {"pre": pre, "flair": torch.ones(8, dtype=torch.bool), "post": ~pre,
            "clinical": torch.ones(8, dtype=torch.bool)}
    check_training_sets(fusion_recipe("classification", 4), _Set(full), full)  # 4 'pre' slices: one batch of 4
    with pytest.raises(ValueError, match=r"^the training set has 8 samples, fewer than one batch of 9 "):
        check_training_sets(fusion_recipe("classification", 9), _Set(full), full)  # the whole set first, unchanged
    # the rows a model trains on, as fit_or_reuse takes them
    assert training_rows(["pre"], full).tolist() == [0, 1, 2, 3]
    assert training_rows(["post"], full).tolist() == [4, 5, 6, 7]
    assert training_rows(["pre", "flair"], full) is None
