"""Exception classes for medfm.data: one clear, one-line message per kind of bad input.

Every class derives from :class:`MedFMDataError` (catch-all for data problems) and from
the builtin that fits the problem (``ValueError`` for bad names/contents,
``FileNotFoundError`` for missing files, ``OSError`` for failed downloads), so callers
that already catch the builtin keep working.
"""
from __future__ import annotations

from typing import Iterable

from medfm.registry import close_match_hint


class MedFMDataError(Exception):
    """Base class of every medfm.data error."""


class UnknownDatasetError(MedFMDataError, ValueError):
    """A dataset name (e.g. a MedMNIST flag) that medfm does not know."""

    @classmethod
    def for_name(cls, name: object, known: Iterable[str], kind: str = "dataset") -> "UnknownDatasetError":
        """Build the error for ``name`` with up to three close matches from ``known``
        (:func:`medfm.registry.close_match_hint`, which ignores case: ``'PneumoniaMNIST'`` gets
        ``'pneumoniamnist'`` first), else the ``known`` names listed.

        Example message: ``unknown MedMNIST flag 'pneumonimnist'; did you mean 'pneumoniamnist'?``
        """
        return cls(f"unknown {kind} {name!r}{close_match_hint(name, list(known), n=3, cutoff=0.6, fallback='known')}")


class UnknownSplitError(MedFMDataError, ValueError):
    """A split name other than the ones the dataset provides (e.g. train/val/test)."""


class UnsupportedSizeError(MedFMDataError, ValueError):
    """An image size the dataset is not released at (e.g. 3D MedMNIST at 128)."""


class DataFileMissingError(MedFMDataError, FileNotFoundError):
    """A data file is not where it should be; the message names the path and how to get it."""

    def __str__(self) -> str:  # FileNotFoundError(msg) already prints msg; keep it one line
        return str(self.args[0]) if self.args else ""


class DownloadError(MedFMDataError, OSError):
    """A download failed (offline, timeout, HTTP error); names the file and where to put it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ChecksumError(MedFMDataError, ValueError):
    """A file's md5 differs from the published one."""


class CorruptFileError(MedFMDataError, ValueError):
    """A file cannot be read (truncated or damaged archive, pickled object arrays)."""


class DataShapeError(MedFMDataError, ValueError):
    """Arrays in a data file have the wrong keys, shapes, dtypes or label values."""


class EmptySplitError(MedFMDataError, ValueError):
    """A data split that holds no images, so there is nothing to score or fit on
    (:func:`medfm.evaluation.evaluate.check_split_has_images`)."""


__all__ = [
    "MedFMDataError",
    "UnknownDatasetError",
    "UnknownSplitError",
    "UnsupportedSizeError",
    "DataFileMissingError",
    "DownloadError",
    "ChecksumError",
    "CorruptFileError",
    "DataShapeError",
    "EmptySplitError",
]
