"""Checkpoint identifiers and folder checks, without importing torch: a local folder or ``hf-hub:org/name``.

The ``medfm`` command names a missing checkpoint, a file given for one, a folder that holds none
(or a LoRA adapter where full weights are loaded) and a hub id where a local folder is needed,
before it imports the library (:func:`medfm.cli.main`), in the same words as
:func:`medfm.hub.resolve_checkpoint`, :func:`medfm.hub.load_config` and
:func:`medfm.adapters.lora.load_adapter`, which check it again for library callers:
:func:`checkpoint_path_problem` and :func:`checkpoint_folder_problem` are the one check they share.
A text model's local folder (the ``hf`` text encoder's ``model_name_or_path``) is judged here too,
:func:`local_text_model_problem`, the rule of :func:`medfm.text.model_files.resolve_text_model`
(whose package imports torch).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from medfm.arg_checks import shown

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


def checkpoint_path_problem(ident: Union[str, Path], adapter: bool = False, full: bool = False) -> Optional[str]:
    """What is wrong with a local path given as a checkpoint (or LoRA adapter) folder, judged
    from the path alone, or None: it is a folder, or a ``hf-hub:`` id (resolved elsewhere).

    Args:
        ident: the path as the user gave it (``~`` is expanded).
        adapter: the folder must be a LoRA adapter (``medfm merge``): a file is answered with
            the adapter's files.
        full: the folder must be a full checkpoint (:func:`checkpoint_folder_problem`): a file's
            folder that is a LoRA adapter is not suggested.

    Returns:
        ``"'<path>' is a file; a checkpoint is the directory that holds config.json and
        model.safetensors"`` for a file (a LoRA adapter: ``adapter_config.json`` and
        ``adapter_model.safetensors``), ending ``": pass '<its folder>'"`` when that folder is one
        (:func:`holds_checkpoint`), else naming the subfolders of that folder that are
        (:func:`subfolder_hint`), if any; :func:`missing_checkpoint_message` for a missing path;
        else None.
    """
    if is_hub_id(ident):
        return None
    path = Path(ident).expanduser()
    if path.is_file():
        what, marker, weights = _folder_words(adapter)
        folder = path.parent
        hint = (f": pass {str(folder)!r}" if holds_checkpoint(folder, adapter, full)
                else subfolder_hint(folder, adapter, full, holder="its folder"))
        return f"{str(path)!r} is a file; a {what} is the directory that holds {marker} and {weights}{hint}"
    if not path.is_dir():
        return missing_checkpoint_message(ident)
    return None


def is_lora_adapter(path: Union[str, Path]) -> bool:
    """Whether the folder ``path`` is a LoRA adapter (``adapter_config.json``, no ``model.safetensors``):
    not a full checkpoint, whose weights an encoder could start from."""
    path = Path(path).expanduser()
    return (path / ADAPTER_CONFIG_NAME).is_file() and not (path / WEIGHTS_NAME).is_file()


def holds_checkpoint(path: Union[str, Path], adapter: bool = False, full: bool = False) -> bool:
    """Whether the folder ``path`` holds what :func:`checkpoint_folder_problem` asks for: ``config.json``
    (with ``adapter``: and ``adapter_config.json``; with ``full``: and it is no LoRA adapter,
    :func:`is_lora_adapter`). Only the marker files are looked at, not their contents."""
    path = Path(path).expanduser()
    if not (path / CONFIG_NAME).is_file():
        return False
    if adapter:
        return (path / ADAPTER_CONFIG_NAME).is_file()
    return not (full and is_lora_adapter(path))


def subfolder_hint(path: Path, adapter: bool = False, full: bool = False, holder: str = "it") -> str:
    """``"; it holds a checkpoint in a subfolder: pass '<path>/model'"`` (or ``"checkpoints in
    subfolders: pass ... or ..."``; a LoRA adapter with ``adapter``) when folders directly inside
    ``path`` hold one (:func:`holds_checkpoint` with ``adapter`` and ``full``: a training run's
    ``model/``, ``checkpoint/``, ``adapter/``), else ``""``. ``holder`` names ``path`` in the text."""
    what = _folder_words(adapter)[0]
    found = sorted(str(c) for c in path.iterdir() if c.is_dir() and holds_checkpoint(c, adapter, full)) \
        if path.is_dir() else []
    if not found:
        return ""
    return (f"; {holder} holds {f'a {what} in a subfolder' if len(found) == 1 else f'{what}s in subfolders'}: pass "
            + " or ".join(repr(f) for f in found))


def hub_id_message(ident: Union[str, Path], adapter: bool = False) -> str:
    """The error for a ``hf-hub:`` id given where a local folder is read (or written) in place
    (``medfm card``, ``medfm merge``'s adapter, :func:`medfm.hub.load_config`).

    Returns:
        ``"'hf-hub:org/name' is a hub id, not a local checkpoint folder: download it with
        `hf download org/name --local-dir DIR` and pass DIR"`` (``--revision R`` for ``@R``).
    """
    return (f"{str(ident)!r} is a hub id, not a local {_folder_words(adapter)[0]} folder: "
            f"download it with `{hub_download_command(ident)}` and pass DIR")


def hub_download_command(ident: Union[str, Path]) -> str:
    """The shell command that fetches hub id ``ident`` into a folder DIR, for messages:
    ``"hf download org/name --local-dir DIR"`` (``--revision R`` for ``hf-hub:org/name@R``)."""
    repo, _, revision = str(ident)[len(HUB_PREFIX):].partition("@")
    return f"hf download {repo}" + (f" --revision {revision}" if revision else "") + " --local-dir DIR"


def checkpoint_folder_problem(ident: Union[str, Path], adapter: bool = False, full: bool = False) -> Optional[str]:
    """What is wrong with a local path given as a checkpoint (or LoRA adapter) folder, or None.

    A ``hf-hub:`` id first (:func:`hub_id_message`: this check reads local folders; pass its
    resolved folder instead), then :func:`checkpoint_path_problem` (a file, a missing path), then
    the folder's contents: no ``config.json`` (``"'<path>' is not a medfm checkpoint: config.json is
    missing"``, naming the subfolders that hold one, :func:`subfolder_hint`); with ``adapter``, no
    ``adapter_config.json`` (a full checkpoint is named as one); with ``full``, a LoRA adapter
    (:func:`is_lora_adapter`: ``"'<path>' is a LoRA adapter, not a full checkpoint ...: merge it
    first with `medfm merge <path> OUT` and pass OUT"``).

    Args:
        ident: the path as the user gave it (shown as given).
        adapter: the folder must be a LoRA adapter written by :func:`medfm.adapters.lora.save_adapter`.
        full: the folder must be a full checkpoint, whose ``model.safetensors`` an encoder starts from
            (``--init``, ``medfm merge --base``).
    """
    if is_hub_id(ident):
        return hub_id_message(ident, adapter)
    problem = checkpoint_path_problem(ident, adapter, full)
    if problem:
        return problem
    path = Path(ident).expanduser()
    has_config = (path / CONFIG_NAME).is_file()
    if adapter and not holds_checkpoint(path, adapter=True):
        if has_config:
            return (f"{str(ident)!r} is a full medfm checkpoint, not a LoRA adapter (no {ADAPTER_CONFIG_NAME}); "
                    "pass the adapter/ folder of a LoRA fine-tune")
        return (f"{str(ident)!r} is not a LoRA adapter: {ADAPTER_CONFIG_NAME} is missing"
                f"{subfolder_hint(path, adapter=True)}")
    if not has_config:
        return f"{str(ident)!r} is not a medfm checkpoint: {CONFIG_NAME} is missing{subfolder_hint(path, full=full)}"
    if full and not adapter and is_lora_adapter(path):
        return (f"{str(ident)!r} is a LoRA adapter, not a full checkpoint (no {WEIGHTS_NAME}): merge it into its base "
                f"first with `medfm merge {ident} OUT` and pass OUT")
    return None


def start_checkpoint_problem(ident: Optional[Union[str, Path]]) -> Optional[str]:
    """What is wrong with ``ident`` as the checkpoint an encoder starts from (``--init``, a recipe's
    ``encoder.pretrained``), or None: ``None``, ``"timm"`` (:data:`TIMM_WEIGHTS`) and ``hf-hub:`` ids
    pass (fetched when the encoder is built); any other value is :func:`checkpoint_folder_problem`
    with ``full``. The rule of :func:`medfm.hub.check_local_checkpoint` and of the ``medfm`` command's
    check of a recipe before its imports."""
    if ident is None or str(ident) == TIMM_WEIGHTS or is_hub_id(ident):
        return None
    return checkpoint_folder_problem(ident, full=True)


def local_text_model_problem(ident: Union[str, Path, None]) -> Optional[str]:
    """What is wrong with ``ident`` as a transformers text model given by local folder or hub id (the ``hf``
    text encoder's ``model_name_or_path``), judged from the path alone, or None: a folder holding
    ``config.json``, or a name that may be a hub id (``name``, ``org/name``: looked up in the Hugging Face
    cache or fetched by :func:`medfm.text.model_files.resolve_text_model`, which names a missing one). The
    one rule of that function and of the ``medfm`` command's check of a recipe before its imports.

    An existing local path wins over a hub id of the same spelling, a file as a folder does: ``org/name``
    that is a folder here is that folder, one that is a file here is refused as a file.

    Args:
        ident: the folder or hub id as the user gave it, a ``str`` or ``os.PathLike`` (surrounding blanks
            dropped, ``~`` expanded).

    Returns:
        ``"model_name_or_path must be a local model directory or a hub id (a string or a path), got 3"``
        for anything else but None (an int was looked up as the hub id ``'3'``);
        ``"no text model given: pass model_name_or_path (a local directory or a hub id)"`` for an empty one;
        ``"'<path>' is not a transformers model directory: config.json is missing"`` for a folder without it;
        ``"'<path>' is a file, not a transformers model directory (the folder that holds config.json)"`` for
        an existing file, relative or absolute (a relative one was looked up as a hub id), ending ``": pass
        '<its folder>'"`` when that folder holds ``config.json``;
        ``"no text model directory at '<path>'"`` for a missing path that is no hub id (absolute, starting
        with ``.`` or ``~``, or with more than one ``/``); else None.
    """
    if ident is not None and not isinstance(ident, (str, os.PathLike)):
        return (f"model_name_or_path must be a local model directory or a hub id (a string or a path), got "
                f"{shown(ident)}")
    text = str(ident or "").strip()
    if not text:
        return "no text model given: pass model_name_or_path (a local directory or a hub id)"
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            return f"{str(path)!r} is not a transformers model directory: {CONFIG_NAME} is missing"
        return None
    if path.is_file():
        folder = path.parent
        hint = f": pass {str(folder)!r}" if (folder / CONFIG_NAME).is_file() else ""
        return (f"{str(path)!r} is a file, not a transformers model directory (the folder that holds "
                f"{CONFIG_NAME}){hint}")
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1:
        return f"no text model directory at {str(path)!r}"
    return None


__all__ = ["HUB_PREFIX", "TIMM_WEIGHTS", "CONFIG_NAME", "WEIGHTS_NAME", "ADAPTER_CONFIG_NAME", "ADAPTER_WEIGHTS_NAME",
           "is_hub_id", "missing_checkpoint_message", "checkpoint_path_problem", "checkpoint_folder_problem",
           "start_checkpoint_problem", "local_text_model_problem",
           "subfolder_hint", "holds_checkpoint", "is_lora_adapter", "hub_id_message", "hub_download_command"]
