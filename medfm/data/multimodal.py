"""Batches of multimodal samples in which any modality may be missing, per sample.

A *sample* is a dict; a modality key that is absent means the modality is missing
(DESIGN.md: never a zero tensor invented by the loader). A *batch* stacks samples:

* ``batch[m]``: ``(B, *shape)`` float32 for every modality ``m`` that at least one sample
  has; rows of samples lacking ``m`` are filled with **NaN** (not zeros), so a model that
  reads them without looking at the presence mask fails loudly instead of learning from
  invented values;
* ``batch["present"][m]``: ``(B,)`` bool, True where sample ``b`` has modality ``m``;
* other keys (``"label"``, ``"mask"``, ``"patient"``) stacked (tensors) or listed.

Fusion modules (:mod:`medfm.adapters.fusion`) read presence with :func:`presence` and
compute on present rows only. :func:`drop_modalities` and :func:`keep_modalities` make the
test-time missingness patterns of the evaluation protocol (MCAR, MNAR, fixed subsets).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch

from medfm.arg_checks import check_mask_tensor
from medfm.registry import close_match_hint, close_matches

MISSING_FILL = float("nan")
PRESENT_KEY = "present"


def _dtype_of(value: Any) -> np.dtype:
    """numpy dtype of an array, tensor or nested list (a tensor's own dtype: ``torch.uint8`` ->
    ``uint8``; every floating tensor, bfloat16 included, -> ``float32``)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            return np.dtype("float32")
        return torch.empty(0, dtype=value.dtype).numpy().dtype
    return np.asarray(value).dtype


#: the similarity ratio (:func:`medfm.registry.close_matches`) at which a name counts as a mistyped modality name
MODALITY_CUTOFF = 0.6
#: what a presence (or drop) mask must be (:func:`check_presence_mask`'s message)
MASK_RULE = "a (B,) bool tensor (or 0/1 integers)"


def close_modality(key: str, modalities: Sequence[str]) -> Optional[str]:
    """The modality name that ``key`` looks like a mistyping of, or None.

    The one near-miss rule of the missing-modality code (:func:`collate_modalities`, the
    fusers' unknown-key check, :meth:`medfm.adapters.fusion.base.FusionModel.presence`, and the
    "did you mean" of :func:`modality_hint`): :func:`medfm.registry.close_matches` with similarity ratio >=
    :data:`MODALITY_CUTOFF` (0.6), which ignores case, e.g. ``"flari"`` -> ``"flair"``, ``"FLAIR"`` -> ``"flair"``,
    ``"clinicl"`` -> ``"clinical"``; ``"t1"`` is not close to ``"t2"`` (ratio 0.5).
    """
    close = close_matches(key, modalities, cutoff=MODALITY_CUTOFF)
    return close[0] if close else None


def modality_hint(key: str, modalities: Sequence[str]) -> str:
    """``"; did you mean 'flair'?"`` when ``key`` is a near miss of a modality (:func:`close_modality`'s rule), else
    ``""``: the hint of an unknown-modality error (:func:`medfm.registry.close_match_hint`'s wording)."""
    return close_match_hint(key, modalities, cutoff=MODALITY_CUTOFF, fallback=None)


def check_presence_mask(modality: str, mask: Any, n: Optional[int] = None, *, ndim: Optional[int] = None,
                        kind: str = "presence") -> torch.Tensor:
    """The one 0/1 rule of a modality's presence (or drop) mask, wherever it is read (:func:`presence`,
    :func:`drop_modalities`, the fusers' batch check, the evaluation protocol's
    :func:`medfm.evaluation.fusion_args.check_presence`): :func:`medfm.arg_checks.check_mask_tensor` with one wording.

    Args:
        modality: the modality the mask is of (named in the message).
        mask: the mask given: a bool tensor, or integers 0/1 (made bool).
        n: the batch size it must have one value for (None: not checked).
        ndim: the number of dimensions it must have (None: any, e.g. a ``(B, 1)`` mask read as ``(B,)``).
        kind: ``"presence"`` or ``"drop"``, for the message.

    Returns:
        the mask as a bool tensor (the same tensor when it is bool already), its shape and device as given.

    Raises:
        ValueError: one line, e.g. ``the presence mask of 'pre' must be a (B,) bool tensor (or 0/1 integers),
            got a torch.float32 tensor of shape (4,) holding [0.5]`` (a float 0.5 or an integer 2 was taken as
            present), ``... got integer values [2] (an integer mask holds only 0 and 1)``, ``... with one value
            per sample (4), got shape (1,)`` (a ``(1,)`` mask was broadcast over the whole batch).
    """
    name = f"the {kind} mask of {modality!r}"
    checked = check_mask_tensor(name, mask, what=MASK_RULE, ndim=ndim)
    if n is not None and checked.numel() != n:
        raise ValueError(f"{name} must be {MASK_RULE} with one value per sample ({n}), "
                         f"got shape {tuple(checked.shape)}")
    return checked


def collate_modalities(samples: Sequence[Mapping[str, Any]], modalities: Sequence[str]) -> Dict[str, Any]:
    """Stack samples whose modality keys may be absent into one batch (see module docstring).

    Args:
        samples: dict samples; modality values are tensors/arrays of one shape per modality.
        modalities: the modality names (other keys are stacked or listed as they are).

    Returns:
        The batch dict with NaN rows for absent modalities and ``"present"`` masks for
        every name in ``modalities`` (all False, and no value key, when no sample has it).

    Raises:
        ValueError: no samples; a name in ``modalities`` that no sample carries while the samples
            carry a key close to it (:func:`close_modality`; ``["flari"]`` for samples with
            ``"flair"``, which would be all-absent while ``"flair"`` is stacked as an other key);
            a modality with different shapes across samples; an image modality (2 or more
            dimensions) that is not float (uint8 images must be scaled to [0, 1]).
    """
    if not samples:
        raise ValueError("collate_modalities needs at least one sample")
    b = len(samples)
    carried = {k for s in samples for k in s}
    nowhere = [m for m in modalities if m not in carried]  # legitimate (every sample lacks it) unless a typo
    extra = sorted(str(k) for k in carried - set(modalities)) if nowhere else []
    for k in extra:
        m = close_modality(k, nowhere)
        if m is not None:
            raise ValueError(f"modality {m!r} is in no sample, but the samples carry {k!r}: a mistyped name? "
                             f"Use one spelling in the modality list ({list(modalities)}) and the samples")
    batch: Dict[str, Any] = {PRESENT_KEY: {}}
    for m in modalities:
        for s in samples:  # images stored as uint8 would become floats in [0, 255] without a word
            v = s.get(m)
            if v is not None and np.ndim(v) >= 2 and not np.issubdtype(_dtype_of(v), np.floating):
                raise ValueError(f"modality {m!r} holds {_dtype_of(v)} images; give float images in [0, 1] "
                                 "(e.g. uint8 / 255) so they are not read as values up to 255")
        rows = [torch.as_tensor(s[m], dtype=torch.float32) if m in s else None for s in samples]
        have = [r for r in rows if r is not None]
        batch[PRESENT_KEY][m] = torch.tensor([r is not None for r in rows], dtype=torch.bool)
        if not have:
            continue
        shape = have[0].shape
        if any(r.shape != shape for r in have):
            raise ValueError(f"modality {m!r} has different shapes across samples: "
                             f"{sorted({tuple(r.shape) for r in have})}")
        out = torch.full((b, *shape), MISSING_FILL, dtype=torch.float32)
        for i, r in enumerate(rows):
            if r is not None:
                out[i] = r
        batch[m] = out
    others = carried - set(modalities)
    for k in sorted(others):
        vals = [s.get(k) for s in samples]
        if all(isinstance(v, (torch.Tensor, int, float, bool)) or hasattr(v, "__array__") for v in vals):
            batch[k] = torch.stack([torch.as_tensor(v) for v in vals])
        else:
            batch[k] = vals
    return batch


def batch_size(batch: Mapping[str, Any]) -> int:
    """Number of samples in a batch, from its presence masks or any tensor value.

    Raises:
        ValueError: the batch holds no tensor to read the size from.
    """
    for p in batch.get(PRESENT_KEY, {}).values():
        return int(p.shape[0])
    for v in batch.values():
        if isinstance(v, torch.Tensor):
            return int(v.shape[0])
    raise ValueError("cannot tell the batch size: the batch holds no tensor")


def presence(batch: Mapping[str, Any], modality: str) -> torch.Tensor:
    """``(B,)`` bool: which samples have ``modality``.

    A key absent from the batch means absent for all samples; a key without a presence
    mask means present for all samples. A mask is taken by the one rule of :func:`check_presence_mask`
    (the fusers' too): bool, or integers 0/1 (made bool).

    Raises:
        ValueError: a presence mask of ``modality`` that is not a bool or 0/1 integer tensor, naming the
            modality and the values (a float ``0.5`` or an integer ``2`` was taken as present):
            ``the presence mask of 'pre' must be a (B,) bool tensor (or 0/1 integers), got a torch.float32
            tensor of shape (4,) holding [0.5]``; or one whose length is not the batch size (torch's reshape
            error before): :func:`check_presence_mask`.
    """
    n = batch_size(batch)
    masks = batch.get(PRESENT_KEY, {})
    if modality not in batch:
        return torch.zeros(n, dtype=torch.bool)
    if modality in masks:
        return check_presence_mask(modality, masks[modality], n).reshape(n).cpu()
    return torch.ones(n, dtype=torch.bool)


def drop_modalities(batch: Mapping[str, Any], drop: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """A copy of ``batch`` in which modality ``m`` is made absent where ``drop[m]`` is True.

    Dropped rows are set to NaN and marked absent; a modality absent in every sample loses
    its value key. ``batch`` itself is not changed.

    Args:
        batch: a collated batch.
        drop: ``{modality: (B,) bool}`` (or 0/1 integers), taken by :func:`presence`'s rule.

    Raises:
        ValueError: a drop mask that is not a bool or 0/1 integer tensor, naming the modality and the values
            (a float ``0.5`` or an integer ``2`` was taken as a drop): ``the drop mask of 'pre' must be a (B,)
            bool tensor (or 0/1 integers), got a torch.float32 tensor of shape (4,) holding [0.5]``, or one
            whose length is not the batch's (a ``(1,)`` mask was broadcast over every sample); what
            :func:`presence` raises.
    """
    out = dict(batch)
    n = batch_size(batch)
    masks = {m: presence(batch, m) for m in batch.get(PRESENT_KEY, {})}
    for m, d in drop.items():
        if m not in batch:
            continue
        d = check_presence_mask(m, d, n, kind="drop").reshape(n).cpu()
        keep = (masks[m] if m in masks else presence(batch, m)) & ~d  # each mask checked and read once
        masks[m] = keep
        if not keep.any():
            del out[m]
            continue
        value = batch[m].clone()
        value[~keep.to(value.device)] = MISSING_FILL
        out[m] = value
    out[PRESENT_KEY] = masks
    return out


def keep_modalities(batch: Mapping[str, Any], keep: Iterable[str], modalities: Sequence[str]) -> Dict[str, Any]:
    """A copy of ``batch`` with only the modalities in ``keep`` (others removed for all samples)."""
    keep = set(keep)
    n = batch_size(batch)
    return drop_modalities(batch, {m: torch.full((n,), m not in keep, dtype=torch.bool) for m in modalities})


__all__ = ["collate_modalities", "close_modality", "modality_hint", "check_presence_mask", "presence",
           "drop_modalities", "keep_modalities", "batch_size", "MISSING_FILL", "PRESENT_KEY", "MODALITY_CUTOFF",
           "MASK_RULE"]
