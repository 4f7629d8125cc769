"""The missing-modality batch path: a mistyped modality list at the collate, and one value check per
image modality per fuser forward.

Found by the fusion audit: ``collate_modalities(samples, ["pre", "flari", "clinical"])`` for samples
carrying ``"flair"`` returned ``present["flari"]`` all False and stacked ``"flair"`` as an other key
(mask-less, so read as present for every sample; with some samples lacking it, a list a fuser
refused as "batch value flair must be a torch.Tensor"); a single-``"pre"`` model then called the
real key ``'flair'`` unknown. And every fuser with medfm encoders ran the value check
(``torch.aminmax`` and a device sync) twice per image modality per forward: in
:meth:`FusionModel.select` (named by modality) and again in the encoder's ``check_input``.
"""
from __future__ import annotations

import re

import pytest
import torch

from medfm.data.multimodal import close_modality, collate_modalities
from medfm.encoders.base import EncoderInputError
from tests.conftest import FUSION_CLINICAL as F, FUSION_MODS as MODS, FUSION_SIZE as S, tiny_fuser

NAMES = ["3mat", "multimodn", "late_fusion_zero_fill", "channelvit"]
NAN = float("nan")


def _img(seed=0):
    return torch.rand(1, S, S, generator=torch.Generator().manual_seed(seed))


def _samples(n=2, flair=(True, True)):
    out = []
    for i in range(n):
        s = {"pre": _img(i), "clinical": torch.randn(F), "label": i % 2, "mask": torch.zeros(S, S, dtype=torch.bool),
             "patient": f"p{i}"}
        if flair[i]:
            s["flair"] = _img(i + 5)
        out.append(s)
    return out


@pytest.mark.parametrize("flair", [(True, True), (True, False)], ids=["all_carry", "some_carry"])
def test_a_mistyped_modality_name_is_named_at_the_collate(flair):
    with pytest.raises(ValueError, match=re.escape("modality 'flari' is in no sample, but the samples carry 'flair'")):
        collate_modalities(_samples(flair=flair), ["pre", "flari", "clinical"])  # was: flari all absent


def test_a_modality_no_sample_has_and_nothing_close_stays_all_absent():
    batch = collate_modalities(_samples(flair=(False, False)), MODS + ["post", "t2"])
    for m in ("flair", "post", "t2"):
        assert m not in batch and batch["present"][m].tolist() == [False, False]
    assert batch["pre"].shape == (2, 1, S, S) and batch["patient"] == ["p0", "p1"]


def test_collate_and_the_fusers_share_one_near_miss_rule():
    assert close_modality("flari", MODS) == "flair" and close_modality("clinicl", MODS) == "clinical"
    assert close_modality("t1", ["t2"]) is None and close_modality("patient", ["pre", "flair", "post"]) is None
    with pytest.raises(ValueError, match=re.escape("batch key(s) ['flari'] are not modalities")):
        tiny_fuser("3mat")({"pre": torch.rand(2, 1, S, S), "flari": [None, None]})


class _AminmaxCounter:
    def __init__(self, monkeypatch):
        self.n, real = 0, torch.aminmax

        def counting(*args, **kwargs):
            self.n += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(torch, "aminmax", counting)


@pytest.mark.parametrize("name", NAMES + ["fused_unet"])
def test_each_present_image_modality_is_value_checked_once_per_forward(name, monkeypatch):
    model = tiny_fuser(name)
    both, pre_only = collate_modalities(_samples(), MODS), collate_modalities(_samples(flair=(False, False)), MODS)
    counter = _AminmaxCounter(monkeypatch)
    with torch.no_grad():
        model(both)
        assert counter.n == 2  # pre, flair (was 4: FusionModel.select, then the encoder's check_input)
        counter.n = 0
        model(pre_only)
        assert counter.n == 1


@pytest.mark.parametrize("name", NAMES + ["fused_unet"])
@pytest.mark.parametrize("bad", [NAN, float("inf")])
def test_a_present_image_with_nan_or_inf_is_still_refused_by_name(name, bad):
    batch = collate_modalities(_samples(), MODS)
    batch["flair"][1, 0, 3, 3] = bad
    with pytest.raises(ValueError, match=re.escape("modality 'flair' is marked present but holds NaN/inf; "
                                                   "mark it absent instead")):
        tiny_fuser(name)(batch)


@pytest.mark.parametrize("name", NAMES + ["fused_unet"])
def test_out_of_range_images_are_still_refused_by_name(name):
    batch = collate_modalities(_samples(), MODS)
    batch["pre"] = batch["pre"] * 255
    with pytest.raises(EncoderInputError, match=r"^modality 'pre': expected images in \[0, 1\].*0-255 pixel values"):
        tiny_fuser(name)(batch)


def test_a_standalone_image_modality_encoder_keeps_the_encoder_check_and_the_same_outputs():
    from medfm.adapters.fusion import ImageModalityEncoder

    torch.manual_seed(0)
    plain = ImageModalityEncoder({"name": "resnet_test"}, S, 16).eval()
    with pytest.raises(EncoderInputError, match="0-255 pixel values"):
        plain(torch.rand(2, 1, S, S) * 255)  # not behind a fuser's select: the encoder still checks
    checked = ImageModalityEncoder({"name": "resnet_test"}, S, 16, inputs_checked=True).eval()
    checked.load_state_dict(plain.state_dict())
    x = torch.rand(2, 1, S, S, dtype=torch.float64)  # cast to the encoder's dtype as Encoder.normalize does
    with torch.no_grad():
        assert torch.equal(checked(x), plain(x)) and torch.equal(checked.tokens(x), plain.tokens(x))
        assert torch.equal(plain(x), plain.proj(plain.encoder(x)))  # the encoder's own forward
