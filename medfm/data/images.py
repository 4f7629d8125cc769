"""One image-file reader for every medfm.data reader (CHASE_DB1, TCGA-LGG, MedNIST, VQA-RAD, corpus).

:func:`read_image` decodes a 2D image file with PIL (Clark et al., Pillow) into a uint8
numpy array, turned upright by its EXIF Orientation tag (:func:`load_upright`), and turns
every way a file can be bad (absent, a folder, not an image, truncated, a decompression bomb,
non-finite float pixels, several frames, or a TIFF or 16-bit colour PNG Pillow would misread: :func:`check_tiff`)
into one medfm data error with a one-line message naming the file, never a PIL stack trace.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, NamedTuple, Optional, Tuple

import numpy as np

from medfm.data.errors import CorruptFileError, DataFileMissingError, MedFMDataError
from medfm.data.root import PathLike

#: PIL modes holding more than 8 bits per pixel (min-max scaled to 0-255 by :func:`read_image`)
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
#: modes :func:`read_image` can convert to
MODES = ("L", "RGB")
#: the EXIF / TIFF Orientation tag (CIPA DC-008 "Exif 2.3" 4.6.4, TIFF 6.0 tag 274)
ORIENTATION_TAG = 0x0112
#: the TIFF BitsPerSample tag (TIFF 6.0 tag 258): bits of each channel, e.g. (16, 16, 16)
BITS_PER_SAMPLE_TAG = 258


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


_NIFTI_HINT = "a NIfTI volume, not a 2D image (3D volumes need a 3D model)"
#: file suffixes PIL does not decode that are passed for images, and what each file is
NON_IMAGE_SUFFIXES = {
    ".nii": _NIFTI_HINT,
    ".nii.gz": _NIFTI_HINT,
    ".npy": "a numpy array file, not an image file: pass np.load(path) instead",
    ".npz": "a numpy archive, not an image file: pass one of its arrays, np.load(path)[key]",
}
#: what :func:`non_image_hint` says about a DICOM file
DICOM_HINT = ("a DICOM file, which medfm does not decode: export it to PNG, or pass its pixels as a PIL image, "
              "Image.fromarray(pydicom.dcmread(path).pixel_array)")


def non_image_hint(path: PathLike) -> Optional[str]:
    """What a file PIL cannot decode is, when it is a known non-image format, with what to do; else None.

    NIfTI (``.nii``/``.nii.gz``) and numpy (``.npy``/``.npz``) files by suffix; DICOM by its
    ``.dcm``/``.dicom`` suffix or its ``DICM`` magic at byte 128 (DICOM files often have no suffix;
    PS3.10 section 7.1).
    """
    path = Path(path)
    name = path.name.lower()
    hint = next((h for suffix, h in NON_IMAGE_SUFFIXES.items() if name.endswith(suffix)), None)
    if hint is not None:
        return hint
    if name.endswith((".dcm", ".dicom")):
        return DICOM_HINT
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return DICOM_HINT if f.read(4) == b"DICM" else None
    except OSError:
        return None


def image_decode_error(path: PathLike, what: str, err: BaseException) -> CorruptFileError:
    """The :class:`CorruptFileError` for an image file PIL failed to decode: what the file is when
    :func:`non_image_hint` knows (NIfTI, DICOM, numpy), else :func:`corrupt_file_error`."""
    hint = non_image_hint(path)
    return CorruptFileError(f"cannot read {what} {path}: it is {hint}") if hint else corrupt_file_error(path, what, err)


def exif_upright(im: Any) -> Any:
    """A loaded PIL image turned upright by its EXIF Orientation tag (:data:`ORIENTATION_TAG`).

    Phone photos of films and some JPEG (or PNG) exports store the pixels rotated or mirrored and
    an Orientation of 2-8 saying how to show them; viewers, and transformers' ``load_image``,
    apply it with ``PIL.ImageOps.exif_transpose`` (right for every mode), and so does medfm. (TIFF
    files are turned by Pillow itself while loading, which drops the tag: see :func:`load_upright`.)
    An image without the tag, or with Orientation 1, is returned as is (the same object, no copy:
    images without EXIF, such as every MedNIST, VQA-RAD, CHASE_DB1 and TCGA-LGG file, decode exactly
    as before). An EXIF block PIL cannot parse is ignored (the pixels as stored), never an error.

    Returns:
        ``im`` itself, or a transposed copy (width and height swapped for Orientations 5-8).
    """
    from PIL import ImageOps

    orientation = _orientation(im)
    return ImageOps.exif_transpose(im) if orientation in range(2, 9) else im


def _orientation(im: Any) -> int:
    """The EXIF Orientation of a PIL image (1 when absent or the EXIF block cannot be parsed)."""
    try:
        return int(im.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # a damaged EXIF block (PIL raises SyntaxError, struct.error, ...): keep the stored pixels
        return 1


def load_upright(im: Any) -> Any:
    """A PIL image loaded and turned upright by its EXIF Orientation tag, whatever its format and mode.

    Pillow turns a TIFF upright itself while loading it (and drops the tag), but an uncompressed
    TIFF opened by file name in a mode Pillow memory-maps (``L``, ``P``, ``I;16``, ``RGBA``, ``CMYK``,
    ...) with Orientation 5-8 comes out scrambled: Pillow maps the stored pixels with the shown
    (swapped) width and height, then transposes (Pillow 13.0; ``I``, ``F``, ``RGB`` and compressed
    TIFFs come out right). So a TIFF whose Orientation is still pending (not loaded yet) is decoded
    afresh from its open file object, which Pillow reads instead of memory-mapping. Other formats:
    :func:`exif_upright`. The user's own image is left as it was (not loaded); an image Pillow
    already loaded is taken as loaded.

    Returns:
        ``im`` (loaded) or an upright loaded copy.

    Raises:
        whatever PIL raises loading it (a closed file: ``AssertionError`` / ``ValueError``; a
        truncated or damaged one: ``OSError``, ...); the callers turn it into their message.
    """
    from PIL import Image

    # a TIFF is a PIL ImageFile (tile, filename, fp); a closed file (fp None or closed) is left to im.load()'s error
    if (im.format == "TIFF" and im.tile and im.filename and im.fp and not im.fp.closed
            and _orientation(im) in range(2, 9)):
        im.fp.seek(0)
        fresh = Image.open(im.fp)  # a file object, not a name: read, never memory-mapped
        fresh.seek(im.tell())
        fresh.load()
        return fresh
    im.load()
    return exif_upright(im)


class TiffAdvice(NamedTuple):
    """The caller's words in :func:`check_tiff`'s refusals: what each one tells its user to do, and how it names
    a file. A reader of a data set's files (:data:`FILE_TIFF_ADVICE`) and a model's pipeline
    (:data:`medfm.pipelines.inputs.PIPELINE_TIFF_ADVICE`) give different advice for the same rule.

    Attributes:
        frames: put after ``"<name> is a TIFF of 3 frames (a stack, a volume or an animation?); "`` (any format:
            a multi-page TIFF, an animated PNG, GIF or WebP, ...).
        deep_colour: put after ``"<name> is an RGB TIFF with 16 bits per channel, which Pillow reads as 8 bits by
            keeping the high byte (12-bit data comes out nearly black); "``.
        loaded: put after ``"<name> is an uncompressed TIFF with EXIF Orientation 6 that Pillow loaded before medfm
            saw it, with its rows scrambled (a Pillow bug); "``.
        bare_name: :func:`read_image` names a file by its name alone (``"scan.tif"``: a file the user passed),
            else as ``"<what> <path>"`` (one file of a data set's folder).
    """

    frames: str
    deep_colour: str
    loaded: str
    bare_name: bool = False


#: what :func:`read_image`'s TIFF refusals say to do (the readers of data set and image folders)
FILE_TIFF_ADVICE = TiffAdvice(
    frames="medfm reads one 2D image per file: save each frame as its own image file (a volume as NIfTI)",
    deep_colour="save it as 8-bit RGB or 16-bit grayscale",
    loaded="read the file afresh (Image.open(path) without im.load() or np.asarray(im))")


def _tiff_name(im: Any) -> str:
    """How :func:`check_tiff`'s messages name a PIL image: its file's name when it has one."""
    return f"the PIL image of {Path(im.filename).name}" if getattr(im, "filename", None) else "the PIL image"


def _loaded_scrambled(im: Any) -> Optional[int]:
    """The EXIF Orientation (5-8) of a TIFF that Pillow has already loaded with its rows scrambled, else None.

    Pillow (13.0) memory-maps an uncompressed TIFF opened by file name in modes ``L``, ``P``, ``I;16``,
    ``RGBA``, ``CMYK``, ... with the shown (swapped) width and height of an Orientation 5-8, then
    transposes: the loaded image keeps the stored size and its rows are scrambled
    (:func:`load_upright` avoids this for images not yet loaded). Once loaded, the
    tag is gone; the file's header still has it, and an image loaded right has the size the header
    shows (the swapped one), so only a mis-loaded non-square image is named (a square one is loaded right).
    Only a loaded (no tile left), memory-mapped, non-square TIFF with a file name pays the header read.
    """
    from PIL import Image

    if im.tile or getattr(im, "map", None) is None or not getattr(im, "filename", None) or im.width == im.height:
        return None
    try:
        with Image.open(im.filename) as header:
            orientation, shown = int(header.getexif().get(ORIENTATION_TAG, 1)), header.size
    except Exception:  # the file is gone or changed: nothing to compare with
        return None
    return orientation if orientation in range(5, 9) and im.size != shown else None


#: formats whose extra frames are not more of the picture: Pillow's frame 0 is the whole picture (an MPO's primary
#: image, beside a preview or the other eye of a stereo pair: many phone and camera JPEGs; a PSD's merged image,
#: beside its layers), so :func:`check_tiff` reads them as one image
WHOLE_FIRST_FRAME_FORMATS = ("MPO", "PSD")


def _frames(im: Any) -> Optional[str]:
    """How many frames a PIL image opened from a multi-frame file holds, as a message says it ("3 frames"), else None.

    Pillow's ``is_animated`` and ``n_frames`` (a multi-page TIFF, an animated PNG, GIF or WebP, a FLI, DCX, ...);
    None for :data:`WHOLE_FIRST_FRAME_FORMATS`. A GIF looks for its second frame in its file: one closed after it
    was loaded (``im.load()`` inside its ``with Image.open(...)`` block) is asked again by its file name, read
    afresh; "several frames" when a multi-frame image's file can tell no more.
    """
    from PIL import Image

    if getattr(im, "format", None) in WHOLE_FIRST_FRAME_FORMATS:
        return None
    try:
        animated: Optional[bool] = bool(getattr(im, "is_animated", False))
    except Exception:  # a GIF whose file was closed: cannot look for its second frame
        animated = None
    if animated is False:
        return None
    try:
        return f"{int(im.n_frames)} frames"
    except Exception:  # its file was closed: the file on disk tells
        pass
    try:
        with Image.open(im.filename) as again:
            return f"{int(again.n_frames)} frames" if getattr(again, "is_animated", False) else None
    except Exception:  # no file name, or the file gone
        return "several frames" if animated else None


def _deep_colour(im: Any) -> Optional[Tuple[str, int]]:
    """``(colour kind, bits)`` of a TIFF or PNG with more than 8 bits per channel that Pillow decodes to 8 bits
    (``("RGB", 16)``), else None. A TIFF tells by its BitsPerSample tag (:data:`BITS_PER_SAMPLE_TAG`); a PNG not
    loaded yet by its tile's raw mode (Pillow decodes a 16-bit RGB, RGBA or grey + alpha PNG from ``"RGB;16B"``,
    ``"RGBA;16B"``, ``"LA;16B"`` into 8-bit ``RGB`` / ``RGBA``; a 16-bit grey PNG is ``I;16``, one of
    :data:`WIDE_MODES`, and min-max scaled). A PNG already loaded has no tile left and is not named."""
    fmt = getattr(im, "format", None)
    if im.mode in WIDE_MODES or fmt not in ("TIFF", "PNG"):
        return None
    if fmt == "TIFF":
        bits = tuple(getattr(im, "tag_v2", {}).get(BITS_PER_SAMPLE_TAG, ()) or ())
        return (im.mode, max(bits)) if bits and max(bits) > 8 else None
    raw = str(im.tile[0][3]) if im.tile and len(im.tile[0]) > 3 else ""
    return (raw.split(";")[0], 16) if raw.endswith(";16B") else None


def check_tiff(im: Any, advice: TiffAdvice = FILE_TIFF_ADVICE, name: str = "", error: type = CorruptFileError) -> None:
    """Refuse a PIL image that Pillow would turn into something other than the picture, one line each:

    - several frames, in any format (a multi-page TIFF: a stack or a volume; an animated PNG (APNG), GIF or
      WebP; ...: :func:`_frames`), of which Pillow gives frame 0 (or the frame seeked to) without a word; the
      frames of :data:`WHOLE_FIRST_FRAME_FORMATS` (MPO, PSD) are not refused, their frame 0 is the picture;
    - more than 8 bits per channel in a colour mode, in a TIFF (16-bit RGB / RGBA / CMYK) or a PNG not loaded yet
      (16-bit RGB / RGBA / grey + alpha: :func:`_deep_colour`): Pillow keeps the high byte, so 12-bit data comes
      out nearly black (16-bit grayscale is min-max scaled instead, :func:`scale_to_uint8`; no library medfm
      depends on decodes a 16-bit colour PNG at full precision);
    - already loaded by Pillow with its rows scrambled (an uncompressed, non-square TIFF with EXIF
      Orientation 5-8 loaded before medfm saw it, :func:`_loaded_scrambled`).

    Other images (single-frame non-TIFF ones: two attribute reads; a GIF: a look for its second frame) pass, as
    do 16-bit / 32-bit / float grayscale TIFFs (``I;16``, ``I``, ``F``: min-max scaled) and a TIFF not yet
    loaded with any Orientation
    (:func:`load_upright` reads it upright). Used by :func:`read_image` (every data set reader and
    :class:`medfm.data.imagefolder.ImageFolderDataset`) and, in its own words, by every 2D pipeline
    (:func:`medfm.pipelines.inputs.check_tiff`).

    Args:
        im: a PIL image (opened, loaded or not).
        advice: the caller's advice after each refusal (:class:`TiffAdvice`).
        name: how the message names the image (a file); default "the PIL image [of <file>]".
        error: the error class raised (a ``ValueError`` subclass).

    Raises:
        error: "scan.tif is a TIFF of 3 frames (a stack, a volume or an animation?); <advice.frames>" (any format:
            "... is a GIF of 12 frames ..."), "... is an RGB TIFF
            with 16 bits per channel, which Pillow reads as 8 bits ...; <advice.deep_colour>" (or "an RGB PNG",
            "an LA PNG"), "... was loaded
            by Pillow before medfm saw it, with its rows scrambled ...; <advice.loaded>".
    """
    frames = _frames(im)
    if frames is not None:
        kind = f"a {im.format}" if getattr(im, "format", None) else "an image"
        raise error(f"{name or _tiff_name(im)} is {kind} of {frames} (a stack, a volume or an animation?); "
                    f"{advice.frames}")
    deep = _deep_colour(im)
    if deep is not None:
        raise error(f"{name or _tiff_name(im)} is an {deep[0]} {im.format} with {deep[1]} bits per channel, which "
                    f"Pillow reads as 8 bits by keeping the high byte (12-bit data comes out nearly black); "
                    f"{advice.deep_colour}")
    if getattr(im, "format", None) != "TIFF":
        return
    name = name or _tiff_name(im)
    orientation = _loaded_scrambled(im)
    if orientation is not None:
        raise error(f"{name} is an uncompressed TIFF with EXIF Orientation {orientation} that Pillow loaded before "
                    f"medfm saw it, with its rows scrambled (a Pillow bug); {advice.loaded}")


def pil_to_uint8(im: Any, mode: Optional[str] = None, path: PathLike = "<PIL image>",
                 what: str = "image") -> np.ndarray:
    """A PIL image -> uint8 array, the conversion of :func:`read_image` (see there for ``mode``).

    A lazily opened image is loaded first; one whose file was already closed (used after its
    ``with Image.open(...)`` block) is refused by name instead of PIL's bare ``AssertionError``.
    An EXIF Orientation tag is applied, TIFFs included (:func:`load_upright`).

    Raises:
        CorruptFileError: non-finite pixels in a float image, a closed or unreadable image file
            (``path``/``what`` name it).
    """
    try:
        im = load_upright(im)
    except Exception as err:  # a closed file: AssertionError (with-block) or ValueError (close()); else OSError, ...
        if isinstance(err, AssertionError) or "closed" in str(err):
            raise CorruptFileError(f"cannot read {what} {path}: its file was closed before the pixels were read; call "
                                   "im.load() (or keep im.copy()) inside the `with Image.open(...)` block") from None
        raise corrupt_file_error(path, what, err) from None
    return _upright_to_uint8(im, mode, path, what)


def _upright_to_uint8(im: Any, mode: Optional[str], path: PathLike, what: str) -> np.ndarray:
    """The uint8 array of a PIL image :func:`load_upright` gave (:func:`pil_to_uint8`, :func:`read_image`)."""
    from PIL import Image

    if im.mode in WIDE_MODES:
        im = Image.fromarray(scale_to_uint8(np.asarray(im), path, what))
    target = mode or (im.mode if im.mode in MODES else "RGB")
    return np.array(im if im.mode == target else im.convert(target), dtype=np.uint8)


def _open_image(path: Path, data: Optional[bytes]) -> Any:
    """``Image.open`` of the file ``path``, or of its bytes ``data`` already read (Pillow's "cannot identify" then
    names ``path``, not the in-memory buffer)."""
    from PIL import Image, UnidentifiedImageError

    if data is None:
        return Image.open(path)
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnidentifiedImageError(f"cannot identify image file {str(path)!r}") from None


def image_mode(path: PathLike, what: str = "image", data: Optional[bytes] = None) -> str:
    """The PIL mode of an image file (``"L"``, ``"RGB"``, ``"1"``, ``"I;16"``, ...), header only.

    ``data``: the file's bytes, already read (parsed instead of reading ``path`` again; ``path`` names it).

    Raises:
        DataFileMissingError: no such file. CorruptFileError: not an image PIL can identify.
    """
    path = Path(path)
    if data is None and not path.is_file():
        raise missing_file(path, what)
    try:
        with _open_image(path, data) as im:
            return str(im.mode)
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...) for bad files
        raise image_decode_error(path, what, err) from None


def read_image(path: PathLike, mode: Optional[str] = None, what: str = "image",
               tiff_advice: TiffAdvice = FILE_TIFF_ADVICE, data: Optional[bytes] = None) -> np.ndarray:
    """Decode one 2D image file into a uint8 array.

    The image is turned upright by its EXIF Orientation tag, if any (:func:`load_upright`, as
    viewers and transformers' ``load_image`` show it; TIFFs in every mode). Pixels deeper than 8 bits (PIL modes
    ``I;16``, ``I``, ``F``) are min-max scaled to 0-255 first (a constant image becomes 0). Then:

    * ``mode=None``: 8-bit grey (``"L"``) and ``"RGB"`` stay as stored, every other mode
      (``"1"``, ``"P"``, ``"LA"``, ``"RGBA"``, ``"CMYK"``, ...) is converted to RGB;
    * ``mode="L"`` or ``"RGB"``: PIL's ``convert(mode)`` (ITU-R 601 luma for RGB -> L; grey
      repeated for L -> RGB; a ``"1"`` mask becomes 0/255).

    Args:
        path: the image file.
        mode: None, ``"L"`` or ``"RGB"`` (see above).
        what: what the file is, for messages (e.g. ``"CHASE_DB1 mask"``).
        tiff_advice: the words of the TIFF refusals (:func:`check_tiff`); the default names the file
            ``"<what> <path>"`` and says how to save it.
        data: the file's bytes, already read (e.g. for a checksum): decoded instead of reading ``path`` again
            (``path`` names the file in messages). Never memory-mapped, so a TIFF needs no fresh reading.

    Returns:
        ``(H, W)`` uint8 (grey) or ``(H, W, 3)`` uint8 (RGB), a fresh writable array, upright
        (``H``, ``W`` of the image as shown, swapped from the stored ones for EXIF Orientations 5-8).

    Raises:
        DataFileMissingError: no such file (or a folder in its place).
        CorruptFileError: not an image, truncated or damaged, or non-finite float pixels
            (one line naming ``what`` and the path; a NIfTI, DICOM or numpy file is named as
            such, :func:`non_image_hint`); a file of several frames (a multi-page TIFF, an animated PNG, GIF or
            WebP: Pillow read frame 0) or a TIFF or PNG with more than 8 bits per colour channel (16-bit RGB, RGBA
            or grey + alpha: it read the high bytes, 12-bit data nearly black): :func:`check_tiff`.
        ValueError: ``mode`` not None, "L" or "RGB".
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"read_image mode must be None, 'L' or 'RGB', got {mode!r}")
    path = Path(path)
    if data is None and not path.is_file():
        raise missing_file(path, what)
    try:
        with _open_image(path, data) as im:
            check_tiff(im, tiff_advice, path.name if tiff_advice.bare_name else f"{what} {path}")
            return _upright_to_uint8(load_upright(im), mode, path, what)  # load errors: image_decode_error
    except MedFMDataError:
        raise
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...) for bad files
        raise image_decode_error(path, what, err) from None


__all__ = ["read_image", "check_tiff", "TiffAdvice", "FILE_TIFF_ADVICE", "BITS_PER_SAMPLE_TAG",
           "WHOLE_FIRST_FRAME_FORMATS", "pil_to_uint8", "exif_upright", "load_upright", "image_mode", "missing_file",
           "scale_to_uint8",
           "corrupt_file_error", "image_decode_error", "non_image_hint", "WIDE_MODES", "MODES", "ORIENTATION_TAG",
           "NON_IMAGE_SUFFIXES", "DICOM_HINT"]
