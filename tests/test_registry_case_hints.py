"""The "did you mean" hint ignores case (:func:`medfm.registry.close_match_hint`); the lookups do not.

Before: a split given as ``'TEST'``, an objective as ``'SwAV'``, an encoder as ``'RESNET18'``, a segmentation data set
as ``'CHASE_DB1'`` got no hint (``difflib`` compares characters as written: ``'TEST'`` and ``'test'`` share none).
"""
from __future__ import annotations

import difflib

import pytest

import medfm
from medfm.data.errors import UnknownDatasetError, UnknownSplitError
from medfm.data.medmnist_info import check_dataset_name, check_medmnist_split
from medfm.registry import ENCODERS, OBJECTIVES, UnknownNameError, close_match_hint

ENCODER_HINT = "did you mean 'resnet18' or 'resnet3d_18' or 'kan_resnet18'"


def test_a_name_equal_but_for_case_is_suggested_first():
    """Before: ``' (valid: train, val, test)'``, ``' (valid: lr, wd)'`` and ``"; did you mean 'meant'?"``."""
    assert close_match_hint("TEST", ["train", "val", "test"]) == "; did you mean 'test'?"
    assert close_match_hint("LR", ["lr", "wd"]) == "; did you mean 'lr'?"
    # 'meant' is the closer as written (ratio 0.89 against 0); the name equal but for case still comes first
    assert close_match_hint("mean", ["meant", "MEAN"], n=2) == "; did you mean 'MEAN' or 'meant'?"
    assert close_match_hint("mean", ["meant", "MEAN"]) == "; did you mean 'MEAN'?"  # n is still the most shown
    # two spellings of one name: both, in the order given, each once
    assert close_match_hint("VAL", ["Val", "val", "test"], n=3) == "; did you mean 'Val' or 'val'?"


def test_when_nothing_matches_as_written_case_folded_names_are_compared():
    """Before: ``'RESNT18'`` against the lower-case names matched nothing (fallback list)."""
    names = ["resnet18", "resnet3d_18", "kan_resnet18", "vit_small"]
    assert close_match_hint("RESNT18", names, n=3) == f"; {ENCODER_HINT}?"
    assert close_match_hint("ZZZ", names, fallback="known") == f" (known: {', '.join(names)})"  # nothing close


def test_one_case_keys_and_names_get_what_get_close_matches_gives():
    """Guard (passes on the old code too): a lower-case key among lower-case names gets difflib's matches, in its
    order (ties by name, the larger first), for every registered encoder name mistyped by one character."""
    names = ENCODERS.names()
    for name in names:
        key = name[:-1] + ("x" if name[-1] != "x" else "y")
        want = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
        expected = f"; did you mean {' or '.join(map(repr, want))}?" if want else ""
        assert close_match_hint(key, names, n=3, fallback=None) == expected, key


def test_medmnist_split_in_capitals_gets_the_split():
    with pytest.raises(UnknownSplitError, match=r"^unknown split 'TEST' for MedMNIST 'pneumoniamnist'; "
                                                r"did you mean 'test'\?$"):
        check_medmnist_split("pneumoniamnist", "TEST")


@pytest.mark.parametrize("name, registry", [("SwAV", OBJECTIVES), ("SimCLR", OBJECTIVES)])
def test_objective_names_in_another_case_get_the_name_and_stay_unknown(name, registry):
    with pytest.raises(UnknownNameError, match=rf"^unknown objective '{name}'; did you mean '{name.lower()}'\? "
                                               r"\(known: clip, graph_matching, moco, simclr, swav\)$"):
        registry.get(name)
    assert name not in registry


@pytest.mark.parametrize("name", ["RESNET18", "RESNT18", "ResNet18"])
def test_encoder_names_in_another_case_get_the_name_first(name):
    """``'ResNet18'`` had this hint already (its lower-case letters match); ``'RESNET18'`` had none."""
    with pytest.raises(UnknownNameError, match=rf"^unknown encoder '{name}'; {ENCODER_HINT}\? \(known: \d+; "
                                               r"medfm\.list_encoders\(\) lists them\)$"):
        medfm.create_encoder(name, in_chans=1, img_size=28)


def test_segmentation_data_set_in_capitals_gets_the_name():
    from medfm.training.seg_tasks import SegDataConfig

    with pytest.raises(ValueError, match=r"^unknown segmentation dataset 'CHASE_DB1'; did you mean 'chase_db1'\?$"):
        SegDataConfig(dataset="CHASE_DB1")


def test_medmnist_data_set_in_mixed_case_gets_the_flag_first():
    """Guard (passes on the old code too): the data set errors lower-case the name before the hint
    (:meth:`medfm.data.errors.UnknownDatasetError.for_name`)."""
    with pytest.raises(UnknownDatasetError, match=r"^--data: unknown MedMNIST data set 'PneumoniaMNIST'; "
                                                  r"did you mean 'pneumoniamnist' or "):
        check_dataset_name("PneumoniaMNIST", "--data")


def test_a_name_listed_twice_is_shown_once_and_n_distinct_names_are_shown():
    """The hint took ``n`` matches and then removed repeats, so ``n=3`` over a list with a repeat showed two names."""
    from medfm.registry import close_match_hint, close_matches

    valid = ["finetune", "linear", "train", "finetune"]
    assert close_matches("fintune", valid, n=3, cutoff=0.1) == ["finetune", "linear", "train"]
    assert close_match_hint("fintune", valid, n=3, cutoff=0.1) == "; did you mean 'finetune' or 'linear' or 'train'?"


def test_a_modality_key_in_another_case_counts_as_a_mistyped_modality():
    """``close_modality`` kept difflib's case-sensitive rule after the hints ignored case: a batch carrying
    ``'FLAIR'`` for modality ``'flair'`` collated with FLAIR absent everywhere, and a fuser let the key pass."""
    import torch

    from medfm.data.multimodal import close_modality, collate_modalities, modality_hint

    assert close_modality("FLAIR", ["flair", "pre"]) == "flair"
    assert modality_hint("FLAIR", ["flair", "pre"]) == "; did you mean 'flair'?"  # one rule for both
    assert close_modality("t1", ["t2"]) is None  # not close, in any case
    samples = [{"FLAIR": torch.zeros(1, 4, 4), "label": i} for i in range(2)]
    with pytest.raises(ValueError, match=r"^modality 'flair' is in no sample, but the samples carry 'FLAIR'"):
        collate_modalities(samples, ["flair", "pre"])
