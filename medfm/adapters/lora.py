"""LoRA wiring through peft (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022).

* :func:`apply_lora` wraps a medfm adapter module (e.g. ``ImageClassifier``) with peft LoRA
  on its encoder's default ``lora_target_modules`` (or a given regex); the task head and,
  for CNNs, every BatchNorm layer go to peft's ``modules_to_save`` (their running statistics
  change during fine-tuning; without saving them a reloaded adapter would not reproduce).
* :func:`save_adapter` writes an adapter-only checkpoint (peft's ``adapter_config.json`` +
  ``adapter_model.safetensors``) plus medfm's ``config.json`` that records the base checkpoint,
  and ``model_buffers.safetensors`` with the model's buffers that peft does not save (a
  text-conditioned segmenter's prompt embeddings; BatchNorm statistics when ``train_norm`` is off).
* :func:`load_adapter` rebuilds base + adapter; :func:`merge_adapter` folds the adapter into
  the base weights (:func:`merge_lora`) and saves a plain checkpoint.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import torch
from torch import nn

from medfm.arg_checks import shown
from medfm.io import atomic_dir
from medfm.lora_settings import LoraSettings  # torch-free (a recipe's lora section); re-exported here

#: the model's buffers that peft does not save (see :func:`unsaved_buffers`)
BUFFERS_NAME = "model_buffers.safetensors"


def lora_config(model: nn.Module, settings: LoraSettings, head_modules: Sequence[str] = ("task_head",)):
    """The peft ``LoraConfig`` for a medfm module with an ``encoder`` attribute.

    ``head_modules`` are matched by peft as name *suffixes* anywhere in the model, so task
    heads use names no backbone uses (``task_head``, not timm's ``head``).

    Raises:
        ValueError: ``settings`` not a :class:`LoraSettings`; ``model`` has no medfm ``encoder`` attribute or
            already has LoRA layers (a model :func:`apply_lora` wrapped, or its ``base_model.model``); or the
            regex matches no Linear/Conv2d/Conv3d layer of the encoder (with the close layer names, or how
            the pattern must be written when it matches only the last part of a name).
    """
    import re

    if not isinstance(settings, LoraSettings):
        raise ValueError(f"LoRA settings must be a LoraSettings (e.g. LoraSettings(rank=8, alpha=16.0)), got "
                         f"{type(settings).__name__}")
    encoder = getattr(model, "encoder", None) if isinstance(model, nn.Module) else None
    if encoder is None or not hasattr(encoder, "lora_target_modules"):
        raise ValueError(f"LoRA wraps a medfm model with an 'encoder' (e.g. ImageClassifier, SegmentationModel, "
                         f"VQAModel), got {type(model).__name__}; to adapt a bare encoder, wrap it in a task adapter "
                         "first")
    from peft import LoraConfig
    from peft.tuners.tuners_utils import BaseTunerLayer

    if any(isinstance(m, BaseTunerLayer) for m in model.modules()):
        raise ValueError(f"this {type(model).__name__} already has LoRA layers (apply_lora was run on it before); "
                         "train the model apply_lora returned, or merge it first (merge_lora) to add another adapter")

    pattern = settings.target_modules or encoder.lora_target_modules
    full = rf"encoder\.(?:{pattern})"
    # grouped (depthwise) convolutions are skipped: peft cannot merge LoRA into them
    # a per-domain copy (DomainConv's ``conv1.convs.k``) answers to its layer's name, so each
    # modality's copy of a targeted layer gets its own LoRA matrices
    from medfm.adapters.domain_layers import domain_copy_names

    alias = domain_copy_names(model)
    adaptable = [(n, alias.get(n, n)) for n, m in model.named_modules()
                 if isinstance(m, nn.Linear) or (isinstance(m, (nn.Conv2d, nn.Conv3d)) and m.groups == 1)]
    hits = [n for n, name in adaptable if re.fullmatch(full, name)]
    if not hits:
        raise ValueError(f"LoRA target pattern {pattern!r} matches no Linear/Conv2d/Conv3d layer of encoder "
                         f"{encoder.config.get('name')!r}{_target_hint(pattern, adaptable)}")
    to_save: List[str] = list(head_modules)
    if settings.train_norm:
        to_save += [f"encoder.{n}" for n in encoder.norm_module_names()]
    # explicit names: the regex may also match non-adaptable layers (e.g. an AvgPool2d in a
    # timm avg-down shortcut), which peft would reject
    return LoraConfig(r=int(settings.rank), lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=hits, modules_to_save=to_save, bias="none")


def _target_hint(pattern: str, adaptable: Sequence) -> str:
    """The hint after a LoRA target pattern that matched nothing: how to write it when it matches only the
    last parts of layer names (``qkv`` or ``attn\\.qkv`` for ``model.blocks.0.attn.qkv``: ``'.*\\.qkv'``; an
    alternation is grouped, ``'.*\\.(?:qkv|proj)'``, since ``'.*\\.qkv|proj'`` would still not match
    ``model.patch_embed.proj``), else the close last parts (``"; did you mean 'qkv'?"``), else nothing
    (``adaptable``: ``(module name, name matched)`` pairs of the adaptable layers)."""
    import re

    from medfm.registry import close_match_hint

    names = [name[len("encoder."):] for _, name in adaptable if name.startswith("encoder.")]
    leaves = list(dict.fromkeys(n.rsplit(".", 1)[-1] for n in names))
    whole = f".*\\.(?:{pattern})" if "|" in pattern else f".*\\.{pattern}"
    for name in names:
        parts = name.split(".")
        if any(re.fullmatch(pattern, ".".join(parts[-k:])) for k in range(1, len(parts))):
            return f"; the pattern must match the whole layer name inside the encoder, e.g. '{whole}' for {name!r}"
    return close_match_hint(pattern, leaves, n=3, fallback=None)


def _check_peft_model(model: Any, fn: str) -> None:
    """Refuse a ``model`` that is no peft (LoRA) model, before ``fn`` reads peft's attributes."""
    if not (hasattr(model, "peft_config") and callable(getattr(model, "merge_and_unload", None))):
        raise ValueError(f"{fn} takes the LoRA model that apply_lora or load_adapter returns (a peft.PeftModel), "
                         f"got {type(model).__name__} without LoRA; wrap it with apply_lora(model, LoraSettings(...)) "
                         f"first (a plain model is saved with medfm.save_pretrained)")


def apply_lora(model: nn.Module, settings: Optional[LoraSettings] = None, head_modules: Sequence[str] = ("task_head",)):
    """Wrap ``model`` with LoRA; only LoRA matrices, the head and norm layers stay trainable.

    Returns:
        A ``peft.PeftModel`` whose ``base_model.model`` is ``model``.

    Raises:
        ValueError: see :func:`lora_config`.
    """
    settings = settings or LoraSettings()
    config = lora_config(model, settings, head_modules)
    from peft import get_peft_model

    return get_peft_model(model, config)


def save_adapter(peft_model: nn.Module, path: Union[str, Path], base_checkpoint: str,
                 extra_config: Optional[Dict[str, Any]] = None, card: Optional[str] = None) -> Path:
    """Save an adapter-only checkpoint recording ``base_checkpoint`` (atomic directory write).

    Raises:
        ValueError: ``peft_model`` is no LoRA (peft) model.
        CheckpointError: see :func:`write_adapter` (a ``base_checkpoint`` that could not be loaded back, ...;
            ``path`` is then left as it was).
    """
    _check_peft_model(peft_model, "save_adapter")
    path = Path(path)
    with atomic_dir(path) as tmp:
        write_adapter(peft_model, tmp, base_checkpoint, extra_config, card)
    return path


@contextmanager
def _sorted_sets(peft_config: Any) -> Iterator[None]:
    """Within the block, every set-valued field of ``peft_config`` (a peft ``LoraConfig``: ``target_modules``) is
    a sorted list, put back after. peft writes a set field of ``adapter_config.json`` as ``list(value)``, whose
    order follows the process's string hashes: the same run with another ``PYTHONHASHSEED`` wrote the same
    adapter weights under a differently ordered ``target_modules`` (a file that differed byte for byte)."""
    sets = {f.name: getattr(peft_config, f.name) for f in fields(peft_config)
            if isinstance(getattr(peft_config, f.name), (set, frozenset))}
    for name, value in sets.items():
        setattr(peft_config, name, sorted(value, key=str))
    try:
        yield
    finally:
        for name, value in sets.items():
            setattr(peft_config, name, value)


def write_adapter(peft_model: nn.Module, directory: Union[str, Path], base_checkpoint: str,
                  extra_config: Optional[Dict[str, Any]] = None, card: Optional[str] = None) -> None:
    """Write the adapter files into an existing directory (see :func:`save_adapter`).

    ``config.json`` is the base model's config (:func:`medfm.hub.model_config`) plus
    ``base_checkpoint`` (:func:`medfm.hub.checkpoint_reference` of ``base_checkpoint``) and
    ``"adapter": "lora"``, plus the metadata ``extra_config``.

    Raises:
        ValueError: ``peft_model`` is no LoRA (peft) model.
        CheckpointError (a ``ValueError``): ``base_checkpoint`` is no ``hf-hub:`` id nor a local full
            checkpoint folder (missing, None, a file, no ``config.json``, a LoRA adapter:
            :func:`medfm.checkpoint_ids.checkpoint_folder_problem`; such an adapter was written and then
            could not be loaded), the model is not a medfm module, or ``extra_config`` sets a
            key this function writes: the base model's config keys (``kind``, ``name``, ``args``,
            ``encoder``, ...) or ``base_checkpoint``/``adapter`` (give the base as ``base_checkpoint``).
            All such keys are named, and nothing is written.
    """
    from medfm.cards import build_card
    from medfm.checkpoint_ids import checkpoint_folder_problem, is_hub_id
    from medfm.hub import CARD_NAME, CONFIG_NAME, CheckpointError, checkpoint_reference, model_config, with_extra_config

    _check_peft_model(peft_model, "save_adapter")
    if not isinstance(base_checkpoint, (str, os.PathLike)):  # None was recorded as the folder '<cwd>/None'
        raise CheckpointError(f"base_checkpoint must be the folder (or hf-hub: id) of the full checkpoint the LoRA "
                              f"model's encoder started from, got {shown(base_checkpoint)}")
    problem = None if is_hub_id(base_checkpoint) else checkpoint_folder_problem(base_checkpoint, full=True)
    if problem:  # the adapter would be written, then fail to load: load_adapter loads its base first
        raise CheckpointError(f"base_checkpoint: {problem}; an adapter is loaded back from the base it records")
    base = peft_model.base_model.model
    own = {**model_config(base), "base_checkpoint": checkpoint_reference(base_checkpoint), "adapter": "lora"}
    cfg = with_extra_config(own, extra_config)  # before anything is written
    directory = Path(directory)
    peft_model.peft_config["default"].base_model_name_or_path = cfg["base_checkpoint"]
    with _sorted_sets(peft_model.peft_config["default"]):
        peft_model.save_pretrained(str(directory))
    extra = unsaved_buffers(base)
    if extra:
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().cpu() for k, v in extra.items()}, str(directory / BUFFERS_NAME))
    (directory / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
    (directory / CARD_NAME).write_text(card or build_card(cfg))


def unsaved_buffers(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Persistent buffers of a LoRA-wrapped model (``peft_model.base_model.model``) that an
    adapter checkpoint would otherwise lose: every buffer outside peft's LoRA layers and
    ``modules_to_save`` (peft saves those). E.g. a
    :class:`~medfm.adapters.text_seg.TextConditionedSegmenter`'s ``prompt_embeddings`` ``(T, D)``,
    and with ``LoraSettings(train_norm=False)`` the encoder's BatchNorm running statistics:
    the frozen BatchNorm layers still update them in training, and the base checkpoint holds
    only their starting values (a reload without them differed by 0.19 in the logits after
    three steps). The registered encoders have no other buffers.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import ModulesToSaveWrapper

    params = {n for n, _ in model.named_parameters()}
    # peft's own layers: LoRA-wrapped layers (frozen base + saved LoRA matrices) and the
    # modules_to_save wrappers (the trained copy saved, the original left as in the base)
    peft_layers = tuple(f"{n}." for n, m in model.named_modules()
                        if n and isinstance(m, (BaseTunerLayer, ModulesToSaveWrapper)))
    return {k: v for k, v in model.state_dict().items() if k not in params and not k.startswith(peft_layers)}


def load_adapter(path: Union[str, Path], base_checkpoint: Optional[str] = None):
    """Rebuild base model + LoRA adapter from an adapter directory.

    Args:
        path: adapter directory written by :func:`save_adapter`.
        base_checkpoint: override the recorded base (e.g. after moving files).

    Raises:
        CheckpointError: ``path`` is no LoRA adapter folder (missing, a file, a full checkpoint,
        no ``adapter_config.json``: :func:`medfm.checkpoint_ids.checkpoint_folder_problem`, the check
        ``medfm merge`` runs before importing torch), missing base checkpoint, mismatched adapter
        weights, or a missing, corrupt or mismatched ``model_buffers.safetensors`` (when the model
        has such buffers).
    """
    from medfm.checkpoint_ids import checkpoint_folder_problem
    from medfm.hub import CONFIG_NAME, CheckpointError, build_from_config, load_config, load_encoder_weights

    problem = checkpoint_folder_problem(path, adapter=True)
    if problem:  # before peft is imported
        raise CheckpointError(problem)
    from peft import PeftModel

    path = Path(path).expanduser()
    cfg = load_config(path)
    base = base_checkpoint or cfg.get("base_checkpoint")
    model = build_from_config(cfg, where=str(path / CONFIG_NAME))
    if base:
        try:
            load_encoder_weights(model.encoder, base)
        except CheckpointError as err:
            raise CheckpointError(f"adapter {str(path)!r}: its base checkpoint could not be loaded ({err}); "
                                  "restore it at its recorded path, or point at it with base_checkpoint= in Python / "
                                  "--base in medfm merge") from None
    try:
        peft_model = PeftModel.from_pretrained(model, str(path))
    except Exception as err:  # peft raises many types for mismatched adapters
        raise CheckpointError(f"adapter weights in {str(path)!r} do not fit the base model: {err}") from None
    inner = peft_model.base_model.model
    own = unsaved_buffers(inner)
    if own or (path / BUFFERS_NAME).is_file():
        from medfm.hub import check_fits, load_state_dict

        file = path / BUFFERS_NAME
        extra = load_state_dict(path, BUFFERS_NAME) if file.is_file() else {}
        check_fits(own, extra, where=str(file) if file.is_file()
                   else f"{file} (absent: written before medfm saved these buffers)")
        inner.load_state_dict(extra, strict=False)
    peft_model.medfm_checkpoint = str(path)
    return peft_model


def _conv3d_delta_weight(layer: nn.Module, adapter: str) -> torch.Tensor:
    """``scaling * B (*) A`` of a peft LoRA ``Conv3d`` layer: ``(C_out, C_in, kd, kh, kw)``.

    peft's general convolution path (``conv_fn(A^T, B)^T``), which is right for every kernel
    size; the layers medfm targets have ``groups == 1``.
    """
    weight_a = layer.lora_A[adapter].weight
    weight_b = layer.lora_B[adapter].weight
    dtype = weight_a.dtype
    if weight_b.device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):  # as peft: slow half matmuls on CPU
        weight_a, weight_b = weight_a.float(), weight_b.float()
    delta = torch.nn.functional.conv3d(weight_a.transpose(0, 1), weight_b).transpose(0, 1) * layer.scaling[adapter]
    return delta.to(dtype)


def merge_lora(peft_model: nn.Module) -> nn.Module:
    """``peft_model.merge_and_unload()``: the plain model with every LoRA update folded into its base weights.

    peft (0.21.2, the installed version, and earlier) computes the update of a ``Conv3d`` whose kernel starts with
    ``(1, 1)`` (the 1x1x1 shortcut convolutions of :mod:`medfm.encoders.cnn3d`) with its Conv2d-1x1 shortcut,
    which fails with a shape error (huggingface/peft#3768, fixed upstream in #3777); those
    layers get :func:`_conv3d_delta_weight` instead, the computation of the fix.

    Shape: the returned model maps the same inputs to the same outputs as ``peft_model``
    (to float rounding, ~1e-7 relative).

    Raises:
        ValueError: ``peft_model`` is no LoRA (peft) model (a model without LoRA has nothing to merge).
    """
    import functools

    _check_peft_model(peft_model, "merge_lora")

    from peft.tuners.lora.layer import Conv3d as LoraConv3d

    for module in peft_model.modules():
        if isinstance(module, LoraConv3d) and tuple(module.get_base_layer().weight.shape[2:4]) == (1, 1):
            module.get_delta_weight = functools.partial(_conv3d_delta_weight, module)
    return peft_model.merge_and_unload()


def merge_adapter(path: Union[str, Path], out: Union[str, Path], base_checkpoint: Optional[str] = None) -> Path:
    """Fold a LoRA adapter into its base weights and save a plain medfm checkpoint at ``out``
    (:func:`merge_lora`; 2D and 3D encoders).

    Raises:
        CheckpointError: as :func:`load_adapter` (``path`` no LoRA adapter folder, base checkpoint
            missing or mismatched), or ``out`` is a file or a non-empty folder that is no checkpoint.
    """
    from medfm.hub import load_config, model_config, save_pretrained

    merged = merge_lora(load_adapter(path, base_checkpoint))  # checks the adapter folder first
    cfg = load_config(Path(path).expanduser())
    # the adapter's metadata (base_checkpoint, extra_config): not the keys save_pretrained writes anew for the
    # merged model (model_config's, whichever they are), nor "adapter" (save_adapter's: it is no adapter now)
    own = set(model_config(merged)) | {"adapter"}
    keep = {k: v for k, v in cfg.items() if k not in own}
    keep["merged_from"] = str(Path(path).expanduser().resolve())
    return save_pretrained(merged, out, extra_config=keep)
