"""medfm.data: datasets, data-root resolution, checksums and clear data errors.

Data root precedence: ``--data-root`` > ``$MEDFM_DATA`` > ``~/.cache/medfm``
(:func:`resolve_data_root`); each dataset lives in ``<root>/<name>/`` (:func:`dataset_dir`).
"""
from __future__ import annotations

from medfm.data.errors import (
    ChecksumError,
    CorruptFileError,
    DataFileMissingError,
    DataShapeError,
    DownloadError,
    MedFMDataError,
    UnknownDatasetError,
    UnknownSplitError,
    UnsupportedSizeError,
)
from medfm.data.root import dataset_dir, resolve_data_root

#: names imported on first use (PEP 562): ``medfm.data.medmnist`` imports torch (seconds) and
#: ``medfm.data.medmnist_info`` reads the medmnist package's INFO table, which ``import
#: medfm.data.errors`` (the command line's error classes) need not pay for
_LAZY = {
    **{name: "medfm.data.medmnist_info" for name in (
        "MEDMNIST_2D_FLAGS", "MEDMNIST_3D_FLAGS", "MEDMNIST_FLAGS", "dataset_info")},
    **{name: "medfm.data.medmnist" for name in ("MedMNISTDataset", "label_fraction_indices")},
}


def __getattr__(name: str):
    """``from medfm.data import MedMNISTDataset`` and friends, imported when first asked for."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medfm.data' has no attribute {name!r}")


__all__ = [
    "resolve_data_root",
    "dataset_dir",
    "MedMNISTDataset",
    "dataset_info",
    "label_fraction_indices",
    "MEDMNIST_FLAGS",
    "MEDMNIST_2D_FLAGS",
    "MEDMNIST_3D_FLAGS",
    "MedFMDataError",
    "UnknownDatasetError",
    "UnknownSplitError",
    "UnsupportedSizeError",
    "DataFileMissingError",
    "DownloadError",
    "ChecksumError",
    "CorruptFileError",
    "DataShapeError",
]
