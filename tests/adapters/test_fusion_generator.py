"""The fusers' ``gen`` is checked in one place, :meth:`FusionModel.forward`, with a truthful message.

Issue 8: the same ``check_generator(gen)`` line was repeated in five ``forward`` methods, and
``late_fusion_zero_fill``'s refusal said "it draws the random modality dropout / channel sampling",
which that model never draws.
"""
from __future__ import annotations

import pytest
import torch

from medfm.adapters.fusion import FusionModel
from tests.conftest import FUSION_SIZE as S, tiny_fuser

# a fuser that names no draw of its own is no longer told it draws "the random modality dropout / channel sampling"
DEFAULT = ("fusion: gen must be a CPU torch.Generator (for the fuser's random draws in training, if it makes any) or "
           "None, got 0; e.g. torch.Generator().manual_seed(0)")
# each drawing fuser names its own draw (the shared "modality dropout / channel sampling" was half true for each)
DROPOUT = ("fusion: gen must be a CPU torch.Generator (it draws the random modality dropout in training when "
           "modality_dropout > 0) or None, got 0; e.g. torch.Generator().manual_seed(0)")
HCS = ("fusion: gen must be a CPU torch.Generator (it draws the hierarchical channel sampling in training when hcs "
       "is on) or None, got 0; e.g. torch.Generator().manual_seed(0)")
EXPECTED = {"3mat": DROPOUT, "multimodn": DROPOUT, "fused_unet": DROPOUT, "channelvit": HCS}


def _images(model):
    x = torch.rand(2, 1, S, S)
    return {m: x for m in model.modalities if m != "clinical"}


def test_late_fusion_message_says_it_draws_nothing():
    model = tiny_fuser("late_fusion_zero_fill").train()
    with pytest.raises(ValueError, match=r"^fusion: gen must be a CPU torch\.Generator \(late_fusion_zero_fill draws "
                                         r"nothing from it, .*\) or None, got 0; e\.g\. ") as info:
        model(_images(model), 0)
    assert "dropout" not in str(info.value) and "sampling" not in str(info.value)  # was: "modality dropout / ..."


@pytest.mark.parametrize("name", ["3mat", "multimodn", "channelvit", "fused_unet"])
@pytest.mark.parametrize("train", [False, True])
def test_the_drawing_fusers_keep_their_message(name, train):
    model = tiny_fuser(name).train(train)
    with pytest.raises(ValueError) as info:
        model(_images(model), 0)
    assert str(info.value) == EXPECTED[name]


class _Constant(FusionModel):
    """A fuser that defines only its computation (:meth:`FusionModel.fuse_batch`)."""

    def fuse_batch(self, batch, gen=None):
        pres = self.presence(batch)
        return {"logits": torch.zeros(len(pres["pre"]), self.num_classes), "used": pres}


def test_a_fuser_defining_only_fuse_batch_gets_the_generator_check():
    model = _Constant(["pre"])
    batch = {"pre": torch.rand(2, 1, S, S)}
    with pytest.raises(ValueError) as info:  # was: nn.Module's 'missing the required "forward" function'
        model(batch, 0)
    assert str(info.value) == DEFAULT
    assert model(batch, torch.Generator().manual_seed(0))["logits"].shape == (2, 2)
    assert model(batch)["used"]["pre"].tolist() == [True, True]
