"""Objective clean-ups: one refusal of a one-image batch, one step-counter read-back per SwAV step, and the batch
check without a fallback it could not reach.

Before: :func:`~medfm.objectives.swav.sinkhorn_knopp` with one row returned uniform codes (``1/K`` whatever the
scores; only ``swav_loss`` refused a batch of one); SwAV with prototype freezing read its step counter back from the
device twice per step (once per resolution of crops).

(The batch check's fallback for encoders without ``check_input``, which ``check_encoder`` refuses when the objective
is built, is gone; the one other kind it lets through, a peft wrapper, passes ``check_input`` on:
``tests/objectives/test_objective_api_followups.py::test_a_peft_wrapped_medfm_encoder_is_still_accepted``.)
"""
from __future__ import annotations

import copy

import pytest
import torch

import medfm
from medfm.objectives.swav import SwAV, sinkhorn_knopp, swav_loss

ONE_IMAGE = (r"^sinkhorn_knopp needs a batch of at least 2 images \(Sinkhorn-Knopp spreads the codes over the batch; "
             r"one image gets uniform codes\), got 1$")


def _swav(freeze: int) -> SwAV:
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    return SwAV(enc, proj_dim=8, hidden_dim=16, n_prototypes=8, n_local_views=2, local_size=8,
                freeze_prototypes_steps=freeze).train()


def _images(seed: int) -> torch.Tensor:
    return torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_sinkhorn_knopp_refuses_one_sample():
    """was: ``tensor([[1/3, 1/3, 1/3]])`` from sinkhorn_knopp (swav_loss passing the same line on:
    ``test_objective_api_followups2.py::test_swav_loss_refuses_a_batch_of_one_image``)."""
    with pytest.raises(ValueError, match=ONE_IMAGE):
        sinkhorn_knopp(torch.tensor([[0.3, -0.2, 0.9]]))


def test_sinkhorn_knopp_of_two_samples_by_hand():
    """Guard (passes on the old code too): B = 2, K = 2, one iteration, epsilon 1. ``Q = exp(S)`` with
    ``S = [[ln 3, 0], [0, 0]]`` (rows: samples, columns: prototypes) is ``[[3, 1], [1, 1]] / 6`` after its sum;
    prototype sums set to 1/2: ``[[3/8, 1/4], [1/8, 1/4]]``; sample sums set to 1/2 (x 4/5 and x 4/3), times B:
    rows ``[3/5, 2/5]`` and ``[1/3, 2/3]``."""
    scores = torch.tensor([[torch.log(torch.tensor(3.0)).item(), 0.0], [0.0, 0.0]])
    q = sinkhorn_knopp(scores, epsilon=1.0, iterations=1)
    assert torch.allclose(q, torch.tensor([[3 / 5, 2 / 5], [1 / 3, 2 / 3]]), atol=1e-6)


def _old_path_loss(model: SwAV, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """SwAV's step as it was: each resolution's scores through the public ``scores`` (its own counter read; its
    encoder value check only raises, so the values are the step's)."""
    b = images.shape[0]
    globals_ = torch.cat([model.global_views(images, gen), model.global_views(images, gen)])
    per_view = list(model.scores(globals_).split(b))
    locals_ = torch.cat([model.local_views(images, gen) for _ in range(model.n_local_views)])
    per_view += list(model.scores(locals_).split(b))
    return swav_loss(per_view, (0, 1), model.temperature, model.epsilon, model.sinkhorn_iterations)


def test_swav_losses_and_gradients_over_steps_through_the_unfreeze_equal_the_old_path():
    """Guard (passes on the old code too): 4 optimizer steps with the prototypes frozen for 2, bit-identical losses
    and gradients. The old path here goes through the public ``scores`` (its own prototype read per call); the code
    before the change gave the same losses and gradient sums (compared once by hand, not recorded here)."""
    new = _swav(freeze=2)
    old = copy.deepcopy(new)
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (new, old)]
    for step in range(4):
        losses = [new({"image": _images(step)}, torch.Generator().manual_seed(10 + step))["loss"],
                  _old_path_loss(old, _images(step), torch.Generator().manual_seed(10 + step))]
        for model, opt, loss in zip((new, old), opts, losses):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        assert torch.equal(losses[0], losses[1])
        for (name, p), q in zip(new.named_parameters(), old.parameters()):
            assert (p.grad is None) == (q.grad is None), name
            assert p.grad is None or torch.equal(p.grad, q.grad), name
        assert (new.prototypes.weight.grad is None) == (step < 2)
        for model, opt in zip((new, old), opts):
            opt.step()
            model.on_step_end(step)

