"""Follow-ups of the medfm.text Python-API audit (tests/text/test_text_api_audit.py): the embedding cache
checks its texts as ``encode()`` does, a template reading an attribute or index of ``{label}`` is named as
such, and a text model given as an int or as an existing file (relative or absolute) is refused as what it
is instead of being looked up as a hub id (the comment on each case says what the old code did).
"""
import pytest
import torch

from medfm.checkpoint_ids import local_text_model_problem
from medfm.text import EmbeddingCache, HFTextEncoder, TextEncoderError
from medfm.text.model_files import resolve_text_model
from medfm.text.prompts import class_prompts


@pytest.mark.parametrize("texts, message", [
    ("ab", r"texts must be a list of strings, got str$"),  # was: one entry per character, 'a' and 'b'
    ([1, 2], r"texts must all be strings; got 2 item\(s\) of type int$"),  # was: keyed by str(1), str(2)
    ((t for t in ["a", "b"]), r"texts must be a list of strings, got generator$"),  # was: put_many's len() TypeError
    ([], r"texts is empty$"),  # as encode() says
], ids=["str", "ints", "generator", "empty"])
@pytest.mark.parametrize("method", ["get_many", "put_many"])
def test_the_cache_checks_its_texts_as_encode_does(tmp_path, method, texts, message):
    cache = EmbeddingCache("m", tmp_path)
    args = (texts,) if method == "get_many" else (texts, torch.ones(2, 3))
    with pytest.raises(TextEncoderError, match=rf"^EmbeddingCache\.{method}: " + message):
        getattr(cache, method)(*args)
    assert not cache.folder.exists()  # nothing written


def test_the_cache_still_takes_lists_and_tuples_of_strings(tmp_path):
    """Guard (passes on the old code too)."""
    cache = EmbeddingCache("m", tmp_path)
    assert cache.put_many(("a", "b"), torch.ones(2, 3)) is not None
    assert sorted(EmbeddingCache("m", tmp_path).get_many(["b", "a", "c"])) == ["a", "b"]


_READS = "reads an attribute or index of a placeholder ({{{}}})"
_QUOTES = "converts a placeholder ({{{}}} puts the text in Python quotes)"


@pytest.mark.parametrize("template, problem, field, plain", [
    ("{label.upper}", _READS, "label.upper", "label"),  # was: "every template needs a '{label}' placeholder"
    ("a chest X-ray showing {label[0]}", _READS, "label[0]", "label"),  # same
    ("{modality.title} with {label}", _READS, "modality.title", "modality"),  # was: "has field(s) ['modality.title']"
    ("a chest X-ray showing {label!r}", _QUOTES, "label!r", "label"),  # was: "a chest X-ray showing 'pneumonia'"
    ("{modality!a} with {label}", _QUOTES, "modality!a", "modality"),  # was: "'a chest X-ray' with pneumonia"
])
def test_a_template_reading_or_quoting_a_placeholder_is_named_as_such(template, problem, field, plain):
    with pytest.raises(ValueError) as info:
        class_prompts("pneumoniamnist", templates=[template])
    assert str(info.value) == (f"template {template!r} {problem.format(field)}; "
                               f"{{label}} and {{modality}} are filled in as plain strings: write {{{plain}}}")


def test_a_template_without_label_is_still_named_so():
    """Guard (passes on the old code too): the attribute check does not hide a missing ``{label}``."""
    with pytest.raises(ValueError, match=r"^every template needs a '\{label\}' placeholder, got '\{labels\}'$"):
        class_prompts("pneumoniamnist", templates=["{labels}"])


@pytest.mark.parametrize("ident, shown", [(3, "3"), (2.5, "2.5"), (["m"], r"\['m'\]"), (b"m", r"b'm' \(bytes\)")])
def test_a_text_model_that_is_not_a_string_or_path_is_refused(ident, shown, monkeypatch):
    """was: looked up as the hub id '3' (offline: "text model '3' is not in the local Hugging Face cache")."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = rf"^model_name_or_path must be a local model directory or a hub id \(a string or a path\), got {shown}$"
    assert local_text_model_problem(ident) is not None
    with pytest.raises(TextEncoderError, match=message):
        HFTextEncoder(ident)


def test_an_existing_file_is_named_a_file_relative_or_absolute(tmp_path, monkeypatch):
    """A relative file was looked up as a hub id ("text model 'notes.txt' is not in the local Hugging Face
    cache"); an absolute one was "no text model directory at". A file inside a model folder names the folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").write_text("x")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_text("x")
    what = "is a file, not a transformers model directory (the folder that holds config.json)"
    cases = {"notes.txt": f"'notes.txt' {what}", str(tmp_path / "notes.txt"): f"'{tmp_path / 'notes.txt'}' {what}",
             "./notes.txt": f"'notes.txt' {what}", "org/name": f"'org/name' {what}",
             "model/model.safetensors": f"'model/model.safetensors' {what}: pass 'model'",
             str(model / "config.json"): f"'{model / 'config.json'}' {what}: pass '{model}'"}
    for ident, message in cases.items():
        assert local_text_model_problem(ident) == message
        with pytest.raises(TextEncoderError) as info:
            HFTextEncoder(ident)
        assert str(info.value) == message


def test_local_folders_and_hub_ids_keep_their_rule(tmp_path, monkeypatch):
    """Guard (passes on the old code too): a relative ``org/name`` folder here is that folder, a pathlib.Path
    is a path, and names that may be hub ids pass when nothing of that name is here."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    (tmp_path / "org" / "name" / "config.json").write_text("{}")
    assert local_text_model_problem("org/name") is None
    assert resolve_text_model("org/name").resolve() == tmp_path / "org" / "name"
    assert local_text_model_problem(tmp_path / "org" / "name") is None
    for ident in ("other/name", "name", "bert-base-uncased"):
        assert local_text_model_problem(ident) is None
