"""Where medfm looks for data: ``--data-root`` > ``$MEDFM_DATA`` > ``~/.cache/medfm``.

Each dataset lives in its own folder under the root (``<root>/medmnist/``,
``<root>/vqa_rad/``, ...). Nothing here creates folders; downloaders do that when they
write.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from medfm.data.errors import DataFileMissingError

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

    Raises:
        ValueError: ``data_root`` neither a str nor a path (``5`` became ``<cwd>/5``).
        DataFileMissingError: the root is an existing file, not a folder (each data set then said
            "not found at <file>/<name>/...", hiding the cause); the message says where it came from.
    """
    if data_root is not None and not isinstance(data_root, (str, os.PathLike)):
        raise ValueError(f"data_root must be a folder path (str or pathlib.Path), got {data_root!r} "
                         f"({type(data_root).__name__})")
    if data_root is not None and str(data_root) != "":
        chosen, source = str(data_root), "--data-root / data_root"
    elif os.environ.get(ENV_VAR):
        chosen, source = os.environ[ENV_VAR], f"${ENV_VAR}"
    else:
        chosen, source = DEFAULT_DATA_ROOT, "the default"
    path = Path(os.path.abspath(os.path.expanduser(chosen)))
    if path.exists() and not path.is_dir():
        raise DataFileMissingError(f"data root {path} (from {source}) is a file, not a folder; point --data-root or "
                                   f"${ENV_VAR} at the folder holding the data sets (medmnist/, vqa_rad/, ...)")
    return path


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
