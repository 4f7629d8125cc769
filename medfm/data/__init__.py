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
from medfm.data.medmnist import (
    MEDMNIST_2D_FLAGS,
    MEDMNIST_3D_FLAGS,
    MEDMNIST_FLAGS,
    MedMNISTDataset,
    dataset_info,
    label_fraction_indices,
)
from medfm.data.root import dataset_dir, resolve_data_root

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
