"""One image-file reader for every medfm.data reader (CHASE_DB1, TCGA-LGG, MedNIST, VQA-RAD, corpus).

:func:`read_image` decodes a 2D image file with PIL (Clark et al., Pillow) into a uint8
numpy array and turns every way a file can be bad (absent, a folder, not an image,
truncated, a decompression bomb, non-finite float pixels) into one medfm data error with a
one-line message naming the file, never a PIL stack trace.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from medfm.data.errors import CorruptFileError, DataFileMissingError, MedFMDataError
from medfm.data.root import PathLike

#: PIL modes holding more than 8 bits per pixel (min-max scaled to 0-255 by :func:`read_image`)
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
#: modes :func:`read_image` can convert to
MODES = ("L", "RGB")


def missing_file(path: PathLike, what: str) -> DataFileMissingError:
    """The :class:`DataFileMissingError` for an absent data file: names ``what``, the path and the fix."""
    return DataFileMissingError(f"{what} not found at {path}; put the data set there (see its PROVENANCE.md) "
                                "or pass --data-root / set $MEDFM_DATA")


def corrupt_file_error(path: PathLike, what: str, err: BaseException) -> CorruptFileError:
    """The one-line :class:`CorruptFileError` for a file a library failed to decode: names ``what``,
    the path, the library's error type and the first line of its message."""
    detail = (str(err).splitlines() or [""])[0][:200]
    return CorruptFileError(f"cannot read {what} {path}: {type(err).__name__}: {detail}" if detail
                            else f"cannot read {what} {path}: {type(err).__name__}")


def scale_to_uint8(arr: np.ndarray, path: PathLike, what: str = "image") -> np.ndarray:
    """``(H, W)`` 16/32-bit or float pixels -> ``(H, W)`` uint8, min-max scaled to 0-255 (constant -> 0).

    Used for image files and in-memory images deeper than 8 bits (PIL modes in
    :data:`WIDE_MODES`); ``path`` and ``what`` only name the source in messages.

    Raises:
        CorruptFileError: non-finite pixel values.
    """
    arr = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise CorruptFileError(f"cannot read {what} {path}: {int((~np.isfinite(arr)).sum())} non-finite pixel value(s)")
    lo, hi = float(arr.min()), float(arr.max())
    return np.rint((arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)).astype(np.uint8)


def pil_to_uint8(im: Any, mode: Optional[str] = None, path: PathLike = "<PIL image>", what: str = "image") -> np.ndarray:
    """A loaded PIL image -> uint8 array, the conversion of :func:`read_image` (see there for ``mode``).

    Raises:
        CorruptFileError: non-finite pixels in a float image (``path``/``what`` name it).
    """
    from PIL import Image

    if im.mode in WIDE_MODES:
        im = Image.fromarray(scale_to_uint8(np.asarray(im), path, what))
    target = mode or (im.mode if im.mode in MODES else "RGB")
    return np.array(im if im.mode == target else im.convert(target), dtype=np.uint8)


def image_mode(path: PathLike, what: str = "image") -> str:
    """The PIL mode of an image file (``"L"``, ``"RGB"``, ``"1"``, ``"I;16"``, ...), header only.

    Raises:
        DataFileMissingError: no such file. CorruptFileError: not an image PIL can identify.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise missing_file(path, what)
    try:
        with Image.open(path) as im:
            return str(im.mode)
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...) for bad files
        raise corrupt_file_error(path, what, err) from None


def read_image(path: PathLike, mode: Optional[str] = None, what: str = "image") -> np.ndarray:
    """Decode one 2D image file into a uint8 array.

    Pixels deeper than 8 bits (PIL modes ``I;16``, ``I``, ``F``) are min-max scaled to 0-255
    first (a constant image becomes 0). Then:

    * ``mode=None``: 8-bit grey (``"L"``) and ``"RGB"`` stay as stored, every other mode
      (``"1"``, ``"P"``, ``"LA"``, ``"RGBA"``, ``"CMYK"``, ...) is converted to RGB;
    * ``mode="L"`` or ``"RGB"``: PIL's ``convert(mode)`` (ITU-R 601 luma for RGB -> L; grey
      repeated for L -> RGB; a ``"1"`` mask becomes 0/255).

    Args:
        path: the image file.
        mode: None, ``"L"`` or ``"RGB"`` (see above).
        what: what the file is, for messages (e.g. ``"CHASE_DB1 mask"``).

    Returns:
        ``(H, W)`` uint8 (grey) or ``(H, W, 3)`` uint8 (RGB), a fresh writable array.

    Raises:
        DataFileMissingError: no such file (or a folder in its place).
        CorruptFileError: not an image, truncated or damaged, or non-finite float pixels
            (one line naming ``what`` and the path).
        ValueError: ``mode`` not None, "L" or "RGB".
    """
    from PIL import Image

    if mode is not None and mode not in MODES:
        raise ValueError(f"read_image mode must be None, 'L' or 'RGB', got {mode!r}")
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, what)
    try:
        with Image.open(path) as im:
            im.load()
            return pil_to_uint8(im, mode, path, what)
    except MedFMDataError:
        raise
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...) for bad files
        raise corrupt_file_error(path, what, err) from None


__all__ = ["read_image", "pil_to_uint8", "image_mode", "missing_file", "scale_to_uint8", "corrupt_file_error",
           "WIDE_MODES", "MODES"]
