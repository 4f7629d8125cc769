"""Second follow-ups of the text API audit: a relative local text model is resolved once (its cache key
cannot change with the current folder), and a prompt template's ``!r``/``!a`` conversion is refused. Each
test fails on the code before these changes (the comments say what happened then), unless it says guard."""
from __future__ import annotations

from medfm.text.encoders import HFTextEncoder
from medfm.text.prompts import class_prompts
from tests.conftest import save_tiny_bert


def test_a_relative_text_model_keeps_its_cache_key_after_a_chdir(tmp_path, monkeypatch):
    """The fingerprint in ``cache_key`` is computed lazily; the path was kept relative, so after a chdir it
    hashed whatever folder had that name there (embeddings of one model cached under another's key), or
    raised FileNotFoundError where there was none."""
    for folder, words in (("a", ["chest", "xray"]), ("b", ["brain", "mri"])):
        save_tiny_bert(tmp_path / folder / "model", words)
    monkeypatch.chdir(tmp_path / "a")
    enc = HFTextEncoder("model")
    assert enc.path == (tmp_path / "a" / "model").resolve()
    assert enc.spec["model_name_or_path"] == "model"  # the spec keeps what was given
    key = enc.cache_key
    monkeypatch.chdir(tmp_path / "b")  # another model of the same relative name
    assert enc.cache_key == key  # was: the fingerprint of b/model
    monkeypatch.chdir(tmp_path)
    assert enc.cache_key == key  # was: FileNotFoundError: 'model'
    assert key.split("|")[1] == HFTextEncoder(str(tmp_path / "a" / "model")).cache_key.split("|")[1]


def test_a_str_conversion_is_the_plain_text():
    """Guard (passes on the old code too): ``{label!s}`` fills in the name as ``{label}`` does."""
    assert class_prompts("pneumoniamnist", templates=["x {label!s}"]) == class_prompts("pneumoniamnist",
                                                                                         templates=["x {label}"])
