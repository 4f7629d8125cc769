"""The embedding cache key of a loaded text encoder refuses to hash files that replaced the loaded ones."""
import os
import shutil

import pytest

from medfm.text import HFTextEncoder, TextEncoderError
from medfm.text.model_files import model_file_stats, model_fingerprint
from tests.conftest import save_tiny_bert


def test_cache_key_refuses_model_files_replaced_after_loading(tmp_path):
    """Another model's files copied over the loaded one's: the key would name the new bytes, so it is refused."""
    path = save_tiny_bert(tmp_path / "m", ["a", "chest"])
    other = save_tiny_bert(tmp_path / "other", ["a", "chest", "hand"], hidden=48)
    enc = HFTextEncoder(str(path))
    for f in other.iterdir():  # replace the weights and config after loading
        shutil.copy2(f, path / f.name)
    with pytest.raises(TextEncoderError, match=r"changed since this encoder loaded them \(.*model\.safetensors"):
        enc.cache_key


def test_cache_key_of_unchanged_files_is_their_fingerprint(tmp_path):
    """Guard: unchanged files give the fingerprint of the loaded bytes, as before."""
    path = save_tiny_bert(tmp_path / "m", ["a", "chest"])
    enc = HFTextEncoder(str(path))
    assert enc.cache_key.split("|")[1] == model_fingerprint(path)


def test_model_file_stats_see_a_rewrite_with_the_same_size(tmp_path):
    """A file rewritten in place (same name and size, new mtime) changes the stats the check compares."""
    path = save_tiny_bert(tmp_path / "m", ["a", "chest"])
    before = model_file_stats(path)
    cfg = path / "config.json"
    st = cfg.stat()
    os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = model_file_stats(path)
    assert [n for n, *_ in before] == [n for n, *_ in after] and before != after
