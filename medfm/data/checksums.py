"""Verify a data set folder against its ``SHA256SUMS`` file (the sha256sum format of PROVENANCE.md),
and ``medmnist/`` against the md5s its loader checks.

Every folder under the data root except ``medmnist/`` ships a ``SHA256SUMS`` written by
``sha256sum``: one ``<64 hex digits>  <relative path>`` line per file. :func:`verify_sha256sums`
recomputes each digest, so a truncated, edited or missing file is found before it silently
changes a result. ``medmnist/`` has no such file: its ``*.npz`` are checked by md5 against the
medmnist package's INFO on every load (:mod:`medfm.data.medmnist`), and
:func:`verify_medmnist_md5s` runs that same check on every file of the folder at once.
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
#: the data set folder checked by md5 against the medmnist package's table instead
MEDMNIST_DIR = "medmnist"
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


def verify_medmnist_md5s(folder: PathLike, progress: bool = False) -> Dict[str, List[str]]:
    """Check every ``*.npz`` directly in ``folder`` against the md5 the MedMNIST loader checks on
    each load (:func:`medfm.data.medmnist_info.npz_md5s`, hashed by :func:`medfm.data.medmnist_info.file_md5`;
    torch-free).

    Args:
        folder: the ``medmnist/`` folder of a data root.
        progress: show a tqdm bar (files hashed).

    Returns:
        ``{"ok": [...], "mismatched": [...], "unknown": [...]}`` file names. ``unknown``: a name
        that is no released MedMNIST file (e.g. ``pneumonia.npz``), so nothing to check it
        against; the loader never opens it. Not a failure, as ``sha256sum -c`` passes over files
        its list does not name; released files that are absent are not reported (a data root
        holds only the flags and sizes it uses).
    """
    from tqdm.auto import tqdm

    from medfm.data.medmnist_info import file_md5, npz_md5s

    folder = Path(folder)
    table = npz_md5s()
    report: Dict[str, List[str]] = {"ok": [], "mismatched": [], "unknown": []}
    names = sorted(p.name for p in folder.glob("*.npz") if p.is_file())
    for name in tqdm(names, desc=f"md5 {folder.name}", disable=not progress, leave=False):
        if name not in table:
            report["unknown"].append(name)
        else:
            report["ok" if file_md5(folder / name) == table[name] else "mismatched"].append(name)
    return report


def verify_data_set(folder: PathLike, progress: bool = False) -> Dict[str, List[str]]:
    """:func:`verify_sha256sums` of a folder with a ``SHA256SUMS``, else :func:`verify_medmnist_md5s`
    of a ``medmnist/`` folder (the report's keys say which: ``missing`` or ``unknown``).

    Raises:
        DataFileMissingError: no ``SHA256SUMS`` in a folder other than ``medmnist/``;
        CorruptFileError: a malformed ``SHA256SUMS`` (:func:`read_sha256sums`).
    """
    folder = Path(folder)
    if folder.name == MEDMNIST_DIR and not (folder / SUMS_NAME).is_file():
        return verify_medmnist_md5s(folder, progress)
    return verify_sha256sums(folder, progress)


def data_sets_to_verify(data_root: Optional[PathLike] = None) -> List[Path]:
    """The folders directly under the data root that :func:`verify_data_set` checks: every one with
    a ``SHA256SUMS``, plus ``medmnist/`` (sorted).

    Raises:
        DataFileMissingError: the data root does not exist.
    """
    from medfm.data.root import resolve_data_root

    folders = set(data_sets_with_sums(data_root))
    medmnist = resolve_data_root(data_root) / MEDMNIST_DIR
    if medmnist.is_dir():
        folders.add(medmnist)
    return sorted(folders)


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


__all__ = ["SUMS_NAME", "MEDMNIST_DIR", "read_sha256sums", "verify_sha256sums", "verify_medmnist_md5s",
           "verify_data_set", "data_sets_to_verify", "data_sets_with_sums"]
