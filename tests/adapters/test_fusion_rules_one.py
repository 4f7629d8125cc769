"""One rule, one wording, across the missing-modality code (the fusers, :mod:`medfm.data.multimodal`, the protocols).

Found on review: the protocols' "did you mean" for a modality name used cutoff 0.5 while
:func:`medfm.data.multimodal.close_modality`, "the one near-miss rule", uses 0.6 (so ``modalities=["t1"]`` on a batch
holding ``"t2"`` was asked "did you mean 't2'?", a different MR sequence the collate and the fusers never take for it);
a bad presence mask was refused in two wordings (fusers: ``presence mask present['pre'] must be (B,) bool``;
:func:`~medfm.data.multimodal.presence`: ``the presence mask of 'pre' must be a (B,) bool tensor (or 0/1 integers)``;
the protocol's masks a third, ``(N,)``); a fuser that names no draw of its own was told it draws "the random modality
dropout / channel sampling"; the segmentation protocol passed dummy MCAR / MNAR settings to have the rest checked.
"""
from __future__ import annotations

import pytest
import torch

from medfm.adapters.fusion import FusionModel
from medfm.data.multimodal import close_modality, drop_modalities, modality_hint, presence
from medfm.evaluation.fusion import check_modality_names, check_presence, run_fusion_protocol
from medfm.evaluation.fusion_args import check_missingness_args, check_protocol_args
from medfm.evaluation.fusion_seg import run_seg_fusion_protocol
from tests.conftest import FUSION_SIZE as S, tiny_fuser

X = torch.rand(2, 1, S, S)


def _batch(**mods):
    return {**mods, "present": {m: torch.ones(2, dtype=torch.bool) for m in mods},
            "label": torch.tensor([0, 1]), "patient": ["a", "b"]}


@pytest.mark.parametrize("key, known, close", [
    ("t1", ["t2", "clinical"], None),  # was "did you mean 't2'?" (ratio 0.5): another MR sequence
    ("cli", ["t2", "clinical"], None),  # was "did you mean 'clinical'?" (ratio 0.55)
    ("flari", ["pre", "flair"], "flair"),  # a real near miss keeps its hint
    ("clinicl", ["pre", "clinical"], "clinical"),
])
def test_protocol_hint_follows_the_one_near_miss_rule(key, known, close):
    assert close_modality(key, known) == close
    batch = _batch(**{m: X for m in known})
    with pytest.raises(ValueError) as info:
        check_modality_names([key], batch, "modalities")
    hint = f"; did you mean {close!r}?" if close else ""
    holds = ", ".join(known)
    assert str(info.value) == f"modalities: the test batch holds no modality {key!r}{hint} (it holds: {holds})"
    assert modality_hint(key, known) == hint


def test_a_protocol_run_gets_the_same_hint():
    batch = _batch(t2=X)
    with pytest.raises(ValueError, match=r"^modalities: the test batch holds no modality 't1' \(it holds: t2\)$"):
        run_fusion_protocol({}, batch, ["t1"], mcar_rates=[], mnar_modalities=[], n_boot=0)


HEAD = "the presence mask of 'pre' must be a (B,) bool tensor (or 0/1 integers), got "


@pytest.mark.parametrize("mask, tail", [
    (torch.tensor([2, 1]), "integer values [2] (an integer mask holds only 0 and 1)"),
    (torch.tensor([1.0, 0.5]), "a torch.float32 tensor of shape (2,) holding [0.5]"),
])
def test_every_reader_of_a_presence_mask_says_it_in_one_wording(mask, tail):
    model = tiny_fuser("3mat")
    readers = {
        "fuser": lambda: model({"pre": X, "flair": X, "present": {"pre": mask}}),  # was "presence mask present['pre']"
        "presence": lambda: presence({"pre": X, "present": {"pre": mask}}, "pre"),
        "drop_modalities": lambda: drop_modalities({"pre": X, "present": {"pre": mask}}, {}),
        "protocol masks": lambda: check_presence({"pre": mask}),  # was "... a (N,) bool tensor ..."
    }
    for who, read in readers.items():
        with pytest.raises(ValueError) as info:
            read()
        assert str(info.value) == HEAD + tail, who


def test_a_2d_mask_the_fuser_refuses_is_named_in_the_same_wording():
    mask = torch.ones(2, 1, dtype=torch.bool)  # presence() reads a (B, 1) mask as (B,); a fuser wants (B,)
    with pytest.raises(ValueError) as info:
        tiny_fuser("3mat")({"pre": X, "flair": X, "present": {"pre": mask}})
    assert str(info.value) == HEAD + "a torch.bool tensor of shape (2, 1)"
    assert presence({"pre": X, "present": {"pre": mask}}, "pre").tolist() == [True, True]


class _DrawsNothing(FusionModel):
    """A user's fuser that names no draw (:attr:`FusionModel.generator_use` left at its default)."""

    def fuse_batch(self, batch, gen=None):
        pres = self.presence(batch)
        return {"logits": torch.zeros(len(pres["pre"]), self.num_classes), "used": pres}


def test_a_fuser_naming_no_draw_is_not_said_to_draw_dropout_or_sampling():
    with pytest.raises(ValueError) as info:
        _DrawsNothing(["pre"])({"pre": X}, 0)
    assert str(info.value) == ("fusion: gen must be a CPU torch.Generator (for the fuser's random draws in training, "
                               "if it makes any) or None, got 0; e.g. torch.Generator().manual_seed(0)")


def test_protocol_args_check_only_what_applies():
    batch = _batch(pre=X, flair=X)
    # was check_protocol_args(batch, modalities, mcar_rates, mnar_modalities, p_high, p_low, n_boot, batch_size_):
    # the segmentation protocol passed (), (), 0.0, 0.0 for settings it does not have
    assert check_protocol_args(batch, ("pre", "flair"), 3, 8) == (["pre", "flair"], 3)
    assert check_missingness_args(batch, (0.5,), ("flair",), 0.8, 0.1) == ([0.5], ["flair"])
    with pytest.raises(ValueError, match="^n_boot must be"):
        check_protocol_args(batch, ["pre"], -1, 8)
    with pytest.raises(ValueError, match=r"^mnar_modalities: the test batch holds no modality 'flari'; did you mean"):
        check_missingness_args(batch, (), ["flari"], 0.8, 0.1)
    with pytest.raises(ValueError, match="^MNAR p_high must be"):
        check_missingness_args(batch, (), [], 2.0, 0.1)


def test_seg_protocol_checks_its_own_args_before_any_model_runs():
    batch = {**_batch(pre=X, flair=X), "mask": torch.zeros(2, S, S, dtype=torch.long)}
    for kwargs, match in ((dict(modalities=["flari"]), "did you mean 'flair'"), (dict(n_boot=-1), "^n_boot must be"),
                          (dict(batch_size_=0), "^batch_size_ must be")):
        with pytest.raises(ValueError, match=match):
            run_seg_fusion_protocol({}, batch, **{"modalities": ["pre"], **kwargs})
