"""Zero-shot classification with an image-text (CLIP) checkpoint, scored against chance.

Each class is described by prompts (:func:`medfm.text.prompts.class_prompts`); its
embedding is the L2-normalised mean of its prompts' normalised text embeddings (CLIP prompt
ensembling, Radford et al. 2021, Sec. 3.1.4). An image's class scores are the softmax of
``logit_scale * cos(image, class)``. No label of the evaluated set is used before scoring.
The AUC ranks those logits (:func:`zeroshot_outputs`; saved in ``predictions.npz``), as ``medfm eval --data``
ranks a classifier's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from medfm.arg_checks import check_number
from medfm.training.loop import get_batch


def load_image_text_model(model_or_ckpt: Union[str, Path, nn.Module]) -> nn.Module:
    """A CLIP-style module (``encode_image``, ``encode_text``, ``scale``) from a module or checkpoint.

    Raises:
        CheckpointError: unreadable checkpoint; ValueError: not an image-text model.
    """
    model = model_or_ckpt
    if isinstance(model_or_ckpt, (str, Path)):
        from medfm.hub import from_pretrained

        model = from_pretrained(model_or_ckpt)
    if not all(callable(getattr(model, a, None)) for a in ("encode_image", "encode_text", "scale")):
        name = getattr(model, "medfm_spec", {}).get("name", type(model).__name__)
        raise ValueError("zero-shot classification needs an image-text checkpoint (e.g. objective 'clip'), got "
                         f"{name!r}")
    return model


def _check_prompts(prompts: Sequence[Sequence[str]]) -> list:
    if (isinstance(prompts, str) or not prompts or any(isinstance(p, str) or not p for p in prompts)
            or not all(isinstance(t, str) and t.strip() for p in prompts for t in p)):
        raise ValueError("prompts must be a list with one non-empty list of strings per class (each string "
                         f"non-empty), got {prompts!r}"[:300])
    if len(prompts) < 2:
        raise ValueError(f"zero-shot classification needs at least 2 classes, got {len(prompts)}")
    return [list(p) for p in prompts]


@torch.no_grad()
def class_embeddings(model: nn.Module, prompts: Sequence[Sequence[str]]) -> torch.Tensor:
    """``(K, E)`` L2-normalised class embeddings: normalised mean of each class's prompt embeddings.

    Each prompt embedding is L2-normalised before the mean (CLIP prompt ensembling), whether or not
    ``model.encode_text`` normalises its output itself.
    """
    prompts = _check_prompts(prompts)
    out = [torch.nn.functional.normalize(model.encode_text(p).float(), dim=-1).mean(dim=0) for p in prompts]
    return torch.nn.functional.normalize(torch.stack(out), dim=-1)


def _to_encoder_channels(images: torch.Tensor, in_chans: int) -> torch.Tensor:
    if images.shape[1] == in_chans:
        return images
    if images.shape[1] == 3 and in_chans == 1:  # ITU-R 601 luma, as the pretraining corpus
        w = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images * w).sum(dim=1, keepdim=True)
    if images.shape[1] == 1 and in_chans == 3:
        return images.expand(-1, 3, -1, -1)
    raise ValueError(f"encoder expects {in_chans} channel(s), images have {images.shape[1]}")


def zeroshot_classify(model_or_ckpt: Union[str, Path, nn.Module], dataset: Any, prompts: Sequence[Sequence[str]],
                      batch_size: int = 256) -> np.ndarray:
    """Zero-shot class scores ``(N, K)`` float32 (softmax over classes) for every sample of ``dataset``.

    Image and class embeddings are L2-normalised here, so the logits are ``logit_scale`` times a
    cosine similarity even for a model whose ``encode_image``/``encode_text`` do not normalise.
    For an AUC keep the logits too (:func:`zeroshot_outputs`, same pass and scores): a softmax over
    margins above ~104 saturates at exactly 1.0 / 0.0 in float32 and ties where the logits do not.

    Args:
        model_or_ckpt: a CLIP module or checkpoint directory / ``hf-hub:`` id.
        dataset: map-style dataset of ``{"image": (C, H, W) float in [0, 1]}`` (``get_batch`` used
            when present); RGB images are converted to luma for a 1-channel encoder.
        prompts: ``K`` lists of texts, one list per class in label order.
        batch_size: images per forward pass (eval mode, fp32, dataset order).

    Raises:
        ValueError: not an image-text model, fewer than 2 classes, malformed prompts (a prompt that is
            not a non-empty string included), ``batch_size`` not an integer >= 1, an empty ``dataset``
            (torch's "expected a non-empty list of Tensors" before).
    """
    return zeroshot_outputs(model_or_ckpt, dataset, prompts, batch_size)[0]


@torch.no_grad()
def zeroshot_outputs(model_or_ckpt: Union[str, Path, nn.Module], dataset: Any, prompts: Sequence[Sequence[str]],
                     batch_size: int = 256) -> Tuple[np.ndarray, np.ndarray]:
    """``(scores, logits)``, both ``(N, K)`` float32: :func:`zeroshot_classify`'s scores (bit-identical) and the
    logits ``logit_scale * cos(image, class)`` they are the softmax of, in one pass (as
    :func:`medfm.evaluation.predict.predict_outputs` for a classifier; the AUC ranks the logits).

    Raises:
        ValueError: as :func:`zeroshot_classify`.
    """
    batch_size = check_number("batch_size", batch_size, ge=1, integer=True)
    if len(dataset) == 0:
        raise ValueError("the dataset holds no images: nothing to classify")
    model = load_image_text_model(model_or_ckpt)
    was_training = model.training
    model.eval()
    try:  # a bad batch must not leave a caller's training model in eval mode
        classes = class_embeddings(model, prompts)
        device = next(model.parameters()).device
        in_chans = model.encoder.in_chans
        scale = float(model.scale())
        scores, logits = [], []
        n = len(dataset)
        for start in range(0, n, batch_size):
            images = get_batch(dataset, torch.arange(start, min(n, start + batch_size)))["image"].to(device)
            emb = torch.nn.functional.normalize(model.encode_image(_to_encoder_channels(images, in_chans)).float(),
                                                dim=-1)
            z = scale * emb @ classes.to(emb).t()
            scores.append(torch.softmax(z, dim=-1).cpu())
            logits.append(z.cpu())
    finally:
        model.train(was_training)
    return torch.cat(scores).numpy().astype(np.float32), torch.cat(logits).numpy().astype(np.float32)


def chance_levels(labels: np.ndarray, num_classes: int) -> Dict[str, float]:
    """Chance baselines: uniform guessing ACC ``1/K``, majority-class ACC, AUC 0.5, balanced ACC ``1/K``.

    Args:
        labels: ``(N,)`` or ``(N, 1)`` integer class indices in ``[0, num_classes)``, N >= 1.
        num_classes: K >= 2.

    Raises:
        ValueError: ``num_classes`` not an integer >= 2, no label, or labels that are not integer class
            indices below ``num_classes`` (a label 3 with K = 2 used to count as a class of its own,
            0.5 as class 0).
    """
    from medfm.evaluation.protocols import check_probe_labels

    num_classes = check_number("num_classes", num_classes, ge=2, integer=True)
    flat = np.asarray(labels)
    y = check_probe_labels(flat, len(flat) if flat.ndim else 0, "multi-class", num_classes, what="labels")  # (N, 1) too
    if not len(y):
        raise ValueError("chance_levels needs at least one label, got none")
    counts = np.bincount(y, minlength=num_classes)
    return {"acc_uniform": 1.0 / num_classes, "acc_majority": float(counts.max() / counts.sum()),
            "auc": 0.5, "balanced_acc": 1.0 / num_classes}


def zeroshot_eval(checkpoint: str, dataset_flag: str, split: str = "test", data_root: Optional[str] = None,
                  output: Optional[Path] = None, prompts: Optional[Sequence[Sequence[str]]] = None,
                  batch_size: int = 256, size: Optional[int] = None) -> Dict[str, Any]:
    """``--protocol zeroshot``: score a CLIP checkpoint on a MedMNIST 2D split without training.

    Writes ``results.json``, ``report.md``, figures and ``predictions.npz`` into ``output``
    (default ``<checkpoint>/zeroshot-<flag>-<split>``), whole: an earlier zero-shot evaluation there
    is replaced, any other non-empty folder refused before any work
    (:func:`medfm.evaluation.evaluate.earlier_data_report`). ``results["meta"]["chance"]`` holds
    the chance levels and ``results["meta"]["prompts"]`` the prompts used. ``size``: the MedMNIST
    released size to read (default: the image encoder's ``img_size``; ``--size`` used to be ignored).

    Raises:
        CheckpointError, ValueError (not a CLIP checkpoint, multi-label task), medfm data errors
            (:class:`~medfm.data.errors.EmptySplitError`: a split with no images);
        NotADirectoryError: ``output`` or a folder above it is a file; FileExistsError: ``output`` holds a
            checkpoint or other files (both :func:`medfm.evaluation.evaluate.earlier_data_report`, before the
            checkpoint is loaded).
        ValueError: ``batch_size`` not an integer >= 1, malformed ``prompts``, a 3D or multi-label
            ``dataset_flag``, a prompt count other than its class count; UnknownDatasetError: an unknown flag;
            UnknownSplitError: a split MedMNIST does not have (:func:`medfm.data.medmnist.check_medmnist_split`; it
            was found once the model was loaded); UnsupportedSizeError: a ``size`` the flag is not released at. All
            checked from the flag's metadata before the checkpoint is resolved (a hub download) and the data loaded
            (the flag's checks and the default prompts' count came after both). The default ``size``, the encoder's,
            is checked once the checkpoint is resolved, from its ``config.json``
            (:func:`medfm.evaluation.evaluate.default_checkpoint_size`), before the
            model is loaded and anything written (it was checked only once the model was loaded).
    """
    from medfm.data import MedMNISTDataset
    from medfm.data.medmnist import MULTI_LABEL_TASK
    from medfm.evaluation.evaluate import (check_scoring_request, check_split_has_images, default_checkpoint_size,
                                           earlier_data_report, write_scored_split)
    from medfm.evaluation.report import checkpoint_hash
    from medfm.hub import resolve_checkpoint
    from medfm.text.prompts import class_names, class_prompts

    # everything the flag decides, before the checkpoint (a hub download) and the data are loaded
    batch_size, info = check_scoring_request(dataset_flag, split, size, batch_size)  # batch_size, flag, split, size
    if info["is_3d"] or info["task"] == MULTI_LABEL_TASK:
        raise ValueError(f"zero-shot evaluation supports single-label 2D sets; {dataset_flag} is "
                         f"{'3D' if info['is_3d'] else 'multi-label'}")
    prompts = class_prompts(dataset_flag) if prompts is None else _check_prompts(prompts)
    if len(prompts) != info["num_classes"]:
        raise ValueError(f"{len(prompts)} prompt lists given but {dataset_flag} has {info['num_classes']} classes")
    ckpt_dir = resolve_checkpoint(checkpoint)
    output = Path(output) if output else ckpt_dir / f"zeroshot-{dataset_flag}-{split}"
    earlier_data_report(output, ckpt_dir, protocol="zeroshot")
    size = default_checkpoint_size(ckpt_dir, dataset_flag, "clip") if size is None else size  # before loading
    model = load_image_text_model(ckpt_dir)
    ds = MedMNISTDataset(dataset_flag, split=split, size=size or model.encoder.img_size, data_root=data_root)
    check_split_has_images(ds, dataset_flag, split)
    scores, logits = zeroshot_outputs(model, ds, prompts, batch_size=batch_size)
    meta = {"protocol": "zeroshot", "checkpoint": str(ckpt_dir), "checkpoint_sha256": checkpoint_hash(ckpt_dir),
            "dataset": dataset_flag, "split": split, "size": ds.size, "data_md5": ds.md5, "n_samples": len(ds),
            "text_encoder": model.text_spec, "class_names": class_names(dataset_flag), "prompts": prompts,
            "logit_scale": float(model.scale().detach()), "chance": chance_levels(ds.labels, ds.num_classes)}
    return write_scored_split(output, ds, scores, meta, logits=logits)


__all__ = ["zeroshot_classify", "zeroshot_outputs", "zeroshot_eval", "class_embeddings", "chance_levels",
           "load_image_text_model"]
