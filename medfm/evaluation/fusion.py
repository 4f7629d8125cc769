"""Missing-modality evaluation protocol: every modality subset, MCAR rates, MNAR flipped at test.

For a set of trained fusers / baselines and a test set (batches in the
:mod:`medfm.data.multimodal` layout), :func:`run_fusion_protocol` measures slice-level AUC and
ACC (positive class = 1; the AUC ranks each fuser's logits, :func:`score_row`) under:

* **subsets**: for each of the ``2^M - 1`` non-empty modality subsets ``S``, the samples that
  truly have every modality of ``S`` are shown ``S`` only (all other modalities absent). All
  models on one row see the same samples and inputs; a model without any modality of ``S``
  (a single-modality baseline) gets no entry.
* **natural**: every modality a sample truly has (TCGA-LGG patients with FLAIR-copy
  sequences lack them).
* **MCAR** (missing completely at random; Rubin 1976): each present modality of each sample
  is removed with probability ``rate`` (at least one kept), seeded.
* **MNAR** after MultiModN (Swamy et al., NeurIPS 2023): the image modalities of a sample are
  removed with probability ``p_high`` when its label is 1 and ``p_low`` when it is 0 (this is
  how MNAR models are *trained*, see :mod:`medfm.training.fusion`); at test the dependence is
  **flipped** (``p_high`` for label 0). A model that learned "missing => positive" loses.

Uncertainty: the LGG test split has 7 patients, so every AUC gets a **patient-level**
bootstrap 95% interval (patients resampled with replacement; Field & Welsh 2007 cluster
bootstrap), and the table says how many patients/slices it rests on.

:func:`medfm.evaluation.fusion_report.write_fusion_report` writes ``results.json``, ``report.md`` and
``subsets.png`` atomically (:mod:`medfm.io`); it and the other report names are importable from here too.
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from medfm.arg_checks import check_list, check_number
from medfm.data.multimodal import PRESENT_KEY, batch_size, drop_modalities, presence
# the protocols' argument checks, importable from here as before
from medfm.evaluation.fusion_args import (batch_modalities, check_missingness_args, check_modality_names,
                                            check_presence, check_protocol_args)
# the protocols' report writers, importable from here as before
from medfm.evaluation.fusion_report import (PROTOCOL_REPORT_FILES, format_ci, plot_subset_metric, plot_subsets,
                                            render_markdown, subset_table, write_fusion_report, write_protocol_report)
from medfm.evaluation.metrics import (BOOT_CHUNK_ELEMS, bootstrap_weights, binary_auc, one_vs_rest,
                                     prepare_scores, thresholded_predictions, weighted_auc)

TABULAR = "clinical"


def modality_subsets(modalities: Sequence[str]) -> List[Tuple[str, ...]]:
    """All non-empty subsets of ``modalities`` (15 for 4), smallest first, in the given order."""
    mods = list(modalities)
    return [c for k in range(1, len(mods) + 1) for c in itertools.combinations(mods, k)]


def subset_name(subset: Sequence[str]) -> str:
    """``("pre", "flair")`` -> ``"pre+flair"``."""
    return "+".join(subset)


def slice_batch(batch: Mapping[str, Any], idx: torch.Tensor) -> Dict[str, Any]:
    """Rows ``idx`` of every tensor / list in a batch (presence masks included)."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    out: Dict[str, Any] = {}
    for k, v in batch.items():
        if k == PRESENT_KEY:
            out[k] = {m: p[idx] for m, p in v.items()}
        elif isinstance(v, torch.Tensor):
            out[k] = v[idx]
        elif isinstance(v, list):
            out[k] = [v[int(i)] for i in idx]
        else:
            out[k] = v
    return out


def mcar_drop(present: Mapping[str, torch.Tensor], rate: float, gen: torch.Generator) -> Dict[str, torch.Tensor]:
    """MCAR removal masks ``{m: (N,) bool}``: each present modality removed with probability ``rate``.

    A sample never loses its last modality: if all would go, one (uniformly among its
    present ones) stays.

    Raises:
        ValueError: ``rate`` not a number in [0, 1); masks that are not ``(N,)`` bool (or 0/1 integers)
            of one N (:func:`check_presence`).
    """
    rate = check_number("MCAR rate", rate, ge=0, lt=1)
    present = check_presence(present)
    mods = list(present)
    pres = torch.stack([present[m] for m in mods], 1)
    keep = pres & (torch.rand(pres.shape, generator=gen) >= rate)
    empty = ~keep.any(1) & pres.any(1)
    score = torch.rand(pres.shape, generator=gen).masked_fill(~pres, -1.0)
    pick = torch.nn.functional.one_hot(score.argmax(1), len(mods)).bool()
    keep = torch.where(empty[:, None], pick, keep)
    return {m: pres[:, j] & ~keep[:, j] for j, m in enumerate(mods)}


def mnar_drop(labels: torch.Tensor, present: Mapping[str, torch.Tensor], modalities: Sequence[str],
              p_high: float, p_low: float, flip: bool, gen: torch.Generator) -> Dict[str, torch.Tensor]:
    """MNAR removal masks: modality ``m`` in ``modalities`` removed with probability ``p_high`` for
    label 1 and ``p_low`` for label 0 (``flip``: the other way round).

    Samples that would lose every modality keep one of their removed ones (uniformly);
    modalities outside ``modalities`` are never removed.

    Raises:
        ValueError: a probability that is not a number in [0, 1] (``True`` used to be taken as 1);
            masks that are not ``(N,)`` bool (or 0/1 integers) of one N (:func:`check_presence`), or a
            label count other than N (a torch size error before).
    """
    p_high = check_number("MNAR p_high", p_high, ge=0, le=1)
    p_low = check_number("MNAR p_low", p_low, ge=0, le=1)
    present = check_presence(present)
    n = next(iter(present.values())).shape[0]
    y = torch.as_tensor(labels).reshape(-1).long()
    if len(y) != n:
        raise ValueError(f"mnar_drop got {len(y)} labels for presence masks of {n} samples")
    high = (y == 0) if flip else (y == 1)
    p = torch.where(high, torch.tensor(float(p_high)), torch.tensor(float(p_low)))
    drop = {m: present[m] & (torch.rand(y.shape, generator=gen) < p) if m in modalities
            else torch.zeros_like(present[m])
            for m in present}
    mods = list(present)
    pres = torch.stack([present[m] for m in mods], 1)
    gone = torch.stack([drop[m] for m in mods], 1)
    empty = ~(pres & ~gone).any(1) & pres.any(1)
    if empty.any():
        score = torch.rand(pres.shape, generator=gen).masked_fill(~pres, -1.0)
        pick = torch.nn.functional.one_hot(score.argmax(1), len(mods)).bool()
        gone = torch.where(empty[:, None], gone & ~pick, gone)
    return {m: gone[:, j] for j, m in enumerate(mods)}


@torch.no_grad()
def predict_rows(model: torch.nn.Module, batch: Mapping[str, Any],
                 batch_size_: int = 64) -> Tuple[np.ndarray, np.ndarray]:
    """Class probability rows and the logits they were made from, both ``(N, K)`` float32, of ``model`` on a
    (large) batch, in chunks: ``model.scores`` (softmax) of ``model(part)["logits"]``, and those logits (what
    :func:`score_row` ranks the AUC by). ``(0, 2)`` each for an empty batch.

    The batch may live on the CPU while the model is on a GPU (as after training): each chunk's
    tensors are moved to the model's device.

    Raises:
        ValueError: ``batch_size_`` not an integer >= 1.
    """
    batch_size_ = check_number("batch_size_", batch_size_, ge=1, integer=True)
    model.eval()
    device = next(model.parameters()).device
    n = batch_size(batch)
    probs, logits = [], []
    for start in range(0, n, batch_size_):
        part = slice_batch(batch, torch.arange(start, min(n, start + batch_size_)))
        part = {k: (v.to(device) if isinstance(v, torch.Tensor) else
                    {m: t.to(device) for m, t in v.items()} if k == PRESENT_KEY else v) for k, v in part.items()}
        z = model(part)["logits"]
        probs.append(model.scores(z).float().cpu().numpy())
        logits.append(z.float().cpu().numpy())
    if not probs:
        return np.zeros((0, 2), dtype=np.float32), np.zeros((0, 2), dtype=np.float32)
    return np.concatenate(probs), np.concatenate(logits)


def predict_probs(model: torch.nn.Module, batch: Mapping[str, Any], batch_size_: int = 64) -> np.ndarray:
    """Positive-class probabilities ``(N,)``: column 1 of the probability rows of :func:`predict_rows`.

    For an AUC pass the rows (and logits, :func:`predict_rows`) to :func:`score_row` instead: a confident
    model's float32 probabilities saturate at 1.0 and tie in a ranking of this column alone.

    Raises:
        ValueError: ``batch_size_`` not an integer >= 1.
    """
    return predict_rows(model, batch, batch_size_)[0][:, 1]


def check_patient_ids(groups: Sequence[Any], n: int, what: str, unit: str = "sample") -> List[Any]:
    """``groups`` as a list after checking that it holds one patient id per sample (``n``; ``unit`` names a
    sample, ``"slice"`` for :func:`medfm.evaluation.fusion_seg.patient_dice`): a shorter list left samples out of
    every bootstrap resample (and a longer one counted patients without a sample).

    Returns:
        the ids as a new list (a numpy array's or a generator's items).

    Raises:
        ValueError: not a list of ids by the one list rule (:func:`medfm.arg_checks.check_list`: a string was read
            letter by letter, a set or a mapping of ``n`` ids passed in no order): ``"score_row: patient ids must be
            a list, one per sample, got 'ab' (str)"``; the wrong length: ``"score_row needs one patient id per
            sample: 6 samples but 4 patient ids"``.
    """
    ids = check_list(f"{what}: patient ids", groups, what=f"a list, one per {unit}")
    if len(ids) != n:
        raise ValueError(f"{what} needs one patient id per {unit}: {n} {unit}s but {len(ids)} patient ids")
    return ids


def patient_bootstrap_auc(labels: np.ndarray, scores: np.ndarray, groups: Sequence[str], n_boot: int = 500,
                          seed: int = 0, alpha: float = 0.05) -> Tuple[float, float]:
    """Cluster (patient-level) percentile bootstrap interval of the AUC.

    Patients are resampled with replacement ``n_boot`` times; resamples with one class are
    dropped. Returns ``(nan, nan)`` when none is defined (``n_boot`` 0 included).

    Args:
        labels: ``(N,)`` 0/1 targets; scores: ``(N,)`` ranking scores (probabilities, or keys such as the
            log-odds or :func:`medfm.evaluation.metrics.ranking_scores` keys :func:`score_row` resamples);
            groups: ``N`` patient ids.

    Raises:
        ValueError: the input errors of :func:`medfm.evaluation.metrics.binary_auc` (checked once,
            not per resample); ``groups`` not of length N; ``n_boot`` not an integer >= 0;
            ``alpha`` not a number in (0, 1).
    """
    n_boot = check_number("n_boot", n_boot, ge=0, integer=True)
    alpha = check_number("alpha", alpha, gt=0, lt=1)
    t = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    auc = binary_auc(t, s)
    groups = check_patient_ids(groups, len(t), "the patient bootstrap")
    if np.isnan(auc):  # one class: so is every resample
        return float("nan"), float("nan")
    return _bootstrap_interval(t, s, groups, n_boot, seed, alpha)


def _bootstrap_interval(t: np.ndarray, s: np.ndarray, groups: Sequence[str], n_boot: int, seed: int,
                        alpha: float) -> Tuple[float, float]:
    """The resampling of :func:`patient_bootstrap_auc` on inputs it (or :func:`score_row`) has checked:
    ``t`` (N,) float64 0/1 targets of both classes, ``s`` (N,) float64 scores, N patient ids.

    Resample ``b`` draws U patients (of the U distinct ids, sorted) with replacement: the draw counts of
    :func:`medfm.evaluation.metrics.bootstrap_ci`'s resamples (``bootstrap_weights``) for U items, one
    ``(chunk, U)`` draw per chunk (the same numbers as one ``rng.integers(0, U, U)`` call per resample, in
    order); its AUC is :func:`weighted_auc` of all N samples, each weighted by how often its patient was drawn,
    a chunk of resamples per call (the scores sorted once per chunk, not once per resample). That is the AUC of
    the resample's samples put end to end: both add the same integer counts and half-integer products, exactly,
    so the interval is bit-identical to the per-resample loop's.
    """
    _, patient = np.unique(np.asarray(groups), return_inverse=True)  # (N,) index of each sample's patient
    n_pat = int(patient.max()) + 1
    rng = np.random.default_rng(seed)
    chunk = max(1, BOOT_CHUNK_ELEMS // len(t))
    vals = []
    for start in range(0, n_boot, chunk):
        counts = bootstrap_weights(rng, min(chunk, n_boot - start), n_pat)  # (b, U) draws per patient
        vals.append(weighted_auc(t, s, counts[:, patient]))
    aucs = np.concatenate(vals) if vals else np.zeros(0)
    aucs = aucs[~np.isnan(aucs)]  # resamples with one class
    if not aucs.size:
        return float("nan"), float("nan")
    lo, hi = np.percentile(aucs, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def score_row(labels: np.ndarray, probs: np.ndarray, patients: Sequence[str], n_boot: int, seed: int,
              logits: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """AUC, ACC, patient-bootstrap AUC interval and counts of class probabilities ``probs`` for 0/1
    ``labels`` (N,).

    ``probs``: the probability rows ``(N, 2)`` (:func:`predict_rows`), or the positive-class
    probabilities ``(N,)``; ``logits``: optionally the logits they were made from (shape of ``probs``;
    :func:`predict_rows` gives both, the protocol passes them). AUC ranks as
    :func:`medfm.evaluation.metrics.classification_metrics` does (:func:`~medfm.evaluation.metrics.prepare_scores`
    and ``one_vs_rest``): with ``logits`` by their log-odds (:func:`~medfm.evaluation.metrics.logit_ranking`,
    which float32 rounding does not tie), else rows summing to 1 by
    :func:`~medfm.evaluation.metrics.ranking_scores`, so probabilities saturated at 1.0
    in float32 are told apart by their complements instead of tying (eight such slices scored AUC
    0.5 where their logits ranked them perfectly); the bootstrap interval ranks the same keys.
    ACC predicts positive when the positive-class probability is ``> 0.5``, the rule of
    ``classification_metrics`` and MedMNIST's ``getACC``
    (:func:`medfm.evaluation.metrics.thresholded_predictions`); a probability of exactly 0.5 is negative.
    No sample: AUC, ACC and interval NaN.

    Raises:
        ValueError: the input errors of ``classification_metrics`` for task ``binary-class`` (lengths,
            NaN, probabilities outside [0, 1], labels other than 0/1, more than 2 columns; ``logits`` not of the
            shape of ``probs``, NaN/inf, or not the ones ``probs`` were made from: ``logit_ranking``);
            ``patients`` not a list of ids (a string, set, mapping or number; with no sample too) or not of
            length N (:func:`check_patient_ids`); ``n_boot`` not an integer >= 0.
    """
    n_boot = check_number("n_boot", n_boot, ge=0, integer=True)
    n = len(labels)
    if not n and not len(probs):
        check_patient_ids(patients, 0, "score_row")
        return {"auc": float("nan"), "acc": float("nan"), "auc_ci95": [float("nan")] * 2, "n": 0, "n_patients": 0}
    y, s, rows = prepare_scores(labels, probs, "binary-class", full=True)
    patients = check_patient_ids(patients, n, "score_row")
    t, keys = (a[:, 0] for a in one_vs_rest(y, s, "binary-class", rows, logits))  # checked once, by prepare_scores
    auc = float(weighted_auc(t, keys, np.ones((1, n)))[0])
    acc = float(np.mean(thresholded_predictions(s, "binary-class", 0.5) == y))
    lo, hi = (_bootstrap_interval(t, keys, patients, n_boot, seed, 0.05) if n_boot and not np.isnan(auc)
              else (float("nan"),) * 2)
    return {"auc": auc, "acc": acc, "auc_ci95": [lo, hi], "n": int(n), "n_patients": int(len(set(patients)))}


def usable(model: torch.nn.Module, present: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``(B,)`` bool: samples for which ``model`` sees at least one of its modalities in ``present``."""
    mods = [m for m in model.modalities if m in present]
    if not mods:
        return torch.zeros(next(iter(present.values())).shape[0], dtype=torch.bool)
    return torch.stack([present[m] for m in mods]).any(0)


def shown_presence(natural: Mapping[str, torch.Tensor], drop: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``{m: (B,) bool}``: which samples still show each modality of ``natural`` (a batch's own presence,
    :func:`medfm.data.multimodal.presence`) once ``drop`` (``{m: (B,) bool}``, of :func:`mcar_drop`,
    :func:`mnar_drop` or a subset; a modality it leaves out is kept) is applied: the masks
    :func:`medfm.data.multimodal.drop_modalities` gives the batch it builds, taken from the masks at hand (the
    protocol read them back from that batch, every mask checked again, once per model)."""
    return {m: natural[m] & ~drop[m] if m in drop else natural[m] for m in natural}


def _evaluate(model, batch, mask, n_boot, seed, bs):
    idx = mask.nonzero().flatten()
    part = slice_batch(batch, idx)
    probs, logits = predict_rows(model, part, bs)
    return score_row(part["label"].numpy(), probs, part["patient"], n_boot, seed, logits)


def subset_views(test_batch: Mapping[str, Any], modalities: Sequence[str], models: Mapping[str, torch.nn.Module]):
    """Yield ``(subset, rows, shown, label, model)`` for every non-empty modality subset and model.

    ``rows``: ``(B,)`` bool, the samples that truly have every modality of ``subset``;
    ``shown``: ``test_batch`` with the modalities outside ``subset`` marked absent. A model is
    yielded only when it can use what is shown for every one of those rows.
    """
    natural = {m: presence(test_batch, m) for m in modalities}
    for subset in modality_subsets(modalities):
        rows = torch.stack([natural[m] for m in subset]).all(0)
        if not rows.any():
            continue
        drop = {m: torch.ones_like(natural[m]) for m in modalities if m not in subset}
        shown, shown_present = drop_modalities(test_batch, drop), shown_presence(natural, drop)
        for label, model in models.items():
            if usable(model, shown_present)[rows].all():
                yield subset, rows, shown, label, model


def run_fusion_protocol(models: Mapping[str, torch.nn.Module], test_batch: Mapping[str, Any], modalities: Sequence[str],
                        mnar_models: Optional[Mapping[str, torch.nn.Module]] = None,
                        mcar_rates: Sequence[float] = (0.25, 0.5),
                        mnar_modalities: Sequence[str] = ("pre", "flair", "post"), p_high: float = 0.8,
                        p_low: float = 0.1, n_boot: int = 500, seed: int = 0, batch_size_: int = 64) -> Dict[str, Any]:
    """Run the whole protocol (module docstring).

    Args:
        models: ``{label: model}`` trained with the data's natural missingness; fusers,
            late fusion and single-modality baselines (``len(model.modalities) == 1``).
        test_batch: the whole test set as one batch (``dataset.get_batch(all indices)``).
        modalities: the modalities whose subsets are tabulated.
        mnar_models: ``{label: model}`` trained under MNAR missingness (evaluated on the
            natural, MNAR and flipped-MNAR test sets; ``models`` are evaluated there too).
        mcar_rates, mnar_modalities, p_high, p_low: missingness settings.
        n_boot: patient-bootstrap resamples (0: no intervals).
        seed: seeds the missingness draws and the bootstrap.

    Returns:
        ``{"subsets": [...], "natural": [...], "mcar": [...], "mnar": [...], "checks": {...}}``
        rows of :func:`score_row` plus ``model``/``subset``/``rate``/``test`` keys.

    Raises:
        ValueError: checked before any model runs (:func:`medfm.evaluation.fusion_args.check_protocol_args`,
            :func:`~medfm.evaluation.fusion_args.check_missingness_args`): a modality of
            ``modalities`` or ``mnar_modalities`` that ``test_batch`` does not hold (with close
            matches; a typo used to count as "absent for every sample"), a test batch without
            ``label`` / ``patient``, an MCAR rate not in [0, 1), ``p_high``/``p_low`` not in [0, 1],
            ``n_boot`` not an integer >= 0, ``batch_size_`` not an integer >= 1.
    """
    modalities, n_boot = check_protocol_args(test_batch, modalities, n_boot, batch_size_)
    mcar_rates, mnar_modalities = check_missingness_args(test_batch, mcar_rates, mnar_modalities, p_high, p_low)
    natural = {m: presence(test_batch, m) for m in modalities}
    labels = test_batch["label"]
    res: Dict[str, Any] = {"subsets": [], "natural": [], "mcar": [], "mnar": []}
    for subset, rows, shown, label, model in subset_views(test_batch, modalities, models):
        row = _evaluate(model, shown, rows, n_boot, seed, batch_size_)
        res["subsets"].append({"subset": subset_name(subset), "size": len(subset), "model": label, **row})
    for label, model in models.items():
        ok = usable(model, natural)
        res["natural"].append({"model": label, **_evaluate(model, test_batch, ok, n_boot, seed, batch_size_)})
    fused = {k: v for k, v in models.items() if len(v.modalities) > 1}
    for rate in mcar_rates:
        drop = mcar_drop(natural, rate, torch.Generator().manual_seed(seed + int(rate * 1000)))
        batch, shown = drop_modalities(test_batch, drop), shown_presence(natural, drop)
        for label, model in fused.items():  # a model without any of a sample's remaining modalities skips it
            res["mcar"].append({"rate": float(rate), "model": label,
                                **_evaluate(model, batch, usable(model, shown), n_boot, seed, batch_size_)})
    tests = {"natural": (test_batch, natural)}  # each test set with its presence masks
    for flip in (False, True):
        drop = mnar_drop(labels, natural, mnar_modalities, p_high, p_low, flip,
                         torch.Generator().manual_seed(seed + 17 + flip))
        tests["mnar_flipped" if flip else "mnar"] = drop_modalities(test_batch, drop), shown_presence(natural, drop)
    for group, pool in (("natural", fused), ("mnar", dict(mnar_models or {}))):
        for label, model in pool.items():
            for test, (batch, shown) in tests.items():
                ok = usable(model, shown)
                res["mnar"].append({"model": label, "trained": group, "test": test,
                                    **_evaluate(model, batch, ok, n_boot, seed, batch_size_)})
    res["checks"] = fusion_checks(res, modalities)
    res["settings"] = {"mcar_rates": list(map(float, mcar_rates)), "mnar_modalities": list(mnar_modalities),
                       "p_high": p_high, "p_low": p_low, "n_boot": n_boot, "seed": seed}
    return res


def subset_checks(rows: Sequence[Mapping[str, Any]], modalities: Sequence[str], metric: str,
                  tolerance: float = 0.02) -> Dict[str, Any]:
    """Fused against the baselines, from protocol rows ``{"subset", "model", metric}`` (classification
    AUC, segmentation Dice), shared by :func:`fusion_checks` and
    :func:`medfm.evaluation.fusion_seg.seg_fusion_checks`.

    Models are told apart by label: ``single*`` = single-modality baselines, ``late*`` = late fusion
    (the first in sorted order is the reference), every other label = a fuser.

    Returns:
        ``{"all_vs_best_single": {fuser: {"fused", "best_single", "best_single_<metric>", "diff"}},
        "vs_late": {fuser: {"late", "diff": {subset: fused - late}, "min_diff", "tolerance",
        "worse_by_more_than_tolerance": [subsets]}}}``: the fuser with every modality minus the best
        single-modality baseline on those same samples, and per subset the fuser minus late fusion.
        A difference is compared after rounding to 12 decimals, so one of exactly ``-tolerance``
        (e.g. 0.70 - 0.72 = -0.0200000000000000178) is not "worse by more".
    """
    by = {(r["subset"], r["model"]): r[metric] for r in rows}
    full = subset_name(modalities)
    singles = {m: v for (s, m), v in by.items() if s == full and m.startswith("single")}
    lates = sorted({m for _, m in by if m.startswith("late")})
    fusers = sorted({m for _, m in by if not m.startswith(("single", "late"))})
    out: Dict[str, Any] = {"all_vs_best_single": {}, "vs_late": {}}
    for f in fusers:
        if singles and (full, f) in by:
            best = max(singles, key=singles.get)
            out["all_vs_best_single"][f] = {"fused": by[(full, f)], "best_single": best,
                                            f"best_single_{metric}": singles[best],
                                            "diff": by[(full, f)] - singles[best]}
        if lates:
            diffs = {s: v - by[(s, lates[0])] for (s, m), v in by.items() if m == f and (s, lates[0]) in by}
            out["vs_late"][f] = {"late": lates[0], "diff": diffs, "min_diff": min(diffs.values()) if diffs else None,
                                 "tolerance": tolerance,
                                 "worse_by_more_than_tolerance": sorted(s for s, d in diffs.items()
                                                                        if round(d, 12) < -tolerance)}
    return out


def fusion_checks(res: Mapping[str, Any], modalities: Sequence[str], tolerance: float = 0.02) -> Dict[str, Any]:
    """The issue's acceptance figures, from protocol rows (AUC).

    * ``all_vs_best_single`` and ``vs_late``: :func:`subset_checks` on AUC;
    * ``mnar_drop``: per MNAR-trained model, AUC(natural test) - AUC(flipped MNAR test).
    """
    out: Dict[str, Any] = {**subset_checks(res["subsets"], modalities, "auc", tolerance), "mnar_drop": {}}
    mn = {(r["model"], r["trained"], r["test"]): r["auc"] for r in res.get("mnar", [])}
    for (model, trained, test), auc in mn.items():
        if test == "natural" and (model, trained, "mnar_flipped") in mn:
            out["mnar_drop"][f"{model} ({trained}-trained)"] = {"natural": auc,
                                                                "mnar": mn.get((model, trained, "mnar")),
                                                                 "mnar_flipped": mn[(model, trained, "mnar_flipped")],
                                                                 "drop": auc - mn[(model, trained, "mnar_flipped")]}
    return out


__all__ = ["modality_subsets", "subset_name", "mcar_drop", "mnar_drop", "predict_probs", "patient_bootstrap_auc",
           "score_row", "run_fusion_protocol", "fusion_checks", "render_markdown", "plot_subsets",
           "write_fusion_report",
           "slice_batch", "subset_views", "subset_table", "usable", "subset_checks", "predict_rows",
           "batch_modalities", "check_modality_names", "check_presence", "check_protocol_args",
           "write_protocol_report", "check_patient_ids", "PROTOCOL_REPORT_FILES", "format_ci", "plot_subset_metric",
           "shown_presence"]
