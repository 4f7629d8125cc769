"""Presence masks read by :func:`medfm.data.multimodal.presence` follow the fusers' 0/1 rule.

Found on the missing-modality protocol (issue 8): ``presence`` cast a mask holding 0.5 or 2 to bool
(True) before any check saw it, so ``run_fusion_protocol`` scored the subsets with such a sample
counted as present, and ``check_presence`` (MCAR/MNAR) only ever got the cast bool masks.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from medfm.data.multimodal import drop_modalities, presence
from medfm.evaluation.fusion import run_fusion_protocol

X = torch.rand(4, 1, 8, 8)
BAD = [
    (torch.tensor([1.0, 0.5, 1.0, 0.0]), r"got a torch\.float32 tensor of shape \(4,\) holding \[0\.5\]$"),
    (torch.tensor([1, 2, 1, 0]), r"got integer values \[2\] \(an integer mask holds only 0 and 1\)$"),
]
HEAD = r"^the presence mask of 'pre' must be a \(B,\) bool tensor \(or 0/1 integers\), "


def _batch(mask):
    return {"pre": X, "flair": X, "present": {"pre": mask, "flair": torch.ones(4, dtype=torch.bool)},
            "label": torch.tensor([0, 1, 0, 1]), "patient": ["a", "b", "c", "d"]}


@pytest.mark.parametrize("mask, tail", BAD)
def test_presence_refuses_a_mask_other_than_0_1_naming_modality_and_value(mask, tail):
    # was: tensor([True, True, True, False]): the 0.5 (or 2) sample counted as having 'pre'
    with pytest.raises(ValueError, match=HEAD + tail) as info:
        presence(_batch(mask), "pre")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=HEAD + tail):  # the protocol's removal of modalities reads it too
        drop_modalities(_batch(mask), {"flair": torch.zeros(4, dtype=torch.bool)})


class _MustNotRun(nn.Module):
    modalities = ["pre", "flair"]

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))  # the protocol reads the model's device from it

    def forward(self, batch, gen=None):
        pytest.fail("the protocol ran a model on a batch with a bad presence mask")

    scores = forward


@pytest.mark.parametrize("mask, tail", BAD)
def test_protocol_refuses_a_bad_mask_before_any_model_runs(mask, tail):
    with pytest.raises(ValueError, match=HEAD + tail):
        run_fusion_protocol({"m": _MustNotRun()}, _batch(mask), ["pre", "flair"], mcar_rates=[0.5],
                            mnar_modalities=["pre"], n_boot=1)


@pytest.mark.parametrize("mask", [torch.tensor([True, False, True, False]), torch.tensor([1, 0, 1, 0]),
                                  torch.tensor([[1], [0], [1], [0]], dtype=torch.uint8)])
def test_bool_and_0_1_integer_masks_are_taken_as_before(mask):
    assert presence(_batch(mask), "pre").tolist() == [True, False, True, False]
    assert presence(_batch(mask), "flair").dtype == torch.bool
    assert presence({"flair": X}, "pre").tolist() == [False] * 4  # absent key: absent everywhere
    assert presence({"pre": X}, "pre").tolist() == [True] * 4  # no mask: present everywhere


def test_drop_modalities_reads_each_presence_mask_once(readbacks):
    """was: a dropped modality's mask was read by ``presence`` twice (its 0/1 check ran again on every drop)."""
    batch = {"pre": X, "flair": X, "present": {m: torch.tensor([1, 1, 0, 1]) for m in ("pre", "flair")}}
    readbacks.clear()
    out = drop_modalities(batch, {"pre": torch.tensor([True, False, False, False])})
    # one per integer mask (its 0/1 check) and one for the dropped modality's keep.any(); was 4
    assert len(readbacks) == 3
    assert out["present"]["pre"].tolist() == [False, True, False, True]
    assert out["present"]["flair"].tolist() == [True, True, False, True]
