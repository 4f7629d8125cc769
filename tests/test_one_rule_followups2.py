"""Leftover "one rule" items: the fusion protocols' patient ids and Dice label names follow the one list rule
(:func:`medfm.arg_checks.check_list`), the segmentation protocol checks the keys it uses (no ``label``), a recipe or
suite FILE names a dataclass section "a mapping of its settings" (no Python class name), and the shared generated
PneumoniaMNIST writer."""
from __future__ import annotations

import dataclasses
import re
import typing

import numpy as np
import pytest
import torch

from medfm.config import ConfigError, from_dict
from medfm.data.multimodal import PRESENT_KEY
from medfm.evaluation import fusion as FU
from medfm.evaluation.fusion_seg import check_seg_label_names, patient_dice, run_seg_fusion_protocol
from medfm.training.recipes import FinetuneRecipe, PretrainRecipe

S = 4


class _Seg(torch.nn.Module):
    """A one-modality segmentation model: foreground where the FLAIR image is above 0.5; counts its calls."""

    modalities = ("flair",)

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        x = batch["flair"][:, 0] - 0.5
        return {"logits": torch.stack([torch.zeros_like(x), x], 1)}


def _seg_batch(n=4):
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, S, S, dtype=torch.long)
    mask[:, 1:3, 1:3] = 1
    return {"flair": (torch.rand(n, 1, S, S, generator=g) * 0.2 + 0.7 * mask[:, None]).float(), "mask": mask,
            "patient": [f"p{i // 2}" for i in range(n)], PRESENT_KEY: {"flair": torch.ones(n, dtype=torch.bool)}}


# -- 1. patient ids and label names: the one list rule -------------------------------------------------------------
@pytest.mark.parametrize("ids, got", [({"a", "b"}, "(set)"), ({"a": 0, "b": 1}, "(dict)"), (None, "None (NoneType)"),
                                      (b"ab", "b'ab' (bytes)")])
def test_patient_ids_that_are_no_list_are_refused_by_the_one_list_rule(ids, got):
    got = re.escape(got)
    # a set or a mapping of N ids passed (in no order: the bootstrap's clusters were wrong), None failed in len()
    labels, scores = np.array([0, 1]), np.array([.1, .9])
    with pytest.raises(ValueError, match=r"^score_row: patient ids must be a list, one per sample, got .*" + got):
        FU.score_row(labels, scores, ids, n_boot=5, seed=0)
    with pytest.raises(ValueError, match=r"^the patient bootstrap: patient ids must be a list, one per sample"):
        FU.patient_bootstrap_auc(labels, scores, ids, n_boot=5)
    ref = np.zeros((2, S, S), np.uint8)
    with pytest.raises(ValueError, match=r"^patient_dice: patient ids must be a list, one per slice, got .*" + got):
        patient_dice(ref, ref, ids, ["bg", "fg"])


def test_patient_ids_may_be_any_sequence_of_ids():
    labels, scores = np.array([0, 1, 0, 1]), np.array([.1, .9, .2, .8])
    want = FU.score_row(labels, scores, ["a", "a", "b", "b"], n_boot=20, seed=0)
    assert FU.score_row(labels, scores, (p for p in "aabb"), n_boot=20, seed=0) == want  # was TypeError: len()
    assert FU.score_row(labels, scores, np.array(list("aabb")), n_boot=20, seed=0) == want
    assert FU.check_patient_ids(np.array([3, 3, 4]), 3, "x") == [3, 3, 4]
    with pytest.raises(ValueError, match="^x needs one patient id per sample: 3 samples but 2 patient ids$"):
        FU.check_patient_ids(["a", "b"], 3, "x")


@pytest.mark.parametrize("names, got", [({"bg", "fg"}, "(set)"), ({"bg": 0, "fg": 1}, "(dict)"), ("bgfg", "'bgfg'"),
                                        (["bg"], r"\['bg'\]"), (["bg", None], r"\['bg', None\]")])
def test_dice_label_names_follow_the_one_list_rule(names, got):
    # a set failed with "'set' object is not subscriptable", a mapping with KeyError 1
    ref = np.zeros((2, S, S), np.uint8)
    with pytest.raises(ValueError, match=r"^label_names must be a list of class names, the background and at least "
                                         r"one foreground class, got .*" + got):
        patient_dice(ref, ref, ["a", "b"], names)


def test_dice_label_names_may_be_integers_as_yaml_reads_them():
    assert check_seg_label_names([0, 1]) == ["0", "1"]
    ref = np.zeros((2, S, S), np.uint8)
    ref[:, 1:3, 1:3] = 1
    assert patient_dice(ref, ref, ["a", "b"], (0, 1)) == {"a": 1.0, "b": 1.0}


# -- 2. the segmentation protocol checks the keys it uses ----------------------------------------------------------
def test_the_segmentation_protocol_needs_no_label_key():
    res = run_seg_fusion_protocol({"single_flair": _Seg()}, _seg_batch(), ["flair"], ["bg", "fg"], n_boot=0)
    assert res["natural"][0]["n_patients"] == 2  # was "the test batch has no 'label' key (labels (N,) ... AUC ...)"


@pytest.mark.parametrize("key, match", [("mask", r"no 'mask' key \(the reference masks"),
                                        ("patient", r"no 'patient' key \(patient ids: Dice is per patient\)")])
def test_the_segmentation_protocol_names_a_missing_key_before_any_model_runs(key, match):
    batch, model = _seg_batch(), _Seg()
    del batch[key]
    with pytest.raises(ValueError, match=match):
        run_seg_fusion_protocol({"single_flair": model}, batch, ["flair"], ["bg", "fg"], n_boot=0)
    assert model.calls == 0


def test_the_segmentation_protocol_checks_its_label_names_before_any_model_runs():
    model = _Seg()
    with pytest.raises(ValueError, match="label_names must be a list of class names"):
        run_seg_fusion_protocol({"single_flair": model}, _seg_batch(), ["flair"], {"bg", "fg"}, n_boot=0)
    assert model.calls == 0  # was checked per subset, after the model's predictions


def test_the_classification_protocol_still_needs_labels_and_patients():
    batch = {"flair": torch.rand(2, 1, S, S), "patient": ["a", "b"], PRESENT_KEY: {"flair": torch.ones(2, dtype=bool)}}
    with pytest.raises(ValueError, match=r"^the test batch has no 'label' key \(labels \(N,\) for the AUC\)$"):
        FU.run_fusion_protocol({}, batch, ["flair"], mcar_rates=(), mnar_modalities=["flair"], n_boot=0)
    del batch["patient"]
    with pytest.raises(ValueError, match=r"no 'label' or 'patient' key \(labels \(N,\) for the AUC; patient ids for"):
        FU.run_fusion_protocol({}, batch, ["flair"], mcar_rates=(), mnar_modalities=["flair"], n_boot=0)


# -- 3. a FILE names a section "a mapping of its settings"; Python names its class ---------------------------------
def _dataclass_sections(cls):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        options = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
        if len(options) == 1 and dataclasses.is_dataclass(options[0]):
            yield f.name, options[0]


@pytest.mark.parametrize("cls", [PretrainRecipe, FinetuneRecipe])
def test_a_recipe_file_names_a_section_a_mapping_not_its_python_class(cls):
    sections = list(_dataclass_sections(cls))
    assert len(sections) >= 3
    for name, section_cls in sections:
        with pytest.raises(ConfigError) as err:
            from_dict(cls, {name: [1]}, where="r.yaml")
        assert str(err.value) == f"r.yaml.{name} must be a mapping of its settings, got [1]"
        assert section_cls.__name__ not in str(err.value)


def test_a_suite_file_protocol_that_is_no_mapping_and_the_python_wording():
    from medfm.suite_protocols import check_protocol_section

    with pytest.raises(ConfigError, match=r"^s\.yaml\.protocol must be a mapping of its settings, got \['linear'\]$"):
        check_protocol_section(["linear"], "s.yaml")  # was "... must be a ProtocolOptions or a mapping ..."
    with pytest.raises(ConfigError, match="^encoder must be an EncoderConfig or a mapping of its settings, got 3$"):
        FinetuneRecipe(encoder=3)  # given in Python: the class is named


# -- 4. the shared generated PneumoniaMNIST --------------------------------------------------------------------------
def test_write_pneumoniamnist_writes_the_generated_arrays(tmp_path):
    from tests.conftest import fake_medmnist_arrays
    from tests.training.runs_helpers import write_pneumoniamnist

    written = {(16, 8, 8): write_pneumoniamnist(tmp_path / "a", 16),  # the files the old tests wrote by hand
               (8, 4, 4): write_pneumoniamnist(tmp_path / "b", 8, n_eval=4)}
    for counts, root in written.items():
        with np.load(f"{root}/medmnist/pneumoniamnist.npz") as got:
            want = fake_medmnist_arrays("pneumoniamnist", counts=counts)
            assert set(got.files) == set(want) and all(np.array_equal(got[k], want[k]) for k in want)
