"""Data-root precedence: explicit argument > $MEDFM_DATA > ~/.cache/medfm."""
from __future__ import annotations

from pathlib import Path

import pytest

from medfm.data import dataset_dir, resolve_data_root


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDFM_DATA", raising=False)
    return tmp_path / "home"


def test_default_is_cache_dir_under_home(home):
    assert resolve_data_root() == home / ".cache" / "medfm"


def test_env_beats_default(home, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"


def test_empty_env_falls_back_to_default(home, monkeypatch):
    monkeypatch.setenv("MEDFM_DATA", "")
    assert resolve_data_root() == home / ".cache" / "medfm"


def test_argument_beats_env(home, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_root("") == tmp_path / "env"  # empty argument counts as not given


def test_tilde_and_relative_paths_become_absolute(home, tmp_path, monkeypatch):
    assert resolve_data_root("~/data") == home / "data"
    monkeypatch.setenv("MEDFM_DATA", "~/envdata")
    assert resolve_data_root() == home / "envdata"
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root("../shared/data") == tmp_path.parent / "shared" / "data"


def test_dataset_dir(home, tmp_path, monkeypatch):
    assert dataset_dir("medmnist", tmp_path) == tmp_path / "medmnist"
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "env"))
    assert dataset_dir("vqa_rad") == tmp_path / "env" / "vqa_rad"
    for bad in ("", "..", "a/b", "/abs"):
        with pytest.raises(ValueError, match="one plain path component"):
            dataset_dir(bad)
