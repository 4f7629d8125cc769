"""Where medfm looks for data: ``--data-root`` > ``$MEDFM_DATA`` > ``~/.cache/medfm``.

Each dataset lives in its own folder under the root (``<root>/medmnist/``,
``<root>/vqa_rad/``, ...). Nothing here creates folders; downloaders do that when they
write.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

ENV_VAR = "MEDFM_DATA"
DEFAULT_DATA_ROOT = "~/.cache/medfm"

PathLike = Union[str, "os.PathLike[str]"]


def resolve_data_root(data_root: Optional[PathLike] = None) -> Path:
    """Return the absolute data root folder.

    Precedence: the explicit ``data_root`` argument, then the ``MEDFM_DATA`` environment
    variable when set and non-empty, then ``~/.cache/medfm``. ``~`` is expanded and the
    result is made absolute (relative paths are taken from the current directory), so
    error messages name a full path. An empty-string argument counts as "not given".

    Args:
        data_root: folder given by the caller (e.g. the ``--data-root`` CLI flag), or None.

    Returns:
        Absolute :class:`~pathlib.Path`; the folder need not exist.
    """
    if data_root is not None and str(data_root) != "":
        chosen = str(data_root)
    elif os.environ.get(ENV_VAR):
        chosen = os.environ[ENV_VAR]
    else:
        chosen = DEFAULT_DATA_ROOT
    return Path(os.path.abspath(os.path.expanduser(chosen)))


def dataset_dir(name: str, data_root: Optional[PathLike] = None) -> Path:
    """Return ``resolve_data_root(data_root) / name``, the folder of one dataset.

    Args:
        name: dataset folder name, a single path component (e.g. ``"medmnist"``).
        data_root: see :func:`resolve_data_root`.

    Raises:
        ValueError: ``name`` is empty, absolute, or contains a path separator or ``..``.
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"dataset folder name must be one plain path component, got {name!r}")
    return resolve_data_root(data_root) / name


__all__ = ["ENV_VAR", "DEFAULT_DATA_ROOT", "resolve_data_root", "dataset_dir"]
