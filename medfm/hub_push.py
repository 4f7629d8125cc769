"""Uploading a medfm checkpoint folder to the Hugging Face hub (``medfm push``).

Only the files a checkpoint needs to load, and its card, leave the machine by default
(:data:`PUSH_FILES`); evaluation outputs with per-case predictions stay local unless asked for.
Loading and saving are in :mod:`medfm.hub`.
"""
from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

from medfm.checkpoint_ids import (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, CONFIG_NAME, HUB_PREFIX, WEIGHTS_NAME,
                                  is_hub_id)
from medfm.hub import CARD_NAME, CheckpointError, checked_repo_id, load_config, resolve_checkpoint

log = logging.getLogger(__name__)


#: uploaded by default: the files a checkpoint needs to load (full model or LoRA adapter) and its card
PUSH_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME,
              "model_buffers.safetensors")
#: never uploaded, even when an ``include`` pattern matches: hidden files and folders (temp files
#: of an interrupted atomic write, editor files)
PUSH_IGNORE = (".*", "**/.*")


def push_selection(path: Union[str, Path], include: Sequence[str] = ()) -> Tuple[List[str], List[str]]:
    """Which files of a checkpoint folder :func:`push_to_hub` uploads, and which it leaves out.

    By default only :data:`PUSH_FILES` are uploaded. Everything else a run writes into a
    checkpoint folder stays local: evaluation folders (``eval-*``, ``zeroshot-*``, whose
    ``predictions.npz`` holds every test case's label and prediction, which must not leave a
    hospital by accident), the optimizer and RNG state of a resumable run, plots.

    Args:
        path: a checkpoint directory.
        include: extra glob patterns, relative to ``path`` (``fnmatch`` style, as
            ``huggingface_hub``'s ``allow_patterns``: ``"eval-*/results.json"``, ``"*.png"``).
            Hidden files are never uploaded (:data:`PUSH_IGNORE`).

    Returns:
        ``(uploaded, left_out)``: sorted POSIX paths relative to ``path``.

    Raises:
        CheckpointError: an ``include`` pattern is empty, absolute or contains ``..``.
    """
    from fnmatch import fnmatch

    for pattern in include:
        if not isinstance(pattern, str) or not pattern.strip() or pattern.startswith("/") or ".." in pattern.split("/"):
            raise CheckpointError(f"bad include pattern {pattern!r}: give a glob relative to the checkpoint "
                                  "folder, e.g. 'eval-*/results.json'")
    path = Path(path)
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    uploaded, left_out = [], []
    for name in files:
        hidden = any(part.startswith(".") for part in name.split("/"))
        wanted = name in PUSH_FILES or any(fnmatch(name, pat) for pat in include)
        (uploaded if wanted and not hidden else left_out).append(name)
    return uploaded, left_out


class PushResult(NamedTuple):
    """What :func:`push_checkpoint` did: the repo URL and the selection it uploaded (:func:`push_selection`,
    made once, before the upload: a file written into the folder meanwhile is in neither list)."""

    url: str
    uploaded: List[str]
    left_out: List[str]


def push_to_hub(path: Union[str, Path], repo_id: str, token: Optional[str] = None, private: bool = False,
                include: Sequence[str] = ()) -> str:
    """Upload a checkpoint directory's model files to the Hugging Face hub; returns the repo URL.

    :func:`push_checkpoint` (same arguments and errors), its URL only.
    """
    return push_checkpoint(path, repo_id, token=token, private=private, include=include).url


def push_checkpoint(path: Union[str, Path], repo_id: str, token: Optional[str] = None, private: bool = False,
                    include: Sequence[str] = ()) -> PushResult:
    """Upload a checkpoint directory's model files to the Hugging Face hub (``medfm push``).

    Args:
        path: a local checkpoint directory. Only :data:`PUSH_FILES` (config, weights, card,
            LoRA adapter files) are uploaded, plus files matching ``include``; see
            :func:`push_selection` for what stays local and why.
        repo_id: ``"org/name"`` (a leading ``"hf-hub:"`` is accepted and removed).
        token: hub token; default: the one ``hf auth login`` stored.
        private: ``True``: a new repo is created private, an existing public one is made private
            before anything is uploaded (logged as a warning; ``HfApi.create_repo`` alone would leave
            it public). ``False``: a new repo gets the account's default visibility (public unless the
            organization defaults to private); an existing one keeps its own (never made public).
        include: extra glob patterns to upload (e.g. ``["eval-*/results.json"]``).

    Returns:
        :class:`PushResult`: the repo URL and the files uploaded and left out, as selected for the upload
        (the command prints these lists; selecting again afterwards could name a file written meanwhile).

    Raises:
        CheckpointError: not a checkpoint directory, a bad repo id or include pattern, a LoRA
            adapter whose base checkpoint is a local path (nobody could load it from the hub),
            the hub cannot be reached, or ``private`` is asked for and the existing repo cannot
            be made private (then nothing is uploaded). Nothing in ``path`` is modified.
    """
    path = resolve_checkpoint(path)
    cfg = load_config(path)
    repo_id = repo_id[len(HUB_PREFIX):] if is_hub_id(repo_id) else repo_id
    repo_id = checked_repo_id(repo_id, f"hub repo id {repo_id!r}", "'org/name'")
    base = cfg.get("base_checkpoint")
    if (path / ADAPTER_CONFIG_NAME).is_file() and base and not is_hub_id(base):
        raise CheckpointError(f"{str(path)!r} is a LoRA adapter whose base checkpoint is the local path {str(base)!r}, "
                              "which nobody can load from the hub: push a full checkpoint made with "
                              "`medfm merge ADAPTER OUTPUT` instead")
    uploaded, left_out = push_selection(path, include)
    doing = f"push to the hub repo {repo_id!r}"
    try:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        # None, not False: create_repo(private=False) would make a new repo public against an organization's default
        url = api.create_repo(repo_id, private=True if private else None, exist_ok=True)
        if private and api.repo_info(repo_id).private is not True:  # it existed, public: create_repo left it so
            doing = f"make the existing public hub repo {repo_id!r} private, so nothing was uploaded"
            api.update_repo_settings(repo_id, private=True)  # before any upload
            log.warning("made the existing hub repo %r private", repo_id)
            doing = f"push to the hub repo {repo_id!r}"
        # exact names (escaped: huggingface_hub matches allow_patterns with fnmatch)
        api.upload_folder(folder_path=str(path), repo_id=repo_id, allow_patterns=[glob.escape(f) for f in uploaded],
                          ignore_patterns=list(PUSH_IGNORE))
        return PushResult(str(url), uploaded, left_out)
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0]  # hub HTTP errors span several lines
        raise CheckpointError(f"could not {doing} ({type(err).__name__}: {first})") from None
