"""Argument checks of the missing-modality evaluation protocols, run before any model does.

:func:`check_protocol_args` checks what every protocol takes (the test batch keys it needs: ``label`` / ``patient``
for classification, ``mask`` / ``patient`` for segmentation; the modalities to tabulate, ``n_boot``,
``batch_size_``): the classification protocol (:func:`medfm.evaluation.fusion.run_fusion_protocol`) and the
segmentation one (:func:`medfm.evaluation.fusion_seg.run_seg_fusion_protocol`). :func:`check_missingness_args`
checks the MCAR / MNAR settings, which only the classification protocol has (the segmentation protocol passed dummy
ones to have the rest checked). Modality names follow the one near-miss rule of :mod:`medfm.data.multimodal`
(:func:`~medfm.data.multimodal.modality_hint`) and presence masks its one 0/1 rule
(:func:`~medfm.data.multimodal.check_presence_mask`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch

from medfm.arg_checks import check_list, check_number
from medfm.data.multimodal import PRESENT_KEY, check_presence_mask, modality_hint


def check_presence(present: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Presence masks ``{modality: (N,)}`` (at least one, one N) as bool masks, checked by the one rule of a
    presence mask (:func:`medfm.data.multimodal.check_presence_mask`, the fusion models' too): bool, or integers 0/1
    (made bool).

    Returns:
        ``{modality: (N,) bool}`` in the order given (a bool mask is the same tensor).

    Raises:
        ValueError: no mask, a mask that is not a 1-D bool or 0/1 integer tensor (``the presence mask of 'a' must be
            a (B,) bool tensor (or 0/1 integers), got ...``; a float mask failed in torch with '"bitwise_and_cpu"
            not implemented', a 0/1 integer mask the models take was refused), or masks of different lengths.
    """
    if not isinstance(present, Mapping) or not present:
        raise ValueError(f"present must map each modality to a (N,) bool mask, got {present!r}"[:200])
    masks = {m: check_presence_mask(m, p, ndim=1) for m, p in present.items()}
    sizes = {p.shape[0] for p in masks.values()}
    if len(sizes) > 1:
        raise ValueError(f"presence masks of different lengths {sorted(sizes)}")
    return masks


def batch_modalities(batch: Mapping[str, Any]) -> List[str]:
    """The modalities a batch in the :mod:`medfm.data.multimodal` layout knows of: those with a presence
    mask (one absent from every sample keeps its mask) and any other tensor key but ``label``/``mask``."""
    return list(dict.fromkeys([*batch.get(PRESENT_KEY, {}),
                               *(k for k, v in batch.items()
                                 if isinstance(v, torch.Tensor) and k not in ("label", "mask"))]))


def check_modality_names(names: Any, batch: Mapping[str, Any], what: str) -> List[str]:
    """``names`` as a list after checking that each is a modality of ``batch`` (:func:`batch_modalities`).

    Raises:
        ValueError: ``names`` not a list or tuple (a string would be read letter by letter:
            :func:`medfm.arg_checks.check_list`) or holding a name the batch does not have, with the close match
            by the one near-miss rule of modality names (:func:`medfm.data.multimodal.modality_hint`; ``"t1"`` is
            not taken for ``"t2"``) and the batch's modalities.
    """
    names = check_list(what, names, what="a list of modality names", sequence=True)
    known = batch_modalities(batch)
    for m in names:
        if m not in known:
            raise ValueError(f"{what}: the test batch holds no modality {m!r}{modality_hint(str(m), known)} "
                             f"(it holds: {', '.join(known)})")
    return names


#: the test batch keys the classification protocol needs, each with what it is needed for
CLASSIFICATION_KEYS = {"label": "labels (N,) for the AUC", "patient": "patient ids for the patient bootstrap"}
#: the test batch keys the segmentation protocol needs (no ``label``: Dice is measured against the masks)
SEGMENTATION_KEYS = {"mask": "the reference masks (N, S, S) Dice is measured against",
                     "patient": "patient ids: Dice is per patient"}


def check_protocol_args(test_batch: Mapping[str, Any], modalities: Sequence[str], n_boot: int,
                        batch_size_: int, needs: Mapping[str, str] = CLASSIFICATION_KEYS) -> Tuple[List[str], int]:
    """Check what every fusion protocol takes, before any model runs.

    Args:
        needs: ``{key: what it is needed for}``, the keys the test batch must hold: :data:`CLASSIFICATION_KEYS`
            (``label``, ``patient``; the default) or :data:`SEGMENTATION_KEYS` (``mask``, ``patient``).

    Returns:
        ``(modalities, n_boot)`` as a list / int.

    Raises:
        ValueError: a test batch without a key of ``needs`` (``the test batch has no 'label' key (labels (N,) for
            the AUC)``); ``modalities`` not a list, empty or naming a modality the test batch does not hold
            (:func:`check_modality_names`); ``n_boot`` not an integer >= 0, ``batch_size_`` not an integer >= 1.
    """
    missing = [k for k in needs if k not in test_batch]
    if missing:
        raise ValueError(f"the test batch has no {' or '.join(map(repr, missing))} key "
                         f"({'; '.join(needs[k] for k in missing)})")
    modalities = check_modality_names(modalities, test_batch, "modalities")
    if not modalities:
        raise ValueError("modalities is empty: name the modalities whose subsets to tabulate")
    check_number("batch_size_", batch_size_, ge=1, integer=True)
    return modalities, check_number("n_boot", n_boot, ge=0, integer=True)


def check_missingness_args(test_batch: Mapping[str, Any], mcar_rates: Sequence[float], mnar_modalities: Sequence[str],
                           p_high: float, p_low: float) -> Tuple[List[float], List[str]]:
    """Check the MCAR / MNAR settings of :func:`medfm.evaluation.fusion.run_fusion_protocol`, before any model runs.

    Returns:
        ``(mcar_rates, mnar_modalities)`` as lists.

    Raises:
        ValueError: ``mnar_modalities`` not a list or naming a modality the test batch does not hold
            (:func:`check_modality_names`), ``mcar_rates`` not a list of numbers in [0, 1), ``p_high`` / ``p_low``
            not numbers in [0, 1].
    """
    mnar_modalities = check_modality_names(mnar_modalities, test_batch, "mnar_modalities")
    rates = [check_number("MCAR rate", r, ge=0, lt=1)
             for r in check_list("mcar_rates", mcar_rates, what="a list of rates in [0, 1)")]
    check_number("MNAR p_high", p_high, ge=0, le=1)
    check_number("MNAR p_low", p_low, ge=0, le=1)
    return rates, mnar_modalities


__all__ = ["CLASSIFICATION_KEYS", "SEGMENTATION_KEYS", "check_presence", "batch_modalities", "check_modality_names",
           "check_protocol_args", "check_missingness_args"]
