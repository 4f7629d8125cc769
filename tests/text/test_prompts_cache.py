"""Prompt templates and the on-disk text-embedding cache."""
import logging

import numpy as np
import pytest
import torch

from medfm.data.medmnist_info import INFO
from medfm.text.cache import EmbeddingCache, medfm_cache_dir, text_key
from medfm.text.prompts import (
    FLAG_MODALITY,
    MODALITY_TEXTS,
    class_names,
    class_prompts,
    modality_of,
    modality_texts,
)


# -- prompts -----------------------------------------------------------------------------------
def test_every_medmnist_flag_has_a_described_modality():
    for flag in INFO:
        assert modality_of(flag) in MODALITY_TEXTS
        assert len(class_names(flag)) == len(INFO[flag]["label"])


def test_pneumonia_prompts_are_readable_and_in_label_order():
    prompts = class_prompts("pneumoniamnist")
    assert len(prompts) == 2 and len(prompts[0]) == len(prompts[1]) >= 2
    assert prompts[0][0] == "a chest X-ray showing no pneumonia (normal)"
    assert prompts[1][0] == "a chest X-ray showing pneumonia"
    custom = class_prompts("breastmnist", names=["cancer", "no cancer"], templates=["{modality}: {label}"])
    assert custom == [["a breast ultrasound image: cancer"], ["a breast ultrasound image: no cancer"]]


def test_default_templates_use_the_modality_phrase():
    prompts = class_prompts("organamnist")
    assert prompts[6][0] == "an abdominal CT slice showing liver"


def test_prompt_errors():
    with pytest.raises(KeyError, match="did you mean 'pneumoniamnist'"):
        class_prompts("pneumonimnist")
    with pytest.raises(ValueError, match="placeholder"):
        class_prompts("pneumoniamnist", templates=["a chest X-ray"])
    with pytest.raises(KeyError, match="did you mean 'chest_xray'"):
        modality_texts("chest_xrey")


# -- cache -------------------------------------------------------------------------------------
def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert medfm_cache_dir() == tmp_path / "xdg" / "medfm"
    assert medfm_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert str(medfm_cache_dir()).endswith(".cache/medfm")


def test_keys_depend_on_model_and_text():
    assert text_key("m|mean", "a") != text_key("m|cls", "a") != text_key("m|mean", "b")
    assert len(text_key("m", "a")) == 64


def test_round_trip_is_bit_exact_and_survives_a_new_process_view(tmp_path):
    cache = EmbeddingCache("model-A|mean|128", tmp_path)
    emb = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    shard = cache.put_many(["x", "y", "z"], emb)
    assert shard is not None and shard.is_file()
    assert not [p for p in shard.parent.iterdir() if ".tmp-" in p.name]
    fresh = EmbeddingCache("model-A|mean|128", tmp_path)  # as another process would see it
    got = fresh.get_many(["z", "x", "absent"])
    assert set(got) == {"x", "z"}
    assert torch.equal(got["x"], emb[0]) and torch.equal(got["z"], emb[2])
    assert EmbeddingCache("model-B|mean|128", tmp_path).get_many(["x"]) == {}
    assert cache.put_many(["x"], emb[:1]) is None  # nothing new, nothing written
    assert len(fresh) == 3


def test_corrupt_shard_is_ignored_with_a_warning(tmp_path, caplog):
    cache = EmbeddingCache("m", tmp_path)
    shard = cache.put_many(["x"], torch.ones(1, 4))
    shard.write_bytes(shard.read_bytes()[:20])
    with caplog.at_level(logging.WARNING):
        assert EmbeddingCache("m", tmp_path).get_many(["x"]) == {}
    assert "unreadable" in caplog.text


def test_put_many_rejects_bad_arrays(tmp_path):
    cache = EmbeddingCache("m", tmp_path)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        cache.put_many(["a", "b"], torch.ones(3, 4))
    with pytest.raises(ValueError, match="non-finite"):
        cache.put_many(["a"], torch.tensor([[np.nan, 1.0]]))


def test_encode_reads_hits_from_the_cache_without_running_the_model(tmp_path):
    from medfm.text.encoders import HFTextEncoder

    class Counting(HFTextEncoder):
        frozen, output_dim, cache_key = True, 4, "counting"

        def __init__(self):  # no transformers model: forward is a deterministic stand-in
            torch.nn.Module.__init__(self)
            self.calls = []

        def forward(self, texts):
            self.calls.append(list(texts))
            return torch.stack([torch.full((4,), float(len(t))) for t in texts])

    enc, cache = Counting(), EmbeddingCache("counting", tmp_path)
    first = enc.encode(["ab", "c", "ab"], cache=cache)
    assert enc.calls == [["ab", "c"]] and first.shape == (3, 4)
    again = enc.encode(["c", "ab"], cache=EmbeddingCache("counting", tmp_path))
    assert enc.calls == [["ab", "c"]]
    assert torch.equal(again, first[[1, 0]])
