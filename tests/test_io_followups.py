"""medfm.io follow-ups: one rule names the file in the way of a folder (make_dir / file_in_the_way), used by
the report folder, the text-embedding cache and the atomic writers."""
import re

import pytest
import torch

from medfm.evaluation.report import make_output_dir
from medfm.io import atomic_write_bytes, atomic_write_json, atomic_write_text, file_in_the_way, make_dir
from medfm.text.cache import EmbeddingCache


def test_file_in_the_way_names_the_topmost_file(tmp_path):
    (tmp_path / "f").write_text("x")
    assert file_in_the_way(tmp_path / "a" / "b") is None  # missing folders are no file
    assert file_in_the_way(tmp_path) is None
    assert file_in_the_way(tmp_path / "f") == tmp_path / "f"
    assert file_in_the_way(tmp_path / "f" / "sub" / "deeper") == tmp_path / "f"


def test_make_dir_creates_the_folder_and_names_the_file_in_its_way(tmp_path):
    out = make_dir(tmp_path / "a" / "b", advice="move it")
    assert out == tmp_path / "a" / "b" and out.is_dir()
    assert make_dir(str(out), advice="move it") == out  # an existing folder is fine, a str path too
    (tmp_path / "f").write_text("keep")
    for path in (tmp_path / "f", tmp_path / "f" / "sub" / "deeper"):
        blocker = re.escape(str(tmp_path / "f"))
        want = f"^cannot write '{re.escape(str(path))}': '{blocker}' is a file, not a folder; move it$"
        with pytest.raises(NotADirectoryError, match=want):
            make_dir(path, advice="move it")
    assert (tmp_path / "f").read_text() == "keep"


@pytest.mark.parametrize("write", [lambda p: atomic_write_text(p, "x"), lambda p: atomic_write_bytes(p, b"x"),
                                   lambda p: atomic_write_json(p, {})])
def test_an_atomic_write_under_a_file_names_that_file(tmp_path, write):
    # old: FileNotFoundError "parent directory '<tmp>/f/sub' does not exist", naming a folder below the file
    (tmp_path / "f").write_text("keep")
    with pytest.raises(NotADirectoryError, match=f"^cannot write .*: {re.escape(repr(str(tmp_path / 'f')))} "
                                                 "is a file, not a folder$"):
        write(tmp_path / "f" / "sub" / "x.json")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        write(tmp_path / "f" / "x.json")
    with pytest.raises(FileNotFoundError, match="parent directory .* does not exist"):  # truly missing: as before
        write(tmp_path / "missing" / "x.json")
    assert (tmp_path / "f").read_text() == "keep"


def test_report_folder_and_cache_folder_use_the_writers_words(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match=f"^cannot write {re.escape(repr(str(tmp_path / 'f')))}: "
                                                 f"{re.escape(repr(str(tmp_path / 'f')))} is a file, not a folder; "
                                                 "choose another output folder$"):
        make_output_dir(tmp_path / "f")
    with pytest.raises(NotADirectoryError, match=f"^cannot write .*: {re.escape(repr(str(tmp_path / 'f')))} "
                                                 "is a file, not a folder; choose another output folder$"):
        make_output_dir(tmp_path / "f" / "a" / "b")  # the topmost file, not a folder below it
    assert make_output_dir(tmp_path / "r" / "s").is_dir()
    cache = EmbeddingCache("m", tmp_path / "f" / "deeper")
    with pytest.raises(NotADirectoryError, match=f"^cannot write .*: "
                                                 f"{re.escape(repr(str(tmp_path / 'f')))} is a file, not a folder"):
        cache.put_many(["a"], torch.ones(1, 4))
