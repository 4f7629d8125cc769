"""On-disk cache of text embeddings, and the medfm cache folder.

Frozen text encoders give the same embedding for the same text every time, so embeddings
are computed once and kept on disk: ``<cache>/text_embeddings/<model hash>/shard-*.npz``.
Each entry is keyed by ``sha256(model key + "\\0" + text)``, where the model key (see
:attr:`medfm.text.encoders.HFTextEncoder.cache_key`) covers the model's bytes, the pooler
and ``max_length``. Shards are npz files (``keys``: ``(N,)`` bytes of 64 hex digits,
``embeddings``: ``(N, D)`` float32) written atomically, never rewritten in place: two
processes filling the same cache at once at worst write the same entries twice. A shard
that cannot be read (truncated, corrupt) or holds malformed arrays (keys that are not 64 hex
bytes, non-float or non-finite embeddings, an embedding size other than the other shards')
is ignored with a warning; its texts are simply embedded again.

The cache folder is ``$XDG_CACHE_HOME/medfm`` (default ``~/.cache/medfm``) unless a folder is
passed explicitly; derived artefacts (embeddings, the preprocessed pretraining corpus) live in
sub-folders of it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import zipfile
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from medfm.io import atomic_path, atomic_write_text, make_dir
from medfm.text.encoders import TextEncoderError, check_texts

log = logging.getLogger(__name__)
PathLike = Union[str, "os.PathLike[str]"]


def medfm_cache_dir(cache_dir: Optional[PathLike] = None) -> Path:
    """Absolute cache folder: ``cache_dir`` if given, else ``$XDG_CACHE_HOME/medfm``, else ``~/.cache/medfm``.

    The folder is not created here; writers create the sub-folder they write into.
    """
    if cache_dir is not None and str(cache_dir) != "":
        return Path(os.path.abspath(os.path.expanduser(str(cache_dir))))
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(os.path.abspath(os.path.expanduser(base))) / "medfm"


def text_key(model_key: str, text: str) -> str:
    """Cache key of one text: ``sha256(model_key + "\\0" + text)`` as 64 hex digits."""
    return hashlib.sha256(f"{model_key}\0{text}".encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Text embeddings of one text encoder, cached on disk.

    Args:
        model_key: identity of the encoder's outputs (``HFTextEncoder.cache_key``).
        cache_dir: medfm cache folder (see :func:`medfm_cache_dir`).

    Attributes:
        folder: ``<cache>/text_embeddings/<sha256(model_key)[:16]>``.

    ``get_many(texts) -> {text: (D,) float32 tensor}`` for the texts present;
    ``put_many(texts, (N, D) embeddings)`` writes one new shard with the absent ones. Both take ``texts``
    as :meth:`medfm.text.encoders.HFTextEncoder.encode` does (:func:`~medfm.text.encoders.check_texts`).

    Raises:
        ValueError: ``model_key`` not a non-empty string (an int failed with an ``AttributeError``).
    """

    def __init__(self, model_key: str, cache_dir: Optional[PathLike] = None) -> None:
        if not (isinstance(model_key, str) and model_key):
            raise ValueError(f"EmbeddingCache needs a non-empty string model_key (encoder.cache_key), got "
                             f"{model_key!r}")
        self.model_key = model_key
        self.folder = (medfm_cache_dir(cache_dir) / "text_embeddings"
                       / hashlib.sha256(model_key.encode()).hexdigest()[:16])
        self._entries: Dict[str, np.ndarray] = {}
        self._loaded: set = set()
        self._dim: Optional[int] = None  # embedding size D of the entries read or written so far

    def _shards(self) -> List[Path]:
        return sorted(self.folder.glob("shard-*.npz")) if self.folder.is_dir() else []

    def _refresh(self) -> None:
        """Read shards not read yet (written by this or another process)."""
        for shard in self._shards():
            if shard.name in self._loaded:
                continue
            self._loaded.add(shard.name)
            try:
                with np.load(shard, allow_pickle=False) as npz:
                    keys, emb = npz["keys"], npz["embeddings"]
                _check_shard(keys, emb, self._dim)
                names = [k.decode("ascii") for k in keys]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                log.warning("ignoring unreadable text-embedding cache shard %s (%s: %s); its texts will be re-embedded",
                            shard, type(err).__name__, str(err).splitlines()[0] if str(err) else "")
                continue
            self._dim = int(emb.shape[1])
            self._entries.update(zip(names, emb))

    def __len__(self) -> int:
        self._refresh()
        return len(self._entries)

    def get_many(self, texts: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Cached embeddings of ``texts``: ``{text: (D,) float32}`` for those present.

        Raises:
            TextEncoderError: ``texts`` is not a non-empty list/tuple of strings (:func:`_cache_texts`).
        """
        texts = _cache_texts("get_many", texts)
        self._refresh()
        out = {}
        for t in texts:
            row = self._entries.get(text_key(self.model_key, t))
            if row is not None:
                out[t] = torch.from_numpy(np.array(row, dtype=np.float32))
        return out

    def put_many(self, texts: Sequence[str], embeddings: torch.Tensor) -> Optional[Path]:
        """Store ``embeddings`` ``(N, D)`` of ``texts`` (N strings); returns the new shard or None.

        Raises:
            TextEncoderError: ``texts`` is not a non-empty list/tuple of strings (:func:`_cache_texts`).
            ValueError: ``len(texts) != N``, a non-2D or non-finite ``embeddings``.
            NotADirectoryError: the cache folder cannot be made because a file is in the way (e.g. ``cache_dir``
                is a file), naming that file (was the errno message naming the folder below it).
        """
        texts = _cache_texts("put_many", texts)
        emb = (embeddings.detach().float().cpu().numpy() if isinstance(embeddings, torch.Tensor)
               else np.asarray(embeddings, np.float32))
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise ValueError(f"put_many needs (N, D) embeddings for N={len(texts)} texts, got {emb.shape}")
        if not np.isfinite(emb).all():
            raise ValueError("refusing to cache non-finite text embeddings")
        self._refresh()
        if self._dim is not None and emb.shape[1] != self._dim:
            raise ValueError(f"this cache holds {self._dim}-d embeddings, got {emb.shape[1]}-d ones")
        keys = [text_key(self.model_key, t) for t in texts]
        new = {k: row for k, row in zip(keys, emb) if k not in self._entries}
        if not new:
            return None
        make_dir(self.folder, advice="pass another cache_dir for the text-embedding cache, or remove that file")
        meta = self.folder / "model_key.txt"
        if not meta.is_file():
            atomic_write_text(meta, self.model_key + "\n")
        key_arr = np.array(sorted(new), dtype="S64")
        emb_arr = np.stack([new[k.decode("ascii")] for k in key_arr]).astype(np.float32)
        shard = self.folder / f"shard-{hashlib.sha256(key_arr.tobytes()).hexdigest()[:16]}.npz"
        with atomic_path(shard) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, keys=key_arr, embeddings=emb_arr)
        self._loaded.add(shard.name)
        self._entries.update(new)
        self._dim = int(emb_arr.shape[1])
        return shard


def _cache_texts(method: str, texts: Sequence[str]) -> List[str]:
    """``texts`` as a list of strings, checked as :meth:`HFTextEncoder.encode` checks them
    (:func:`~medfm.text.encoders.check_texts`), the message naming the cache method. A bare string was
    split into its characters (one entry per character) and other items were keyed by ``str(x)``.

    Raises:
        TextEncoderError: ``EmbeddingCache.put_many: texts must be a list of strings, got str`` (an empty
            list, non-string items: the same words as ``check_texts``).
    """
    try:
        return check_texts(texts)
    except TextEncoderError as err:
        raise TextEncoderError(f"EmbeddingCache.{method}: {err}") from None


def _check_shard(keys: np.ndarray, emb: np.ndarray, dim: Optional[int]) -> None:
    """Validate one shard's arrays: keys ``(N,)`` 64-byte strings, embeddings ``(N, D)`` finite floats.

    Raises:
        ValueError: anything else, or ``D != dim`` when ``dim`` is known.
    """
    if keys.ndim != 1 or emb.ndim != 2 or len(keys) != len(emb):
        raise ValueError(f"keys {keys.shape} vs embeddings {emb.shape}")
    if keys.dtype != np.dtype("S64"):
        raise ValueError(f"keys have dtype {keys.dtype}, expected S64")
    if emb.dtype.kind != "f" or not np.isfinite(emb).all():
        raise ValueError(f"embeddings are not finite floats (dtype {emb.dtype})")
    if dim is not None and emb.shape[1] != dim:
        raise ValueError(f"{emb.shape[1]}-d embeddings where the cache holds {dim}-d ones")


__all__ = ["medfm_cache_dir", "text_key", "EmbeddingCache"]
