"""MedMNIST-C corrupted test sets, generated through the ``medmnistc`` package.

Source: Di Salvo, Doerrich & Ledig 2024, "MedMNIST-C: Comprehensive benchmark and improved
classifier robustness by simulating realistic image corruptions" (arXiv:2406.17536). The
corruptions, their per-dataset severity parameters and the grey/RGB handling are the
package's (``medmnistc.corruptions.registry.CORRUPTIONS_DS``); nothing is re-implemented.
What medfm adds, without forking the package:

* **numpy 2.** ``MotionBlur`` calls ``np.fromstring(bytes, np.uint8)``, whose binary mode
  numpy 2 removed. :func:`numpy2_compat` swaps the ``np`` name *inside*
  ``medmnistc.corruptions.filter`` for a proxy whose ``fromstring`` is ``np.frombuffer``
  (identical bytes for ``sep=""``) for the duration of a call; global numpy is untouched.
* **Seeding.** Every image gets its own seed, derived from ``(seed, flag, corruption,
  severity, index)`` with :class:`numpy.random.SeedSequence`, ``index`` being its place in the
  full split (a scored subset passes its images' ``indices``, so its corrupted images are the full
  set's rows bit for bit); ``np.random``, ``random`` and
  the corruptor's ``rng`` (needed by ``impulse_noise``, which medmnistc leaves unset outside
  its ``DatasetManager``) are seeded with it before the call. Output therefore does not
  depend on batch size, worker count or order.
* **Resolution policy.** The benchmark was designed at 224 px (``stain_deposit``, ``bubble``
  and ``characters`` fail below ~64 px, ``motion_blur`` mis-handles grey images that are not
  224 px, and blur radii / noise are calibrated at 224 px). With ``resolution=224`` (the
  default) each image is upsampled to 224x224 (OpenCV bicubic), converted to RGB as
  medmnistc requires, corrupted, converted back to grey for grey datasets (PIL "L", as
  medmnistc's ``DatasetManager`` does), and downsampled to its own size with area
  averaging (OpenCV ``INTER_AREA``).
  ``resolution="native"`` applies the corruption at the stored size instead.
  :func:`describe_method` gives the sentence every report prints.
* **Cache.** Sets are cached as ``<cache>/medmnistc/<flag>_<size>_<corruption>_s<sev>_<seed>.npz``
  (``..._<seed>_i<digest>.npz`` for a subset given by ``indices``, :func:`indices_digest`) with a
  ``.sha256`` sidecar (``sha256sum`` format) verified on every read; a file whose hash or provenance
  (source md5, resolution, medmnistc version, subset) does not match is regenerated. Writes are
  atomic (temp file + rename), so concurrent runs are safe: both write identical bytes.
* **Speed.** Sets are generated in chunks by a pool of worker processes (``workers``,
  each single-threaded), with one tqdm progress bar over all images.

Measured at 224 px on this project's CPU, single thread, per image: colour/gamma/pixelate/
jpeg 1-2 ms, noises 6-17 ms, gaussian_blur 10 ms, motion_blur (ImageMagick) 55 ms.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import random
import zlib
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from medfm.arg_checks import check_list, check_number, is_integer, number_fits, shown
from medfm.data.errors import EmptySplitError, MedFMDataError, UnknownDatasetError
from medfm.data.root import PathLike
from medfm.registry import close_match_hint

log = logging.getLogger(__name__)

SEVERITIES: Tuple[int, ...] = (1, 2, 3, 4, 5)
DEFAULT_RESOLUTION = 224
DEFAULT_CACHE_DIR = "~/.cache/medfm"
_CHUNK = 128  # images per worker task


class UnknownCorruptionError(MedFMDataError, ValueError):
    """A corruption name medmnistc does not define (for this dataset)."""


class CorruptionBackendError(MedFMDataError, RuntimeError):
    """medmnistc (or ImageMagick's MagickWand library it needs) cannot be imported."""


# -- medmnistc access ------------------------------------------------------------------------
def _registry() -> Tuple[Dict[str, Dict[str, Any]], Dict[str, bool]]:
    try:
        from medmnistc.corruptions.registry import CORRUPTIONS_DS, DATASET_RGB
    except ImportError as err:
        hint = ("install ImageMagick's library: apt-get install libmagickwand-dev (the Makefile's set-up does it)"
                if "MagickWand" in str(err) or "wand" in str(err).lower() else "pip install 'medfm[eval]'")
        raise CorruptionBackendError(f"MedMNIST-C corruptions are unavailable ({str(err).splitlines()[0]}); "
                                     f"{hint}") from None
    return CORRUPTIONS_DS, DATASET_RGB


def medmnistc_version() -> str:
    """Installed medmnistc version (``"unknown"`` if its metadata is missing)."""
    try:
        return metadata.version("medmnistc")
    except metadata.PackageNotFoundError:
        return "unknown"


def corruption_datasets() -> List[str]:
    """MedMNIST flags medmnistc defines corruptions for (the 12 2D sets).

    Raises:
        CorruptionBackendError: medmnistc or MagickWand missing.
    """
    return sorted(_registry()[0])


def all_corruption_names() -> List[str]:
    """Every corruption name medmnistc defines for any dataset, sorted.

    Raises:
        CorruptionBackendError: medmnistc or MagickWand missing.
    """
    return sorted({name for table in _registry()[0].values() for name in table})


def list_corruptions(flag: str) -> List[str]:
    """Corruptions medmnistc registers for MedMNIST ``flag``, in medmnistc's order.

    Raises:
        UnknownDatasetError: medmnistc has no corruptions for ``flag`` (3D sets, typos);
            lists close matches.
        CorruptionBackendError: medmnistc or MagickWand missing.
    """
    table = _registry()[0]
    if flag not in table:
        from medfm.data.medmnist import MEDMNIST_FLAGS

        if flag in MEDMNIST_FLAGS:
            raise UnknownDatasetError(f"medmnistc defines no corruptions for {flag!r}; it covers the 12 2D sets: "
                                      f"{', '.join(sorted(table))}")
        raise UnknownDatasetError.for_name(flag, sorted(table),
                                           kind="MedMNIST-C dataset (medmnistc covers the 12 2D sets)")
    return list(table[flag])


def check_corruption(flag: str, name: str) -> str:
    """Return ``name`` if medmnistc defines it for ``flag``.

    Raises:
        UnknownCorruptionError: unknown name; says "did you mean" and whether the name
            exists for other datasets.
    """
    names = list_corruptions(flag)
    if name in names:
        return name
    hint = close_match_hint(name, names, n=2, fallback="defined")
    elsewhere = " (medmnistc defines it for other datasets)" if name in all_corruption_names() else ""
    raise UnknownCorruptionError(f"unknown corruption {name!r} for {flag}{elsewhere}{hint}")


def describe_method(resolution: Union[int, str] = DEFAULT_RESOLUTION, seed: int = 0) -> str:
    """One sentence saying how corrupted sets were made (printed in every report)."""
    resolution = check_resolution(resolution)
    ver = medmnistc_version()
    if resolution == "native":
        how = "applied at each dataset's stored resolution"
    else:
        how = (f"applied at {int(resolution)}x{int(resolution)} px: images are upsampled (bicubic, OpenCV) to "
               f"{int(resolution)} px, corrupted as RGB, converted back to grey for grey sets, and downsampled "
               "to their own size with area averaging (OpenCV INTER_AREA)")
    return (f"MedMNIST-C corruptions from medmnistc {ver} (Di Salvo et al. 2024), per-dataset severity "
            f"parameters of medmnistc, {how}; seeded per image (seed {seed}).")


# -- the numpy-2 shim ------------------------------------------------------------------------------
class _NumpyWithFromstring:
    """Proxy for the numpy module whose ``fromstring`` decodes bytes with ``frombuffer``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def fromstring(string: Any, dtype: Any = float, count: int = -1, sep: str = "") -> np.ndarray:
        if sep:
            return np.fromstring(string, dtype=dtype, count=count, sep=sep)
        return np.frombuffer(string, dtype=dtype, count=count).copy()


@contextlib.contextmanager
def numpy2_compat() -> Iterator[None]:
    """Within the block, ``medmnistc.corruptions.filter`` sees ``np.fromstring`` as ``np.frombuffer``.

    Only that module's global name ``np`` is swapped (and restored afterwards); the numpy
    module itself is not modified. A no-op on numpy 1.x.
    """
    import medmnistc.corruptions.filter as filt

    saved = filt.np
    filt.np = _NumpyWithFromstring()
    try:
        yield
    finally:
        filt.np = saved


# -- applying one corruption ---------------------------------------------------------------------
def check_severity(severity: Any) -> int:
    """``severity`` as an int if it is one of :data:`SEVERITIES` (1..5).

    Raises:
        ValueError: ``severity must be an integer in 1..5 (medmnistc's levels), got 2.0``: a float
            (``2.0`` reached medmnistc and failed there with a TypeError on a list index), a bool or
            a string, or a level outside 1..5.
    """
    if not is_integer(severity) or int(severity) not in SEVERITIES:
        raise ValueError(f"severity must be an integer in {SEVERITIES[0]}..{SEVERITIES[-1]} (medmnistc's levels), "
                         f"got {shown(severity)}")
    return int(severity)


def _image_seed(seed: int, flag: str, corruption: str, severity: int, index: int) -> int:
    words = [int(seed) & 0xFFFFFFFF, zlib.crc32(flag.encode()), zlib.crc32(corruption.encode()), int(severity),
             int(index)]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def indices_digest(indices: Sequence[int]) -> str:
    """First 16 hex digits of the sha256 of ``indices`` as int64: names a subset of a split (in
    cache file names and provenance)."""
    import hashlib

    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


def _check_indices(indices: Any, n: int) -> np.ndarray:
    """``indices`` as an int64 ``(n,)`` array of distinct values >= 0.

    Raises:
        ValueError: another length, a negative, non-integer or repeated index.
    """
    arr = np.asarray(indices)
    if arr.ndim != 1 or len(arr) != n or (n and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"indices must be {n} integer indices into the full split (one per image), got "
                         f"{arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if n and (arr.min() < 0 or len(np.unique(arr)) != n):
        raise ValueError("indices must be distinct indices >= 0 into the full split")
    return arr


def check_resolution(resolution: Any) -> Union[int, str]:
    """``resolution`` if it is ``"native"`` or an integer side in px >= 8.

    Raises:
        ValueError: ``resolution must be 'native' or a side in px >= 8, got 'nativ'`` (a typo or None
            failed in ``int()``; ``32.0`` is refused like ``32.5``).
    """
    if resolution == "native":
        return resolution
    if not number_fits(resolution, ge=8, integer=True):
        raise ValueError(f"resolution must be 'native' or a side in px >= 8, got {resolution!r}")
    return int(resolution)


def _work_side(resolution: Union[int, str], side: int) -> int:
    resolution = check_resolution(resolution)
    return side if resolution == "native" else resolution


def corrupt_images(
    images: np.ndarray,
    flag: str,
    corruption: str,
    severity: int,
    seed: int = 0,
    resolution: Union[int, str] = DEFAULT_RESOLUTION,
    start_index: int = 0,
    indices: Optional[Sequence[int]] = None,
) -> np.ndarray:
    """Apply one medmnistc corruption at one severity to a batch of images.

    Args:
        images: uint8 ``(N, H, W)`` grey or ``(N, H, W, 3)`` RGB (MedMNIST's stored layout).
        flag: MedMNIST flag whose severity parameters to use.
        corruption: a name from :func:`list_corruptions` ``(flag)``.
        severity: 1..5.
        seed: base seed, any integer; image ``i`` is seeded from ``(seed, flag, corruption, severity,
            start_index + i)``, or ``indices[i]`` when given. The seed is folded to 32 bits (``seed mod
            2**32``: ``-1`` gives the images of ``4294967295``), as an evaluation suite's
            ``corruptions.seed`` documents.
        resolution: side in px to corrupt at (then resized back), or ``"native"``.
        start_index: index of ``images[0]`` in the full set (for chunked generation).
        indices: ``(N,)`` index of each image in the full set (images of a subset), instead of
            ``start_index``.

    Returns:
        uint8 array of the same shape as ``images``.

    Raises:
        UnknownCorruptionError, UnknownDatasetError: bad names.
        ValueError: bad severity, resolution, image array or ``indices`` (also: both ``indices``
            and a ``start_index`` given).
        RuntimeError: medmnistc failed on an image (e.g. a corruption that cannot work at
            this resolution); the message names corruption, size and the cause.
    """
    import cv2
    from PIL import Image

    check_corruption(flag, corruption)
    severity = check_severity(severity)
    # a float seed was truncated (1.5 gave seed 1's images), "1" parsed, None a TypeError
    seed = check_number("seed", seed, integer=True)
    start_index = check_number("start_index", start_index, ge=0, integer=True)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"images must be uint8 (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}")
    if indices is not None and start_index:
        raise ValueError("pass indices or start_index, not both")
    index = (np.arange(start_index, start_index + len(images)) if indices is None
             else _check_indices(indices, len(images)))
    rgb = images.ndim == 4
    h, w = images.shape[1:3]
    side = _work_side(resolution, h)
    corruptor = copy.copy(_registry()[0][flag][corruption])  # medmnistc's instances are module-level
    out = np.empty_like(images)
    saved_state = (np.random.get_state(), random.getstate())  # medmnistc draws from the global RNGs
    with numpy2_compat():
        for i, img in enumerate(images):
            if side != h or side != w:
                img = cv2.resize(img, (side, side), interpolation=cv2.INTER_CUBIC)
            pil = Image.fromarray(img).convert("RGB")  # medmnistc's corruptions expect RGB PIL images
            s = _image_seed(seed, flag, corruption, severity, int(index[i]))
            np.random.seed(s)
            random.seed(s)
            corruptor.rng = np.random.default_rng(s)
            try:
                res = Image.fromarray(np.asarray(corruptor.apply(pil, severity - 1), dtype=np.uint8))
            except Exception as err:  # medmnistc raises assorted errors on unsupported sizes
                raise RuntimeError(f"medmnistc {corruption!r} failed on a {side}x{side} image "
                                   f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
            arr = np.asarray(res.convert("RGB" if rgb else "L"))  # grey sets: back to grey, as medmnistc does
            if arr.shape[:2] != (h, w):
                arr = cv2.resize(arr, (w, h), interpolation=cv2.INTER_AREA)
            out[i] = arr
    np.random.set_state(saved_state[0])
    random.setstate(saved_state[1])
    return out


def resample_roundtrip(images: np.ndarray, resolution: Union[int, str] = DEFAULT_RESOLUTION) -> np.ndarray:
    """The resolution policy without a corruption: up to ``resolution`` and back (a control set).

    Shows how much of a corrupted-set error is due to the resampling alone. Grey images stay
    grey (the RGB/grey round trip of a grey image is lossless). Returns ``images`` itself
    for ``"native"``.
    """
    import cv2

    images = np.asarray(images)
    h, w = images.shape[1:3]
    side = _work_side(resolution, h)
    if side == h and side == w:
        return images
    out = np.empty_like(images)
    for i, img in enumerate(images):
        up = cv2.resize(img, (side, side), interpolation=cv2.INTER_CUBIC)
        out[i] = cv2.resize(up, (w, h), interpolation=cv2.INTER_AREA)
    return out


# -- worker pool --------------------------------------------------------------------------------
def _set_threads(torch_n: int, cv2_n: int, magick_n: Optional[int]) -> Tuple[int, int, Optional[int]]:
    """Set torch / OpenCV / ImageMagick thread counts; returns the previous ones."""
    import cv2
    import torch

    prev = (torch.get_num_threads(), cv2.getNumThreads(), None)
    torch.set_num_threads(torch_n)
    cv2.setNumThreads(cv2_n)
    if magick_n is not None:
        try:
            from wand.resource import limits

            prev = (prev[0], prev[1], int(limits["thread"]))
            limits["thread"] = magick_n
        except Exception:  # wand missing or its resource API unavailable: ImageMagick keeps its default
            pass
    return prev


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """Within the block torch, OpenCV and ImageMagick use one thread (one core per generator)."""
    prev = _set_threads(1, 1, 1)
    try:
        yield
    finally:
        _set_threads(*prev)


def _worker_init() -> None:
    _set_threads(1, 1, 1)


def _task(args: Tuple[np.ndarray, str, str, int, int, Union[int, str], np.ndarray]) -> np.ndarray:
    images, flag, corruption, severity, seed, resolution, index = args
    return corrupt_images(images, flag, corruption, severity, seed, resolution, indices=index)


# -- cache ----------------------------------------------------------------------------------------
def cache_path(cache_dir: Optional[PathLike], flag: str, size: int, corruption: str, severity: int, seed: int,
               indices: Optional[Sequence[int]] = None) -> Path:
    """``<cache_dir>/medmnistc/<flag>_<size>_<corruption>_s<severity>_<seed>.npz``; for a subset
    given by ``indices``, ``..._<seed>_i<indices_digest(indices)>.npz``.

    ``cache_dir`` None means ``~/.cache/medfm``.

    Raises:
        ValueError: ``severity`` not an integer in 1..5 (:func:`check_severity`; ``9`` named a file
            ``..._s9_...`` that no set could fill, ``2.0`` one ``..._s2.0_...``).
    """
    severity = check_severity(severity)
    root = Path(os.path.expanduser(str(cache_dir or DEFAULT_CACHE_DIR)))
    subset = "" if indices is None else f"_i{indices_digest(indices)}"
    return root / "medmnistc" / f"{flag}_{size}_{corruption}_s{severity}_{seed}{subset}.npz"


def _provenance(flag: str, size: int, corruption: str, severity: int, seed: int,
                resolution: Union[int, str], source_md5: Optional[str], n: int,
                indices: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    return {"flag": flag, "size": int(size), "corruption": corruption, "severity": int(severity), "seed": int(seed),
            "resolution": resolution, "source_md5": source_md5, "n": int(n), "medmnistc": medmnistc_version(),
            **({"indices_sha256": indices_digest(indices)} if indices is not None else {})}


def read_cached(path: Path, expected: Dict[str, Any]) -> Optional[np.ndarray]:
    """Images of a cached set if its sha256 sidecar and provenance match, else None.

    A mismatching or unreadable file is logged and treated as absent (it is regenerated).
    """
    from medfm.io import file_sha256

    sidecar = Path(str(path) + ".sha256")
    if not path.is_file() or not sidecar.is_file():
        return None
    recorded = sidecar.read_text().split()
    if not recorded or file_sha256(path) != recorded[0]:
        log.warning("cached corrupted set %s fails its sha256 check; regenerating", path)
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            images = npz["images"]
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        log.warning("cannot read cached corrupted set %s (%s); regenerating", path, err)
        return None
    if meta != json.loads(json.dumps(expected)):
        log.warning("cached corrupted set %s was made differently (%s); regenerating", path, meta)
        return None
    return images


def write_cached(path: Path, images: np.ndarray, meta: Dict[str, Any]) -> None:
    """Write ``images`` + provenance to ``path`` and its sha256 sidecar, each atomically."""
    from medfm.io import atomic_path, atomic_write_text, file_sha256

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=images, meta=np.array(json.dumps(meta)))
        digest = file_sha256(tmp)
        atomic_write_text(Path(str(path) + ".sha256"), f"{digest}  {path.name}\n")


def corrupted_sets(
    images: np.ndarray,
    flag: str,
    jobs: Sequence[Tuple[str, int]],
    size: Optional[int] = None,
    seed: int = 0,
    resolution: Union[int, str] = DEFAULT_RESOLUTION,
    cache_dir: Optional[PathLike] = None,
    source_md5: Optional[str] = None,
    workers: int = 2,
    progress: bool = True,
    use_cache: bool = True,
    indices: Optional[Sequence[int]] = None,
) -> Tuple[Dict[Tuple[str, int], np.ndarray], Dict[str, int]]:
    """Corrupted copies of a test set for every ``(corruption, severity)`` job, cached on disk.

    Args:
        images: uint8 ``(N, H, W)`` or ``(N, H, W, 3)`` clean test images.
        flag: MedMNIST flag (selects medmnistc's corruption table).
        jobs: a list (or any ordered iterable) of ``(corruption, severity)`` pairs.
        size: image side used in cache names (default ``H``).
        seed, resolution: see :func:`corrupt_images`.
        cache_dir: cache root (default ``~/.cache/medfm``); files in ``<cache_dir>/medmnistc``.
        source_md5: md5 of the clean data file, recorded and checked on reuse.
        workers: worker processes, an integer >= 0; 0 or 1 generates in this process.
        progress: show a tqdm bar over all images to generate.
        use_cache: read and write the cache.
        indices: ``(N,)`` index of each image in the full split when ``images`` are a subset of it
            (a suite's ``max_samples``): image ``i`` is seeded as the full split's ``indices[i]``, so
            it is bit-identical to that row of the full set's corrupted copy. Part of the cache key
            (file name and provenance). None: ``images`` are the split, in order.

    Returns:
        ``(sets, stats)``: ``{(corruption, severity): uint8 array like images}`` and
        ``{"hits", "generated", "images_generated"}``.

    Raises:
        UnknownCorruptionError, ValueError, RuntimeError: see :func:`corrupt_images`; ValueError
            also for ``jobs`` that are not a list of pairs (:func:`medfm.arg_checks.check_list`: one pair, a
            mapping, a set or a number is refused), ``indices`` of another length than ``images``, negative or
            repeated, and for ``workers`` not an integer >= 0 (``-1``, joblib's "all cores", ran in this process;
            ``1.5`` and ``"2"`` failed with a TypeError once a set had to be generated).
    """
    from tqdm.auto import tqdm

    workers = check_number("workers", workers, ge=0, integer=True, hint=" (0 or 1: in this process)")
    images = np.ascontiguousarray(images)
    size = int(size or images.shape[1])
    what = "a list of (corruption, severity) pairs, e.g. [('pixelate', 3)]"
    # listed once: a generator was used up by the pairs check, and no job ran (an empty result, no word)
    jobs = check_list("jobs", jobs, what=what, got=repr)
    if not all(isinstance(j, (list, tuple)) and len(j) == 2 for j in jobs):
        # one pair or a bare name failed with "not enough values to unpack"
        raise ValueError(f"jobs must be {what}, got {jobs!r}")
    jobs = [(corruption, check_severity(severity)) for corruption, severity in jobs]
    for corruption, _ in jobs:
        check_corruption(flag, corruption)
    seed = check_number("seed", seed, integer=True)
    _work_side(resolution, size)
    n = len(images)
    if not n:  # a KeyError of the first job came out of the chunk bookkeeping
        raise EmptySplitError("corrupted_sets: no image to corrupt (an empty test set or subset)")
    index = np.arange(n) if indices is None else _check_indices(indices, n)
    out: Dict[Tuple[str, int], np.ndarray] = {}
    todo: List[Tuple[str, int]] = []
    metas = {job: _provenance(flag, size, job[0], job[1], seed, resolution, source_md5, n, indices=indices)
             for job in jobs}
    for job in jobs:
        cached = read_cached(cache_path(cache_dir, flag, size, job[0], job[1], seed, indices),
                             metas[job]) if use_cache else None
        if cached is not None:
            out[job] = cached
        else:
            todo.append(job)
    stats = {"hits": len(out), "generated": len(todo), "images_generated": len(todo) * n}
    if not todo:
        return out, stats
    tasks = [(job, start) for job in todo for start in range(0, n, _CHUNK)]
    parts: Dict[Tuple[str, int], Dict[int, np.ndarray]] = {job: {} for job in todo}
    n_chunks = -(-n // _CHUNK)
    bar = tqdm(total=stats["images_generated"], desc=f"MedMNIST-C {flag}", unit="img", disable=not progress,
               leave=False)

    def finish(job: Tuple[str, int], start: int, result: np.ndarray) -> None:
        parts[job][start] = result
        bar.update(len(result))
        if len(parts[job]) == n_chunks:
            full = np.concatenate([parts[job][s] for s in sorted(parts[job])])
            out[job] = full
            if use_cache:
                write_cached(cache_path(cache_dir, flag, size, job[0], job[1], seed, indices), full, metas[job])
            del parts[job]

    args = [(images[s:s + _CHUNK], flag, job[0], job[1], seed, resolution, index[s:s + _CHUNK]) for job, s in tasks]
    try:
        if workers <= 1:
            with _single_threaded():
                for (job, start), a in zip(tasks, args):
                    finish(job, start, _task(a))
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init) as pool:
                for (job, start), result in zip(tasks, pool.map(_task, args)):
                    finish(job, start, result)
    finally:
        bar.close()
    return {job: out[job] for job in jobs}, stats


__all__ = [
    "SEVERITIES", "DEFAULT_RESOLUTION", "UnknownCorruptionError", "CorruptionBackendError", "medmnistc_version",
    "corruption_datasets", "all_corruption_names", "list_corruptions", "check_corruption", "check_severity",
    "check_resolution", "describe_method",
    "numpy2_compat", "indices_digest", "corrupt_images", "resample_roundtrip", "cache_path", "read_cached",
           "write_cached", "corrupted_sets",
]
