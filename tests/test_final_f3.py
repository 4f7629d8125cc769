"""Final review (F3: data): an image folder file that cannot be read is a one-line data error again.

Since :class:`~medfm.data.imagefolder.ImageFolderDataset` reads each file's bytes once itself (for the md5 and the
pixels), a file it may not read (no permission, an I/O error) raised the bare ``PermissionError`` / ``OSError`` of
``Path.read_bytes``, not the :class:`~medfm.data.errors.CorruptFileError` that
:func:`~medfm.data.images.read_image` gives (and gave here before): an evaluation suite, which skips a data set
whose data is unreadable (a :class:`~medfm.data.errors.MedFMDataError`), stopped instead.
"""
from __future__ import annotations

import builtins
import io

import numpy as np
import pytest

from medfm.data.errors import CorruptFileError
from medfm.data.imagefolder import ImageFolderDataset
from medfm.data.images import read_image
from tests.conftest import write_class_folders


def _deny(monkeypatch, path):
    """Opening ``path`` fails as a file without read permission does (the tests run as root, so chmod cannot)."""
    real = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)


def test_an_unreadable_image_file_is_the_one_line_error_read_image_gives(tmp_path, monkeypatch):
    root = write_class_folders(tmp_path, ["a", "b"], 2, np.random.default_rng(0), size=(4, 4))
    blocked = root / "b" / "1.png"
    _deny(monkeypatch, blocked)
    with pytest.raises(CorruptFileError) as want:
        read_image(blocked)
    with pytest.raises(CorruptFileError) as got:  # was: PermissionError: [Errno 13] Permission denied: '.../1.png'
        ImageFolderDataset(root)
    assert str(got.value) == str(want.value) == (f"cannot read image {blocked}: PermissionError: [Errno 13] "
                                                 f"Permission denied: '{blocked}'")
