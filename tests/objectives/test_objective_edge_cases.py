"""Objective edge cases: losses in fp32 under bf16 autocast, Sinkhorn at small epsilon,
tiny batches, and CLIP's logit-scale cap (found by the correctness audit)."""
import math

import pytest
import torch
import torch.nn.functional as F

import medfm
from medfm.objectives import clip_loss, moco_infonce_loss, nt_xent_loss, vicreg_loss
from medfm.objectives.swav import sinkhorn_knopp
from medfm.registry import OBJECTIVES
from tests.conftest import save_tiny_bert

WORDS = ["a", "chest", "x", "ray", "hand", "brain", "mri", "ct"]


def _pairs(b=32, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(b, d, generator=g)
    return z1, z1 + 0.1 * torch.randn(b, d, generator=g)


LOSSES = {
    "nt_xent": lambda z1, z2: nt_xent_loss(z1, z2, 0.1),
    "clip_scale_100": lambda z1, z2: clip_loss(z1, z2.roll(1, dims=0), 100.0),
    "clip_ids": lambda z1, z2: clip_loss(z1, z2, 100.0, torch.arange(z1.shape[0]) % 5),
    "moco": lambda z1, z2: moco_infonce_loss(z1, z2, F.normalize(torch.cos(torch.arange(40.0)[:, None] * torch.arange(1.0, 17.0)), dim=1), 0.2),
    "vicreg": lambda z1, z2: vicreg_loss(z1, z2),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_are_fp32_under_bf16_autocast(name):
    # the trainer runs objectives under torch.autocast(bf16); .float() alone does not stop autocast
    # from running the similarity matmul in bf16 (clip at scale 100: logits off by up to 0.25)
    z1, z2 = _pairs()
    ref = LOSSES[name](z1, z2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = LOSSES[name](z1, z2)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=1e-6, abs=1e-6)


def _sinkhorn_float64(scores, eps, iters):
    """SwAV's linear-domain algorithm in float64 (where exp(-2 / 0.01) does not underflow)."""
    q = torch.exp(scores.double() / eps).t()
    k, b = q.shape
    q = q / q.sum()
    for _ in range(iters):
        q = q / q.sum(dim=1, keepdim=True) / k
        q = q / q.sum(dim=0, keepdim=True) / b
    return (q * b).t()


@pytest.mark.parametrize("eps", [0.05, 0.01])
def test_sinkhorn_finite_with_a_far_prototype_and_small_epsilon(eps):
    s = torch.rand(8, 4, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.8
    s[:, 3] = -1.0  # a prototype opposite to every sample: exp(-2 / 0.01) underflows float32
    q = sinkhorn_knopp(s, eps)
    assert torch.isfinite(q).all()
    assert torch.allclose(q.double(), _sinkhorn_float64(s, eps, 3), atol=1e-5)
    assert torch.allclose(q.sum(dim=1), torch.ones(8), atol=1e-5)


def _encoder():
    torch.manual_seed(0)
    return medfm.create_encoder("resnet_test", in_chans=1, img_size=16)


def test_swav_rejects_a_single_image_batch():
    model = OBJECTIVES.build("swav", encoder=_encoder(), proj_dim=8, hidden_dim=16, n_prototypes=8, n_local_views=1)
    with pytest.raises(ValueError, match="at least 2 images"):
        model({"image": torch.rand(1, 1, 16, 16)}, torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def text_spec(tmp_path_factory):
    return {"name": "hf", "model_name_or_path": str(save_tiny_bert(tmp_path_factory.mktemp("bert"), WORDS))}


def _clip(text_spec, **kw):
    return OBJECTIVES.build("clip", encoder=_encoder(), text_encoder=text_spec, embed_dim=8, proj_hidden_dim=16,
                            text_cache=False, **kw)


def test_clip_rejects_a_single_pair(text_spec):
    model = _clip(text_spec)
    with pytest.raises(ValueError, match="at least 2 image-text pairs"):
        model({"image": torch.rand(1, 1, 16, 16), "text": ["a chest x ray"]}, torch.Generator().manual_seed(0))


def test_clip_logit_scale_at_the_cap_still_learns(text_spec):
    # CLIP caps the logit scale at 100; with the cap as a plain clamp in forward the gradient is 0
    # at and above the cap, so a scale that reached 100 stayed there forever
    model = _clip(text_spec, augment=False).train()
    cap = math.log(100.0)
    with torch.no_grad():
        model.logit_scale.fill_(cap + 0.3)  # an optimizer step overshot the cap
    model.on_step_end(0)
    assert model.logit_scale.item() == pytest.approx(cap, abs=1e-6)
    assert model.scale().item() == pytest.approx(100.0, rel=1e-5)
    # random image-text pairs: the loss prefers a lower scale than 100, which must be reachable
    batch = {"image": torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(1)),
             "text": ["a chest x ray", "a hand x ray", "brain mri", "a ct", "chest ct", "hand mri"]}
    opt = torch.optim.Adam([model.logit_scale], lr=0.05)
    for step in range(3):
        loss = model(batch, torch.Generator().manual_seed(step))["loss"]
        opt.zero_grad()
        loss.backward()
        assert model.logit_scale.grad is not None and model.logit_scale.grad.item() != 0
        opt.step()
        model.on_step_end(step)
    assert model.scale().item() < 99.0
