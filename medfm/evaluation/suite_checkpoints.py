"""Which checkpoint a dataset of an evaluation suite is scored with (:func:`medfm.evaluation.suites.run_suite`).

A dataset's own ``checkpoint`` key wins; otherwise the checkpoints given on the command line are
tried in order. For ``as-is`` the first whose task, classes and label names equal the dataset's is
used (a checkpoint for another dataset is never scored on this one); for ``linear``/``knn``/``finetune``
the first whose encoder can embed the data (a 3D encoder cannot embed 2D images). Each checkpoint is
loaded once per run (:class:`CheckpointCache`).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

from medfm.evaluation.suite_spec import DatasetSpec


class CheckpointCache:
    """Checkpoints loaded once each per suite run: ``get(path) -> (model, core, sha256)``.

    ``model`` as :func:`medfm.hub.from_pretrained` returns it, ``core`` its classifier
    (:func:`medfm.evaluation.predict.classifier_core`), ``sha256`` of the weights (None if absent).
    """

    def __init__(self) -> None:
        self._cache: Dict[str, Tuple[Any, Any, Optional[str]]] = {}

    def get(self, ckpt: str) -> Tuple[Any, Any, Optional[str]]:
        """``(model, core, sha256)`` of ``ckpt`` (a folder or hub id), loaded on first use.

        Raises:
            CheckpointError: as :func:`medfm.hub.from_pretrained` (missing, corrupt or mismatched checkpoint).
        """
        if ckpt not in self._cache:
            from medfm.evaluation.predict import classifier_core
            from medfm.evaluation.report import checkpoint_hash
            from medfm.hub import from_pretrained, resolve_checkpoint

            path = resolve_checkpoint(ckpt)
            model = from_pretrained(path)
            try:
                sha = checkpoint_hash(path)
            except FileNotFoundError:
                sha = None
            self._cache[ckpt] = (model, classifier_core(model), sha)
        return self._cache[ckpt]


def _class_mismatch(core: Any, ds_task: str, ds_names: Sequence[str]) -> Optional[str]:
    """Why a checkpoint cannot be scored as-is on data of ``ds_task`` / ``ds_names`` (None: it can)."""
    if getattr(core, "medfm_spec", {}).get("name") != "classification":
        return "not a classification checkpoint"
    if core.task != ds_task or list(core.label_names) != list(ds_names):
        return f"predicts {core.task} {list(core.label_names)}, data has {ds_task} {list(ds_names)}"
    return None


def _encoder_misfit(core: Any, is_3d: bool, protocol: str) -> Optional[str]:
    """Why a checkpoint's encoder cannot embed the data for ``protocol`` (None: it can)."""
    encoder = getattr(core, "encoder", None)
    if encoder is None:
        return "holds no encoder"
    enc_3d = getattr(encoder, "spatial_dims", 2) == 3
    if enc_3d and not is_3d:
        return "its encoder is 3D, the data are 2D images"
    if enc_3d and protocol == "finetune":
        return "its encoder is 3D; the finetune protocol fine-tunes 2D encoders"
    return None


def pick_checkpoint(spec: DatasetSpec, checkpoints: Sequence[str], models: CheckpointCache, protocol: str,
                     task: str, names: Sequence[str], is_3d: bool = False) -> Tuple[Optional[str], str]:
    """The checkpoint ``spec`` is scored with: ``(checkpoint, "")`` or ``(None, reason)`` (the dataset is skipped).

    ``as-is``: the first candidate whose classes are the data's; other protocols: the first whose
    encoder can embed the data (a 3D encoder cannot embed 2D images; the first checkpoint used to be
    taken whatever it was, so a 3D checkpoint given before a 2D one skipped every 2D set).
    """
    candidates = [spec.checkpoint] if spec.checkpoint else list(checkpoints)
    if not candidates:
        return None, "no checkpoint given (pass one on the command line or set datasets[].checkpoint)"
    as_is = protocol == "as-is"
    why = []
    for c in candidates:
        core = models.get(c)[1]
        reason = _class_mismatch(core, task, names) if as_is else _encoder_misfit(core, is_3d, protocol)
        if reason is None:
            return c, ""
        why.append(f"{c}: {reason}")
    what = "predicts this dataset's classes" if as_is else "fits this dataset"
    return None, f"no checkpoint {what} (" + "; ".join(why) + ")"


__all__ = ["CheckpointCache", "pick_checkpoint"]
