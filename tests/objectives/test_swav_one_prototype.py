"""SwAV's Sinkhorn-Knopp refuses one prototype; ``SwAV.scores`` has no flag that skips the value check.

Before: :func:`~medfm.objectives.swav.sinkhorn_knopp` of ``(B, 1)`` scores returned all ones (each image's codes
sum to 1) and :func:`~medfm.objectives.swav.swav_loss` 0, with nothing to learn from (the SwAV objective refuses
``n_prototypes < 2`` when it is built, the public functions did not). ``SwAV.scores(views, checked=True)`` left the
encoder's value check out, a flag that only a test passed (the objective's step uses its own ``_scores``).
"""
from __future__ import annotations

import inspect

import pytest
import torch

from medfm.objectives.swav import SwAV, sinkhorn_knopp, swav_loss

ONE_PROTOTYPE = (r"^sinkhorn_knopp needs at least 2 prototypes \(each image's codes sum to 1; one prototype's codes "
                 r"are 1 whatever the scores\), got 1$")
SCORES = torch.tensor([[0.9], [-0.3], [0.1]])


def test_sinkhorn_knopp_refuses_one_prototype():
    """was: ``tensor([[1.], [1.], [1.]])`` whatever the scores."""
    with pytest.raises(ValueError, match=ONE_PROTOTYPE):
        sinkhorn_knopp(SCORES)


def test_swav_loss_of_one_prototype_passes_the_line_on():
    """was: ``tensor(0.)``: the codes are 1 and so is the softmax of one score."""
    with pytest.raises(ValueError, match=ONE_PROTOTYPE):
        swav_loss([SCORES, SCORES.flip(0)])


@pytest.mark.parametrize("shape, message", [
    ((1, 1), r"^sinkhorn_knopp needs a batch of at least 2 images .*, got 1$"),  # the batch is named first
    ((3, 0), r"^sinkhorn_knopp needs \(B, K\) scores with B, K >= 1, got shape \(3, 0\)$"),
    ((2, 3, 4), r"^sinkhorn_knopp needs \(B, K\) scores with B, K >= 1, got shape \(2, 3, 4\)$"),
])
def test_other_degenerate_shapes_keep_their_errors(shape, message):
    """Guard (passes on the old code too): no prototype, 3-D scores and one image were refused already."""
    with pytest.raises(ValueError, match=message):
        sinkhorn_knopp(torch.zeros(shape))


def test_two_prototypes_are_still_taken():
    """Guard (passes on the old code too): K = 2, B = 3, by hand. ``epsilon = 1``, one iteration, scores
    ``[[ln 2, 0], [0, 0], [0, 0]]``: ``Q = [[2, 1], [1, 1], [1, 1]] / 7``; prototype sums set to 1/2:
    ``[[1/4, 1/6], [1/8, 1/6], [1/8, 1/6]]``; image sums set to 1/3, times B: rows ``[3/5, 2/5]``, ``[3/7, 4/7]``
    twice."""
    scores = torch.tensor([[torch.log(torch.tensor(2.0)).item(), 0.0], [0.0, 0.0], [0.0, 0.0]])
    q = sinkhorn_knopp(scores, epsilon=1.0, iterations=1)
    assert torch.allclose(q, torch.tensor([[3 / 5, 2 / 5], [3 / 7, 4 / 7], [3 / 7, 4 / 7]]), atol=1e-6)


def test_public_scores_takes_only_views():
    """``scores(views, checked=True)`` was a way round the encoder's value check that nothing but a test used; the
    value check of the public helper: ``tests/objectives/test_step_readbacks.py``."""
    assert list(inspect.signature(SwAV.scores).parameters) == ["self", "views"]
