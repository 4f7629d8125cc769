"""Second-order graph-matching self-supervision, after LVM-Med (Nguyen et al., NeurIPS 2023).

LVM-Med ("LVM-Med: Learning Large-Scale Self-Supervised Vision Models for Medical Imaging
via Second-order Graph Matching", arXiv 2306.11925, Sec. 3 and Fig. 2) describes: two
distorted views of each image of a batch go through the encoder ``f`` and a projector
``h``; the embeddings of each view form a graph (nodes = images, edges = k nearest
neighbours); a message-passing network ``g`` aggregates each node's neighbourhood; vertex
affinities (from global and local image features) and edge affinities feed a combinatorial
graph-matching solver whose output is compared with the ground-truth matching (view 1 of
image i <-> view 2 of image i, i.e. the identity); gradients through the solver come from
a black-box gradient estimator. LVM-Med's released code does not contain this algorithm,
so every detail below is our choice, stated here:

* **Graphs.** The batch is split into consecutive groups of ``graph_size`` images (the
  trainer's sample order is already random); each group gives one graph per view, so a
  batch of 256 with ``graph_size=64`` solves 4 QAPs of 64 nodes. Images beyond the last
  full group take part in the contrastive term only. Edges: the ``k`` nearest neighbours
  of each node by cosine similarity of the projector outputs ``z`` (computed without
  gradient; the graph topology is discrete), directed ``i -> j``.
* **Message passing** ``g``: one GraphSAGE-mean layer (Hamilton et al., NeurIPS 2017),
  ``u_i = normalize(W_s z_i + W_n mean_{j in N(i)} z_j)``.
* **Vertex affinity** ``c_v[i, a] = w_g (1 + cos(u1_i, u2_a)) / 2 + (1 - w_g) (1 + l(i, a)) / 2``
  in [0, 1], with ``w_g = global_weight``. The local term ``l`` compares the encoder's
  unpooled features (CNN map average-pooled to at most ``local_grid`` x ``local_grid``
  cells, or token sequences pooled to ``local_grid^2`` tokens), each cell projected by a
  linear layer to ``local_dim`` and L2-normalised: ``l(i, a)`` is the mean over the cells
  of ``i`` of their best cosine match among ``a``'s cells, averaged with the same taken
  from ``a`` to ``i`` (a symmetric "best-buddy" similarity).
* **Edge affinity** between edge ``(i, j)`` of graph 1 and ``(a, b)`` of graph 2:
  ``c_e = (1 + <e1_ij, e2_ab>) / 2`` in [0, 1], with ``e_ij = normalize(W_e (u_i - u_j))``
  (``edge_dim`` features of the relation between the two images). Its constant half
  rewards preserving edges, the rest rewards matching relations. ``w_e = edge_weight``
  (default ``1 / k``, so that the ~``k`` edge terms per node weigh like one vertex term).
  ``edge_affinity="relation"`` drops the constant: ``c_e = max(0, <e1_ij, e2_ab>)``, so a
  preserved edge earns only as much as its relations agree (with the constant, RRWM's matches
  follow the graphs' kNN in-degrees more than the features; docs/ssl_results.md, the audit).
* **Solver.** The QAP ``max_X <c_v, X> + w_e sum c_e X X`` over permutations is solved
  by factorised RRWM plus Hungarian rounding (:mod:`medfm.objectives.solvers`); the
  ``(n^2 x n^2)`` affinity matrix is never built. LVM-Med uses an exact-ish combinatorial
  solver; RRWM is a well-tested heuristic (it recovers planted permutations in the tests).
  With ``identity_candidate`` each solve returns the better of RRWM's permutation and the
  identity in its own objective (:func:`~medfm.objectives.solvers.best_with_identity`), a
  guard for the black-box estimate, which assumes an exact solver.
* **Differentiation** (``differentiation``):
  ``"blackbox"`` (default, as LVM-Med): Vlastelica et al. (ICLR 2020) black-box
  differentiation of the solver with the Hamming loss to the identity, as in Rolinek et al.
  (ECCV 2020). The perturbed problem adds ``2 lambda`` to the diagonal vertex affinities
  (equal, up to a constant, to adding ``lambda dHamming/dX``); with ``X_hat`` and
  ``X_lambda`` the two solutions, the loss is the surrogate
  ``(J(X_hat) - J(X_lambda)) / (lambda n)`` whose gradient with respect to every affinity
  is exactly Vlastelica's ``(X_hat - X_lambda) / lambda`` pushed through ``J``. It is >= 0
  for an exact solver and 0 once the matching is the identity.
  ``"unrolled"``: autograd through the RRWM iterations (a differentiable Sinkhorn
  relaxation); loss ``-mean_i log P[i, i]`` with ``P`` the row-normalised soft assignment
  (cross-entropy toward the identity; memory grows with the iterations).
* **Total loss.** LVM-Med adds a contrastive / redundancy-reduction term on the vertex
  embeddings to the matching loss; we add VICReg (Bardes et al., ICLR 2022: invariance
  25, variance 25, covariance 1) on ``z`` by default (``contrastive="vicreg"``;
  ``"nt_xent"`` or ``"none"`` are options): ``loss = contrastive_weight * contrastive +
  gm_weight * matching``.

The returned dict also holds ``match_acc``, the fraction of nodes the (unperturbed) solver
matches to their own other view.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from medfm.config import to_dict
from medfm.data.views import RandomViews
from medfm.encoders.base import Encoder
from medfm.encoders.layers.deterministic import adaptive_avg_pool
from medfm.objectives.contrastive import nt_xent_loss
from medfm.objectives.heads import ProjectionHead
from medfm.objectives.inputs import (check_arg, check_choice, check_encoder, check_flag, check_float_tensors,
                                     check_image_batch, check_sizes, check_views, encode_views)
from medfm.objectives.solvers import FactorizedQAP, RRWMConfig, best_with_identity, hungarian, rrwm
from medfm.registry import OBJECTIVES

DIFFERENTIATIONS = ("blackbox", "unrolled")
CONTRASTIVE_TERMS = ("vicreg", "nt_xent", "none")
EDGE_AFFINITIES = ("offset", "relation")


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                cov_coeff: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg loss (Bardes, Ponce & LeCun, ICLR 2022), as in the authors' code.

    ``sim_coeff * MSE(z1, z2) + std_coeff * (hinge(1 - std(z1)) + hinge(1 - std(z2))) / 2
    + cov_coeff * (offdiag(cov(z1))^2 + offdiag(cov(z2))^2).sum() / D``, std and cov over
    the batch (unbiased), ``std = sqrt(var + eps)``.

    Shape:
        z1, z2: ``(B, D)``, ``B >= 2``. Returns a float32 scalar, computed in float32 also
        under ``torch.autocast``.
        NaN/inf values in ``z1``/``z2`` give a NaN loss (not looked for: see :mod:`medfm.objectives.inputs`).

    Raises:
        ValueError: not float tensors (:func:`~medfm.objectives.inputs.check_float_tensors`), mismatched
            shapes or ``B < 2``.
    """
    check_float_tensors("vicreg_loss", z1=z1, z2=z2)
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ValueError(f"vicreg_loss expects two (B, D) tensors of equal shape with B >= 2, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    with torch.autocast(device_type=z1.device.type, enabled=False):  # fp32 covariance also under autocast
        z1, z2 = z1.float(), z2.float()
        b, d = z1.shape
        inv = F.mse_loss(z1, z2)
        z1c, z2c = z1 - z1.mean(dim=0), z2 - z2.mean(dim=0)
        std1, std2 = torch.sqrt(z1c.var(dim=0) + eps), torch.sqrt(z2c.var(dim=0) + eps)
        var = (F.relu(1 - std1).mean() + F.relu(1 - std2).mean()) / 2
        off = ~torch.eye(d, dtype=torch.bool, device=z1.device)
        cov1, cov2 = z1c.t() @ z1c / (b - 1), z2c.t() @ z2c / (b - 1)
        cov = cov1[off].pow(2).sum() / d + cov2[off].pow(2).sum() / d
        return sim_coeff * inv + std_coeff * var + cov_coeff * cov


def knn_graph(z: torch.Tensor, k: int) -> torch.Tensor:
    """Directed k-nearest-neighbour lists by cosine similarity (self excluded), no gradient.

    Shape:
        z: ``(G, n, D)``; returns ``(G, n, k)`` long, neighbours sorted by decreasing similarity.

    Raises:
        ValueError: ``z`` not a float ``(G, n, D)`` tensor (a ``(n, D)`` one failed inside ``transpose``), ``k``
            not an integer in ``[1, n - 1]`` (``2.5`` failed inside ``topk``).
    """
    check_float_tensors("knn_graph", z=z)
    if z.ndim != 3:
        raise ValueError(f"knn_graph: z must be (G, n, D) embeddings (G graphs of n nodes), got shape "
                         f"{tuple(z.shape)}")
    n = z.shape[1]
    k = check_arg("knn_graph", "k", k, ge=1, le=n - 1, integer=True, hint=f" for {n} nodes")
    with torch.no_grad():
        zn = F.normalize(z.float(), dim=-1)
        sim = zn @ zn.transpose(1, 2)
        sim.diagonal(dim1=1, dim2=2).fill_(float("-inf"))
        return sim.topk(k, dim=-1).indices


def gather_neighbors(u: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
    """Neighbour features ``out[g, i, s] = u[g, nbr[g, i, s]]``.

    Shape:
        u: ``(G, n, D)``; nbr: ``(G, n, k)``; returns ``(G, n, k, D)``.
    """
    g, n, k = nbr.shape
    d = u.shape[-1]
    return torch.gather(u, 1, nbr.reshape(g, n * k, 1).expand(g, n * k, d)).view(g, n, k, d)


def local_similarity(t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """Symmetric best-match similarity of two sets of local features per image pair.

    ``l(i, a) = (mean_p max_q <t1[i, p], t2[a, q]> + mean_q max_p <t1[i, p], t2[a, q]>) / 2``;
    with L2-normalised cells this is a cosine similarity in [-1, 1].

    Shape:
        t1: ``(G, n, P, D)``; t2: ``(G, m, Q, D)``; returns ``(G, n, m)``.
    """
    sim = torch.einsum("gipd,gaqd->giapq", t1, t2)
    return (sim.amax(dim=4).mean(dim=3) + sim.amax(dim=3).mean(dim=3)) / 2


class MessagePassing(nn.Module):
    """One GraphSAGE-mean layer (Hamilton et al., NeurIPS 2017), output L2-normalised.

    ``u_i = normalize(W_s z_i + W_n mean_{j in N(i)} z_j)``.

    Shape:
        z: ``(G, n, D)``; nbr: ``(G, n, k)``; returns ``(G, n, D)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.self_proj = nn.Linear(dim, dim)
        self.nbr_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, z: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
        """``z (G, n, D)``, neighbour indices ``nbr (G, n, k)`` int64 -> L2-normalised ``(G, n, D)``."""
        return F.normalize(self.self_proj(z) + self.nbr_proj(gather_neighbors(z, nbr).mean(dim=2)), dim=-1)


def _tokens(feats: torch.Tensor, grid: int) -> torch.Tensor:
    """Encoder features ``(B, D, h, w)`` or ``(B, N, D)`` -> at most ``grid^2`` cells ``(B, P, D)``."""
    if feats.ndim == 4:
        h, w = feats.shape[-2:]
        if h > grid or w > grid:
            feats = adaptive_avg_pool(feats, (min(h, grid), min(w, grid)))
        return feats.flatten(2).transpose(1, 2)
    if feats.ndim == 3:
        if feats.shape[1] > grid * grid:
            feats = adaptive_avg_pool(feats.transpose(1, 2), (grid * grid,)).transpose(1, 2)
        return feats
    raise ValueError(f"encoder features must be (B, D, h, w) or (B, N, D), got {tuple(feats.shape)}")


def matching_loss(qap: FactorizedQAP, differentiation: str = "blackbox", blackbox_lambda: float = 0.5,
                  cfg: Optional[RRWMConfig] = None,
                  identity_candidate: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Graph-matching loss toward the identity matching, and the solver's accuracy.

    Args:
        qap: ``G`` square instances (``n == m``), node ``i`` of graph 1 belonging with node
            ``i`` of graph 2; affinities carry gradients.
        differentiation: "blackbox" (Vlastelica et al. 2020 surrogate, see the module
            docstring) or "unrolled" (cross-entropy of the row-normalised RRWM output).
        blackbox_lambda: interpolation strength ``lambda`` > 0 of the black-box estimator.
        cfg: RRWM parameters.
        identity_candidate: black-box only: each solve (plain and perturbed) returns the
            better of RRWM + Hungarian's permutation and the identity.

    Returns:
        ``(loss, match_acc)``: scalars; ``match_acc`` is the mean fraction of nodes that the
        rounded solution matches to themselves (no gradient).

    Raises:
        ValueError: unknown ``differentiation``, non-square instances, ``blackbox_lambda`` not a
            finite number > 0 (black-box only); NaN/inf affinities (e.g. from NaN embeddings) stop in
            :func:`~medfm.objectives.solvers.hungarian` (``hungarian: scores contain NaN or inf``).
    """
    g, n, m = qap.node.shape
    if n != m:
        raise ValueError(f"matching_loss needs square instances, got {n} x {m} nodes")
    eye = torch.eye(n, dtype=qap.node.dtype, device=qap.node.device).expand(g, n, n)
    if differentiation == "unrolled":
        soft = rrwm(qap, cfg)
        rows = soft / soft.sum(dim=2, keepdim=True).clamp_min(1e-30)
        loss = -torch.log(rows.diagonal(dim1=1, dim2=2).clamp_min(1e-12)).mean()
        with torch.no_grad():
            acc = (hungarian(soft) * eye).sum(dim=(1, 2)).mean() / n
        return loss, acc
    if differentiation != "blackbox":
        raise ValueError(f"differentiation must be one of {DIFFERENTIATIONS}, got {differentiation!r}")
    blackbox_lambda = check_arg("matching_loss", "blackbox_lambda", blackbox_lambda, gt=0)
    with torch.no_grad():
        plain = qap.detach()
        perturbed = plain.with_node(plain.node + 2 * blackbox_lambda * eye)
        x_hat = hungarian(rrwm(plain, cfg))
        x_lam = hungarian(rrwm(perturbed, cfg))
        if identity_candidate:
            x_hat, x_lam = best_with_identity(plain, x_hat), best_with_identity(perturbed, x_lam)
        acc = (x_hat * eye).sum(dim=(1, 2)).mean() / n
    loss = (qap.score(x_hat) - qap.score(x_lam)).mean() / (blackbox_lambda * n)
    return loss, acc


def _solver_config(solver: Any) -> RRWMConfig:
    """The objective's ``solver`` argument (None, a mapping of :class:`RRWMConfig` fields, or one) as a config.

    Raises:
        ValueError: not a mapping, an unknown key (was a ``TypeError``), or a field out of range
            (``graph_matching: solver.iterations must be an integer >= 1, got 2.5``).
    """
    if isinstance(solver, RRWMConfig):
        return solver
    if solver is None:
        solver = {}
    if not isinstance(solver, Mapping):
        raise ValueError(f"graph_matching: solver must be a mapping of RRWM parameters, got {solver!r}")
    known = [f.name for f in dataclasses.fields(RRWMConfig)]
    unknown = sorted(str(key) for key in solver if key not in known)
    if unknown:
        raise ValueError(f"graph_matching: unknown solver key(s) {unknown}; known: {', '.join(known)}")
    try:
        return RRWMConfig(**solver)
    except ValueError as err:  # "rrwm: iterations must be ..." -> named as the recipe spells it
        raise ValueError(f"graph_matching: solver.{str(err).removeprefix('rrwm: ')}") from None


@OBJECTIVES.register("graph_matching")
class GraphMatching(nn.Module):
    """LVM-Med-style second-order graph-matching objective (see the module docstring).

    Args:
        encoder: any medfm :class:`Encoder`; images ``(B, C, H, W)`` in [0, 1].
        proj_dim / hidden_dim / proj_layers: projector ``h`` sizes, integers >= 1.
        graph_size: nodes per graph (images per QAP), integer >= 3; batches smaller than that
            form one graph.
        k: nearest neighbours per node, integer in ``[1, graph_size - 1]`` (a batch smaller than
            ``graph_size`` clips it to its size - 1).
        global_weight: ``w_g`` in [0, 1], share of the global term in the vertex affinity.
        local_dim / local_grid: local feature size and the cap on cells per side, integers >= 1.
        edge_dim: edge feature size, integer >= 1; ``edge_weight``: ``w_e``, finite and >= 0
            (None: ``1 / k``); ``edge_affinity``: "offset" (``(1 + <e1, e2>) / 2``, default) or
            "relation" (``max(0, <e1, e2>)``).
        differentiation: "blackbox" or "unrolled"; ``blackbox_lambda``: its ``lambda``, finite and > 0;
            ``identity_candidate``: black-box solves never return worse than the identity (bool).
        solver: :class:`RRWMConfig` fields (dict; ranges there).
        contrastive: "vicreg", "nt_xent" or "none"; ``contrastive_weight`` / ``gm_weight``
            weigh it and the matching term, each finite and >= 0, not both 0 (with "none",
            ``gm_weight`` must be > 0): the loss would be 0; ``temperature``: NT-Xent
            temperature, finite and > 0 (checked whatever ``contrastive`` is).
        views: augmentation parameters (dict of :class:`ViewConfig` fields, or a :class:`ViewConfig`).

    ``forward(batch, gen)`` takes ``{"image": (B, C, H, W)}`` and returns ``{"loss",
    "gm_loss", "contrastive_loss", "match_acc"}`` (scalars).

    Raises:
        ValueError: an argument out of its range or of the wrong type (one line naming it, its
            range and the value, e.g. ``graph_matching: k must be an integer in [1, 63]
            (graph_size - 1), got 64``), unknown option strings, unknown ``solver`` or ``views`` keys;
            an ``encoder`` that is not a medfm Encoder (:func:`~medfm.objectives.inputs.check_encoder`).
    """

    def __init__(self, encoder: Encoder, proj_dim: int = 128, hidden_dim: int = 512, proj_layers: int = 2,
                 graph_size: int = 64, k: int = 8, global_weight: float = 0.5, local_dim: int = 64, local_grid: int = 4,
                 edge_dim: int = 32, edge_weight: Optional[float] = None, edge_affinity: str = "offset",
                 differentiation: str = "blackbox", blackbox_lambda: float = 0.5, identity_candidate: bool = False,
                 solver: Optional[Dict[str, Any]] = None, contrastive: str = "vicreg",
                 contrastive_weight: float = 1.0, gm_weight: float = 1.0, temperature: float = 0.2,
                 views: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        name = "graph_matching"
        differentiation = check_choice(name, "differentiation", differentiation, DIFFERENTIATIONS)
        contrastive = check_choice(name, "contrastive", contrastive, CONTRASTIVE_TERMS)
        edge_affinity = check_choice(name, "edge_affinity", edge_affinity, EDGE_AFFINITIES)
        identity_candidate = check_flag(name, "identity_candidate", identity_candidate)
        proj_dim, hidden_dim, proj_layers, local_dim, local_grid, edge_dim = check_sizes(
            name, proj_dim=proj_dim, hidden_dim=hidden_dim, proj_layers=proj_layers, local_dim=local_dim,
            local_grid=local_grid, edge_dim=edge_dim)
        graph_size = check_arg(name, "graph_size", graph_size, ge=3, integer=True)
        k = check_arg(name, "k", k, ge=1, le=graph_size - 1, integer=True, hint=" (graph_size - 1)")
        global_weight = check_arg(name, "global_weight", global_weight, ge=0, le=1)
        if edge_weight is not None:
            edge_weight = check_arg(name, "edge_weight", edge_weight, ge=0)
        blackbox_lambda = check_arg(name, "blackbox_lambda", blackbox_lambda, gt=0)
        contrastive_weight = check_arg(name, "contrastive_weight", contrastive_weight, ge=0)
        gm_weight = check_arg(name, "gm_weight", gm_weight, ge=0)
        if gm_weight == 0 and (contrastive_weight == 0 or contrastive == "none"):
            raise ValueError(f"graph_matching: the loss would be 0: gm_weight=0 with contrastive={contrastive!r} and "
                             f"contrastive_weight={contrastive_weight}; give one term a weight > 0")
        temperature = check_arg(name, "temperature", temperature, gt=0)
        solver_cfg = _solver_config(solver)
        view_cfg = check_views(name, "views", views)
        check_encoder(name, encoder)
        self.encoder = encoder
        self.head = ProjectionHead(encoder.num_features, hidden_dim, proj_dim, proj_layers)
        self.message_passing = MessagePassing(proj_dim)
        self.local_proj = nn.Linear(encoder.num_features, local_dim)
        self.edge_proj = nn.Linear(proj_dim, edge_dim, bias=False)
        self.graph_size, self.k = int(graph_size), int(k)
        self.global_weight, self.local_grid = float(global_weight), int(local_grid)
        self.edge_weight = None if edge_weight is None else float(edge_weight)
        self.edge_affinity, self.identity_candidate = edge_affinity, identity_candidate
        self.differentiation, self.blackbox_lambda = differentiation, float(blackbox_lambda)
        self.solver_cfg = solver_cfg
        self.contrastive = contrastive
        self.contrastive_weight, self.gm_weight = float(contrastive_weight), float(gm_weight)
        self.temperature = float(temperature)
        self.views = RandomViews(view_cfg)
        self.medfm_spec = {"kind": "objective", "name": "graph_matching", "args": {
            "proj_dim": proj_dim, "hidden_dim": hidden_dim, "proj_layers": proj_layers, "graph_size": self.graph_size,
            "k": self.k, "global_weight": self.global_weight, "local_dim": local_dim, "local_grid": self.local_grid,
            "edge_dim": edge_dim, "edge_weight": self.edge_weight, "edge_affinity": edge_affinity,
            "differentiation": differentiation, "blackbox_lambda": self.blackbox_lambda,
            "identity_candidate": identity_candidate, "solver": to_dict(self.solver_cfg), "contrastive": contrastive,
            "contrastive_weight": self.contrastive_weight, "gm_weight": self.gm_weight,
            "temperature": self.temperature, "views": to_dict(view_cfg)}}

    def embed(self, images: torch.Tensor, checked: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """Projector outputs ``(B, proj_dim)`` and normalised local cells ``(B, P, local_dim)``.

        Runs the encoder once: ``forward_features`` then the contract's pooling ``forward_head``
        (what ``encoder(x)`` computes), so local and global features share one pass. ``checked``:
        ``images`` are views of a batch :func:`~medfm.objectives.inputs.check_image_batch` checked, so the
        encoder's value check is left out (:func:`~medfm.objectives.inputs.encode_views`).
        """
        feats = encode_views(self.encoder, images, features=True) if checked else self.encoder.forward_features(images)
        z = self.head(self.encoder.forward_head(feats))
        cells = F.normalize(self.local_proj(_tokens(feats, self.local_grid)).float(), dim=-1)
        return z, cells

    def build_qap(self, z1: torch.Tensor, z2: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor) -> FactorizedQAP:
        """The QAP instances between the two views' graphs.

        Shape:
            z1, z2: ``(G, n, proj_dim)``; c1, c2: ``(G, n, P, local_dim)`` normalised cells.
        """
        n = z1.shape[1]
        k = min(self.k, n - 1)
        nbr1, nbr2 = knn_graph(z1, k), knn_graph(z2, k)
        u1, u2 = self.message_passing(z1, nbr1), self.message_passing(z2, nbr2)
        glob = (1 + u1 @ u2.transpose(1, 2)) / 2
        node = self.global_weight * glob + (1 - self.global_weight) * (1 + local_similarity(c1, c2)) / 2
        e1 = F.normalize(self.edge_proj(u1.unsqueeze(2) - gather_neighbors(u1, nbr1)), dim=-1)
        e2 = F.normalize(self.edge_proj(u2.unsqueeze(2) - gather_neighbors(u2, nbr2)), dim=-1)
        w_e = self.edge_weight if self.edge_weight is not None else 1.0 / k
        # knn_graph's topk indices lie in [0, n): no read-back per step to check them
        if self.edge_affinity == "relation":
            return FactorizedQAP.from_edge_features(node, nbr1, e1, nbr2, e2, w_e, rectify=True, check_indices=False)
        one1, one2 = torch.ones_like(e1[..., :1]), torch.ones_like(e2[..., :1])
        f1, f2 = torch.cat([one1, e1], dim=-1) / 2 ** 0.5, torch.cat([one2, e2], dim=-1) / 2 ** 0.5
        return FactorizedQAP.from_edge_features(node, nbr1, f1, nbr2, f2, w_e, check_indices=False)

    def forward(self, batch: Dict[str, Any], gen: torch.Generator) -> Dict[str, torch.Tensor]:
        """Objective step: contrastive term on ``z`` + graph-matching loss between the two views' graphs.

        Args:
            batch: ``{"image": (B, C, H, W) float in [0, 1]}``, B >= 3.
            gen: CPU generator for the random views.

        Returns:
            ``{"loss": scalar, "gm_loss", "contrastive_loss", "match_acc"}``: the extras are detached
            scalars, ``match_acc`` in [0, 1] (nodes the unperturbed solver matches to their own view).

        Raises:
            ValueError: no ``"image"``, B < 3, or ``gen`` not a CPU ``torch.Generator``.
            EncoderInputError: an image batch that is not a finite float ``(B, C, H, W)`` with the
                encoder's channel count.
        """
        images = check_image_batch(batch, self.encoder, "graph_matching", 3,
                                   why=" (each graph needs a node and 2 neighbours)", gen=gen)
        b = images.shape[0]
        v1, v2 = self.views(images, gen), self.views(images, gen)
        z, cells = self.embed(torch.cat([v1, v2]), checked=True)
        with torch.autocast(device_type=images.device.type, enabled=False):
            z = z.float()
            z1, z2 = z[:b], z[b:]
            c1, c2 = cells[:b], cells[b:]
            if self.contrastive == "vicreg":
                con = vicreg_loss(z1, z2)
            elif self.contrastive == "nt_xent":
                con = nt_xent_loss(z1, z2, self.temperature)
            else:
                con = z.new_zeros(())
            n = min(self.graph_size, b)
            g = b // n
            used = g * n
            qap = self.build_qap(z1[:used].view(g, n, -1), z2[:used].view(g, n, -1),
                                 c1[:used].view(g, n, *c1.shape[1:]), c2[:used].view(g, n, *c2.shape[1:]))
            gm, acc = matching_loss(qap, self.differentiation, self.blackbox_lambda, self.solver_cfg,
                                    self.identity_candidate)
            loss = self.contrastive_weight * con + self.gm_weight * gm
        return {"loss": loss, "gm_loss": gm.detach(), "contrastive_loss": con.detach(), "match_acc": acc}
