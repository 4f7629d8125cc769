"""Checkpoint identifiers, without importing torch: a local folder or ``hf-hub:org/name``.

The ``medfm`` command names a missing checkpoint before it imports the library
(:func:`medfm.cli.main`), in the same words as :func:`medfm.hub.resolve_checkpoint`, which
checks it again for library callers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

#: prefix of a Hugging Face hub id (``hf-hub:org/name``), as in timm and open_clip
HUB_PREFIX = "hf-hub:"
#: the ``encoder.pretrained`` / ``--init`` value that means timm's own pretrained weights, not a path
TIMM_WEIGHTS = "timm"


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


__all__ = ["HUB_PREFIX", "TIMM_WEIGHTS", "is_hub_id", "missing_checkpoint_message"]
