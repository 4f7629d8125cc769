"""Quadratic assignment (second-order graph matching) on k-nearest-neighbour graphs.

A pair of graphs with ``n`` and ``m`` nodes is matched by maximising the Lawler QAP score

    J(X) = sum_{i,a} c_v[i, a] X[i, a]
           + w_e * sum_{i, j in N1(i)} sum_{a, b in N2(a)} c_e((i, j), (a, b)) X[i, a] X[j, b]

over permutation matrices ``X`` (``n == m``), where ``N1(i)`` / ``N2(a)`` are the ``k``
out-neighbours of a node and the edge affinity is a bilinear form of edge features,
``c_e((i, j), (a, b)) = <f1[i, j], f2[a, b]>``. The affinity matrix ``K`` of this problem
has ``(n m)^2`` entries (16.7 M for 64-node graphs, 4.3 G for 256); :class:`FactorizedQAP`
never builds it. Its second-order entries are non-zero only for pairs of kNN edges, so they
are kept as an ``(n, k1, m, k2)`` tensor, computed once from the edge features, and ``K x``
is one gather and one weighted sum, ``O(n m k1 k2)`` (in the spirit of Zhou & De la
Torre's factorised graph matching, CVPR 2012, which also never forms ``K``).

:func:`rrwm` is Reweighted Random Walks for graph matching (Cho, Lee & Lee, ECCV 2010) on
``K_s = (K + K^T) / 2`` (kNN graphs are directed, so ``K`` is not symmetric; ``K_s`` has the
same QAP score): a random walk with the row-normalised ``K_s``, mixed with a "reweighted
jump" ``Sinkhorn(exp(beta x / max x))`` that pulls the walk towards one-to-one
assignments; :func:`hungarian` discretises it (Kuhn-Munkres via SciPy). The defaults (mixing
weight 0.2, inflation beta 30) are the values Cho et al. report. Here the 0.2 goes to the
walk and both terms are L1-normalised, so the jump dominates. pygmtools' RRWM is also
dominated by its jump, because the jump keeps mass ``n`` against the walk's 1.

Everything here is batched over ``G`` independent graph pairs and runs in float32.
"""
from __future__ import annotations

from dataclasses import InitVar, dataclass
from typing import Optional

import numpy as np
import torch

from medfm.objectives.inputs import check_arg, check_float_tensors


@dataclass
class RRWMConfig:
    """Parameters of :func:`rrwm`.

    Attributes:
        iterations: maximum random-walk iterations, integer >= 1 (stops earlier once the change
            in the L1-normalised walk is below ``tol``).
        walk_weight: weight of the random-walk term, in [0, 1]; ``1 - walk_weight`` goes to the
            reweighted jump (0.2 is the mixing value Cho et al. report).
        beta: inflation of the reweighted jump, ``exp(beta * x / max(x))``, finite and > 0
            (Cho et al.: 30). Measured here on planted noisy instances: 30 is clearly best for
            64-node 8-NN graphs (10 loses 5-30 points of matching accuracy), while 6-node graphs
            reach the brute-force optimum more often with 5.
        sinkhorn_iterations: Sinkhorn normalisations of the reweighted jump, integer >= 1.
        tol: early-stopping tolerance on the L1 change of the walk, finite and >= 0.

    Raises:
        ValueError: a field out of its range or of the wrong type, one line naming it
            (``rrwm: iterations must be an integer >= 1, got 2.5``).
    """

    iterations: int = 50
    walk_weight: float = 0.2
    beta: float = 30.0
    sinkhorn_iterations: int = 20
    tol: float = 1e-6

    def __post_init__(self) -> None:
        self.iterations = check_arg("rrwm", "iterations", self.iterations, ge=1, integer=True)
        self.walk_weight = check_arg("rrwm", "walk_weight", self.walk_weight, ge=0, le=1)
        self.beta = check_arg("rrwm", "beta", self.beta, gt=0)
        self.sinkhorn_iterations = check_arg("rrwm", "sinkhorn_iterations", self.sinkhorn_iterations, ge=1,
                                             integer=True)
        self.tol = check_arg("rrwm", "tol", self.tol, ge=0)


@dataclass
class FactorizedQAP:
    """A batch of ``G`` QAP instances on kNN graphs; the ``(n m)^2`` matrix ``K`` is never built.

    ``K``'s only non-zero second-order entries pair an edge ``(i, nbr1[i, s])`` of graph 1
    with an edge ``(a, nbr2[a, t])`` of graph 2; they are held as ``pair[g, i, s, a, t]``
    (``n k1 m k2`` numbers: 262 k for two 64-node 8-NN graphs against 16.7 M in ``K``).

    Attributes:
        node: vertex affinities ``c_v``, ``(G, n, m)`` float, >= 0 for :func:`rrwm`.
        nbr1: out-neighbours of graph 1, ``(G, n, k1)`` long in ``[0, n)``.
        nbr2: out-neighbours of graph 2, ``(G, m, k2)`` long in ``[0, m)``.
        pair: edge-pair affinities ``c_e``, ``(G, n, k1, m, k2)``, >= 0 for :func:`rrwm`.
        edge_weight: ``w_e``, scale of the second-order term.
        check_indices: check that the neighbour indices lie in range (default True). It reads one
            flag back from the device (as torch's ``sparse_coo_tensor(check_invariants=True)``);
            :meth:`with_node`, :meth:`detach` and the graph-matching objective (``knn_graph``'s
            indices, one instance per training step) pass False.

    Raises:
        ValueError: inconsistent shapes, neighbour lists that are not integer tensors (float ones failed
            inside ``torch.gather``), or (``check_indices``) an index outside ``[0, n)`` / ``[0, m)``: one
            past the end failed in ``gather`` with a bare ``index 25 is out of bounds``, or, when its flat
            index ``nbr1 * m + nbr2`` stayed below ``n m``, silently paired the wrong nodes.
    """

    node: torch.Tensor
    nbr1: torch.Tensor
    nbr2: torch.Tensor
    pair: torch.Tensor
    edge_weight: float = 1.0
    check_indices: InitVar[bool] = True

    def __post_init__(self, check_indices: bool) -> None:
        if self.node.ndim != 3:
            raise ValueError(f"FactorizedQAP.node must be (G, n, m), got {tuple(self.node.shape)}")
        g, n, m = self.node.shape
        if self.nbr1.ndim != 3 or self.nbr1.shape[:2] != (g, n) or self.nbr2.ndim != 3 or self.nbr2.shape[:2] != (g, m):
            raise ValueError(f"neighbour lists {tuple(self.nbr1.shape)} / {tuple(self.nbr2.shape)} do not fit "
                             f"node {(g, n, m)}")
        if self.nbr1.dtype not in (torch.int32, torch.int64) or self.nbr2.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"FactorizedQAP neighbour lists must be int64 (or int32) indices, got "
                             f"{self.nbr1.dtype} / {self.nbr2.dtype}")
        want = (g, n, self.nbr1.shape[2], m, self.nbr2.shape[2])
        if tuple(self.pair.shape) != want:
            raise ValueError(f"FactorizedQAP.pair must be {want}, got {tuple(self.pair.shape)}")
        if check_indices:
            self._check_indices(n, m)
        # flat index of x[nbr1[i, s], nbr2[a, t]] in x.view(G, n * m)
        self._flat = (self.nbr1[:, :, :, None, None] * m + self.nbr2[:, None, None, :, :]).reshape(g, -1)

    def _check_indices(self, n: int, m: int) -> None:
        """Refuse neighbour indices outside ``[0, n)`` / ``[0, m)`` (one read-back)."""
        if bool(((self.nbr1 < 0) | (self.nbr1 >= n)).any() | ((self.nbr2 < 0) | (self.nbr2 >= m)).any()):
            got = ", ".join(f"{name} in [{int(t.min())}, {int(t.max())}]" for name, t in
                            (("nbr1", self.nbr1), ("nbr2", self.nbr2)) if t.numel())
            raise ValueError(f"FactorizedQAP neighbour indices must be node indices, nbr1 in [0, {n - 1}] and nbr2 in "
                             f"[0, {m - 1}] (n={n}, m={m}), got {got}")

    @classmethod
    def from_edge_features(cls, node: torch.Tensor, nbr1: torch.Tensor, feat1: torch.Tensor, nbr2: torch.Tensor,
                           feat2: torch.Tensor, edge_weight: float = 1.0, rectify: bool = False,
                           check_indices: bool = True) -> "FactorizedQAP":
        """Instance whose edge-pair affinity is the bilinear form ``<feat1[i, s], feat2[a, t]>``
        (``max(0, <feat1[i, s], feat2[a, t]>)`` with ``rectify``, keeping ``K`` non-negative
        for :func:`rrwm` when the features can have negative inner products).

        Shape:
            feat1: ``(G, n, k1, C)``; feat2: ``(G, m, k2, C)``; others as the attributes.

        Raises:
            ValueError: shapes that do not fit; indices out of range (as the constructor).
        """
        if feat1.ndim != 4 or feat2.ndim != 4 or feat1.shape[:3] != nbr1.shape or feat2.shape[:3] != nbr2.shape \
                or feat1.shape[-1] != feat2.shape[-1]:
            raise ValueError(f"edge features {tuple(feat1.shape)} / {tuple(feat2.shape)} do not fit neighbour lists "
                             f"{tuple(nbr1.shape)} / {tuple(nbr2.shape)}")
        pair = torch.einsum("gisc,gatc->gisat", feat1, feat2)
        return cls(node, nbr1, nbr2, pair.clamp_min(0) if rectify else pair, edge_weight, check_indices)

    def with_node(self, node: torch.Tensor) -> "FactorizedQAP":
        """The same instance with other vertex affinities ``(G, n, m)``."""
        return FactorizedQAP(node, self.nbr1, self.nbr2, self.pair, self.edge_weight, check_indices=False)

    def detach(self) -> "FactorizedQAP":
        """The same instance cut from the autograd graph."""
        return FactorizedQAP(self.node.detach(), self.nbr1, self.nbr2, self.pair.detach(), self.edge_weight,
                             check_indices=False)

    def edge_product(self, x: torch.Tensor) -> torch.Tensor:
        """Second-order part of ``K x``: ``out[i, a] = w_e sum_{s, t} pair[i, s, a, t] x[nbr1[i, s], nbr2[a, t]]``.

        Shape:
            x: ``(G, n, m)``; returns ``(G, n, m)``.
        """
        xg = torch.gather(x.reshape(x.shape[0], -1), 1, self._flat).view(self.pair.shape)
        return self.edge_weight * (self.pair * xg).sum(dim=(2, 4))

    def edge_product_t(self, x: torch.Tensor) -> torch.Tensor:
        """Second-order part of ``K^T x`` (kNN graphs are directed, so ``K`` is not symmetric).

        Shape:
            x: ``(G, n, m)``; returns ``(G, n, m)``.
        """
        g = x.shape[0]
        vals = (self.pair * x[:, :, None, :, None]).reshape(g, -1)
        out = torch.zeros(g, x.shape[1] * x.shape[2], dtype=vals.dtype, device=vals.device)
        return self.edge_weight * out.scatter_add(1, self._flat, vals).view_as(x)

    def product(self, x: torch.Tensor) -> torch.Tensor:
        """``K_s x`` with ``K_s = (K + K^T) / 2``, the symmetric part of ``K`` (same QAP score,
        and the undirected association graph that RRWM's random walk assumes).

        Shape:
            x: ``(G, n, m)`` (assignments, vectorised row-major); returns ``(G, n, m)``.
        """
        return self.node * x + (self.edge_product(x) + self.edge_product_t(x)) / 2

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """QAP score ``J(x) = x^T K x`` per instance, ``(G,)``, for assignments ``x`` ``(G, n, m)``."""
        return (x * (self.node * x + self.edge_product(x))).sum(dim=(1, 2))

    def row_sums(self) -> torch.Tensor:
        """Row sums of ``K_s``, ``(G, n, m)``."""
        return self.product(torch.ones_like(self.node))


def sinkhorn_log(log_scores: torch.Tensor, iterations: int = 20) -> torch.Tensor:
    """Sinkhorn normalisation in log space (Sinkhorn & Knopp 1967; Cuturi 2013).

    Alternately normalises the rows and columns of ``exp(log_scores)``; the last step
    normalises columns, so columns sum to 1 exactly and rows approximately (square input:
    a doubly-stochastic matrix).

    Shape:
        log_scores: ``(G, n, m)``; returns ``(G, n, m)``, non-negative.

    Raises:
        ValueError: ``iterations`` not an integer >= 1 (0 returned ``exp(log_scores)`` unnormalised).
    """
    iterations = check_arg("sinkhorn_log", "iterations", iterations, ge=1, integer=True)
    s = log_scores
    for _ in range(iterations):
        s = s - torch.logsumexp(s, dim=2, keepdim=True)
        s = s - torch.logsumexp(s, dim=1, keepdim=True)
    return s.exp()


def rrwm(qap: FactorizedQAP, cfg: Optional[RRWMConfig] = None, x0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Reweighted Random Walks graph matching (Cho, Lee & Lee, ECCV 2010) on a factorised ``K``.

    Iterates ``walk = normalize_L1(K_s x / d_max)``, ``jump = normalize_L1(Sinkhorn(exp(beta walk /
    max walk)))``, ``x = walk_weight * walk + (1 - walk_weight) * jump``, where ``K_s`` is the
    symmetric part of ``K`` and ``d_max`` its largest row sum. Differentiable (autograd unrolls the iterations); wrap in
    ``torch.no_grad()`` when only the solution is needed.

    Args:
        qap: the instances; vertex and edge affinities must be non-negative.
        cfg: solver parameters (default :class:`RRWMConfig`).
        x0: starting assignment, a float ``(G, n, m)`` tensor with non-negative entries (default uniform).

    Returns:
        Soft assignment ``(G, n, m)``, non-negative, unit L1 mass per instance; discretise
        with :func:`hungarian`.

    Raises:
        ValueError: ``cfg`` not an :class:`RRWMConfig` (a dict failed with an ``AttributeError``), or ``x0``
            not a float ``(G, n, m)`` tensor (a ``(2, n, m)`` one for ``G = 1`` was broadcast into two
            solutions, an ``(n, m)`` one failed inside ``gather``, a NumPy array with a ``TypeError``).
    """
    if cfg is not None and not isinstance(cfg, RRWMConfig):
        raise ValueError(f"rrwm: cfg must be an RRWMConfig (e.g. RRWMConfig(**{{...}})) or None, got "
                         f"{type(cfg).__name__}")
    cfg = cfg or RRWMConfig()
    g, n, m = qap.node.shape
    if x0 is not None:
        check_float_tensors("rrwm", x0=x0)
        if tuple(x0.shape) != (g, n, m):
            raise ValueError(f"rrwm: x0 must be a (G, n, m) = {(g, n, m)} starting assignment, got shape "
                             f"{tuple(x0.shape)}")
    dmax = qap.row_sums().amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    x = x0 if x0 is not None else qap.node.new_full((g, n, m), 1.0 / (n * m))
    for _ in range(cfg.iterations):
        walk = qap.product(x) / dmax
        walk = walk / walk.sum(dim=(1, 2), keepdim=True).clamp_min(1e-30)
        peak = walk.amax(dim=(1, 2), keepdim=True).clamp_min(1e-30)
        jump = sinkhorn_log(cfg.beta * walk / peak, cfg.sinkhorn_iterations)
        jump = jump / jump.sum(dim=(1, 2), keepdim=True)
        new = cfg.walk_weight * walk + (1 - cfg.walk_weight) * jump
        new = new / new.sum(dim=(1, 2), keepdim=True)
        done = bool((new - x).abs().sum(dim=(1, 2)).max() < cfg.tol)
        x = new
        if done:
            break
    return x


def hungarian(scores: torch.Tensor) -> torch.Tensor:
    """Permutation matrices maximising ``sum X * scores`` (Kuhn-Munkres, SciPy's
    ``linear_sum_assignment``), one per instance.

    Shape:
        scores: ``(G, n, m)``, ``n <= m``; returns ``(G, n, m)`` of 0/1 in ``scores``' dtype.

    Raises:
        ValueError: ``scores`` not ``(G, n, m)`` (SciPy said "expected a matrix" of a ``(n, m)`` one),
            non-finite scores.
    """
    from scipy.optimize import linear_sum_assignment

    if scores.ndim != 3:
        raise ValueError(f"hungarian: scores must be (G, n, m) (G instances), got shape {tuple(scores.shape)}")
    arr = scores.detach().float().cpu().numpy()  # the one device read-back: checked and solved on the host
    if not np.isfinite(arr).all():
        raise ValueError("hungarian: scores contain NaN or inf")
    out = np.zeros(arr.shape, dtype=np.float32)
    for gi in range(arr.shape[0]):
        rows, cols = linear_sum_assignment(arr[gi], maximize=True)
        out[gi, rows, cols] = 1
    return torch.from_numpy(out).to(device=scores.device, dtype=scores.dtype)  # one copy back


def best_with_identity(qap: FactorizedQAP, x: torch.Tensor) -> torch.Tensor:
    """Per instance, the better-scoring of the permutation ``x`` and the identity under ``qap``.

    A cheap guard for heuristic solvers inside black-box differentiation, whose estimate
    assumes an exact solver: a solution is never worse than the identity (the ground-truth
    matching of two views), so the Hamming-loss surrogate stays >= 0 and is 0 once the
    identity is optimal. Ties keep ``x``.

    Shape:
        x: ``(G, n, n)`` permutation matrices; returns ``(G, n, n)``.

    Raises:
        ValueError: non-square instances.
    """
    g, n, m = qap.node.shape
    if n != m:
        raise ValueError(f"best_with_identity needs square instances, got {n} x {m} nodes")
    eye = torch.eye(n, dtype=x.dtype, device=x.device).expand(g, n, n)
    better = qap.score(eye) > qap.score(x)
    return torch.where(better[:, None, None], eye, x)


def solve_qap(qap: FactorizedQAP, cfg: Optional[RRWMConfig] = None) -> torch.Tensor:
    """Discrete QAP solution: :func:`rrwm` then :func:`hungarian`, without gradients.

    Returns:
        Permutation matrices ``(G, n, m)``.
    """
    with torch.no_grad():
        return hungarian(rrwm(qap, cfg))
