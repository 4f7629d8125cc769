"""MoCo: InfoNCE vs a loop reference, queue and momentum updates, training, checkpoints, resume."""
import math

import pytest
import torch

import medfm
from medfm.hub import from_pretrained, load_encoder_weights, save_pretrained
from medfm.objectives.moco import MoCo, moco_infonce_loss
from medfm.registry import OBJECTIVES
from medfm.training.loop import TrainConfig, Trainer
from tests.conftest import Killed, train_objective_losses



def _moco(**kw):
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    return OBJECTIVES.build("moco", encoder=enc, proj_dim=8, hidden_dim=16, **kw)


class _Images:
    """Random 16x16 images with the fast ``get_batch`` path."""

    def __init__(self, n=24, seed=0):
        self.x = torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i]}

    def get_batch(self, idx):
        return {"image": self.x[idx]}


def test_infonce_matches_loop_reference():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    queue = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=1)
    t = 0.2
    ref = 0.0
    for i in range(4):
        qi = [v / math.sqrt(sum(w * w for w in q[i].tolist())) for v in q[i].tolist()]
        ki = [v / math.sqrt(sum(w * w for w in k[i].tolist())) for v in k[i].tolist()]
        pos = sum(a * b for a, b in zip(qi, ki)) / t
        negs = [sum(a * b for a, b in zip(qi, queue[j].tolist())) / t for j in range(7)]
        ref += -pos + math.log(math.exp(pos) + sum(math.exp(v) for v in negs))
    ref /= 4
    assert moco_infonce_loss(q, k, queue, t).item() == pytest.approx(ref, abs=1e-5)


def test_infonce_rejects_bad_shapes():
    with pytest.raises(ValueError, match="queue"):
        moco_infonce_loss(torch.randn(4, 5), torch.randn(4, 5), torch.randn(7, 6))
    with pytest.raises(ValueError, match="temperature"):
        moco_infonce_loss(torch.randn(4, 5), torch.randn(4, 5), torch.randn(7, 5), temperature=0)


def test_queue_wraps_and_momentum_is_ema():
    model = _moco(queue_size=5, momentum=0.9)
    keys = torch.arange(24, dtype=torch.float32).view(3, 8)
    model._enqueue(keys)
    model._enqueue(keys + 100)
    assert int(model.queue_ptr) == 1
    assert torch.equal(model.queue[0], keys[2] + 100)
    assert torch.equal(model.queue[3:5], (keys + 100)[:2])
    assert torch.equal(model.queue[1:3], keys[1:3])
    old_k = [p.clone() for p in model.momentum_encoder.parameters()]
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    q_now = [p.clone() for p in model.encoder.parameters()]
    model._pending = torch.ones(2, 8)
    model.on_step_end(0)
    for k_new, k_old, q in zip(model.momentum_encoder.parameters(), old_k, q_now):
        torch.testing.assert_close(k_new, 0.9 * k_old + 0.1 * q, rtol=0, atol=1e-6)
    assert torch.equal(model.queue[1:3], torch.ones(2, 8)) and int(model.queue_ptr) == 3
    assert model._pending is None


def test_momentum_copy_is_frozen_and_not_optimised():
    model = _moco()
    assert all(not p.requires_grad for p in model.momentum_encoder.parameters())
    out = model({"image": torch.rand(6, 1, 16, 16)}, torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert all(p.grad is None for p in model.momentum_encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert model._pending.shape == (6, 8)


def test_short_training_decreases_loss():
    model = _moco(queue_size=32, momentum=0.9)
    x = {"image": torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(3))}
    losses = train_objective_losses(model, x, 14, seed_period=2)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2, losses


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = _moco(queue_size=16)
    model({"image": torch.rand(6, 1, 16, 16)}, torch.Generator().manual_seed(0))
    model.on_step_end(0)
    path = save_pretrained(model, tmp_path / "moco")
    loaded = from_pretrained(path)
    assert isinstance(loaded, MoCo)
    a, b = model.state_dict(), loaded.state_dict()
    assert set(a) == set(b) and any(k.startswith("momentum_encoder.") for k in a) and "queue" in a
    assert all(torch.equal(a[k], b[k]) for k in a)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    load_encoder_weights(enc, path)
    assert all(torch.equal(v, a["encoder." + k]) for k, v in enc.state_dict().items())


def test_queue_and_momentum_encoder_survive_resume(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=6, lr=1e-3, warmup_epochs=0, precision="fp32", checkpoint_every=2,
                      log_every=1, num_threads=1, deterministic=True)
    data = _Images()

    def run(output, kill_at=None, resume=False):
        model = _moco(queue_size=10)
        calls = {"n": 0}

        def step(m, b, g):
            if kill_at is not None and calls["n"] == kill_at:
                raise Killed()
            calls["n"] += 1
            return m(b, g)

        trainer = Trainer(model, step, data, cfg, output, lambda m, d: None)
        trainer.fit(resume=resume)
        return model

    full = run(tmp_path / "a")
    with pytest.raises(Killed):
        run(tmp_path / "b", kill_at=5)
    resumed = run(tmp_path / "b", resume=True)
    a, b = full.state_dict(), resumed.state_dict()
    assert int(a["queue_ptr"]) == (8 * 6) % 10
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def test_bad_arguments_raise():
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    with pytest.raises(ValueError, match="momentum"):
        MoCo(enc, momentum=1.0)
    with pytest.raises(ValueError, match="queue_size"):
        MoCo(enc, queue_size=0)
