"""SwAV: Sinkhorn-Knopp and swapped prediction vs loop references, multi-crop, prototypes, checkpoints."""
import math

import pytest
import torch

import medfm
from medfm.hub import from_pretrained, save_pretrained
from medfm.objectives.swav import SwAV, sinkhorn_knopp, swav_loss
from medfm.registry import OBJECTIVES
from tests.conftest import train_objective_losses



def _swav(**kw):
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    args = dict(proj_dim=8, hidden_dim=16, n_prototypes=6, n_local_views=2)
    args.update(kw)
    return OBJECTIVES.build("swav", encoder=enc, **args)


def _sinkhorn_reference(scores, eps, iters):
    b, k = len(scores), len(scores[0])
    q = [[math.exp(scores[i][j] / eps) for i in range(b)] for j in range(k)]  # K x B
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(iters):
        for j in range(k):
            r = sum(q[j])
            q[j] = [v / r / k for v in q[j]]
        for i in range(b):
            c = sum(q[j][i] for j in range(k))
            for j in range(k):
                q[j][i] = q[j][i] / c / b
    return [[q[j][i] * b for j in range(k)] for i in range(b)]


def test_sinkhorn_matches_loop_reference():
    s = torch.rand(5, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    got = sinkhorn_knopp(s, epsilon=0.3, iterations=3)
    ref = torch.tensor(_sinkhorn_reference(s.tolist(), 0.3, 3))
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.sum(dim=1), torch.ones(5), rtol=0, atol=1e-5)


def test_sinkhorn_is_stable_at_small_epsilon_and_equipartitions():
    s = torch.rand(64, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    q = sinkhorn_knopp(s, epsilon=0.05, iterations=50)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(dim=0), torch.full((8,), 64 / 8), rtol=0, atol=0.05)


def test_swav_loss_matches_loop_reference():
    g = torch.Generator().manual_seed(2)
    views = [torch.rand(4, 3, generator=g) * 2 - 1 for _ in range(4)]
    t, eps = 0.1, 0.05
    ref = 0.0
    for v in (0, 1):
        q = _sinkhorn_reference(views[v].tolist(), eps, 3)
        sub = 0.0
        for w in range(4):
            if w == v:
                continue
            for i in range(4):
                row = [x / t for x in views[w][i].tolist()]
                lse = math.log(sum(math.exp(x) for x in row))
                sub -= sum(q[i][j] * (row[j] - lse) for j in range(3)) / 4
        ref += sub / 3
    ref /= 2
    assert swav_loss(views, (0, 1), t, eps, 3).item() == pytest.approx(ref, abs=1e-5)


def test_swav_loss_rejects_bad_input():
    with pytest.raises(ValueError, match=">= 2"):
        swav_loss([torch.rand(4, 3)])
    with pytest.raises(ValueError, match="assign_views"):
        swav_loss([torch.rand(4, 3)] * 2, assign_views=(0, 5))


def test_multicrop_sizes_and_gradient_flow():
    model = _swav(n_local_views=3, local_size=8)
    seen = []
    model.encoder.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    out = model({"image": torch.rand(5, 1, 16, 16)}, torch.Generator().manual_seed(0))
    assert seen == [(10, 1, 16, 16), (15, 1, 8, 8)]
    out["loss"].backward()
    assert model.prototypes.weight.grad is not None
    vit = OBJECTIVES.build("swav", encoder=medfm.create_encoder("vit_test", in_chans=1, img_size=16), n_prototypes=4)
    assert vit.local_size == 16  # fixed-size encoders keep their input size for local crops


def test_prototypes_frozen_then_trained_and_renormalised():
    model = _swav(freeze_prototypes_steps=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = {"image": torch.rand(6, 1, 16, 16)}
    grads = []
    for step in range(3):
        opt.zero_grad(set_to_none=True)
        model(x, torch.Generator().manual_seed(step))["loss"].backward()
        grads.append(model.prototypes.weight.grad is not None)
        opt.step()
        model.on_step_end(step)
        torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(6), rtol=0, atol=1e-6)
    assert grads == [False, False, True]
    assert int(model.steps_done) == 3


def test_short_training_decreases_loss():
    model = _swav()
    x = {"image": torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(3))}
    losses = train_objective_losses(model, x, 14, seed_period=2)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = _swav(freeze_prototypes_steps=3)
    model.on_step_end(4)
    loaded = from_pretrained(save_pretrained(model, tmp_path / "swav"))
    assert isinstance(loaded, SwAV) and loaded.local_size == model.local_size
    a, b = model.state_dict(), loaded.state_dict()
    assert set(a) == set(b) and "prototypes.weight" in a and int(b["steps_done"]) == 5
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_arguments_raise():
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    with pytest.raises(ValueError, match="n_prototypes"):
        SwAV(enc, n_prototypes=1)
    with pytest.raises(ValueError, match="epsilon"):
        SwAV(enc, epsilon=0)
    with pytest.raises(ValueError, match="local_size"):
        SwAV(enc, local_size=4)


def test_fewer_prototypes_than_dims_admit_the_uniform_collapse_and_warn(caplog):
    # K < d: a unit projection orthogonal to every prototype scores 0 everywhere -> uniform
    # codes and predictions, loss exactly ln K (the plateau a 64-prototype / 128-d run sat on)
    g = torch.Generator().manual_seed(0)
    protos = torch.nn.functional.normalize(torch.randn(4, 6, generator=g), dim=1)  # K=4 < d=6
    basis = torch.linalg.svd(protos, full_matrices=True).Vh[4:]  # orthogonal complement of the prototypes
    z = torch.nn.functional.normalize(basis[0].expand(5, 6), dim=1)
    scores = z @ protos.t()
    assert scores.abs().max() < 1e-6
    assert swav_loss([scores, scores]).item() == pytest.approx(math.log(4), abs=1e-5)
    # K >= d: unit projections cannot score 0 against every prototype
    protos = torch.nn.functional.normalize(torch.randn(8, 6, generator=g), dim=1)
    z = torch.nn.functional.normalize(torch.randn(50, 6, generator=g), dim=1)
    assert ((z @ protos.t()).pow(2).sum(dim=1) >= torch.linalg.eigvalsh(protos.t() @ protos)[0] - 1e-5).all()
    with caplog.at_level("WARNING", logger="medfm.objectives.swav"):
        _swav(proj_dim=8, n_prototypes=6)
    assert "collapse" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="medfm.objectives.swav"):
        _swav(proj_dim=8, n_prototypes=8)
    assert "collapse" not in caplog.text


def _convnext_patch4():
    """A ConvNeXt on timm's patch-4 stem: its stem and stride-2 stages leave no pixel below 32 px."""
    return medfm.create_encoder("convnext_test", in_chans=1, img_size=64, patch_size=4)


def test_local_crops_smaller_than_the_encoder_takes_are_refused_at_build():
    """They were accepted (``local_size >= 8`` only) and failed at the first training step with the
    encoder's input error, after the data had loaded."""
    enc = _convnext_patch4()
    with pytest.raises(ValueError, match=r"^swav: local_size 16 px is below the smallest input encoder "
                                         r"'convnext_test' takes \(its min_input_size: 32 px\); use local_size >= 32$"):
        SwAV(enc, n_local_views=2, local_size=16)
    assert SwAV(enc, n_local_views=0, local_size=16).local_size == 16  # no local crops reach the encoder


def test_default_local_size_is_at_least_what_the_encoder_takes():
    model = SwAV(_convnext_patch4(), proj_dim=8, hidden_dim=16, n_prototypes=8, n_local_views=1)
    assert model.local_size == 32  # was round(64 * 96 / 224) = 27: EncoderInputError at the first step
    model({"image": torch.rand(2, 1, 64, 64)}, torch.Generator().manual_seed(0))["loss"].backward()
