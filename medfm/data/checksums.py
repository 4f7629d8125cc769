"""Verify a data set folder against its ``SHA256SUMS`` file (the sha256sum format of PROVENANCE.md).

Every folder under the data root except ``medmnist/`` (whose files are checked by md5 against
the medmnist package's INFO on every load, :mod:`medfm.data.medmnist`) ships a ``SHA256SUMS``
written by ``sha256sum``: one ``<64 hex digits>  <relative path>`` line per file.
:func:`verify_sha256sums` recomputes each digest, so a truncated, edited or missing file is
found before it silently changes a result.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional

from medfm.data.errors import CorruptFileError, DataFileMissingError
from medfm.data.root import PathLike
from medfm.io import file_sha256

#: the checksum file of a data set folder
SUMS_NAME = "SHA256SUMS"
_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def read_sha256sums(folder: PathLike) -> Dict[str, str]:
    """``{relative path: sha256 hex}`` from ``<folder>/SHA256SUMS``.

    Raises:
        DataFileMissingError: no ``SHA256SUMS`` in ``folder``.
        CorruptFileError: a line that is not ``<64 hex>  <path>``, a path leaving the folder, or a
        path listed twice (names the line).
    """
    path = Path(folder) / SUMS_NAME
    if not path.is_file():
        raise DataFileMissingError(f"no {SUMS_NAME} in {folder}; its PROVENANCE.md says how the data set was made")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as err:
        raise CorruptFileError(f"cannot read {path}: {type(err).__name__}") from None
    sums: Dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if not match:
            raise CorruptFileError(f"{path}, line {number}: expected '<64 hex digits>  <path>', got {line[:80]!r}")
        rel = match.group(2)[2:] if match.group(2).startswith("./") else match.group(2)
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise CorruptFileError(f"{path}, line {number}: path {rel!r} leaves the data set folder")
        if rel in sums:
            raise CorruptFileError(f"{path}, line {number}: {rel!r} is listed twice")
        sums[rel] = match.group(1).lower()
    return sums


def verify_sha256sums(folder: PathLike, progress: bool = False) -> Dict[str, List[str]]:
    """Check every file listed in ``<folder>/SHA256SUMS`` against its sha256.

    Args:
        folder: a data set folder, e.g. ``../shared/data/chase_db1``.
        progress: show a tqdm bar (files hashed).

    Returns:
        ``{"ok": [...], "missing": [...], "mismatched": [...]}`` relative paths (files on disk
        that the list does not name are not reported).

    Raises:
        DataFileMissingError / CorruptFileError: no or a malformed ``SHA256SUMS``
        (:func:`read_sha256sums`).
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    report: Dict[str, List[str]] = {"ok": [], "missing": [], "mismatched": []}
    sums = read_sha256sums(folder)
    for rel, want in tqdm(sorted(sums.items()), desc=f"sha256 {folder.name}", disable=not progress, leave=False):
        path = folder / rel
        if not path.is_file():
            report["missing"].append(rel)
        else:
            report["ok" if file_sha256(path) == want else "mismatched"].append(rel)
    return report


def data_sets_with_sums(data_root: Optional[PathLike] = None) -> List[Path]:
    """The folders directly under the data root that hold a ``SHA256SUMS`` (sorted).

    Raises:
        DataFileMissingError: the data root does not exist.
    """
    from medfm.data.root import resolve_data_root

    root = resolve_data_root(data_root)
    if not root.is_dir():
        raise DataFileMissingError(f"data root {root} does not exist; pass --data-root or set $MEDFM_DATA")
    return sorted(p for p in root.iterdir() if (p / SUMS_NAME).is_file())


__all__ = ["SUMS_NAME", "read_sha256sums", "verify_sha256sums", "data_sets_with_sums"]
