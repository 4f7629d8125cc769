"""Checkpoint identifiers and folder checks, without importing torch: a local folder or ``hf-hub:org/name``.

The ``medfm`` command names a missing checkpoint, or a file given for one, before it imports the
library (:func:`medfm.cli.main`), in the same words as :func:`medfm.hub.resolve_checkpoint`,
:func:`medfm.hub.load_config` and :func:`medfm.adapters.lora.load_adapter`, which check it again
for library callers: :func:`checkpoint_path_problem` and :func:`checkpoint_folder_problem` are
the one check they share.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

#: prefix of a Hugging Face hub id (``hf-hub:org/name``), as in timm and open_clip
HUB_PREFIX = "hf-hub:"
#: the ``encoder.pretrained`` / ``--init`` value that means timm's own pretrained weights, not a path
TIMM_WEIGHTS = "timm"
#: the files of a checkpoint folder (Hugging Face layout) and of a LoRA adapter folder (peft's)
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"


def is_hub_id(ident: Union[str, Path]) -> bool:
    """Whether ``ident`` names a hub repository (``hf-hub:org/name``) rather than a local path."""
    return str(ident).startswith(HUB_PREFIX)


def missing_checkpoint_message(ident: Union[str, Path]) -> str:
    """The error for a local checkpoint path that is not a directory.

    Args:
        ident: the path as the user gave it (``~`` is expanded in the message).

    Returns:
        ``"no checkpoint directory at '<path>'"``, plus a hint about the ``hf-hub:`` prefix when
        ``ident`` looks like ``org/name`` and nothing exists there.
    """
    path = Path(ident).expanduser()
    hint = f" (hub ids need the prefix '{HUB_PREFIX}')" if "/" in str(ident) and not path.exists() else ""
    return f"no checkpoint directory at {str(path)!r}{hint}"


def _folder_words(adapter: bool) -> "tuple[str, str, str]":
    """``(what, marker file, weights file)`` of a checkpoint folder, or of a LoRA adapter folder."""
    if adapter:
        return "LoRA adapter", ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME
    return "checkpoint", CONFIG_NAME, WEIGHTS_NAME


def checkpoint_path_problem(ident: Union[str, Path], adapter: bool = False) -> Optional[str]:
    """What is wrong with a local path given as a checkpoint (or LoRA adapter) folder, judged
    from the path alone, or None: it is a folder, or a ``hf-hub:`` id (resolved elsewhere).

    Args:
        ident: the path as the user gave it (``~`` is expanded).
        adapter: the folder must be a LoRA adapter (``medfm merge``): a file is answered with
            the adapter's files.

    Returns:
        ``"'<path>' is a file; a checkpoint is the directory that holds config.json and
        model.safetensors: pass '<its folder>'"`` for a file (a LoRA adapter: ``adapter_config.json``
        and ``adapter_model.safetensors``), :func:`missing_checkpoint_message` for a missing path,
        else None.
    """
    if is_hub_id(ident):
        return None
    path = Path(ident).expanduser()
    if path.is_file():
        what, marker, weights = _folder_words(adapter)
        return (f"{str(path)!r} is a file; a {what} is the directory that holds {marker} and {weights}: "
                f"pass {str(path.parent)!r}")
    if not path.is_dir():
        return missing_checkpoint_message(ident)
    return None


def subfolder_hint(path: Path, marker: str = CONFIG_NAME, what: str = "checkpoint") -> str:
    """``"; it holds a checkpoint in a subfolder: pass '<path>/model'"`` (or ``"checkpoints in
    subfolders: pass ... or ..."``) when folders directly inside ``path`` hold ``marker`` (a training
    run's folder: ``model/``, ``checkpoint/``, ``adapter/``), else ``""``."""
    found = sorted(str(c.parent) for c in path.glob(f"*/{marker}") if c.is_file()) if path.is_dir() else []
    if not found:
        return ""
    return (f"; it holds {f'a {what} in a subfolder' if len(found) == 1 else f'{what}s in subfolders'}: pass "
            + " or ".join(repr(f) for f in found))


def checkpoint_folder_problem(ident: Union[str, Path], adapter: bool = False) -> Optional[str]:
    """What is wrong with a local path given as a checkpoint (or LoRA adapter) folder, or None.

    :func:`checkpoint_path_problem` first (a file, a missing path), then the folder's contents:
    no ``config.json`` (``"'<path>' is not a medfm checkpoint: config.json is missing"``, naming
    the subfolders that hold one, :func:`subfolder_hint`); with ``adapter``, no
    ``adapter_config.json`` (a full checkpoint is named as one). A ``hf-hub:`` id that is no
    local folder gets the ``config.json`` message (pass its resolved folder instead).

    Args:
        ident: the path as the user gave it (shown as given).
        adapter: the folder must be a LoRA adapter written by :func:`medfm.adapters.lora.save_adapter`.
    """
    problem = checkpoint_path_problem(ident, adapter)
    if problem:
        return problem
    path = Path(ident).expanduser()
    has_config = (path / CONFIG_NAME).is_file()
    if adapter and not (path / ADAPTER_CONFIG_NAME).is_file():
        if has_config:
            return (f"{str(ident)!r} is a full medfm checkpoint, not a LoRA adapter (no {ADAPTER_CONFIG_NAME}); "
                    "pass the adapter/ folder of a LoRA fine-tune")
        return (f"{str(ident)!r} is not a LoRA adapter: {ADAPTER_CONFIG_NAME} is missing"
                f"{subfolder_hint(path, ADAPTER_CONFIG_NAME, 'LoRA adapter')}")
    if not has_config:
        return f"{str(ident)!r} is not a medfm checkpoint: {CONFIG_NAME} is missing{subfolder_hint(path)}"
    return None


__all__ = ["HUB_PREFIX", "TIMM_WEIGHTS", "CONFIG_NAME", "WEIGHTS_NAME", "ADAPTER_CONFIG_NAME", "ADAPTER_WEIGHTS_NAME",
           "is_hub_id", "missing_checkpoint_message", "checkpoint_path_problem", "checkpoint_folder_problem",
           "subfolder_hint"]
