"""Second follow-ups of the objectives' Python-API audit: ``swav_loss`` refuses a batch of one image,
:class:`FactorizedQAP` refuses neighbour indices out of range (one read-back when built, skipped on the
objective's per-step path) and :func:`rrwm` refuses an ``x0`` of the wrong kind or shape (the comment on each
case says what the old code did). NaN embeddings are left to the training loop's non-finite-loss check
(see :mod:`medfm.objectives.inputs`), so nothing here looks for them.
"""
import pytest
import torch

from medfm.objectives.graph_matching import knn_graph, matching_loss
from medfm.objectives.solvers import FactorizedQAP, RRWMConfig, rrwm
from medfm.objectives.swav import swav_loss

N, K = 5, 2
NBR = knn_graph(torch.randn(1, N, 4, generator=torch.Generator().manual_seed(0)), K)
NODE = torch.rand(1, N, N, generator=torch.Generator().manual_seed(1))
PAIR = torch.rand(1, N, K, N, K, generator=torch.Generator().manual_seed(2))
LOW = torch.tensor([[[1, 2], [0, 2], [0, 1], [0, 1], [0, 1]]])  # neighbour lists that never name node 4
RANGE = (r"^FactorizedQAP neighbour indices must be node indices, nbr1 in \[0, 4\] and nbr2 in \[0, 4\] "
         r"\(n=5, m=5\), got ")


def _raises_one_line(pattern, call):
    with pytest.raises(ValueError, match=pattern) as info:
        call()
    assert "\n" not in str(info.value)


def _with(nbr, value, row=0):
    out = nbr.clone()
    out[0, row, 0] = value
    return out


def test_swav_loss_refuses_a_batch_of_one_image():
    """was: a finite loss (8.3) against uniform codes: Sinkhorn-Knopp gives one image the same code whatever
    its scores, so there was nothing to learn from (the SwAV objective already refused B = 1)."""
    one = [torch.randn(1, 6), torch.randn(1, 6)]
    _raises_one_line(r"^sinkhorn_knopp needs a batch of at least 2 images \(Sinkhorn-Knopp spreads the codes over the "
                     r"batch; one image gets uniform codes\), got 1$", lambda: swav_loss(one))
    assert torch.isfinite(swav_loss([torch.randn(2, 6), torch.randn(2, 6)]))


@pytest.mark.parametrize("nbr1, nbr2, got", [
    (_with(NBR, 8), NBR, r"nbr1 in \[0, 8\], nbr2 in \[0, 4\]$"),  # was: "index 43 is out of bounds" in gather
    (_with(NBR, -1), NBR, r"nbr1 in \[-1, 4\], nbr2 in \[0, 4\]$"),  # was: "index -2 is out of bounds"
    # was silent: with node 4 nobody's neighbour in graph 1, every flat index nbr1 * 5 + nbr2 stayed below
    # n m = 25, and nbr2 = 5 read the entry of (nbr1 + 1, 0): a finite solution of another problem
    (LOW, _with(LOW, 5), r"nbr1 in \[0, 2\], nbr2 in \[0, 5\]$"),
])
def test_factorized_qap_refuses_neighbour_indices_out_of_range(nbr1, nbr2, got):
    _raises_one_line(RANGE + got, lambda: FactorizedQAP(NODE, nbr1, nbr2, PAIR))
    feats = torch.rand(1, N, K, 3)
    _raises_one_line(RANGE + got, lambda: FactorizedQAP.from_edge_features(NODE, nbr1, feats, nbr2, feats))


def test_the_neighbour_range_is_checked_once_per_built_instance(monkeypatch):
    """The check reads a flag back from the device: an instance built by hand is checked, the copies that
    matching_loss makes (detach, with_node) and the objective's per-step instances are not."""
    calls = []
    original = FactorizedQAP._check_indices
    monkeypatch.setattr(FactorizedQAP, "_check_indices", lambda self, n, m: calls.append(1) or original(self, n, m))
    qap = FactorizedQAP(NODE, NBR, NBR, PAIR)
    assert len(calls) == 1
    matching_loss(qap, "blackbox", cfg=RRWMConfig(iterations=3))
    assert len(calls) == 1
    FactorizedQAP(NODE, _with(NBR, 8), NBR, PAIR, check_indices=False)  # the caller vouches for its indices
    assert len(calls) == 1


def test_the_graph_matching_objective_does_not_check_knn_indices_per_step(monkeypatch):
    import medfm
    from medfm.registry import OBJECTIVES
    from tests.helpers.small_objectives import SMALL

    def refuse(self, n, m):
        raise AssertionError("a per-step read-back of knn_graph's indices")

    monkeypatch.setattr(FactorizedQAP, "_check_indices", refuse)
    encoder = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    model = OBJECTIVES.build("graph_matching", encoder=encoder, **SMALL["graph_matching"])
    out = model({"image": torch.rand(4, 1, 16, 16)}, torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize("x0, got", [
    (torch.rand(1, 5, 4), r"got shape \(1, 5, 4\)$"),  # was: a broadcasting RuntimeError
    (torch.rand(5, 5), r"got shape \(5, 5\)$"),  # was: "index 18 is out of bounds" in gather
    (torch.rand(2, 5, 5), r"got shape \(2, 5, 5\)$"),  # was: broadcast into two solutions for one instance
])
def test_rrwm_refuses_an_x0_of_the_wrong_shape(x0, got):
    _raises_one_line(r"^rrwm: x0 must be a \(G, n, m\) = \(1, 5, 5\) starting assignment, " + got,
                     lambda: rrwm(FactorizedQAP(NODE, NBR, NBR, PAIR), x0=x0))


@pytest.mark.parametrize("x0, got", [
    (torch.rand(1, 5, 5).numpy(), r"got ndarray$"),  # was: TypeError from gather
    (torch.ones(1, 5, 5, dtype=torch.long), r"got a torch\.int64 tensor$"),  # was: cast silently
])
def test_rrwm_refuses_an_x0_that_is_not_a_float_tensor(x0, got):
    _raises_one_line(r"^rrwm: x0 must be a float torch\.Tensor, " + got,
                     lambda: rrwm(FactorizedQAP(NODE, NBR, NBR, PAIR), x0=x0))


def test_rrwm_from_the_uniform_x0_is_its_default_start():
    """A guard (passes on the old code too): a right x0 is still taken."""
    qap = FactorizedQAP(NODE, NBR, NBR, PAIR)
    cfg = RRWMConfig(iterations=4)
    assert torch.equal(rrwm(qap, cfg, x0=torch.full((1, N, N), 1.0 / (N * N))), rrwm(qap, cfg))
