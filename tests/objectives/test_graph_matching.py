"""Graph matching: factorised QAP vs a dense K, the solver on known optima, the LVM-Med-style
loss vs a loop reference, black-box gradients, training, checkpoints."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import medfm
from medfm.hub import from_pretrained, save_pretrained
from medfm.objectives.graph_matching import (GraphMatching, knn_graph, local_similarity, matching_loss,
                                             vicreg_loss)
from medfm.objectives.solvers import (FactorizedQAP, RRWMConfig, best_with_identity, hungarian, rrwm, sinkhorn_log,
                                      solve_qap)
from medfm.registry import OBJECTIVES
from tests.conftest import train_objective_losses



def _dense_k(qap, g=0):
    """Plain (n m) x (n m) affinity matrix of instance ``g``, entry by entry."""
    n, m = qap.node.shape[1:]
    k = [[0.0] * (n * m) for _ in range(n * m)]
    for i in range(n):
        for a in range(m):
            k[i * m + a][i * m + a] += float(qap.node[g, i, a])
            for s, j in enumerate(qap.nbr1[g, i].tolist()):
                for t, b in enumerate(qap.nbr2[g, a].tolist()):
                    k[i * m + a][j * m + b] += qap.edge_weight * float(qap.pair[g, i, s, a, t])
    return k


def _score(k, perm):
    """x^T K x for the permutation matrix with x[i, perm[i]] = 1."""
    n = len(perm)
    idx = [i * n + perm[i] for i in range(n)]
    return sum(k[p][q] for p in idx for q in idx)


def _random_qap(g=2, n=5, k=2, c=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    nbr = torch.stack([torch.stack([torch.tensor([(i + 1 + j) % n for j in torch.randperm(n - 1, generator=gen)[:k].tolist()])
                                    for i in range(n)]) for _ in range(g)])
    nbr2 = torch.stack([torch.stack([torch.tensor([(i + 1 + j) % n for j in torch.randperm(n - 1, generator=gen)[:k].tolist()])
                                     for i in range(n)]) for _ in range(g)])
    return FactorizedQAP.from_edge_features(torch.rand(g, n, n, generator=gen), nbr, torch.rand(g, n, k, c, generator=gen),
                                            nbr2, torch.rand(g, n, k, c, generator=gen), edge_weight=0.7)


def test_factorised_product_and_score_match_dense_k():
    qap = _random_qap()
    x = torch.rand(2, 5, 5, generator=torch.Generator().manual_seed(1))
    for g in range(2):
        k = _dense_k(qap, g)
        ks = [[(k[r][c] + k[c][r]) / 2 for c in range(25)] for r in range(25)]
        vec = x[g].flatten().tolist()
        ref = [sum(k[r][c] * vec[c] for c in range(25)) for r in range(25)]
        ref_s = [sum(ks[r][c] * vec[c] for c in range(25)) for r in range(25)]
        torch.testing.assert_close(qap.node[g].flatten() * x[g].flatten() + qap.edge_product(x)[g].flatten(),
                                   torch.tensor(ref), rtol=0, atol=1e-5)
        torch.testing.assert_close(qap.product(x)[g].flatten(), torch.tensor(ref_s), rtol=0, atol=1e-5)
        assert qap.score(x)[g].item() == pytest.approx(sum(vec[r] * ref[r] for r in range(25)), abs=1e-5)
        torch.testing.assert_close(qap.row_sums()[g].flatten(), torch.tensor([sum(r) for r in ks]), rtol=0, atol=1e-5)


def _dense_rrwm(k, n, walk_weight, beta, iterations, sinkhorn_iterations):
    """Cho et al. (ECCV 2010) Algorithm 1 on a dense symmetrised K, as rrwm's docstring states it."""
    ks = (torch.tensor(k, dtype=torch.float64) + torch.tensor(k, dtype=torch.float64).t()) / 2
    ks = ks / ks.sum(dim=1).max()
    x = torch.full((n * n,), 1.0 / (n * n), dtype=torch.float64)
    for _ in range(iterations):
        walk = ks @ x
        walk = walk / walk.sum()
        s = (beta * walk / walk.max()).view(n, n)
        for _ in range(sinkhorn_iterations):
            s = s - torch.logsumexp(s, dim=1, keepdim=True)
            s = s - torch.logsumexp(s, dim=0, keepdim=True)
        jump = s.exp().flatten()
        x = walk_weight * walk + (1 - walk_weight) * jump / jump.sum()
        x = x / x.sum()
    return x.view(n, n)


@pytest.mark.parametrize("walk_weight,beta", [(0.2, 30.0), (0.6, 5.0)])
def test_factorised_rrwm_matches_dense_reference(walk_weight, beta):
    qap = _random_qap(g=2, n=5, k=2, seed=2)
    cfg = RRWMConfig(iterations=15, walk_weight=walk_weight, beta=beta, sinkhorn_iterations=7, tol=0.0)
    got = rrwm(qap, cfg)
    for g in range(2):
        ref = _dense_rrwm(_dense_k(qap, g), 5, walk_weight, beta, 15, 7)
        torch.testing.assert_close(got[g].double(), ref, rtol=0, atol=1e-6)


def test_qap_rejects_bad_shapes():
    qap = _random_qap()
    with pytest.raises(ValueError, match="pair"):
        FactorizedQAP(qap.node, qap.nbr1, qap.nbr2, qap.pair[..., :1])
    with pytest.raises(ValueError, match="edge features"):
        FactorizedQAP.from_edge_features(qap.node, qap.nbr1, torch.rand(2, 5, 2, 3), qap.nbr2, torch.rand(2, 5, 2, 4))


def _edge_feats(u, nbr):
    e = F.normalize(u.unsqueeze(2) - torch.stack([u[g][nbr[g]] for g in range(u.shape[0])]), dim=-1)
    return torch.cat([torch.ones_like(e[..., :1]), e], dim=-1) / math.sqrt(2)


def _planted(g, n, d, noise, k, informative_nodes, seed):
    """Graph 2 is a noisy copy of graph 1 with its nodes permuted: node a of 2 is node perm[a] of 1."""
    gen = torch.Generator().manual_seed(seed)
    u1 = F.normalize(torch.randn(g, n, d, generator=gen), dim=-1)
    perm = torch.stack([torch.randperm(n, generator=gen) for _ in range(g)])
    u2 = torch.stack([u1[i][perm[i]] for i in range(g)]) + noise * torch.randn(g, n, d, generator=gen) / math.sqrt(d)
    u2 = F.normalize(u2, dim=-1)
    node = (1 + u1 @ u2.transpose(1, 2)) / 2 if informative_nodes else torch.full((g, n, n), 0.5)
    nbr1, nbr2 = knn_graph(u1, k), knn_graph(u2, k)
    qap = FactorizedQAP.from_edge_features(node, nbr1, _edge_feats(u1, nbr1), nbr2, _edge_feats(u2, nbr2), 1.0 / k)
    truth = torch.zeros(g, n, n)
    for i in range(g):
        truth[i, perm[i], torch.arange(n)] = 1
    return qap, truth


@pytest.mark.parametrize("informative_nodes", [True, False])
def test_solver_recovers_planted_permutation(informative_nodes):
    qap, truth = _planted(g=3, n=16, d=8, noise=0.2, k=4, informative_nodes=informative_nodes, seed=0)
    assert torch.equal(solve_qap(qap), truth)
    if not informative_nodes:  # vertex affinities say nothing: only the second-order edges can solve it
        assert not torch.equal(hungarian(qap.node + 1e-3 * torch.rand(qap.node.shape)), truth)


def test_solver_reaches_brute_force_optimum_on_small_graphs():
    """Noisy 6-node instances: with beta=5 RRWM finds the optimum of all 8; the default
    beta=30 (tuned for 64-node graphs, see RRWMConfig) stays within 20 % of it."""
    for seed in range(8):
        qap, _ = _planted(g=1, n=6, d=4, noise=0.8, k=2, informative_nodes=True, seed=seed)
        k = _dense_k(qap)
        best = max(_score(k, p) for p in itertools.permutations(range(6)))
        assert qap.score(solve_qap(qap, RRWMConfig(beta=5.0))).item() == pytest.approx(best, abs=1e-5), seed
        assert qap.score(solve_qap(qap)).item() >= 0.8 * best, seed


def test_sinkhorn_log_is_doubly_stochastic_and_rrwm_sums_to_one():
    p = sinkhorn_log(torch.randn(2, 6, 6, generator=torch.Generator().manual_seed(0)), iterations=50)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(2, 6), rtol=0, atol=1e-5)
    torch.testing.assert_close(p.sum(dim=2), torch.ones(2, 6), rtol=0, atol=1e-4)
    x = rrwm(_random_qap(), RRWMConfig(iterations=5))
    torch.testing.assert_close(x.sum(dim=(1, 2)), torch.ones(2), rtol=0, atol=1e-5)


def test_vicreg_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    b, d = 5, 3
    inv = sum((z1[i, j].item() - z2[i, j].item()) ** 2 for i in range(b) for j in range(d)) / (b * d)
    var, cov = 0.0, 0.0
    for z in (z1, z2):
        cols = [[z[i, j].item() for i in range(b)] for j in range(d)]
        means = [sum(c) / b for c in cols]
        for j in range(d):
            v = sum((x - means[j]) ** 2 for x in cols[j]) / (b - 1)
            var += max(0.0, 1 - math.sqrt(v + 1e-4)) / d / 2
            for j2 in range(d):
                if j2 != j:
                    c = sum((cols[j][i] - means[j]) * (cols[j2][i] - means[j2]) for i in range(b)) / (b - 1)
                    cov += c * c / d
    ref = 25 * inv + 25 * var + 1 * cov
    assert vicreg_loss(z1, z2).item() == pytest.approx(ref, abs=1e-5)


def test_local_similarity_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    t1, t2 = torch.randn(1, 2, 3, 4, generator=g), torch.randn(1, 3, 2, 4, generator=g)
    got = local_similarity(t1, t2)
    for i in range(2):
        for a in range(3):
            dot = [[float(t1[0, i, p] @ t2[0, a, q]) for q in range(2)] for p in range(3)]
            fwd = sum(max(row) for row in dot) / 3
            bwd = sum(max(dot[p][q] for p in range(3)) for q in range(2)) / 2
            assert got[0, i, a].item() == pytest.approx((fwd + bwd) / 2, abs=1e-5)


def test_blackbox_gradient_is_vlastelica_estimate():
    qap, _ = _planted(g=2, n=8, d=4, noise=1.0, k=3, informative_nodes=True, seed=3)
    node = qap.node.clone().requires_grad_(True)
    lam = 0.3
    loss, acc = matching_loss(qap.with_node(node), "blackbox", lam)
    loss.backward()
    eye = torch.eye(8).expand(2, 8, 8)
    x_hat, x_lam = solve_qap(qap), solve_qap(qap.with_node(qap.node + 2 * lam * eye))
    torch.testing.assert_close(node.grad, (x_hat - x_lam) / (lam * 8 * 2), rtol=0, atol=1e-7)
    assert acc.item() == pytest.approx(float((x_hat * eye).sum()) / 16)
    assert loss.item() >= -1e-6


def _model(**kw):
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    args = dict(proj_dim=8, hidden_dim=16, local_dim=4, edge_dim=3, k=2, graph_size=4, gm_weight=2.0)
    args.update(kw)
    return OBJECTIVES.build("graph_matching", encoder=enc, **args)


@pytest.mark.parametrize("edge_affinity,identity_candidate", [("offset", False), ("relation", True)])
def test_loss_matches_loop_reference_with_brute_force_matching(edge_affinity, identity_candidate):
    model = _model(edge_affinity=edge_affinity, identity_candidate=identity_candidate)
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    out = model({"image": images}, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    v1, v2 = model.views(images, gen), model.views(images, gen)
    with torch.no_grad():
        z, cells = model.embed(torch.cat([v1, v2]))
    z1, z2, c1, c2 = z[:4].tolist(), z[4:].tolist(), cells[:4], cells[4:]
    n, k, mp = 4, 2, model.message_passing

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    def graph(zs):
        nbr = [sorted((j for j in range(n) if j != i), key=lambda j: -cos(zs[i], zs[j]))[:k] for i in range(n)]
        u = []
        for i in range(n):
            mean = [sum(zs[j][c] for j in nbr[i]) / k for c in range(8)]
            row = mp.self_proj(torch.tensor(zs[i])) + mp.nbr_proj(torch.tensor(mean))
            u.append((row / row.norm()).tolist())
        e = {}
        for i in range(n):
            for j in nbr[i]:
                v = model.edge_proj(torch.tensor([a - b for a, b in zip(u[i], u[j])]))
                v = (v / v.norm()).tolist()
                e[i, j] = [1 / math.sqrt(2)] + [x / math.sqrt(2) for x in v] if edge_affinity == "offset" else v
        return nbr, u, e

    nbr1, u1, e1 = graph(z1)
    nbr2, u2, e2 = graph(z2)
    kmat = [[0.0] * (n * n) for _ in range(n * n)]
    for i in range(n):
        for a in range(n):
            sims = [[float(c1[i, p] @ c2[a, q]) for q in range(c2.shape[1])] for p in range(c1.shape[1])]
            loc = (sum(max(r) for r in sims) / len(sims) + sum(max(col) for col in zip(*sims)) / len(sims[0])) / 2
            kmat[i * n + a][i * n + a] = 0.5 * (1 + cos(u1[i], u2[a])) / 2 + 0.5 * (1 + loc) / 2
            for j in nbr1[i]:
                for b in nbr2[a]:
                    dot = sum(x * y for x, y in zip(e1[i, j], e2[a, b]))
                    kmat[i * n + a][j * n + b] = (dot if edge_affinity == "offset" else max(0.0, dot)) / k
    perms = list(itertools.permutations(range(n)))
    lam = model.blackbox_lambda
    hat = max(perms, key=lambda p: _score(kmat, p))
    pert = max(perms, key=lambda p: _score(kmat, p) + 2 * lam * sum(p[i] == i for i in range(n)))
    gm = (_score(kmat, hat) - _score(kmat, pert)) / (lam * n)
    con = vicreg_loss(z[:4], z[4:]).item()
    assert out["gm_loss"].item() == pytest.approx(gm, abs=1e-5)
    assert out["contrastive_loss"].item() == pytest.approx(con, abs=1e-5)
    assert out["loss"].item() == pytest.approx(con + 2.0 * gm, abs=1e-5)
    assert out["match_acc"].item() == pytest.approx(sum(hat[i] == i for i in range(n)) / n)


def test_rectified_edge_features_clamp_the_bilinear_form_at_zero():
    gen = torch.Generator().manual_seed(0)
    node, nbr = torch.rand(1, 4, 4, generator=gen), torch.tensor([[[1, 2], [2, 3], [3, 0], [0, 1]]])
    f1, f2 = torch.randn(1, 4, 2, 3, generator=gen), torch.randn(1, 4, 2, 3, generator=gen)
    plain = FactorizedQAP.from_edge_features(node, nbr, f1, nbr, f2)
    rect = FactorizedQAP.from_edge_features(node, nbr, f1, nbr, f2, rectify=True)
    assert (plain.pair < 0).any() and (rect.pair >= 0).all()
    assert rect.pair[0, 1, 0, 2, 1].item() == pytest.approx(max(0.0, float(f1[0, 1, 0] @ f2[0, 2, 1])), abs=1e-6)
    torch.testing.assert_close(rect.pair, plain.pair.clamp_min(0), rtol=0, atol=0)


def _node_only_qap(node):
    """A QAP of one instance whose edge pairs all have affinity 0: ``J(X) = <node, X>``."""
    n = node.shape[-1]
    nbr = torch.tensor([[(i + 1) % n] for i in range(n)])[None]
    return FactorizedQAP(node[None], nbr, nbr, torch.zeros(1, n, 1, n, 1))


def test_best_with_identity_keeps_the_better_permutation():
    swap = torch.tensor([[0., 1, 0], [1, 0, 0], [0, 0, 1]])[None]
    favours_swap = _node_only_qap(torch.tensor([[0., 1, 0], [1, 0, 0], [0, 0, 1]]))  # J(swap) 3, J(I) 1
    favours_eye = _node_only_qap(torch.tensor([[2., 1, 0], [1, 2, 0], [0, 0, 1]]))   # J(swap) 3, J(I) 5
    tie = _node_only_qap(torch.ones(3, 3))                                            # 3 and 3: x is kept
    assert torch.equal(best_with_identity(favours_swap, swap), swap)
    assert torch.equal(best_with_identity(favours_eye, swap), torch.eye(3)[None])
    assert torch.equal(best_with_identity(tie, swap), swap)
    with pytest.raises(ValueError, match="square"):
        best_with_identity(FactorizedQAP(torch.rand(1, 2, 3), torch.tensor([[[1], [0]]]), torch.tensor([[[1], [2], [0]]]),
                                         torch.zeros(1, 2, 1, 3, 1)), swap)


def test_identity_candidate_guards_the_blackbox_estimate_against_a_failing_solver(monkeypatch):
    """A stub solver that always answers the reversal (no fixed point on 4 nodes): without the
    guard the identity-optimal instance gets match accuracy 0 and the perturbed solve misses the
    identity; with it, the hand-computed surrogate (J(X_hat) - J(X_lambda)) / (lambda n)."""
    import medfm.objectives.graph_matching as gm

    rev = torch.eye(4).flip(1)[None]
    monkeypatch.setattr(gm, "rrwm", lambda qap, cfg=None: rev.expand_as(qap.node).clone())
    identity_optimal = _node_only_qap(torch.eye(4))
    loss, acc = matching_loss(identity_optimal, "blackbox", 3.0)
    assert acc.item() == 0.0 and loss.item() == 0.0
    loss, acc = matching_loss(identity_optimal, "blackbox", 3.0, identity_candidate=True)
    assert acc.item() == 1.0 and loss.item() == 0.0
    node = rev[0].clone().requires_grad_(True)  # J(rev) = 4, J(I) = 0; perturbed with lambda 3: J(I) = 24 > J(rev) = 4
    loss, acc = matching_loss(_node_only_qap(node), "blackbox", 3.0, identity_candidate=True)
    assert acc.item() == 0.0 and loss.item() == pytest.approx((4 - 0) / (3.0 * 4))
    loss.backward()
    torch.testing.assert_close(node.grad, (rev[0] - torch.eye(4)) / (3.0 * 4), rtol=0, atol=1e-7)
    assert matching_loss(_node_only_qap(rev[0]), "blackbox", 3.0)[0].item() == 0.0  # unguarded: X_lambda = rev too


def test_unrolled_mode_and_other_contrastive_terms_give_gradients():
    for kw in ({"differentiation": "unrolled", "solver": {"iterations": 5}}, {"contrastive": "nt_xent"},
               {"contrastive": "none", "graph_size": 3}):
        model = _model(**kw)
        out = model({"image": torch.rand(8, 1, 16, 16)}, torch.Generator().manual_seed(0))
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        grad = sum(p.grad.abs().sum() for p in model.encoder.parameters() if p.grad is not None)
        assert grad > 0, kw


def test_vit_tokens_work():
    model = OBJECTIVES.build("graph_matching", encoder=medfm.create_encoder("vit_test", in_chans=1, img_size=16),
                             graph_size=4, k=2, local_grid=2)
    out = model({"image": torch.rand(4, 1, 16, 16)}, torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])


def test_short_training_decreases_loss():
    model = _model(graph_size=8, k=3)
    x = {"image": torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(3))}
    losses = train_objective_losses(model, x, 14, seed_period=2)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = _model(solver={"iterations": 7})
    loaded = from_pretrained(save_pretrained(model, tmp_path / "gm"))
    assert isinstance(loaded, GraphMatching) and loaded.solver_cfg.iterations == 7
    a, b = model.state_dict(), loaded.state_dict()
    assert set(a) == set(b) and "message_passing.self_proj.weight" in a
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_arguments_raise():
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    with pytest.raises(ValueError, match="differentiation"):
        GraphMatching(enc, differentiation="exact")
    with pytest.raises(ValueError, match="contrastive"):
        GraphMatching(enc, contrastive="barlow")
    with pytest.raises(ValueError, match="edge_affinity"):
        GraphMatching(enc, edge_affinity="cosine")
    with pytest.raises(ValueError, match="identity_candidate must be true or false"):
        GraphMatching(enc, identity_candidate="yes")
    with pytest.raises(ValueError, match="at least 3"):
        GraphMatching(enc)({"image": torch.rand(2, 1, 16, 16)}, torch.Generator())
    with pytest.raises(ValueError, match="k must be"):
        knn_graph(torch.rand(1, 4, 3), 4)


def test_unrolled_loss_matches_loop_reference():
    qap = _random_qap(g=2, n=5, k=2, seed=4)
    cfg = RRWMConfig(iterations=6)
    loss, acc = matching_loss(qap, "unrolled", cfg=cfg)
    soft = rrwm(qap, cfg).tolist()
    ref = 0.0
    for g in range(2):
        for i in range(5):
            ref += -math.log(soft[g][i][i] / sum(soft[g][i])) / 10
    assert loss.item() == pytest.approx(ref, abs=1e-5)
    hard = hungarian(torch.tensor(soft))
    assert acc.item() == pytest.approx(float(hard.diagonal(dim1=1, dim2=2).sum()) / 10)
