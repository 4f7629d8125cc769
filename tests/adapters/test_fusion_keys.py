"""Missing-modality fusers refuse what they would otherwise silently ignore or predict from nothing.

Found with the card's usage path (``model(collate_modalities([sample], model.modalities))``):
a mistyped modality key next to correct ones (``{"pre": x, "flair": y, "clinicl": z}``) was
dropped without a word and the sample predicted from the other modalities (a wholly unknown
dict was already refused); a sample whose only input was a clinical vector with every value NaN
was predicted (from the learned missing tokens / zeros: no information), while a sample with
no modality at all is refused. The fusers' image range check is the encoders' own
(:meth:`medfm.encoders.base.Encoder.check_input`), named by modality.
"""
from __future__ import annotations

import re

import pytest
import torch

from medfm.data.multimodal import collate_modalities
from medfm.encoders.base import EncoderInputError
from tests.conftest import FUSION_CLINICAL as F, FUSION_MODS as MODS, FUSION_SIZE as S, tiny_fuser

NAMES = ["3mat", "multimodn", "late_fusion_zero_fill", "channelvit"]
NAN = float("nan")


@pytest.fixture(scope="module")
def fusers():
    return {n: tiny_fuser(n) for n in NAMES}


def _img(seed=0):
    return torch.rand(1, S, S, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
def test_a_mistyped_key_next_to_known_ones_is_named(fusers, name):
    model = fusers[name]
    sample = {"pre": _img(0), "flair": _img(1), "clinicl": torch.randn(F)}
    with pytest.raises(ValueError, match=re.escape("modality 'clinical' is in no sample, but the samples carry "
                                                   "'clinicl'")):
        collate_modalities([sample], model.modalities)  # the collate names it first (test_fusion_collate.py)
    batch = {"pre": sample["pre"][None], "flair": sample["flair"][None], "clinicl": sample["clinicl"][None]}
    with pytest.raises(ValueError, match=re.escape(f"batch key(s) ['clinicl'] are not modalities of this model, "
                                                   f"which takes {MODS}")):
        model(batch)  # was: predicted from pre + flair only


def test_every_unknown_key_is_named_also_in_a_raw_batch(fusers):
    batch = {"flair": torch.rand(2, 1, S, S), "t1": torch.rand(2, 1, S, S), "clinicl": torch.randn(2, F)}
    with pytest.raises(ValueError, match=re.escape("batch key(s) ['clinicl', 't1'] are not modalities")):
        fusers["3mat"](batch)


@pytest.mark.parametrize("name", NAMES)
def test_data_set_keys_and_modalities_listed_as_present_are_not_unknown(fusers, name):
    # a collated data set batch (labels, masks, patient ids) holds modalities a model may not use
    # (here "post"; for a single-modality baseline all but one): listed in batch["present"], not typos
    from medfm.registry import FUSERS

    samples = [{"pre": _img(i), "flair": _img(i + 5), "post": _img(i + 9), "clinical": torch.randn(F),
                "label": i % 2, "mask": torch.zeros(S, S, dtype=torch.bool), "patient": f"p{i}"} for i in range(2)]
    batch = collate_modalities(samples, MODS + ["post"])
    assert fusers[name](batch)["logits"].shape == (2, 2)
    single = FUSERS.build("late_fusion_zero_fill", modalities=["flair"], image_encoder={"name": "resnet_test"},
                          img_size=S, dim=16).eval()
    assert single(batch)["logits"].shape == (2, 2)


def test_metadata_keys_pass_but_near_miss_names_do_not(fusers):
    """A dictionary pipeline's extras (file names, a meta dict) are not inputs; a name close to a
    modality's is a typo whatever its value holds."""
    batch = {"flair": torch.rand(2, 1, S, S), "clinical": torch.randn(2, F), "filename": ["a.png", "b.png"],
             "image_meta_dict": {"spacing": [1.0, 1.0]}}
    assert fusers["3mat"](batch)["logits"].shape == (2, 2)
    with pytest.raises(ValueError, match=re.escape("batch key(s) ['flari'] are not modalities")):
        fusers["3mat"]({**batch, "flari": [None, None]})


@pytest.mark.parametrize("name", NAMES)
def test_an_all_nan_clinical_row_alone_is_refused_like_no_modality(fusers, name):
    model = fusers[name]
    samples = [{"flair": _img(0), "clinical": torch.full((F,), NAN)},  # images carry the information: fine
               {"clinical": torch.tensor([1.0] + [NAN] * (F - 1))},  # one known clinical value: fine
               {"clinical": torch.full((F,), NAN)}]  # nothing known at all
    with pytest.raises(ValueError, match=re.escape("sample(s) [2] have none of the modalities") + ".*"
                       + re.escape("(a 'clinical' row whose every value is NaN counts as missing)")):
        model(collate_modalities(samples, model.modalities))  # was: a prediction from no information
    with pytest.raises(ValueError, match=re.escape("sample(s) [0] have none of the modalities")):
        model(collate_modalities([{}], model.modalities))  # the same rule as a sample with nothing
    out = model(collate_modalities(samples[:2], model.modalities))["logits"]
    assert out.shape == (2, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_the_range_check_names_the_modality_and_keeps_the_encoder_tolerance(fusers, name):
    model = fusers[name]
    ok = _img(0) * (1 + 5e-4)  # within the encoders' INPUT_RANGE_TOLERANCE (1e-3): accepted
    assert torch.isfinite(model(collate_modalities([{"pre": ok}], model.modalities))["logits"]).all()
    with pytest.raises(EncoderInputError, match=r"^modality 'flair': expected images in \[0, 1\].*rescale them"):
        model(collate_modalities([{"pre": _img(0), "flair": _img(1) * 1.01}], model.modalities))
