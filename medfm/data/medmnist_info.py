"""MedMNIST v2 metadata and files, without torch: flags, splits, sizes, file names, URLs and md5s.

Source: Yang et al., "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D
biomedical image classification", Scientific Data 10, 41 (2023). All metadata (task, label
names, channels, license, split sizes, zenodo URLs, md5 per size) come from the ``medmnist``
package's ``INFO`` table (``medmnist/info.py``); nothing is hard-coded here. Files are
``<data_root>/medmnist/<flag>.npz`` at 28 px and ``<flag>_<size>.npz`` otherwise.

Why not ``from medmnist.info import INFO``: importing ``medmnist.info`` first runs the package's
``__init__``, which imports torch, pandas and scikit-learn (seconds), and ``medfm verify-data`` or a
mistyped ``medfm eval --data`` only need this table. So, unless the package is imported already,
its ``info.py`` (plain data) is run on its own, as a medfm-private module that is not put in
``sys.modules``: the medmnist package is left as it was, and a later ``import medmnist`` has its
own ``medmnist.info.INFO``, a second, equal table. :data:`INFO` below is the one medfm reads;
a test that patches an md5 patches this one.

:mod:`medfm.data.medmnist` (the torch data set, downloads) re-exports every name of this module.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from medfm.arg_checks import is_integer, shown
from medfm.data.errors import ChecksumError, UnknownDatasetError, UnknownSplitError, UnsupportedSizeError
from medfm.data.root import PathLike, dataset_dir
from medfm.io import file_md5 as io_file_md5
from medfm.registry import close_match_hint

#: name the package's ``info.py`` runs under when read on its own (never put in ``sys.modules``)
_PRIVATE_NAME = "medfm.data.medmnist_info._package_info"


def _load_info() -> Dict[str, Dict[str, Any]]:
    """The ``medmnist`` package's ``INFO`` table: ``medmnist.info.INFO`` when the package is imported
    already, else its ``info.py`` run by file path under a medfm-private name (see the module
    docstring), else (no ``info.py`` beside the package's ``__init__``) ``import medmnist.info``.

    Raises:
        ModuleNotFoundError: the ``medmnist`` package is not installed.
    """
    if "medmnist" in sys.modules:
        return importlib.import_module("medmnist.info").INFO
    spec = importlib.util.find_spec("medmnist")  # locates the package without running its __init__
    locations = (spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / "info.py" if locations else None
    if path is None or not path.is_file():
        return importlib.import_module("medmnist.info").INFO
    info_spec = importlib.util.spec_from_file_location(_PRIVATE_NAME, path)
    module = importlib.util.module_from_spec(info_spec)
    info_spec.loader.exec_module(module)
    return module.INFO


#: the ``medmnist`` package's INFO: task, labels, channels, license, split sizes, URLs and md5s per flag
INFO: Dict[str, Dict[str, Any]] = _load_info()
MEDMNIST_2D_FLAGS: Tuple[str, ...] = tuple(f for f, i in INFO.items() if not i["python_class"].endswith("3D"))
MEDMNIST_3D_FLAGS: Tuple[str, ...] = tuple(f for f, i in INFO.items() if i["python_class"].endswith("3D"))
MEDMNIST_FLAGS: Tuple[str, ...] = MEDMNIST_2D_FLAGS + MEDMNIST_3D_FLAGS
#: MedMNIST's official splits
SPLITS: Tuple[str, ...] = ("train", "val", "test")
#: INFO's task string of the multi-label set (chestmnist)
MULTI_LABEL_TASK = "multi-label, binary-class"
#: a pretraining recipe's ``data.dataset`` for the multi-source image-text corpus (:mod:`medfm.data.corpus`)
CORPUS_DATASET = "corpus"
#: why a fine-tuning recipe's ``data.dataset`` may not be :data:`CORPUS_DATASET` (put after the key's name):
#: the refusal of :func:`check_recipe_dataset` (a fine-tuning recipe, ``medfm finetune --dataset``)
CORPUS_NOT_FOR_FINETUNING = (f"{CORPUS_DATASET!r} is the pretraining corpus (image-text pairs, no class labels); "
                             "fine-tuning takes a MedMNIST data set, e.g. pneumoniamnist")

# md5 hex digest per (absolute path, inode, size, mtime_ns, ctime_ns): repeated opens skip re-hashing.
_MD5_CACHE: Dict[Tuple[str, int, int, int, int], str] = {}


def check_dataset_name(name: Any, where: str, corpus: bool = False) -> None:
    """Refuse a data set name that is no MedMNIST flag (nor, with ``corpus``, :data:`CORPUS_DATASET`),
    without importing torch: the rule of a recipe's ``data.dataset``
    (:class:`medfm.training.recipes.DataConfig`), of ``medfm eval --data`` and ``finetune --dataset``,
    which the command line applies before its imports.

    Args:
        name: the name as given.
        where: what gave it, put first (``"data.dataset"``, ``"--data"``).
        corpus: the pretraining corpus is a valid name here.

    Raises:
        UnknownDatasetError: ``"<where>: unknown MedMNIST data set or corpus 'pneumoniamnst'; did you
            mean 'pneumoniamnist' ..."`` (up to three close matches).
    """
    if name in MEDMNIST_FLAGS or (corpus and name == CORPUS_DATASET):
        return
    known = MEDMNIST_FLAGS + ((CORPUS_DATASET,) if corpus else ())
    kind = f"MedMNIST data set or {CORPUS_DATASET}" if corpus else "MedMNIST data set"
    raise UnknownDatasetError(f"{where}: {UnknownDatasetError.for_name(name, known, kind=kind)}")


def check_recipe_dataset(name: Any, where: str, finetuning: bool) -> None:
    """Refuse what a training run's data set may not be, without importing torch: for pretraining, a name that is
    no MedMNIST flag nor :data:`CORPUS_DATASET`; for fine-tuning, the corpus (it has no class labels:
    :data:`CORPUS_NOT_FOR_FINETUNING`), then a name that is no MedMNIST flag (:func:`check_dataset_name`). The
    rule of a recipe's ``data.dataset`` (:class:`medfm.training.recipes.DataConfig`,
    :class:`medfm.training.recipes.FinetuneDataConfig`) and of ``medfm finetune --dataset``, which the command line
    applies before its imports.

    Args:
        name: the name as given.
        where: what gave it, put first (``"data.dataset"``, ``"--dataset"``).
        finetuning: the run fine-tunes a classifier (else it pretrains).

    Raises:
        ValueError: fine-tuning on the corpus: ``"<where>: 'corpus' is the pretraining corpus (image-text pairs, no
            class labels); fine-tuning takes a MedMNIST data set, e.g. pneumoniamnist"``.
        UnknownDatasetError: an unknown name, with close matches (:func:`check_dataset_name`; fine-tuning: "unknown
            MedMNIST data set", pretraining: "unknown MedMNIST data set or corpus").
    """
    if finetuning and name == CORPUS_DATASET:
        raise ValueError(f"{where}: {CORPUS_NOT_FOR_FINETUNING}")
    check_dataset_name(name, where, corpus=not finetuning)


def check_split(split: Any, of: str, where: str = "") -> str:
    """Refuse a split name that is not one of :data:`SPLITS` (train, val, test), without importing torch: the one
    split rule of a MedMNIST set (:func:`check_medmnist_split`) and of the data sets a recipe or an evaluation suite
    names (``data.val_split`` of :class:`medfm.training.recipes.DataConfig`; ``split`` / ``train_split`` /
    ``val_split`` of :class:`medfm.evaluation.suite_spec.DatasetSpec`, whose image folders are split the same way).

    Args:
        split: the split name as given.
        of: the data set, as the message names it (``"MedMNIST 'pneumoniamnist'"``, ``"image folder 'mednist'"``).
        where: what gave it, put first (``"data.val_split"``); empty: nothing put first.

    Returns:
        ``split``, unchanged.

    Raises:
        UnknownSplitError: one line with a close match (:func:`medfm.registry.close_match_hint`), e.g.
            ``data.val_split: unknown split 'tset' for MedMNIST 'pneumoniamnist'; did you mean 'test'?``, else the
            valid names (``... (expected one of: train, val, test)``); a split that is no string (None) too.
    """
    if not isinstance(split, str) or split not in SPLITS:
        raise UnknownSplitError(f"{where + ': ' if where else ''}unknown split {split!r} for {of}"
                                f"{close_match_hint(str(split), SPLITS, fallback='expected one of')}")
    return split


def check_medmnist_split(flag: str, split: Any, where: str = "") -> str:
    """Refuse a split name MedMNIST does not have (:func:`check_split`): the check of
    :class:`medfm.data.medmnist.MedMNISTDataset`, also called by the entry points before they resolve a checkpoint
    (:func:`medfm.evaluation.evaluate.check_scoring_request` for ``evaluate_checkpoint`` and ``zeroshot_eval``: a
    typo used to be found only once the model was loaded).

    Args:
        flag: the MedMNIST flag, named in the message (not checked here: :func:`dataset_info` does).
        split: the split name to check.
        where: what gave it, put first (``"data.val_split"``); empty: nothing put first.

    Returns:
        ``split``, unchanged.

    Raises:
        UnknownSplitError: ``unknown split 'tset' for MedMNIST 'pneumoniamnist'; did you mean 'test'?``, else the
            valid names (``... (expected one of: train, val, test)``).
    """
    return check_split(split, f"MedMNIST {flag!r}", where)


def _info(flag: str) -> Dict[str, Any]:
    if not isinstance(flag, str) or flag not in INFO:
        raise UnknownDatasetError.for_name(flag, MEDMNIST_FLAGS, kind="MedMNIST flag")
    return INFO[flag]


def available_sizes(flag: str) -> Tuple[int, ...]:
    """Image sizes (px) ``flag`` is released at, from INFO's ``MD5_<size>`` keys (28 always).

    Raises:
        UnknownDatasetError: unknown flag (message lists close matches).
    """
    info = _info(flag)
    return (28,) + tuple(sorted(int(k[4:]) for k in info if k.startswith("MD5_")))


def _size_suffix(flag: str, size: int) -> str:
    sizes = available_sizes(flag)
    if not is_integer(size) or size not in sizes:  # 28.0 is refused, not taken as 28
        # True was shown as "size True", as if a bool could be a side (a download=True slipped into size's place)
        kind = "" if is_integer(size) else " (a size is an integer side in px)"
        raise UnsupportedSizeError(f"MedMNIST {flag!r} is not released at size {shown(size)}; available: "
                                   f"{list(sizes)}{kind}")
    return "" if size == 28 else f"_{size}"


def dataset_info(flag: str) -> Dict[str, Any]:
    """Metadata of a MedMNIST flag, usable without the data file.

    Returns:
        dict with ``flag``, ``task`` (INFO string, e.g. ``"binary-class"``,
        ``"multi-label, binary-class"``, ``"ordinal-regression"``), ``label_names``
        (list ordered by label index), ``num_classes`` (number of model outputs =
        ``len(label_names)``), ``n_channels`` (1 or 3), ``is_3d``, ``sizes`` (tuple of px),
        ``n_samples`` ({split: count}), ``license``, ``description``.

    Raises:
        UnknownDatasetError: unknown flag (message lists close matches).
    """
    info = _info(flag)
    label_names = [info["label"][str(i)] for i in range(len(info["label"]))]
    return {
        "flag": flag,
        "task": info["task"],
        "label_names": label_names,
        "num_classes": len(label_names),
        "n_channels": int(info["n_channels"]),
        "is_3d": flag in MEDMNIST_3D_FLAGS,
        "sizes": available_sizes(flag),
        "n_samples": dict(info["n_samples"]),
        "license": info["license"],
        "description": info["description"],
    }


def npz_name(flag: str, size: int = 28) -> str:
    """File name of a released MedMNIST file: ``<flag>.npz`` at 28 px, ``<flag>_<size>.npz`` otherwise.

    Raises:
        UnknownDatasetError, UnsupportedSizeError: bad flag or size.
    """
    return f"{flag}{_size_suffix(flag, size)}.npz"


def npz_url(flag: str, size: int = 28) -> str:
    """The zenodo URL of ``flag`` at ``size`` (INFO's ``url`` / ``url_<size>``).

    Raises:
        UnknownDatasetError, UnsupportedSizeError: bad flag or size.
    """
    return _info(flag)[f"url{_size_suffix(flag, size)}"]


def expected_md5(flag: str, size: int = 28) -> str:
    """The published md5 of ``flag`` at ``size`` (INFO's ``MD5`` / ``MD5_<size>``): what every load
    (:class:`medfm.data.medmnist.MedMNISTDataset`, ``verify=True``) and
    :func:`medfm.data.medmnist.download_medmnist` check the file against.

    Raises:
        UnknownDatasetError, UnsupportedSizeError: bad flag or size.
    """
    return _info(flag)[f"MD5{_size_suffix(flag, size)}"]


def npz_md5s() -> Dict[str, str]:
    """``{file name: published md5}`` of every released MedMNIST file (:func:`npz_name`,
    :func:`expected_md5`; every flag at every size), read from INFO at each call."""
    return {npz_name(f, s): expected_md5(f, s) for f in MEDMNIST_FLAGS for s in available_sizes(f)}


def medmnist_path(flag: str, size: int = 28, data_root: Optional[PathLike] = None) -> Path:
    """Expected path of the npz file: ``<data_root>/medmnist/<flag>[_<size>].npz``.

    Raises:
        UnknownDatasetError, UnsupportedSizeError: bad flag or size.
    """
    return dataset_dir("medmnist", data_root) / npz_name(flag, size)


def file_md5(path: PathLike) -> str:
    """md5 hex digest of ``path``, cached per (path, inode, size, mtime, ctime) for this process.

    The ctime (inode change time) is part of the key because it changes on every write and
    cannot be set back (unlike the mtime, which ``os.utime`` / ``cp -p`` / ``touch -r`` restore).
    """
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _MD5_CACHE:
        _MD5_CACHE[key] = io_file_md5(path)
    return _MD5_CACHE[key]


def verify_md5(path: PathLike, expected: str) -> None:
    """Check ``path`` against the published md5 ``expected``.

    Raises:
        ChecksumError: digests differ (message names the file and both digests).
    """
    actual = file_md5(path)
    if actual != expected:
        raise ChecksumError(
            f"md5 mismatch for {path}: got {actual}, expected {expected} "
            "(partial or altered file; replace it with a fresh copy, or skip the check: verify=False in "
            "Python, data.verify_md5: false in a recipe)"
        )


__all__ = [
    "INFO", "MEDMNIST_FLAGS", "MEDMNIST_2D_FLAGS", "MEDMNIST_3D_FLAGS", "SPLITS", "MULTI_LABEL_TASK",
    "available_sizes", "dataset_info", "npz_name", "npz_url", "expected_md5", "npz_md5s", "medmnist_path",
    "file_md5", "verify_md5", "check_split", "check_medmnist_split",
]
