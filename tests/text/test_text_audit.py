"""Audit regressions of medfm.text: truncation to the model's positions, forced right padding,
corrupt model folders, cache/encoder identity, malformed cache shards and prompt validation."""
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medfm.text import HFTextEncoder, TextEncoderError
from medfm.text.cache import EmbeddingCache, text_key
from medfm.text.prompts import class_prompts, modality_of, modality_texts
from tests.conftest import save_tiny_bert

WORDS = ["a", "chest", "x", "-", "ray", "showing", "pneumonia", "normal", "hand", "brain", "mri", "ct"]
LONG = " ".join(["chest"] * 200)  # 200 word pieces: more than the tiny BERT's 64 positions


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("audit_bert"), WORDS)


@pytest.fixture(scope="module")
def encoder(tiny_bert) -> HFTextEncoder:
    return HFTextEncoder(str(tiny_bert))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- encoders ------------------------------------------------------------------------------------
def test_long_text_is_truncated_to_the_models_position_table(encoder):
    assert encoder.model.config.max_position_embeddings == 64
    assert encoder.max_length == 64 and encoder.spec["max_length"] == 64  # default 128 lowered
    out = encoder([LONG, "hand"])
    assert out.shape == (2, 32) and torch.isfinite(out).all()
    hidden, mask = encoder.encode_tokens([LONG])
    assert hidden.shape == (1, 64, 32) and bool(mask.all())


@pytest.mark.parametrize("pooler", ["cls", "mean"])
def test_left_padding_tokenizer_is_padded_right(tiny_bert, tmp_path, pooler):
    left = _copy(tiny_bert, tmp_path / "left")
    cfg = json.loads((left / "tokenizer_config.json").read_text())
    (left / "tokenizer_config.json").write_text(json.dumps({**cfg, "padding_side": "left"}))
    enc = HFTextEncoder(str(left), pooler=pooler)
    alone = enc(["hand"])
    batched = enc(["hand", "a chest x - ray showing pneumonia normal brain"])[:1]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)


def test_embeddings_stay_fp32_under_bf16_autocast(encoder):
    texts = ["a chest x - ray showing pneumonia", "hand"]
    ref = encoder(texts)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = encoder(texts)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_corrupt_weights_fail_with_one_clear_error(tiny_bert, tmp_path):
    bad = _copy(tiny_bert, tmp_path / "bad")
    (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:100])
    with pytest.raises(TextEncoderError, match="cannot load a transformers text model from") as info:
        HFTextEncoder(str(bad))
    assert "\n" not in str(info.value)


def test_missing_tokenizer_vocabulary_is_refused(tiny_bert, tmp_path):
    bare = _copy(tiny_bert, tmp_path / "bare")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (bare / name).unlink()
    with pytest.raises(TextEncoderError, match="no vocabulary"):
        HFTextEncoder(str(bare))


@pytest.mark.parametrize("value", [None, "128", True, 1, 12.5])
def test_bad_max_length_is_one_clear_error(tiny_bert, value):
    with pytest.raises(TextEncoderError, match="max_length must be an integer"):
        HFTextEncoder(str(tiny_bert), max_length=value)


def test_encode_refuses_a_cache_built_for_another_encoder(tiny_bert, tmp_path):
    mean, cls = HFTextEncoder(str(tiny_bert), pooler="mean"), HFTextEncoder(str(tiny_bert), pooler="cls")
    cache = EmbeddingCache(mean.cache_key, tmp_path)
    mean.encode(["hand"], cache=cache)
    with pytest.raises(TextEncoderError, match="another text encoder"):
        cls.encode(["hand"], cache=cache)
    torch.testing.assert_close(cls.encode(["hand"], cache=EmbeddingCache(cls.cache_key, tmp_path)), cls(["hand"]))


def test_encode_refuses_a_cache_for_a_trainable_encoder(tiny_bert, tmp_path):
    enc = HFTextEncoder(str(tiny_bert), frozen=False)
    with pytest.raises(TextEncoderError, match="frozen"):
        enc.encode(["hand"], cache=EmbeddingCache(enc.cache_key, tmp_path))


# -- cache ---------------------------------------------------------------------------------------
def _write_shard(cache: EmbeddingCache, name: str, keys: np.ndarray, emb: np.ndarray) -> None:
    with open(cache.folder / f"shard-{name}.npz", "wb") as fh:
        np.savez(fh, keys=keys, embeddings=emb)


@pytest.mark.parametrize("case", ["other_dim", "unicode_keys", "nan"])
def test_malformed_shards_are_ignored_never_returned(tmp_path, caplog, case):
    cache = EmbeddingCache("m", tmp_path)
    cache.put_many(["a"], torch.ones(1, 4))
    keys = np.array([text_key("m", "b")], dtype="S64")
    emb = np.full((1, 4), 2.0, np.float32)
    if case == "other_dim":
        emb = np.full((1, 3), 2.0, np.float32)
    elif case == "unicode_keys":
        keys = keys.astype("U64")
    else:
        emb[0, 1] = np.nan
    _write_shard(cache, "zz", keys, emb)
    with caplog.at_level(logging.WARNING):
        got = EmbeddingCache("m", tmp_path).get_many(["a", "b"])
    assert sorted(got) == ["a"] and torch.equal(got["a"], torch.ones(4))
    assert "unreadable" in caplog.text


def test_put_many_refuses_a_second_embedding_size(tmp_path):
    cache = EmbeddingCache("m", tmp_path)
    cache.put_many(["a"], torch.ones(1, 4))
    with pytest.raises(ValueError, match="4-d embeddings, got 3-d"):
        EmbeddingCache("m", tmp_path).put_many(["b"], torch.ones(1, 3))


# -- prompts -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"names": ["", "pneumonia"]}, "non-empty strings"),
    ({"names": ["  ", "pneumonia"]}, "non-empty strings"),
    ({"names": [None, "pneumonia"]}, "non-empty strings"),
    ({"names": "ab"}, "list of strings"),
    ({"names": ["pneumonia", "pneumonia"]}, "'pneumonia' is repeated"),
    ({"names": ["a", "b", "c"]}, "2 classes but 3 class names"),
    ({"templates": "{label} x"}, "list of strings"),
    ({"templates": ["{label}", "{label}"]}, "is repeated"),
    ({"templates": ["{label} in {organ}"]}, r"field\(s\) \['organ'\]"),
    ({"templates": ["{label} {"]}, "malformed braces"),
])
def test_class_prompts_rejects_bad_names_and_templates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        class_prompts("pneumoniamnist", **kwargs)


def test_class_prompts_accepts_custom_names_and_modality_templates():
    got = class_prompts("pneumoniamnist", names=["healthy lungs", "pneumonia"], templates=["{modality} of {label}"])
    assert got == [["a chest X-ray of healthy lungs"], ["a chest X-ray of pneumonia"]]


@pytest.mark.parametrize("bad", [None, ["pneumoniamnist"], 3])
def test_non_string_flag_or_modality_is_a_clear_error(bad):
    with pytest.raises(KeyError, match="must be a string"):
        modality_of(bad)
    with pytest.raises(KeyError, match="must be a string"):
        modality_texts(bad)
