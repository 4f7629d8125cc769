"""Public Python API of medfm.text called directly (not through the CLI): bad arguments give one clear
error naming the problem, not a ``range()``/``torch.cat``/``JSONDecodeError``/``AttributeError`` from
inside (found by /tmp/helperB/probe4.py; the comment on each case says what the old code did)."""
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from medfm.text import EmbeddingCache, HFTextEncoder, TextEncoderError, create_text_encoder, text_encoder_dim
from medfm.text.encoders import pool_hidden_states
from medfm.text.prompts import class_prompts
from tests.conftest import save_tiny_bert


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("api_bert"), ["a", "chest", "x", "ray", "hand"])


@pytest.fixture(scope="module")
def encoder(tiny_bert) -> HFTextEncoder:
    return HFTextEncoder(str(tiny_bert))


@pytest.mark.parametrize("method", ["encode", "encode_tokens"])
@pytest.mark.parametrize("batch_size, shown", [(0, "0"), (-1, "-1"), (1.5, "1.5"), (True, r"True \(bool\)")])
def test_batch_size_must_be_a_positive_integer(encoder, method, batch_size, shown):
    # old: 0 -> "range() arg 3 must not be zero"; -1 -> "torch.cat(): expected a non-empty list of Tensors" (encode)
    # or KeyError: 'a' (encode_tokens); 1.5 -> TypeError; True -> batches of one text
    with pytest.raises(TextEncoderError, match=rf"^batch_size must be an integer >= 1, got {shown}$"):
        getattr(encoder, method)(["a chest", "hand"], batch_size=batch_size)


@pytest.mark.parametrize("cache", [{"a": 1}, "/tmp/cache"], ids=["dict", "str"])
def test_encode_names_a_cache_that_is_not_an_embedding_cache(encoder, cache):
    # old: "this embedding cache belongs to another text encoder ...", which it is not
    with pytest.raises(TextEncoderError, match=r"^cache must be an EmbeddingCache \(EmbeddingCache\(encoder\.cache_key\)\), "
                                               r"got (dict|str)$"):
        encoder.encode(["a"], cache=cache)


@pytest.mark.parametrize("config, message", [
    ("{not json", r"^cannot read the text model config '.*config\.json': JSONDecodeError: "),  # bare JSONDecodeError
    ("[1, 2]", r"config\.json' is not a JSON object \(got a list\)"),  # AttributeError: 'list' ... 'get'
])
def test_text_encoder_dim_names_a_corrupt_config(tmp_path, config, message):
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(TextEncoderError, match=message) as info:
        text_encoder_dim({"name": "hf", "model_name_or_path": str(tmp_path)})
    assert "\n" not in str(info.value)


def test_text_encoder_dim_checks_the_spec_as_create_text_encoder_does():
    # old: ValueError "dictionary update sequence element #0 has length 1; 2 is required"
    with pytest.raises(TextEncoderError, match=r"^a text encoder spec is a mapping with a string name"):
        text_encoder_dim("minilm")


def test_a_pathlib_model_path_is_taken_and_recorded_as_a_string(tiny_bert):
    # old: "model_name_or_path must be a local model directory or a hub id, got PosixPath(...)" (it is one)
    enc = create_text_encoder({"name": "hf", "model_name_or_path": Path(tiny_bert)})
    assert enc.spec["model_name_or_path"] == str(tiny_bert) and enc.output_dim == 32
    assert text_encoder_dim({"name": "hf", "model_name_or_path": Path(tiny_bert)}) == 32
    json.dumps(enc.spec)  # a spec recorded in config.json


@pytest.mark.parametrize("hidden, mask", [(torch.rand(2, 4), torch.ones(2, 3)), (torch.rand(2, 3, 4), torch.ones(2, 5))],
                         ids=["2d_hidden", "mask_length"])
def test_pool_hidden_states_names_mismatched_shapes(hidden, mask):
    # old: RuntimeError "The size of tensor a (...) must match the size of tensor b (...)"
    with pytest.raises(TextEncoderError, match=r"^pool_hidden_states needs hidden \(B, T, D\) and attention_mask "
                                               r"\(B, T\), got \("):
        pool_hidden_states(hidden, mask, "mean")


@pytest.mark.parametrize("key", [5, ["m"]], ids=["int", "list"])
def test_cache_model_key_must_be_a_string(tmp_path, key):
    # old: AttributeError: 'int' object has no attribute 'encode'
    with pytest.raises(ValueError, match=r"^EmbeddingCache needs a non-empty string model_key \(encoder\.cache_key\), got "):
        EmbeddingCache(key, tmp_path)


@pytest.mark.parametrize("where", ["cache_dir", "model_folder"])
def test_a_file_in_the_way_of_the_cache_folder_is_named(tmp_path, where):
    # old: the errno message of mkdir naming the folder below the file (NotADirectoryError), or a bare
    # FileExistsError when the model's own folder was a file
    blocker = tmp_path / "cache"
    if where == "cache_dir":
        blocker.write_text("not a folder")
        cache = EmbeddingCache("m", blocker)
    else:
        cache = EmbeddingCache("m", blocker)
        cache.folder.parent.mkdir(parents=True)
        cache.folder.write_text("not a folder")
        blocker = cache.folder
    assert cache.get_many(["a"]) == {}  # reading an absent cache is fine
    with pytest.raises(NotADirectoryError, match=rf"^cannot write .*: "
                                                 rf"'{blocker}' is a file, not a folder; pass another cache_dir"):
        cache.put_many(["a"], torch.ones(1, 4))


def test_a_shard_holding_a_pickle_is_ignored_and_never_unpickled(tmp_path, caplog):
    """Guard (passes on the old code too): shards are read with ``allow_pickle=False``, so a shard made
    of a pickle, or an npz with object arrays, is skipped with a warning; its payload never runs."""
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    cache = EmbeddingCache("m", tmp_path)
    cache.put_many(["a"], torch.ones(1, 4))
    (cache.folder / "shard-pickle.npz").write_bytes(pickle.dumps(Payload()))
    with open(cache.folder / "shard-objects.npz", "wb") as fh:
        np.savez(fh, keys=np.array([Payload()], dtype=object), embeddings=np.zeros((1, 4), np.float32))
    with caplog.at_level("WARNING"):
        got = EmbeddingCache("m", tmp_path).get_many(["a"])
    assert list(got) == ["a"] and not marker.exists()
    assert caplog.text.count("ignoring unreadable text-embedding cache shard") == 2


@pytest.mark.parametrize("template", ["{label:d} finding", "{label!z} finding"])
def test_a_template_a_class_name_cannot_fill_is_named(template):
    # old: "Unknown format code 'd' for object of type 'str'", naming no template
    with pytest.raises(ValueError, match=r"^template '\{label.{2}\} finding' cannot be filled in with a class name: "):
        class_prompts("pneumoniamnist", templates=[template])
