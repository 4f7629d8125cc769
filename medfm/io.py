"""Atomic file/directory writes and file hashing.

Every file medfm writes (results, reports, plots, configs, checkpoints) goes through
these helpers, so that a process killed at any moment leaves either the previous
version or the new complete version at the target path, never a half-written file.

The pattern is the standard one: write into a temporary sibling in the *same*
directory (same filesystem), ``fsync`` it, then ``os.replace`` it onto the target
(atomic on POSIX and on Windows for files), and ``fsync`` the parent directory so the
rename itself is durable.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_dir",
    "interrupted_version",
    "restore_interrupted_dir",
    "file_in_the_way",
    "in_the_way_error",
    "refuse_file_in_the_way",
    "RUN_FOLDER_ADVICE",
    "REPORT_FOLDER_ADVICE",
    "make_dir",
    "to_jsonable",
    "file_md5",
    "file_sha256",
    "file_hash",
]

_CHUNK = 1 << 20  # 1 MiB read chunks for hashing
#: the advice of :func:`in_the_way_error` for a training run's folder (:func:`medfm.training.loop.check_output_folder`,
#: and ``medfm``'s early check of a training command's ``--output``, which may not import torch)
RUN_FOLDER_ADVICE = "a run writes its files in a folder there: choose another output"
#: the advice of :func:`in_the_way_error` for a report folder (:func:`medfm.evaluation.report.make_output_dir`,
#: and ``medfm eval --output``'s early check)
REPORT_FOLDER_ADVICE = "choose another output folder"


def _fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk (best effort; a no-op where unsupported)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _default_permissions(path: Path, directory: bool, umask: Optional[int] = None) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would: ``0o666`` / ``0o777`` less the umask.

    ``tempfile.mkdtemp`` makes 0700 directories and safetensors writes 0600 files, so without
    this a checkpoint's weights were unreadable to the other users of a shared machine while its
    JSON and card were not. ``umask``: the process's, when the caller already read it (:func:`_umask`).
    """
    with contextlib.suppress(OSError):  # e.g. a filesystem without POSIX modes
        os.chmod(path, (0o777 if directory else 0o666) & ~(_umask() if umask is None else umask))


def _missing_dirs(path: Path) -> "list[Path]":
    """``path`` and those of its ancestors that do not exist yet, deepest first (empty when ``path`` exists)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_empty_dirs(dirs: "list[Path]") -> None:
    """Remove each of ``dirs`` (deepest first) that is an empty folder; stop at the first that is not
    (something else wrote into it meanwhile: it and its ancestors stay)."""
    for folder in dirs:
        try:
            folder.rmdir()
        except OSError:
            return


def _make_temp_dir(parent: Path, prefix: str, target: Path, attempts: int = 5) -> Path:
    """Create ``parent`` (with its ancestors; a file in its way: :func:`in_the_way_error` naming ``target``,
    :func:`make_dir`) and a fresh temporary folder in it.

    Another process's failed :func:`atomic_dir` may remove an empty ``parent`` it had created
    between our ``mkdir`` and ``mkdtemp``; both steps are then retried (``attempts`` times).
    """
    for attempt in range(attempts):
        make_dir(parent, target=target)
        try:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def file_in_the_way(path: PathLike) -> Optional[Path]:
    """The file (anything but a folder) that stands at ``path`` or at one of its ancestors, where a folder
    is needed; the topmost one when several do (the one to move away). None when there is none.

    Reads the filesystem (one ``stat`` per path component); nothing is created.
    """
    target = Path(path)
    return next((p for p in (*reversed(target.parents), target) if p.exists() and not p.is_dir()), None)


def in_the_way_error(target: PathLike, blocker: PathLike, advice: str = "") -> NotADirectoryError:
    """The one error for a file standing where a folder is needed (:func:`file_in_the_way`), for medfm's writers:
    ``cannot write '<target>': '<blocker>' is a file, not a folder`` (``; <advice>`` appended when given).

    Raised by :func:`atomic_path`, :func:`atomic_dir` and :func:`make_dir` (which also makes the folders of other
    modules: a report folder, :func:`medfm.evaluation.report.make_output_dir`; the text-embedding cache,
    :mod:`medfm.text.cache`).

    Args:
        target: the file or folder being written.
        blocker: the file in the way (``target`` itself, or one of its ancestors).
        advice: what to do instead, e.g. ``"choose another output folder"`` ("": none).

    Returns:
        the ``NotADirectoryError`` to raise.
    """
    return NotADirectoryError(f"cannot write {str(target)!r}: {str(blocker)!r} is a file, not a folder"
                              + (f"; {advice}" if advice else ""))


def refuse_file_in_the_way(path: PathLike, advice: str = "") -> None:
    """Refuse a folder ``path`` that is a file or lies under one, before anything is written; creates nothing.

    The one check of medfm's commands and writers that look at their output folder before the work
    (:func:`medfm.training.loop.check_output_folder`, :func:`medfm.evaluation.report.check_output_dir`, ``medfm``'s
    ``--output``); :func:`make_dir` names the same file when it creates the folder.

    Args:
        path: the folder to be written; named as given (``str(path)``).
        advice: what to do instead (:data:`RUN_FOLDER_ADVICE`, :data:`REPORT_FOLDER_ADVICE`; "": none).

    Raises:
        NotADirectoryError: ``path`` or one of its ancestors is a file (the topmost named, :func:`file_in_the_way`),
            in the one wording of :func:`in_the_way_error`: ``cannot write 'f/run': 'f' is a file, not a folder;
            <advice>``.
    """
    blocker = file_in_the_way(path)
    if blocker is not None:
        raise in_the_way_error(path, blocker, advice)


def make_dir(path: PathLike, *, target: Optional[PathLike] = None, advice: str = "") -> Path:
    """Create the folder ``path`` with its missing parents (nothing when it exists) and return it as a ``Path``.

    When a file stands at ``path`` or at one of its ancestors (:func:`file_in_the_way`), the error names it in
    the one wording of medfm's writers, :func:`in_the_way_error`: ``cannot write '<target>': '<file>' is a file,
    not a folder; <advice>``, rather than ``mkdir``'s ``[Errno 17] File exists`` / ``[Errno 20] Not a directory``
    naming a folder below it. The file is looked for only once ``mkdir`` has failed (a folder that exists costs
    one ``mkdir`` call).

    Args:
        path: the folder to create.
        target: what is being written, named in the error (default ``path``; e.g. the file to be written
            into ``path``).
        advice: what to do instead (:data:`REPORT_FOLDER_ADVICE`; "": none).

    Raises:
        NotADirectoryError: a file is in the way (:func:`in_the_way_error`).
        OSError: ``mkdir``'s own error for anything else (no permission, a full disk).
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = file_in_the_way(folder)
        if blocker is None:  # gone again meanwhile, or another cause: mkdir's own words
            raise
        raise in_the_way_error(folder if target is None else target, blocker, advice) from None
    return folder


def _parent_of(path: PathLike) -> Path:
    """The folder ``path`` is written into, checked.

    Raises:
        NotADirectoryError: a file stands where that folder (or one above it) should be, named.
        FileNotFoundError: that folder does not exist.
        IsADirectoryError: ``path`` is a folder.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        blocker = file_in_the_way(parent)
        if blocker is not None:  # was "parent directory ... does not exist", naming a folder below the file
            raise in_the_way_error(target, blocker)
        raise FileNotFoundError(f"cannot write {str(target)!r}: parent directory {str(parent)!r} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"cannot write file {str(target)!r}: a directory exists at that path")
    return parent


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Use it for writers that want a file name rather than a string (``fig.savefig``,
    ``safetensors.torch.save_file``, ``np.savez``). If the body raises, the temporary
    file is removed and ``path`` is left untouched. The file gets the mode a plain ``open``
    would give (``0o666`` less the umask), whatever mode the writer created it with.

    Args:
        path: final file path; its parent directory must exist.

    Raises:
        FileNotFoundError: the parent directory does not exist.
        NotADirectoryError: a file stands where the parent directory (or one above it) should be (named).
        IsADirectoryError: ``path`` is an existing directory.
        FileNotFoundError: the body did not create the temporary file.
    """
    target = Path(path)
    parent = _parent_of(target)
    tmp = parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic write of {str(target)!r}: the writer did not create {str(tmp)!r}")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _default_permissions(tmp, directory=False)
        os.replace(tmp, target)
        _fsync_dir(parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename).

    Returns:
        ``Path(path)``.

    Raises:
        FileNotFoundError: the parent directory does not exist.
        NotADirectoryError: a file is in the parent directory's way (:func:`atomic_path`).
        TypeError: ``data`` is not bytes-like.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"atomic_write_bytes expects bytes, got {type(data).__name__}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; newlines are written as given (no translation).

    Returns:
        ``Path(path)``.

    Raises:
        FileNotFoundError: the parent directory does not exist.
        NotADirectoryError: a file is in the parent directory's way (:func:`atomic_path`).
        TypeError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text expects str, got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode(encoding))


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` into plain JSON types, recursively.

    numpy scalars/arrays become Python numbers/lists, paths become strings, tuples and
    sets become lists, and non-finite floats (NaN, +-inf) become ``None`` so the output
    is strict JSON (RFC 8259 has no NaN). Mapping keys are converted with ``str``.

    Raises:
        TypeError: an object of a type with no JSON counterpart.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    try:  # numpy without importing it eagerly
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if np is not None:
        if isinstance(obj, np.ndarray):
            return to_jsonable(obj.tolist())
        if isinstance(obj, np.generic):
            return to_jsonable(obj.item())
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def atomic_write_json(path: PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON (see :func:`to_jsonable`) to ``path`` atomically.

    The output ends with a newline and keeps key order.

    Raises:
        TypeError: ``obj`` holds a value with no JSON counterpart.
        FileNotFoundError: the parent directory does not exist.
        NotADirectoryError: a file is in the parent directory's way (:func:`atomic_path`).
    """
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``path``; move it to ``path`` on success.

    On normal exit the temporary directory replaces ``path``: an existing directory at
    ``path`` is first renamed aside (``.<name>.old-<id>``), the new one renamed into
    place, and the old one deleted. If the body raises, the temporary directory is
    deleted and ``path`` is left exactly as it was, as are the folders above it (those created for
    it are removed again, when still empty). Used for checkpoints (DESIGN.md:
    "checkpoint/ written atomically: temp dir then rename").

    A crash in the short window between the two renames leaves the complete new
    directory at ``.<name>.tmp-<id>`` and the previous one at ``.<name>.old-<id>``
    beside ``path``, never a partial directory at ``path``; :func:`interrupted_version` finds the previous
    one, :func:`restore_interrupted_dir` (called by the trainer on ``--resume``) puts it back.

    Saves into siblings under one new parent may run in parallel: when another's failed save
    removes the still-empty parent just after this one created it, creating it is retried.

    The directory and everything in it get the modes a plain ``mkdir``/``open`` would give
    (``0o777``/``0o666`` less the umask), not ``mkdtemp``'s 0700 or safetensors' 0600.

    Args:
        path: final directory path; its parent is created if missing (and removed again, with the
            missing folders above it, if the body raises).

    Raises:
        NotADirectoryError: ``path`` or a folder above it is a file (the topmost such file named, as
            :func:`atomic_path` names it; was ``mkdir``'s ``[Errno 17] File exists`` / ``[Errno 20] Not a
            directory`` for a parent).
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise in_the_way_error(target, target)
    parent = target.parent if str(target.parent) else Path(".")
    created = _missing_dirs(parent)  # removed again if nothing is written (a body that raises)
    try:
        tmp = _make_temp_dir(parent, f".{target.name}.tmp-", target)
    except BaseException:
        _remove_empty_dirs(created)
        raise
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty_dirs(created)
        raise
    mask = _umask()  # read once for the whole tree
    for root, dirs, files in os.walk(tmp):  # writers inside it (safetensors: 0600) included
        _default_permissions(Path(root), directory=True, umask=mask)
        for name in files:
            _default_permissions(Path(root) / name, directory=False, umask=mask)
    old = None
    if target.exists():
        old = parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:  # put the previous version back
            os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty_dirs(created)
        raise
    _fsync_dir(parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def interrupted_version(path: PathLike) -> Optional[Path]:
    """The previous version of the directory ``path`` that a kill inside :func:`atomic_dir`'s rename window left
    aside, found without changing anything (a resume reads and checks its state there before it repairs the
    folder with :func:`restore_interrupted_dir`, so that a refused resume leaves it as it was).

    Killed between its two renames, :func:`atomic_dir` leaves no directory at ``path``; the previous version waits,
    complete, at ``.<name>.old-<id>`` beside it (deleted only once the new one is in place). A new version left at
    ``.<name>.tmp-<id>`` is never one: a kill while the body was still writing leaves the same name behind.

    Returns:
        that ``.<name>.old-<id>`` directory when ``path`` is missing and exactly one waits; None when ``path`` exists
        (its ``.old-`` siblings are then leftovers of kills while deleting a replaced version), when none waits or
        when the folder above ``path`` does not exist.

    Raises:
        FileExistsError: ``path`` is missing and several ``.old-`` candidates wait beside it (ambiguous; the
            message lists them).
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.exists() or not parent.is_dir():
        return None
    olds = sorted(p for p in parent.glob(f".{target.name}.old-*") if p.is_dir())
    if len(olds) > 1:
        raise FileExistsError(f"{str(target)!r} is missing and several earlier versions wait beside it "
                              f"({', '.join(o.name for o in olds)}); rename the right one to {target.name!r}")
    return olds[0] if olds else None


def restore_interrupted_dir(path: PathLike) -> Optional[Path]:
    """Undo a crash inside :func:`atomic_dir`, if there was one, and clear what it left behind.

    The previous version a kill inside the rename window left aside (:func:`interrupted_version`) is renamed
    back to ``path``. Once ``path`` is in place, the leftovers of earlier kills beside it are deleted: every
    ``.<name>.tmp-<id>`` (a kill while writing a checkpoint; maybe partial, never restored) and every
    ``.<name>.old-<id>`` (a kill while deleting the replaced version), each the size of a whole checkpoint. Call
    it only from the process that owns ``path`` (the trainer on ``--resume``, once the resumed state's checks
    passed): a concurrent :func:`atomic_dir` on the same path would lose its temporary directory.

    Returns:
        ``path`` when a previous version was restored, else None (nothing to restore).

    Raises:
        FileExistsError: ``path`` is missing and several ``.old-`` candidates wait beside it
            (ambiguous; the message lists them and nothing is deleted; :func:`interrupted_version`).
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    aside = interrupted_version(target)
    if aside is not None:
        os.replace(aside, target)
        _fsync_dir(parent)
    if target.exists():
        for pattern in (f".{target.name}.old-*", f".{target.name}.tmp-*"):
            for stale in sorted(p for p in parent.glob(pattern) if p.is_dir()):
                shutil.rmtree(stale, ignore_errors=True)
    return target if aside is not None else None


def file_hash(path: PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks.

    Args:
        path: file to hash.
        algorithm: any :func:`hashlib.new` name ("md5", "sha256", ...).

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
        ValueError: unknown hash algorithm.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"cannot hash {str(p)!r}: no such file")
    try:
        h = hashlib.new(algorithm)
    except ValueError:
        raise ValueError(f"unknown hash algorithm {algorithm!r}; e.g. 'md5', 'sha256'") from None
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_md5(path: PathLike) -> str:
    """MD5 hex digest of a file (the checksum MedMNIST/zenodo publish for data files).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    return file_hash(path, "md5")


def file_sha256(path: PathLike) -> str:
    """SHA-256 hex digest of a file (used to identify checkpoint weights).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    return file_hash(path, "sha256")
