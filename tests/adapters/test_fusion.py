"""Missing-modality fusers: per-sample missingness never crashes and is never zero-filled where the method skips."""
from __future__ import annotations

import math

import pytest
import torch

from medfm.adapters.fusion import TabularEncoder, hierarchical_channel_sampling, sample_modality_dropout
from medfm.data.multimodal import collate_modalities, drop_modalities
from medfm.registry import FUSERS
from tests.conftest import assert_fuser_round_trip_exact

MODS = ["pre", "flair", "post", "clinical"]
S, F = 28, 5
ENC = {"name": "resnet_test"}


def build(name, **kw):
    if name == "channelvit":
        args = dict(modalities=MODS, img_size=S, patch_size=7, clinical_features=F, dim=16, depth=1, heads=2)
    else:
        args = dict(modalities=MODS, image_encoder=ENC, img_size=S, clinical_features=F, dim=16)
        if name == "3mat":
            args.update(heads=2, layers=2)
    args.update(kw)
    torch.manual_seed(0)
    return FUSERS.build(name, **args).eval()


def make_batch(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(b):
        s = {"label": i % 2}
        for m in ("pre", "flair", "post"):
            s[m] = torch.rand(1, S, S, generator=g)
        c = torch.randn(F, generator=g)
        c[i % F] = float("nan")
        s["clinical"] = c
        samples.append(s)
    # per-sample missingness: sample 0 has all, 1 lacks pre, 2 lacks flair+post, 3 lacks clinical,
    # 4 has only clinical, 5 only post
    for i, gone in [(1, ["pre"]), (2, ["flair", "post"]), (3, ["clinical"]), (4, ["pre", "flair", "post"]),
                    (5, ["pre", "flair", "clinical"])]:
        for m in gone:
            del samples[i][m]
    return collate_modalities(samples, MODS)


ALL = sorted(n for n in FUSERS.names() if FUSERS.tags(n).get("task") != "segmentation")  # segmentation: test_fusion_seg.py


def test_registry_holds_the_three_fusers_and_baseline():
    assert {"3mat", "multimodn", "channelvit", "late_fusion_zero_fill"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_any_per_sample_missingness_runs_and_is_finite(name):
    model = build(name)
    batch = make_batch()
    assert torch.isnan(batch["pre"][1]).all()  # collate fills absent rows with NaN, not zeros
    for train in (False, True):
        model.train(train)
        out = model(batch)
        assert out["logits"].shape == (6, 2) and torch.isfinite(out["logits"]).all()
        loss = model.loss(out, batch["label"])
        loss.backward()
        assert math.isfinite(loss.item())


@pytest.mark.parametrize("name", ["3mat", "multimodn", "channelvit"])
def test_output_ignores_values_of_absent_modalities(name):
    model = build(name)
    batch = make_batch()
    ref = model(batch)["logits"]
    other = dict(batch)
    for m in ("pre", "flair", "post"):
        x = batch[m].clone()
        absent = ~batch["present"][m]
        x[absent] = torch.rand_like(x[absent]) * 5  # any values where the modality is marked absent
        other[m] = x
    assert torch.equal(model(other)["logits"], ref)
    # dropping a key entirely equals marking it absent everywhere
    only = drop_modalities(batch, {"pre": torch.ones(6, dtype=torch.bool)})
    assert "pre" not in only
    assert torch.isfinite(model(only)["logits"]).all()


def test_late_fusion_zero_fills_by_design():
    model = build("late_fusion_zero_fill")
    batch = make_batch()
    assert torch.equal(model.zero_filled(batch, "pre")[1], torch.zeros(1, S, S))
    filled = dict(batch)
    filled["pre"] = torch.nan_to_num(batch["pre"], nan=0.0)
    filled["present"] = dict(batch["present"], pre=torch.ones(6, dtype=torch.bool))
    assert torch.equal(model(filled)["logits"], model(batch)["logits"])


def test_multimodn_state_is_exactly_unchanged_for_skipped_samples():
    model = build("multimodn")
    batch = make_batch()
    out = model(batch)
    states = out["states"]  # (T + 1, B, D)
    for t, m in enumerate(MODS):
        present = batch["present"][m]
        for i in range(6):
            same = torch.equal(states[t + 1, i], states[t, i])
            assert same == (not bool(present[i])), (m, i)
    # the per-step loss only counts present steps: a sample with one modality has one term
    assert out["step_present"][:, 4].tolist() == [False, False, False, True]
    # the prediction is made after every step
    assert out["step_logits"].shape == (4, 6, 2)
    assert torch.equal(out["step_logits"][-1], out["logits"])


def test_multimodn_loss_is_mean_over_present_steps():
    model = build("multimodn")
    batch = make_batch()
    out = model(batch)
    y = batch["label"]
    terms = [torch.nn.functional.cross_entropy(out["step_logits"][t, i:i + 1], y[i:i + 1])
             for t in range(4) for i in range(6) if out["step_present"][t, i]]
    assert torch.allclose(model.loss(out, y), torch.stack(terms).mean(), atol=1e-6)


def test_3mat_modality_dropout_keeps_at_least_one():
    pres = {m: torch.tensor([True, True, False, True]) for m in ("a", "b")}
    pres["c"] = torch.tensor([True, False, True, False])
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        kept = sample_modality_dropout(pres, 0.9, g)
        stack = torch.stack([kept[m] for m in pres], 1)
        assert stack.any(1).all()
        assert not (stack & ~torch.stack(list(pres.values()), 1)).any()


def test_hierarchical_channel_sampling_draws_count_then_channels():
    present = torch.tensor([[True, True, True]] * 3000)
    kept = hierarchical_channel_sampling(present, torch.Generator().manual_seed(0))
    counts = torch.bincount(kept.sum(1), minlength=4)[1:].float() / 3000
    assert counts.min() > 0.28 and counts.max() < 0.39  # k uniform on {1, 2, 3}
    one = hierarchical_channel_sampling(torch.tensor([[False, True, False]]))
    assert one.tolist() == [[False, True, False]]


@pytest.mark.parametrize("name", ALL)
def test_save_load_exact(name, tmp_path):
    model = build(name)
    model.set_tabular_statistics(torch.tensor([[1.0, 2, 3, 4, 5], [3.0, float("nan"), 1, 0, 2]]))
    assert_fuser_round_trip_exact(model, make_batch(), tmp_path / "ckpt")


def test_present_image_with_nan_is_a_clear_error():
    model = build("3mat")
    batch = make_batch()
    batch["present"]["pre"] = torch.ones(6, dtype=torch.bool)
    with pytest.raises(ValueError, match="'pre' is marked present"):
        model(batch)


@pytest.mark.parametrize("name", ["multimodn", "late_fusion_zero_fill"])
def test_sample_without_any_modality_is_a_clear_error(name):
    """The zero-fill baseline used to classify such a sample from all-zero inputs."""
    model = build(name, modalities=["pre", "flair"])
    batch = make_batch()  # samples 4 (only clinical) and 5 (only post)
    with pytest.raises(ValueError, match=r"sample\(s\) \[4, 5\]"):
        model(batch)


def test_tabular_encoder_nan_uses_missing_token():
    enc = TabularEncoder(3, 4)
    enc.set_statistics(torch.tensor([[1.0, 0.0, float("nan")], [3.0, 2.0, float("nan")]]))
    assert torch.allclose(enc.mean, torch.tensor([2.0, 1.0, 0.0])) and torch.allclose(enc.std, torch.tensor([1.0, 1.0, 1.0]))
    x = torch.tensor([[3.0, float("nan"), 7.0]])
    tok = enc.tokens(x)
    assert torch.isfinite(tok).all()
    assert torch.equal(tok[0, 1], enc.missing_token[1])
    assert torch.allclose(tok[0, 0], 1.0 * enc.weight[0] + enc.bias[0])
    # a missing value is not the same as any observed value (e.g. the mean)
    assert not torch.equal(enc(x), enc(torch.tensor([[3.0, 1.0, 7.0]])))
    zero = TabularEncoder(3, 4, missing="zero")
    assert torch.equal(zero.tokens(torch.tensor([[float("nan"), 0.0, 0.0]])), zero.tokens(torch.zeros(1, 3)))
    with pytest.raises(ValueError, match="inf"):
        enc(torch.tensor([[float("inf"), 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        enc(torch.zeros(2, 4))
