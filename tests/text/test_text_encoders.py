"""Frozen text encoders: local-path loading, poolers, freezing, offline errors, the bundled MiniLM."""
from pathlib import Path

import pytest
import torch

from medfm.registry import TEXT_ENCODERS, UnknownNameError
from medfm.text import HFTextEncoder, TextEncoderError, create_text_encoder, text_encoder_dim
from medfm.text.encoders import check_texts, pool_hidden_states, resolve_text_model
from tests.conftest import save_tiny_bert

WORDS = ["a", "chest", "x", "-", "ray", "showing", "pneumonia", "normal", "hand", "brain", "mri", "ct"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), WORDS)


def test_registry_holds_the_builders():
    assert {"minilm", "hf"} <= set(TEXT_ENCODERS.names())
    with pytest.raises(UnknownNameError, match="did you mean 'minilm'"):
        create_text_encoder({"name": "minilmm"})


@pytest.mark.parametrize("pooler", ["mean", "cls"])
def test_local_path_pooling_matches_hand_computation(tiny_bert, pooler):
    enc = HFTextEncoder(str(tiny_bert), pooler=pooler, max_length=16)
    texts = ["a chest x - ray showing pneumonia", "hand"]
    out = enc(texts)
    assert out.shape == (2, 32) and out.dtype == torch.float32 and enc.output_dim == 32
    tok = enc.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = enc.model(**tok).last_hidden_state
    for i in range(2):
        n = int(tok["attention_mask"][i].sum())
        ref = hidden[i, :n].mean(0) if pooler == "mean" else hidden[i, 0]
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_mean_pooling_ignores_padding(tiny_bert):
    enc = HFTextEncoder(str(tiny_bert))
    alone = enc(["hand"])
    padded = enc(["hand", "a chest x - ray showing pneumonia normal brain mri ct"])[:1]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=0)


def test_pool_hidden_states_reference():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    mean = pool_hidden_states(hidden, mask, "mean")
    torch.testing.assert_close(mean, torch.tensor([[1.0, 2.0], [8.0, 9.0]]))
    torch.testing.assert_close(pool_hidden_states(hidden, mask, "cls"), hidden[:, 0])
    with pytest.raises(TextEncoderError, match="unknown pooler"):
        pool_hidden_states(hidden, mask, "max")


def test_frozen_by_default_and_stays_in_eval(tiny_bert):
    enc = HFTextEncoder(str(tiny_bert))
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.model.training
    out = enc(["chest"])
    assert not out.requires_grad
    trainable = HFTextEncoder(str(tiny_bert), frozen=False)
    trainable.train()
    assert trainable.model.training and trainable(["chest"]).requires_grad


def test_spec_rebuilds_and_dim_is_read_without_weights(tiny_bert):
    enc = create_text_encoder({"name": "hf", "model_name_or_path": str(tiny_bert), "pooler": "cls"})
    again = create_text_encoder(enc.spec)
    torch.testing.assert_close(enc(["ct"]), again(["ct"]))
    assert text_encoder_dim(enc.spec) == 32


def test_bad_inputs_raise_one_clear_error(tiny_bert, tmp_path):
    enc = HFTextEncoder(str(tiny_bert))
    with pytest.raises(TextEncoderError, match="list of strings"):
        enc("a chest x-ray")
    with pytest.raises(TextEncoderError, match="empty"):
        enc([])
    with pytest.raises(TextEncoderError, match="strings"):
        check_texts(["ok", 3])
    with pytest.raises(TextEncoderError, match="unknown pooler"):
        HFTextEncoder(str(tiny_bert), pooler="max")
    with pytest.raises(TextEncoderError, match="no text model directory"):
        HFTextEncoder(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextEncoderError, match="config.json is missing"):
        resolve_text_model(str(tmp_path / "empty"))


def test_hub_id_offline_fails_fast_naming_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TextEncoderError, match="hf download medfm-tests/no-such-model") as err:
        create_text_encoder({"name": "hf", "model_name_or_path": "medfm-tests/no-such-model"})
    # a relative "folder/name" may have been meant as a local folder: the message says it is not there either
    assert f"no local folder {str(tmp_path / 'medfm-tests' / 'no-such-model')!r}" in str(err.value)


def test_bundled_minilm_loads_offline_and_matches_sentence_transformers(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = create_text_encoder()  # default: the bundled all-MiniLM-L6-v2
    texts = ["a chest X-ray", "a radiograph of the chest", "a photo of a cat on a sofa"]
    emb = torch.nn.functional.normalize(enc(texts), dim=-1)
    assert emb.shape == (3, 384) and enc.spec["name"] == "minilm"
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2]) + 0.2
    st = pytest.importorskip("sentence_transformers")
    ref = st.SentenceTransformer(str(enc.path), device="cpu").encode(texts, convert_to_tensor=True,
                                                                     normalize_embeddings=True)
    torch.testing.assert_close(emb, ref.float(), atol=1e-5, rtol=0)
