"""Evaluation protocols: a classifier as it is, a linear probe, and a kNN classifier on frozen features.

* **as-is**: the checkpoint's own head (:func:`medfm.evaluation.predict.predict_outputs`).
* **linear probe**: multinomial logistic regression (L-BFGS, scikit-learn) on standardised
  frozen embeddings, the protocol of SimCLR (Chen et al. 2020) and DINO; one-vs-rest
  logistic regressions for multi-label tasks. The fitted probe can be turned into a torch
  classifier (:meth:`LinearProbe.to_classifier`) for CAMs.
* **kNN**: weighted k-nearest-neighbour vote on L2-normalised embeddings (cosine
  similarity), each neighbour voting ``exp(sim / T)`` for its class, as in InstDisc
  (Wu et al. 2018, Sec. 3.4) and DINO's ``eval_knn`` (Caron et al. 2021); k = 11,
  T = 0.07 by default. Scores are the normalised votes. The kNN has no logits (its votes are no
  sigmoid/softmax of any): a share of 1.0 from every neighbour voting for the class is a tie of the
  classifier itself, and the AUC ranks the shares (multi-label ones kept in float64, :func:`knn_scores`;
  single-label rows with a tiny complement are ordered by it: :func:`medfm.evaluation.metrics.ranking_scores`).

Features are extracted once per dataset (:func:`extract_features`) and shared by every
label fraction and protocol. 3D volumes ``(B, C, D, H, W)`` are embedded 2.5D: the mean
of the 2D encoder's embeddings of the D slices. Every scorer returns ``(N, K)`` float
probabilities in the layout of :func:`medfm.evaluation.metrics.classification_metrics`; the
probe also its logits (:meth:`LinearProbe.outputs`), which the AUC ranks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from medfm.arg_checks import check_label_fraction, check_number, number_fits
from medfm.evaluation.metrics import MULTI_LABEL, check_task, classification_metrics, to_numpy
from medfm.suite_protocols import PROTOCOLS
from medfm.suite_protocols import check_protocol_name as check_protocol  # the one rule, torch-free


def probe_labels(dataset: Any) -> np.ndarray:
    """A dataset's labels as probes take them: ``(N,)`` int for single-label tasks, ``(N, K)`` for multi-label."""
    y = np.asarray(dataset.labels)
    return y[:, 0] if y.ndim == 2 and y.shape[1] == 1 and getattr(dataset, "task", "") != MULTI_LABEL else y


@torch.no_grad()
def extract_features(encoder: nn.Module, dataset: Any, batch_size: int = 256, desc: Optional[str] = None) -> np.ndarray:
    """Pooled embeddings ``(N, D)`` float32 of every sample, in dataset order.

    Args:
        encoder: a medfm encoder (``forward(x) -> (B, D)``), run in eval mode and fp32.
        dataset: has ``__len__`` and ``get_batch(indices) -> {"image": ...}`` (or
            ``__getitem__``); images ``(B, C, H, W)`` or 3D ``(B, C, D, H, W)`` (2.5D:
            slice embeddings averaged).
        batch_size: images per forward pass (slices per pass for 3D).
        desc: show a tqdm bar over the batches with this label (None: silent).

    Raises:
        EncoderInputError: images whose channels/size the encoder does not accept.
        ValueError: ``batch_size`` not an integer >= 1.
    """
    from tqdm.auto import tqdm

    from medfm.training.loop import get_batch

    batch_size = check_number("batch_size", batch_size, ge=1, integer=True)
    was = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    n = len(dataset)
    if n == 0:
        return np.zeros((0, encoder.num_features), dtype=np.float32)
    first = get_batch(dataset, torch.arange(1))["image"]
    slices = first.ndim == 5 and getattr(encoder, "spatial_dims", 2) == 2
    step = max(1, batch_size // first.shape[2]) if slices else batch_size
    out = []
    starts = range(0, n, step)  # 2.5D: about batch_size slices per pass (large buffers cost page faults)
    for start in (tqdm(starts, desc=desc, leave=False) if desc else starts):
        x = get_batch(dataset, torch.arange(start, min(n, start + step)))["image"].to(device)
        if slices:  # (B, C, D, H, W): embed each of the D slices, average
            b, c, d = x.shape[:3]
            emb = encoder(x.transpose(1, 2).reshape(b * d, c, *x.shape[3:]))
            out.append(emb.float().reshape(b, d, -1).mean(1).cpu())
        else:
            out.append(encoder(x).float().cpu())
    encoder.train(was)
    return torch.cat(out).numpy().astype(np.float32)


def subset_indices(labels: np.ndarray, label_fraction: float, seed: int) -> np.ndarray:
    """Stratified seeded indices of ``label_fraction`` of the training labels (all when 1).

    Raises:
        ValueError: ``label_fraction`` not a number in (0, 1] (``1.5`` and ``True`` used to mean all labels):
            ``label_fraction must be in (0, 1], got 1.5`` (:func:`medfm.arg_checks.check_label_fraction`).
    """
    from medfm.data.medmnist import label_fraction_indices

    label_fraction = check_label_fraction(label_fraction, "label_fraction")
    if label_fraction >= 1.0:
        return np.arange(len(labels))
    return label_fraction_indices(labels, label_fraction, seed=seed)


@dataclass
class LinearProbe:
    """A fitted logistic-regression probe on standardised features.

    Attributes:
        mean, scale: (D,) feature standardisation.
        coef: (K, D) weights; intercept: (K,). For binary-class K = 1 (the positive-class
            logit), expanded to two softmax columns by :meth:`predict`.
        task: MedMNIST task string.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    task: str

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``(N, K)`` logits of ``(N, D)`` features.

        Args:
            features: ``(N, D)`` embeddings.

        Raises:
            ValueError: features that are not ``(N, D)`` with the probe's ``D``, or hold NaN/inf
                (:func:`check_features`).
        """
        return self._standardised_logits((check_features(features, "features", width=len(self.mean))
                                          - self.mean) / self.scale)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``(N, K)`` float32 probabilities of ``(N, D)`` features: softmax (binary: ``[1 - p, p]``), sigmoid for
        multi-label.

        Raises:
            ValueError: as :meth:`logits`.
        """
        return self._probabilities(self.logits(features))

    def outputs(self, features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(scores, logits)`` of ``(N, D)`` features, as :func:`medfm.evaluation.predict.predict_outputs`:
        :meth:`predict`'s ``(N, K)`` float32 scores (bit-identical) and the ``(N, K)`` float64 logits they are the
        softmax / sigmoid of (binary: ``[0, z]``, the two columns :meth:`to_classifier` computes), for the AUC's
        ranking (``logits=`` of :func:`medfm.evaluation.report.write_classification_report`): a confident probe's
        probabilities saturate at exactly 1.0 / 0.0 and tie (a multi-label float32 sigmoid above a logit of ~17.3; a
        binary row's complement ``1 - p`` once ``expit`` is 1.0 in float64, above ~37).

        Raises:
            ValueError: as :meth:`logits`.
        """
        z = self.logits(features)
        scores = self._probabilities(z)
        if self.task != MULTI_LABEL and z.shape[1] == 1:
            z = np.concatenate([np.zeros_like(z), z], axis=1)
        return scores, z

    def _standardised_logits(self, z: np.ndarray) -> np.ndarray:
        """:meth:`logits` of features already standardised by this probe (``z = (x - mean) / scale``, a float64
        ``(N, D)`` array), taken as they are, unchecked: :func:`select_probe_c` checks and standardises a validation
        set once for its whole grid of probes, which share the training set's standardisation."""
        return z @ self.coef.T + self.intercept

    def _probabilities(self, z: np.ndarray) -> np.ndarray:
        """:meth:`predict` from the ``(N, K)`` logits ``z``."""
        if self.task == MULTI_LABEL:
            return expit(z).astype(np.float32)
        if z.shape[1] == 1:
            p = expit(z[:, 0])
            return np.stack([1 - p, p], axis=1).astype(np.float32)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def to_classifier(self, encoder: nn.Module, label_names: Optional[list] = None) -> nn.Module:
        """An :class:`~medfm.adapters.classification.ImageClassifier` whose head computes these logits.

        Standardisation is folded into the head: ``W' = W / scale``, ``b' = b - W' mean``.
        Binary probes get the logits ``[0, w.x + b]`` (same softmax as :meth:`predict`).
        """
        from medfm.adapters.classification import ImageClassifier

        w = self.coef / self.scale[None, :]
        b = self.intercept - w @ self.mean
        if self.task != MULTI_LABEL and w.shape[0] == 1:
            w = np.concatenate([np.zeros_like(w), w])
            b = np.concatenate([[0.0], b])
        k = w.shape[0]
        clf = ImageClassifier(encoder, num_classes=k, task=self.task, label_names=label_names)
        head = clf.task_head if hasattr(clf, "task_head") else clf.head  # the adapter's linear head
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(w).float())
            head.bias.copy_(torch.from_numpy(np.asarray(b)).float())
        return clf.eval()


def check_features(features: Any, name: str, width: Optional[int] = None, dtype: Any = np.float64) -> np.ndarray:
    """``features`` as a ``(N, D)`` array of ``dtype`` after checking it; an array already of that dtype is
    returned as it is, not copied (kNN takes float32, large feature sets are not widened to float64 and back).

    Raises:
        ValueError: not a 2-D numeric array (a 1-D vector failed in torch with "Dimension out of range"),
            NaN/inf values (they gave NaN scores without a word, or a multi-line scikit-learn message),
            or ``D`` other than ``width``.
    """
    try:
        x = to_numpy(features, name).astype(dtype, copy=False)
    except TypeError as err:
        raise ValueError(str(err)) from None
    if x.ndim != 2:
        raise ValueError(f"{name} must be (N, D) embeddings, got shape {x.shape}")
    n_bad = x.size - np.count_nonzero(np.isfinite(x))
    if n_bad:
        raise ValueError(f"{name} contain {n_bad} NaN/inf value(s)")
    if width is not None and x.shape[1] != width:
        raise ValueError(f"{name} have {x.shape[1]} dims but {width} are expected")
    return x


def check_probe_labels(labels: Any, n: int, task: str, num_classes: int, what: str = "train labels") -> np.ndarray:
    """Training labels of a probe or kNN classifier as int64: ``(N,)`` class indices in
    ``[0, num_classes)`` (``(N, 1)`` accepted), or ``(N, num_classes)`` 0/1 for multi-label; ``what``
    names them in messages.

    Raises:
        ValueError: an unknown ``task`` (with close matches), ``num_classes`` not an integer >= 2
            (>= 1 for multi-label), a count other than ``n``, or labels of another shape, outside that
            range or not integers (``0.5`` was truncated to class 0, a multi-label 2 counted twice).
    """
    check_task(task)
    multi = task == MULTI_LABEL
    num_classes = check_number("num_classes", num_classes, ge=1 if multi else 2, integer=True)
    y = np.asarray(labels)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise ValueError(f"{what} must be numeric, got dtype {y.dtype}")
    if y.ndim == 0 or len(y) != n:
        raise ValueError(f"{n} train features but {y.size if y.ndim == 0 else len(y)} {what}")
    if multi:
        if y.shape != (n, num_classes) or not np.isin(y, (0, 1)).all():
            raise ValueError(f"multi-label {what} must be (M, {num_classes}) 0/1, got shape {y.shape}"
                             + (f" with values {np.unique(y)[:5].tolist()}" if y.size else ""))
        return y.astype(np.int64)
    y = y[:, None] if y.ndim == 1 else y
    if y.ndim != 2 or y.shape[1] != 1:
        raise ValueError(f"{what} must be (M,) class indices, got shape {np.shape(labels)} (one-hot? pass the argmax)")
    y = y[:, 0]
    if y.size and (not np.all(y == np.round(y)) or y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{what} must be integer class indices in [0, {num_classes}), got values in "
                         f"[{y.min()}, {y.max()}]" + ("" if np.all(y == np.round(y)) else " with fractions"))
    return y.astype(np.int64)


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, task: str, num_classes: int, C: float = 1.0,
                     max_iter: int = 1000) -> LinearProbe:
    """Fit a logistic-regression probe (scikit-learn, L-BFGS, L2 penalty ``1/C``); deterministic (L-BFGS
    draws nothing at random, so the probe takes no seed: the seed of a probe run draws its label subset,
    :func:`subset_indices`).

    Args:
        features: (N, D) training embeddings.
        labels: (N,) class indices, or (N, L) 0/1 for multi-label.
        task: MedMNIST task string; multi-label fits one binary model per label.
        num_classes: K; classes absent from ``labels`` get a very negative intercept.
        C: inverse regularisation strength.

    Raises:
        ValueError: fewer than 2 classes among ``labels`` (a probe cannot be fitted, no label at all
            included); ``C`` not a finite number > 0; ``max_iter`` not an integer >= 1; the input
            errors of :func:`check_features` and :func:`check_probe_labels` (an unknown task, NaN
            features, label count, shape or range; these used to reach scikit-learn or numpy).
    """
    C = check_number("C", C, gt=0)
    max_iter = check_number("max_iter", max_iter, ge=1, integer=True)
    return _fit_standardised(*_probe_training_set(features, labels, task, num_classes), task, num_classes, C, max_iter)


def _probe_training_set(features: Any, labels: Any, task: str,
                        num_classes: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(z, y, mean, scale)``: checked, standardised ``(N, D)`` training features, their int64 labels and
    the ``(D,)`` standardisation; the input checks of :func:`fit_linear_probe`, made once per training set."""
    x = check_features(features, "train features")
    y = check_probe_labels(labels, len(x), task, num_classes)
    if not len(x):
        raise ValueError("the probe's training set is empty; cannot fit")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    return (x - mean) / scale, y, mean, scale


def _fit_standardised(z: np.ndarray, y: np.ndarray, mean: np.ndarray, scale: np.ndarray, task: str,
                      num_classes: int, C: float, max_iter: int) -> LinearProbe:
    """:func:`fit_linear_probe` on :func:`_probe_training_set`'s output (checked arguments)."""
    from sklearn.linear_model import LogisticRegression

    if task == MULTI_LABEL:
        coef, bias = [], []
        for j in range(y.shape[1]):
            if len(np.unique(y[:, j])) < 2:  # constant label: logit pinned to the observed value
                coef.append(np.zeros(z.shape[1]))
                bias.append(20.0 if y[0, j] else -20.0)
                continue
            m = LogisticRegression(C=C, max_iter=max_iter).fit(z, y[:, j])
            coef.append(m.coef_[0])
            bias.append(m.intercept_[0])
        return LinearProbe(mean, scale, np.array(coef), np.array(bias), task)
    y = y.reshape(-1)
    present = np.unique(y)
    if len(present) < 2:
        raise ValueError(f"the probe's training labels hold a single class ({present.tolist()}); cannot fit")
    m = LogisticRegression(C=C, max_iter=max_iter).fit(z, y)
    if num_classes == 2 and len(present) == 2:
        return LinearProbe(mean, scale, m.coef_, m.intercept_, task)
    coef = np.zeros((num_classes, z.shape[1]))
    bias = np.full(num_classes, -1e4)
    coef[m.classes_] = m.coef_ if len(present) > 2 else np.stack([-m.coef_[0] / 2, m.coef_[0] / 2])
    bias[m.classes_] = m.intercept_ if len(present) > 2 else np.array([-m.intercept_[0] / 2, m.intercept_[0] / 2])
    return LinearProbe(mean, scale, coef, bias, task)


PROBE_C_GRID: Tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 2, 13))


def select_probe_c(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
                   val_labels: np.ndarray, task: str, num_classes: int, grid: Sequence[float] = PROBE_C_GRID,
                   max_iter: int = 1000) -> Tuple[float, Dict[float, float]]:
    """Choose the probe's inverse L2 strength ``C`` by validation accuracy (CLIP's linear-probe protocol).

    Radford et al. 2021 (CLIP, appendix A.3) sweep the L2 strength of an L-BFGS logistic
    regression on a validation split; here over ``grid`` (default 13 values, 1e-4 .. 1e2,
    log-spaced), each fitted as :func:`fit_linear_probe` on ``train_*`` and scored on
    ``val_*``. Ties go to the smallest ``C`` (the strongest regularisation). Both feature sets are
    checked and standardised once for the whole grid (they were checked again for every C).

    Args:
        train_features, val_features: ``(N, D)`` / ``(M, D)`` embeddings.
        train_labels, val_labels: ``(N,)`` / ``(M,)`` class indices (or ``(N, L)`` multi-label).
        task, num_classes: as :func:`fit_linear_probe`.

    Returns:
        ``(best_C, {C: validation ACC})``.

    Raises:
        ValueError: an empty grid, a C that is not a finite number > 0, or features of mismatched width; the
            input errors of :func:`fit_linear_probe` (NaN features, labels, ``max_iter``), before the first fit.
    """
    if not len(grid) or not all(number_fits(c, gt=0) for c in grid):
        raise ValueError(f"the C grid must hold positive finite numbers, got {list(grid)}")
    grid = sorted(float(c) for c in grid)
    if np.shape(train_features)[1:] != np.shape(val_features)[1:]:
        raise ValueError(f"train features {np.shape(train_features)} and val features {np.shape(val_features)} differ "
                         "in width")
    max_iter = check_number("max_iter", max_iter, ge=1, integer=True)
    train = _probe_training_set(train_features, train_labels, task, num_classes)  # checked once, not once per C
    z_val = (check_features(val_features, "features", width=train[0].shape[1]) - train[2]) / train[3]
    val_labels = np.asarray(val_labels)
    accs: Dict[float, float] = {}
    for c in grid:
        probe = _fit_standardised(*train, task, num_classes, c, max_iter)
        probs = probe._probabilities(probe._standardised_logits(z_val))  # predict's steps, checked once above
        accs[c] = float(classification_metrics(val_labels, probs, task)["acc"])
    best = max(grid, key=lambda c: (accs[c], -c))
    return best, accs


def knn_scores(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, num_classes: int,
               k: int = 11, temperature: float = 0.07, task: str = "multi-class", chunk: int = 1024) -> np.ndarray:
    """Temperature-weighted cosine kNN votes (InstDisc / DINO ``eval_knn``).

    ``score_c(x) = sum_{i in top-k} exp(cos(x, x_i) / T) [y_i = c] / sum_{i in top-k} exp(cos(x, x_i) / T)``;
    multi-label: the weighted fraction of neighbours with label ``l`` set.

    Args:
        train_features: (M, D); train_labels: (M,) or (M, L) for multi-label.
        test_features: (N, D). Writable float32 C-contiguous features are read in place; others are
            copied once to float32 (a read-only memmap among them).
        num_classes: K.
        k: neighbours (clipped to M); temperature: T > 0.

    Returns:
        (N, K) float64 scores, each row summing to 1 (not for multi-label). The kNN has no logits, so the AUC
        ranks these shares. Multi-label shares are computed in float64 (the similarities that choose the
        neighbours stay float32): a float32 share of ``1 - 1e-12`` (one far neighbour without the label,
        ``exp(-2 / T)`` at T = 0.07) rounds to 1.0 and ties with a real 1.0 (every neighbour voting);
        float64 resolves a neighbour's weight down to ~1e-16 of the vote (similarity gaps up to ~36 T).
        Single-label votes are the float32 ones, widened exactly (results unchanged): a saturated share keeps
        its small complement in the other columns, by which the AUC ranks it
        (:func:`medfm.evaluation.metrics.ranking_scores`).

    Raises:
        ValueError: ``k`` not an integer >= 1, ``temperature`` not a finite number > 0, ``chunk`` not
            an integer >= 1, features that are not ``(M, D)`` / ``(N, D)`` of one ``D`` or hold NaN/inf
            (:func:`check_features`; NaN gave NaN scores), no train feature, or the label errors of
            :func:`check_probe_labels` (an unknown task, count, shape, range, fractions).
    """
    k = check_number("k", k, ge=1, integer=True)
    temperature = check_number("temperature", temperature, gt=0)
    chunk = check_number("chunk", chunk, ge=1, integer=True)
    tr_np = check_features(train_features, "train features", dtype=np.float32)  # the dtype scored in
    te_np = check_features(test_features, "test features", dtype=np.float32)
    if tr_np.shape[1] != te_np.shape[1]:
        raise ValueError(f"train features have {tr_np.shape[1]} dims but test features {te_np.shape[1]}")
    if tr_np.shape[0] == 0:
        raise ValueError("kNN needs at least one train feature, got none")
    y_np = check_probe_labels(train_labels, tr_np.shape[0], task, num_classes)
    # np.require(..., "W"): a read-only array (a memmap opened "r") is copied, as torch.from_numpy warns
    # "The given NumPy array is not writable" on it (torch has no read-only tensors, and numpy refuses
    # a writable view of a read-only buffer); a writable C-contiguous one is used as it is, not copied
    tr = torch.nn.functional.normalize(torch.from_numpy(np.require(tr_np, requirements=("C", "W"))), dim=1)
    te = torch.nn.functional.normalize(torch.from_numpy(np.require(te_np, requirements=("C", "W"))), dim=1)
    # multi-label votes in float64: a label's share is all the AUC ranks it by; single-label ones in float32, as
    # always (bit-identical results): a saturated share keeps its complement in the other columns (ranking_scores)
    dtype = torch.float64 if task == MULTI_LABEL else torch.float32
    if task == MULTI_LABEL:
        onehot = torch.as_tensor(y_np).to(dtype)
    else:
        onehot = torch.nn.functional.one_hot(torch.as_tensor(y_np).long(), int(num_classes)).to(dtype)
    k = min(k, tr.shape[0])
    out = [torch.zeros(0, onehot.shape[1], dtype=dtype)]  # N = 0 gives (0, K)
    for s in range(0, te.shape[0], chunk):
        sim, idx = (te[s:s + chunk] @ tr.T).topk(k, dim=1)  # float32 similarities choose the neighbours
        w = (sim.to(dtype) / temperature).softmax(dim=1)  # exp(sim/T) normalised over the k neighbours
        out.append(torch.einsum("nk,nkc->nc", w, onehot[idx]))
    return torch.cat(out).clamp_(0.0, 1.0).numpy().astype(np.float64)  # sums may exceed 1 by an ulp


def _probe_features(encoder: nn.Module, train_ds: Any, test_ds: Any, label_fraction: float, seed: int,
                    batch_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frozen features of the kept training labels and of the test set: ``(F_train, y_train, F_test)``."""
    _check_pair(train_ds, test_ds)
    ftr, fte = extract_features(encoder, train_ds, batch_size), extract_features(encoder, test_ds, batch_size)
    y = probe_labels(train_ds)
    keep = subset_indices(y, label_fraction, seed)
    return ftr[keep], y[keep], fte


def linear_probe(encoder: nn.Module, train_ds: Any, test_ds: Any, label_fraction: float = 1.0, seed: int = 0,
                 C: float = 1.0, batch_size: int = 256) -> np.ndarray:
    """Scores ``(N_test, K)`` of a logistic-regression probe fitted on frozen ``encoder`` features.

    ``label_fraction`` of the training labels (stratified, seeded) are used.

    Raises:
        ValueError: train and test sets with different tasks or classes.
    """
    ftr, ytr, fte = _probe_features(encoder, train_ds, test_ds, label_fraction, seed, batch_size)
    probe = fit_linear_probe(ftr, ytr, test_ds.task, test_ds.num_classes, C=C)
    return probe.predict(fte)


def knn_predict(encoder: nn.Module, train_ds: Any, test_ds: Any, label_fraction: float = 1.0, seed: int = 0,
                k: int = 11, temperature: float = 0.07, batch_size: int = 256) -> np.ndarray:
    """Scores ``(N_test, K)`` float64 of the weighted cosine kNN classifier on frozen ``encoder`` features
    (:func:`knn_scores`).

    Raises:
        ValueError: train and test sets with different tasks or classes.
    """
    ftr, ytr, fte = _probe_features(encoder, train_ds, test_ds, label_fraction, seed, batch_size)
    return knn_scores(ftr, ytr, fte, test_ds.num_classes, k=k, temperature=temperature, task=test_ds.task)


def _check_pair(train_ds: Any, test_ds: Any) -> None:
    if train_ds.task != test_ds.task or train_ds.num_classes != test_ds.num_classes:
        raise ValueError(f"train set ({train_ds.task}, {train_ds.num_classes} classes) and test set "
                         f"({test_ds.task}, {test_ds.num_classes} classes) differ")


__all__ = ["PROTOCOLS", "check_protocol", "extract_features", "subset_indices", "LinearProbe", "fit_linear_probe",
           "knn_scores", "select_probe_c", "PROBE_C_GRID", "linear_probe", "knn_predict", "probe_labels",
           "check_features",
           "check_probe_labels"]
