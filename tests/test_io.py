"""medfm.io: atomic writes leave no partial output; hashing matches hashlib."""
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import medfm
from medfm.io import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    file_md5,
    file_sha256,
    to_jsonable,
)


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_atomic_write_text_and_replace(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "first\n")
    atomic_write_text(p, "second\r\nline")
    assert p.read_bytes() == b"second\r\nline"
    assert _siblings(p) == ["a.txt"]


def test_atomic_path_keeps_old_file_when_writer_raises(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_text(p, "old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(p) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert _siblings(p) == ["r.json"]  # temp file removed


def test_atomic_write_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="parent directory"):
        atomic_write_text(tmp_path / "missing" / "x.txt", "x")
    with pytest.raises(TypeError, match="expects str"):
        atomic_write_text(tmp_path / "x.txt", b"x")
    with pytest.raises(TypeError, match="expects bytes"):
        atomic_write_bytes(tmp_path / "x.bin", "x")
    with pytest.raises(FileNotFoundError, match="did not create"):
        with atomic_path(tmp_path / "y.bin"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_json_strict_and_numpy(tmp_path):
    p = tmp_path / "r.json"
    obj = {"a": np.float32(0.5), "b": np.arange(3), "c": float("nan"), "d": (1, np.int64(2)),
           "e": {1: math.inf}, "p": tmp_path}
    atomic_write_json(p, obj)
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": 0.5, "b": [0, 1, 2], "c": None, "d": [1, 2], "e": {"1": None},
                                "p": str(tmp_path)}
    with pytest.raises(TypeError, match="cannot convert object"):
        to_jsonable({"x": object()})
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()


def test_atomic_dir_creates_and_replaces(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "model.safetensors").write_bytes(b"v1")
        (d / "stale.txt").write_text("only in v1")
    assert (target / "model.safetensors").read_bytes() == b"v1"
    with atomic_dir(target) as d:
        assert d != target and d.parent == tmp_path
        (d / "model.safetensors").write_bytes(b"v2")
    assert sorted(os.listdir(target)) == ["model.safetensors"]  # whole dir replaced
    assert (target / "model.safetensors").read_bytes() == b"v2"
    assert _siblings(target) == ["ckpt"]  # no temp/old dirs left behind


def test_atomic_dir_leaves_existing_dir_untouched_when_writer_raises(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "w.bin").write_bytes(b"good")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as d:
            (d / "w.bin").write_bytes(b"partial")
            raise KeyboardInterrupt  # e.g. a run killed mid-save
    assert (target / "w.bin").read_bytes() == b"good"
    assert _siblings(target) == ["ckpt"]
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "new") as d:
            (d / "w.bin").write_bytes(b"partial")
            raise ValueError("fail")
    assert not (tmp_path / "new").exists() and _siblings(target) == ["ckpt"]


def test_atomic_dir_removes_the_folders_it_created_when_writer_raises(tmp_path):
    """atomic_dir created the target's missing parents before the body ran, so a save that raised
    (save_pretrained of a non-medfm module, save_adapter refusing its extra_config) left empty
    folders behind; those are removed again, a pre-existing or meanwhile written-to folder stays."""
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "runs" / "a" / "ckpt"):
            raise ValueError("fail")
    assert os.listdir(tmp_path) == []  # runs/ and runs/a/ gone, tmp_path itself kept
    (tmp_path / "kept").mkdir()
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "kept" / "new" / "ckpt"):
            (tmp_path / "kept" / "new" / "log.txt").write_text("written meanwhile")
            raise ValueError("fail")
    assert os.listdir(tmp_path / "kept" / "new") == ["log.txt"]  # not empty: it stays, with its parents
    with atomic_dir(tmp_path / "made" / "by" / "ckpt") as d:
        (d / "w.bin").write_bytes(b"good")
    assert (tmp_path / "made" / "by" / "ckpt" / "w.bin").read_bytes() == b"good"
    with pytest.raises(ValueError):  # existing parents (made/by) stay though now empty of ckpt2
        with atomic_dir(tmp_path / "made" / "by" / "ckpt2"):
            raise ValueError("fail")
    assert os.listdir(tmp_path / "made" / "by") == ["ckpt"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError):  # a pre-existing empty parent is never removed
        with atomic_dir(tmp_path / "empty" / "ckpt"):
            raise ValueError("fail")
    assert (tmp_path / "empty").is_dir() and os.listdir(tmp_path / "empty") == []


def test_atomic_dir_survives_a_concurrent_cleanup_of_the_shared_parent(tmp_path, monkeypatch):
    """Two saves into siblings under one new parent: the other's failed save removes the (still
    empty) parent between this save's mkdir and mkdtemp. The save retries instead of failing
    with FileNotFoundError."""
    import tempfile

    real_mkdtemp = tempfile.mkdtemp
    parent = tmp_path / "runs" / "shared"
    calls = []

    def racing_mkdtemp(*args, **kwargs):
        calls.append(kwargs["dir"])
        if len(calls) == 1:  # the other process's clean-up runs now
            parent.rmdir()
            (tmp_path / "runs").rmdir()
        return real_mkdtemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", racing_mkdtemp)
    with atomic_dir(parent / "ckpt") as d:
        (d / "w.bin").write_bytes(b"good")
    assert (parent / "ckpt" / "w.bin").read_bytes() == b"good" and len(calls) == 2


def test_atomic_dir_refuses_file_target(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        with atomic_dir(f):
            pass
    assert f.read_text() == "x"


def test_hashes_match_hashlib(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    p = tmp_path / "blob"
    p.write_bytes(data)
    assert file_md5(p) == hashlib.md5(data).hexdigest()
    assert file_sha256(p) == hashlib.sha256(data).hexdigest()
    with pytest.raises(FileNotFoundError, match="no such file"):
        file_md5(tmp_path / "nope")


def test_kill_inside_the_rename_window_is_restored(tmp_path):
    """A process killed between atomic_dir's two renames leaves no target; the previous
    version is restored from its .old- sibling (never the possibly partial .tmp- one)."""
    import subprocess
    import sys
    import textwrap

    from medfm.io import restore_interrupted_dir

    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "state.json").write_text("step 3")
    script = textwrap.dedent(f"""
        import os, medfm.io as io
        real = os.replace
        def replace(src, dst):
            if ".tmp-" in str(src):
                os._exit(9)  # killed after moving the old version aside
            real(src, dst)
        io.os.replace = replace
        with io.atomic_dir({str(target)!r}) as tmp:
            (tmp / "state.json").write_text("step 6")
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert not target.exists() and len(list(tmp_path.glob(".checkpoint.old-*"))) == 1
    assert restore_interrupted_dir(target) == target
    assert (target / "state.json").read_text() == "step 3"
    assert restore_interrupted_dir(target) is None  # nothing to do once restored
    # the complete-but-unverified new version the kill left at .tmp- is deleted with the restore
    assert list(tmp_path.glob(".checkpoint.tmp-*")) == [] and list(tmp_path.glob(".checkpoint.old-*")) == []
    (tmp_path / ".other.old-a").mkdir()
    (tmp_path / ".other.old-b").mkdir()
    with pytest.raises(FileExistsError, match="several earlier versions"):
        restore_interrupted_dir(tmp_path / "other")


def test_restore_interrupted_dir_deletes_leftovers_of_earlier_kills(tmp_path):
    """A kill while writing a checkpoint (.tmp-) or while deleting the replaced one (.old-)
    leaves a checkpoint-sized directory beside the live one; resume deletes both and keeps
    the live checkpoint and unrelated siblings untouched."""
    from medfm.io import restore_interrupted_dir

    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "state.json").write_text("step 9")
    for name in (".checkpoint.tmp-abc", ".checkpoint.old-def", ".checkpoint2.tmp-x", "keep"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"x" * 10)
    assert restore_interrupted_dir(target) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [".checkpoint2.tmp-x", "checkpoint", "keep"]
    assert (target / "state.json").read_text() == "step 9"


def test_written_files_and_checkpoint_folders_get_the_umask_modes_not_private_ones(tmp_path):
    """safetensors created model.safetensors as 0600 and mkdtemp made checkpoint folders 0700,
    while the JSON and card were 0644: other users of a shared machine could not read the weights."""
    import stat

    import torch
    from safetensors.torch import save_file

    from medfm.hub import save_pretrained

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "w.safetensors") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp))
        with atomic_path(tmp_path / "private.bin") as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        with atomic_dir(tmp_path / "ckpt") as d:
            (d / "x.txt").write_text("x")
        from medfm.adapters.classification import ImageClassifier

        ckpt = save_pretrained(ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=16), num_classes=2,
                                               task="binary-class"), tmp_path / "clf")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(tmp_path / "w.safetensors") == 0o644
    assert mode(tmp_path / "private.bin") == 0o644
    assert mode(tmp_path / "ckpt") == 0o755
    assert {p.name: mode(p) for p in Path(ckpt).iterdir()} == {"config.json": 0o644, "model.safetensors": 0o644,
                                                               "README.md": 0o644}
    assert mode(ckpt) == 0o755
