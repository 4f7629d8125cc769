"""Missing-modality segmentation fuser (HeMIS + U-Net decoder) and its zero-fill baseline."""
from __future__ import annotations

import pytest
import torch

from medfm.adapters.fusion import masked_moments
from medfm.data.multimodal import collate_modalities
from medfm.registry import FUSERS
from tests.conftest import assert_fuser_round_trip_exact, fit_losses

MODS = ["pre", "flair", "post"]
S = 28
ENC = {"name": "resnet_test"}
DEC = {"decoder_channels": [8, 8, 8, 8], "stem_channels": 8}


def build(**kw):
    args = dict(modalities=MODS, image_encoder=ENC, img_size=S, decoder=DEC)
    args.update(kw)
    torch.manual_seed(0)
    return FUSERS.build("fused_unet", **args).eval()


def make_batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(b):
        mask = torch.zeros(S, S, dtype=torch.long)
        mask[4 + i:14 + i, 6:16] = 1
        s = {"mask": mask, "label": 1}
        for j, m in enumerate(MODS):
            s[m] = (torch.rand(1, S, S, generator=g) * 0.3 + 0.6 * mask * (j + 1) / 3).clamp(0, 1)
        samples.append(s)
    del samples[1]["pre"]                        # sample 1 lacks pre
    del samples[2]["pre"], samples[2]["post"]    # sample 2 has FLAIR only
    del samples[3]["flair"]                      # sample 3 lacks FLAIR
    return collate_modalities(samples, MODS)


def test_registered_as_segmentation_fuser():
    assert FUSERS.tags("fused_unet")["task"] == "segmentation"


@pytest.mark.parametrize("fusion", ["hemis", "attention", "zero_fill"])
def test_output_shape_and_finite_with_per_sample_missingness(fusion):
    model = build(fusion=fusion)
    batch = make_batch()
    for train in (False, True):
        model.train(train)
        out = model(batch, torch.Generator().manual_seed(0))
        assert out["logits"].shape == (4, 2, S, S) and torch.isfinite(out["logits"]).all()
    single = build(modalities=["flair"], fusion="zero_fill")
    only_flair = {"flair": batch["flair"][[0, 1, 2]], "present": {"flair": torch.ones(3, dtype=torch.bool)}}
    assert single(only_flair)["logits"].shape == (3, 2, S, S)


@pytest.mark.parametrize("fusion", ["hemis", "attention", "zero_fill"])
def test_output_ignores_values_of_absent_modalities(fusion):
    model = build(fusion=fusion)
    batch = make_batch()
    assert torch.isnan(batch["pre"][1]).all()  # absent rows are NaN, never read
    ref = model(batch)["logits"]
    other = dict(batch)
    for m in MODS:
        x = batch[m].clone()
        absent = ~batch["present"][m]
        x[absent] = torch.rand_like(x[absent]) * 5
        other[m] = x
    assert torch.equal(model(other)["logits"], ref)


def test_hemis_skips_absent_while_zero_fill_sees_black_images():
    batch = make_batch()
    filled = dict(batch, pre=torch.nan_to_num(batch["pre"], nan=0.0),
                  present=dict(batch["present"], pre=torch.ones(4, dtype=torch.bool)))
    late = build(fusion="zero_fill")
    assert torch.equal(late(filled)["logits"], late(batch)["logits"])  # absent == black image, by design
    hemis = build()
    assert not torch.allclose(hemis(filled)["logits"][1], hemis(batch)["logits"][1])  # absent != black image


def test_masked_moments_match_hand_computed():
    feats = torch.tensor([[1.0, 3.0, 100.0], [2.0, 0.0, 0.0]]).reshape(2, 3, 1, 1, 1)
    present = torch.tensor([[True, True, False], [True, False, False]])
    mean, var = masked_moments(feats, present)
    assert torch.allclose(mean.flatten(), torch.tensor([2.0, 2.0]))
    assert torch.allclose(var.flatten(), torch.tensor([1.0, 0.0]))  # one modality: variance 0


def test_masked_softmax_fusion_matches_hand_computed():
    from medfm.adapters.fusion.segmentation import masked_softmax_fusion

    feats = torch.tensor([[1.0, 3.0, 100.0], [2.0, 5.0, 7.0]]).reshape(2, 3, 1, 1, 1)
    scores = torch.tensor([[0.0, torch.log(torch.tensor(3.0)), 50.0], [1.0, 2.0, 3.0]]).reshape(2, 3, 1, 1, 1)
    present = torch.tensor([[True, True, False], [False, True, False]])
    fused = masked_softmax_fusion(feats, scores, present).flatten()
    # sample 0: weights 1/4, 3/4 over the two present modalities (the absent one's score 50 is ignored)
    assert torch.allclose(fused, torch.tensor([0.25 * 1 + 0.75 * 3, 5.0]))


@pytest.mark.parametrize("fusion", ["hemis", "attention"])
def test_save_load_exact(tmp_path, fusion):
    model = build(modality_dropout=0.25, fusion=fusion)
    with torch.no_grad():  # non-zero modality biases, so the round trip covers them
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    assert_fuser_round_trip_exact(model, make_batch(), tmp_path / "ckpt")


def test_loss_decreases_on_a_toy_batch():
    model = build(modality_dropout=0.3).train()
    batch = make_batch()
    gen = torch.Generator().manual_seed(0)
    losses = fit_losses(lambda _: model.loss(model(batch, gen), batch["mask"]), model.parameters(), steps=8, lr=3e-3)
    assert losses[-1] < 0.8 * losses[0], losses


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="tabular modality 'clinical'"):
        build(modalities=["flair", "clinical"])
    with pytest.raises(ValueError, match="fusion must be one of"):
        build(fusion="mean")
    with pytest.raises(ValueError, match="unknown decoder option"):
        build(decoder={"channels": 8})
    batch = make_batch()
    batch["present"]["pre"] = torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="'pre' is marked present"):
        build()(batch)


def test_protocol_dice_per_patient_for_every_subset():
    from medfm.evaluation.fusion_seg import patient_dice, run_seg_fusion_protocol

    pred = torch.zeros(3, 4, 4, dtype=torch.uint8).numpy()
    ref = pred.copy()
    pred[0, :2, :2] = 1            # patient a: slice 0 predicts 4 px, reference 4 px on slices 0 + 1
    ref[0, :2, :2] = 1
    ref[1, :2, :2] = 1
    pred[2, 0, 0] = ref[2, 0, 0] = 1
    dice = patient_dice(pred, ref, ["a", "a", "b"], ["bg", "fg"])
    assert dice == {"a": pytest.approx(2 * 4 / 12), "b": 1.0}  # slices stacked per patient, not averaged
    batch = make_batch()
    batch["patient"] = ["p0", "p1", "p2", "p3"]
    models = {"fused": build(), "single_flair": build(modalities=["flair"], fusion="zero_fill")}
    res = run_seg_fusion_protocol(models, batch, MODS, ["bg", "fg"], n_boot=20)
    rows = {(r["subset"], r["model"]): r for r in res["subsets"]}
    assert len({s for s, _ in rows}) == 7
    assert rows[("pre+flair+post", "fused")]["n_patients"] == 1            # only sample 0 has all three
    assert rows[("flair", "single_flair")]["n_patients"] == 3
    assert ("pre", "single_flair") not in rows                              # no usable modality: no entry
    assert 0 <= rows[("flair", "fused")]["dice"] <= 1
