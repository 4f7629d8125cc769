"""The fusion protocol takes the presence of the test sets it builds from the masks at hand
(:func:`medfm.evaluation.fusion.shown_presence`): it read every mask back from the batch
:func:`medfm.data.multimodal.drop_modalities` had just built (each checked again, once per model and test set)."""
from __future__ import annotations

import pytest
import torch

from medfm.data.multimodal import PRESENT_KEY, collate_modalities, drop_modalities, presence
from medfm.evaluation import fusion as FU
from medfm.registry import FUSERS

MODS = ["pre", "flair", "clinical"]


def _batch(n=12, no_mask=(), absent=(), ints=False):
    g = torch.Generator().manual_seed(0)
    samples = []
    for i in range(n):
        s = {"pre": torch.rand(1, 16, 16, generator=g), "flair": torch.rand(1, 16, 16, generator=g),
             "clinical": torch.randn(3, generator=g), "label": i % 2, "patient": f"p{i % 3}"}
        if i % 3 == 0:
            del s["pre"]
        for m in absent:
            del s[m]
        samples.append(s)
    batch = collate_modalities(samples, MODS)
    for m in no_mask:
        del batch[PRESENT_KEY][m]
    if ints:
        batch[PRESENT_KEY] = {m: p.long() for m, p in batch[PRESENT_KEY].items()}
    return batch


@pytest.mark.parametrize("kind", [{}, {"no_mask": ["clinical"]}, {"absent": ["flair"]}, {"ints": True}])
def test_shown_presence_is_what_drop_modalities_marks(kind):
    """The masks of the batch drop_modalities builds, for MCAR, MNAR and subset drops (a modality without a presence
    mask, one absent everywhere, 0/1 integer masks)."""
    batch = _batch(**kind)
    natural = {m: presence(batch, m) for m in MODS}
    drops = [FU.mcar_drop(natural, 0.5, torch.Generator().manual_seed(1)),
             FU.mnar_drop(batch["label"], natural, ["pre", "flair"], 0.8, 0.1, True, torch.Generator().manual_seed(2)),
             {"pre": torch.ones(12, dtype=torch.bool)}, {}]
    for drop in drops:
        shown = FU.shown_presence(natural, drop)
        built = drop_modalities(batch, drop)
        assert list(shown) == MODS
        for m in MODS:
            assert shown[m].dtype == torch.bool and torch.equal(shown[m], presence(built, m)), (kind, m)


def test_the_protocol_reads_the_test_batchs_presence_only(monkeypatch):
    """presence ran on every batch drop_modalities built, once per model and test set (27 calls here, 6 now)."""
    calls = []
    real = FU.presence
    monkeypatch.setattr(FU, "presence", lambda batch, m: calls.append(m) or real(batch, m))
    common = dict(image_encoder={"name": "resnet_test"}, img_size=16, clinical_features=3, dim=8)
    torch.manual_seed(0)
    models = {"late": FUSERS.build("late_fusion_zero_fill", modalities=MODS, **common).eval()}
    res = FU.run_fusion_protocol(models, _batch(), MODS, mnar_models={"mnar": models["late"]}, mcar_rates=[0.5],
                                 mnar_modalities=["pre", "flair"], n_boot=0)
    assert len(res["mcar"]) == 1 and len(res["mnar"]) == 6
    assert len(calls) == 2 * len(MODS)  # the natural test set's masks: once in the protocol, once in subset_views
