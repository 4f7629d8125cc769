"""medfm.text gaps: tokenizers without a pad token (GPT-2 style), decoder-only poolers, hub
downloads that stall or fail offline, and cache shards renamed on disk."""
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Optional

import httpx2
import huggingface_hub
import numpy as np
import pytest
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

from medfm.text import HFTextEncoder, TextEncoderError, text_encoder_dim
from medfm.text.cache import EmbeddingCache
from medfm.text.encoders import HUB_TIMEOUT_ENV, is_decoder_only, pool_hidden_states, resolve_text_model

WORDS = ["a", "chest", "x", "-", "ray", "showing", "pneumonia", "normal", "hand", "brain"]
EOS = "<|endoftext|>"


def save_tiny_gpt2(path: Path, eos: Optional[str] = EOS, unk: Optional[str] = None) -> Path:
    """A randomly initialised 1-layer GPT-2 (n_embd 32) + a WordLevel tokenizer over WORDS with
    no pad token (and the given eos/unk tokens), saved in transformers layout."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    specials = [t for t in (eos, unk) if t]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    roles = {"eos_token": eos, "bos_token": eos} if eos else {}
    if unk:
        roles["unk_token"] = unk
    PreTrainedTokenizerFast(tokenizer_object=backend, **roles).save_pretrained(str(path))
    eos_id = vocab[eos] if eos else None
    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=len(vocab), n_layer=1, n_embd=32, n_head=2, n_positions=64,
                         bos_token_id=eos_id, eos_token_id=eos_id)).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("gpt2"))


# -- 1. tokenizers without a pad token ----------------------------------------------------------
@pytest.mark.parametrize("pooler", ["mean", "last"])
def test_gpt2_tokenizer_pads_with_eos_and_padding_never_changes_an_embedding(gpt2, pooler):
    enc = HFTextEncoder(str(gpt2), pooler=pooler)
    assert enc.tokenizer.pad_token == EOS
    alone = enc(["hand"])
    batched = enc(["hand", "a chest x - ray showing pneumonia normal brain"])[:1]
    assert alone.shape == (1, 32)
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)
    hidden, mask = enc.encode_tokens(["hand", "a chest x - ray"])
    assert hidden.shape == (2, 5, 32) and mask.sum(1).tolist() == [1, 5]


def test_last_pooler_on_gpt2_is_the_last_real_tokens_state(gpt2):
    enc = HFTextEncoder(str(gpt2), pooler="last")
    texts = ["a chest x - ray", "hand brain"]
    out = enc(texts)
    for i, text in enumerate(texts):
        tok = enc.tokenizer([text], return_tensors="pt")  # one text: no padding at all
        with torch.no_grad():
            ref = enc.model(**tok).last_hidden_state[0, -1]
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_tokenizer_without_eos_pads_with_unk(tmp_path):
    enc = HFTextEncoder(str(save_tiny_gpt2(tmp_path / "unk", eos=None, unk="<unk>")), pooler="mean")
    assert enc.tokenizer.pad_token == "<unk>"
    torch.testing.assert_close(enc(["hand"]), enc(["hand", "a chest x - ray"])[:1], atol=1e-5, rtol=0)


def test_tokenizer_without_pad_eos_or_unk_is_one_clear_error(tmp_path):
    path = save_tiny_gpt2(tmp_path / "bare", eos=None, unk=None)
    with pytest.raises(TextEncoderError, match="has no pad, eos or unk token") as info:
        HFTextEncoder(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_cls_pooler_is_refused_for_a_decoder_only_model(gpt2):
    with pytest.raises(TextEncoderError, match="decoder-only .*gpt2.* use pooler='last'"):
        HFTextEncoder(str(gpt2), pooler="cls")


def test_decoder_only_detection():
    from transformers import BertConfig, GPT2Config, LlamaConfig

    assert is_decoder_only(GPT2Config()) and is_decoder_only(LlamaConfig())
    assert not is_decoder_only(BertConfig()) and is_decoder_only(BertConfig(is_decoder=True))


def test_last_pooler_reads_the_mask_for_right_left_and_empty_rows():
    hidden = torch.arange(3 * 4 * 2, dtype=torch.float32).view(3, 4, 2)
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0]])
    out = pool_hidden_states(hidden, mask, "last")
    torch.testing.assert_close(out, torch.stack([hidden[0, 1], hidden[1, 3], hidden[2, 0]]))


def test_text_encoder_dim_reads_gpt2s_n_embd(gpt2):
    assert text_encoder_dim({"name": "hf", "model_name_or_path": str(gpt2)}) == 32


# -- 2. hub downloads: stalls and offline --------------------------------------------------------
@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache and a writable folder a fake snapshot_download can fill."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "hub" / "models--medfm-tests--tiny"


def _fake_snapshot_download(monkeypatch, download):
    def fake(repo_id, *args, local_files_only=False, **kwargs):
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        return download()

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)


def test_stalled_hub_download_is_given_up_with_a_clear_error(monkeypatch, hub):
    release = threading.Event()
    _fake_snapshot_download(monkeypatch, lambda: release.wait(5) and str(hub))  # sends nothing for 5 s
    monkeypatch.setenv(HUB_TIMEOUT_ENV, "0.3")
    env, hub_timeout = dict(os.environ), hub_constants.HF_HUB_DOWNLOAD_TIMEOUT
    start = time.monotonic()
    try:
        with pytest.raises(TextEncoderError, match=r"stalled: nothing arrived for 0.3 s .*MEDFM_HUB_TIMEOUT") as info:
            resolve_text_model("medfm-tests/tiny")
    finally:
        release.set()
    assert time.monotonic() - start < 2.0
    assert "--local-dir DIR" in str(info.value) and "\n" not in str(info.value)
    assert dict(os.environ) == env and hub_constants.HF_HUB_DOWNLOAD_TIMEOUT == hub_timeout  # nothing global changed


def test_slow_download_that_keeps_making_progress_is_not_cut(monkeypatch, hub):
    def trickle():
        hub.mkdir(parents=True, exist_ok=True)
        with open(hub / "blob.incomplete", "wb") as fh:
            for _ in range(10):  # 1 s in all, 0.1 s between bytes: longer than the 0.4 s stall bound
                fh.write(b"x")
                fh.flush()
                time.sleep(0.1)
        return str(hub)

    _fake_snapshot_download(monkeypatch, trickle)
    monkeypatch.setenv(HUB_TIMEOUT_ENV, "0.4")
    assert resolve_text_model("medfm-tests/tiny") == hub


def _not_found() -> RepositoryNotFoundError:
    request = httpx2.Request("GET", "https://huggingface.co/api/models/medfm-tests/tiny")
    return RepositoryNotFoundError("404 Client Error", response=httpx2.Response(404, request=request))


@pytest.mark.parametrize("cause, wrapped, reason", [
    (lambda: httpx2.ConnectError("[Errno -3] name resolution failed"), True, "the hub is unreachable, no network?"),
    (lambda: httpx2.ReadTimeout("timed out"), True, "the hub did not answer in time"),
    (_not_found, False, "no such public model on the hub"),
])
def test_failed_download_says_why(monkeypatch, hub, cause, wrapped, reason):
    def fail():  # as huggingface_hub does: connection errors come wrapped in LocalEntryNotFoundError
        if not wrapped:
            raise cause()
        try:
            raise cause()
        except Exception as err:
            raise LocalEntryNotFoundError("An error happened while trying to locate the files") from err

    _fake_snapshot_download(monkeypatch, fail)
    with pytest.raises(TextEncoderError, match="could not fetch text model 'medfm-tests/tiny'") as info:
        resolve_text_model("medfm-tests/tiny")
    assert reason in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf", "nan"])
def test_bad_hub_timeout_is_one_clear_error(monkeypatch, hub, value):
    _fake_snapshot_download(monkeypatch, lambda: str(hub))
    monkeypatch.setenv(HUB_TIMEOUT_ENV, value)
    with pytest.raises(TextEncoderError, match="MEDFM_HUB_TIMEOUT must be a positive number"):
        resolve_text_model("medfm-tests/tiny")


@pytest.mark.timeout(30)
def test_real_snapshot_download_against_a_silent_hub_is_bounded(monkeypatch, hub):
    """huggingface_hub itself lists the repo with no timeout: a hub that accepts the connection
    and never answers hung medfm forever before the stall bound."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    conns = []

    def accept():
        while True:
            try:
                conns.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setattr(hub_constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # a user's HF_HUB_OFFLINE=1 would skip the hub
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(HUB_TIMEOUT_ENV, "0.5")
    start = time.monotonic()
    try:
        with pytest.raises(TextEncoderError, match="stalled"):
            resolve_text_model("medfm-tests/tiny")
    finally:
        server.close()
        for c in conns:  # the given-up download thread sees the connection end and exits
            c.close()
    assert time.monotonic() - start < 5.0


# -- cache: renamed or reordered shards ----------------------------------------------------------
def test_renamed_and_swapped_shards_still_give_each_text_its_own_vector(tmp_path):
    cache = EmbeddingCache("m", tmp_path)
    first = cache.put_many(["a", "b"], torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    second = cache.put_many(["c"], torch.tensor([[3.0, 3.0]]))
    # swap the two files' names (and so the order they are read in)
    tmp = first.with_name("shard-tmp.npz")
    first.rename(tmp)
    second.rename(first)
    tmp.rename(second)
    (second).rename(second.with_name("shard-0000000000000000.npz"))  # now read first
    got = EmbeddingCache("m", tmp_path).get_many(["c", "a", "b"])
    assert {t: v.tolist() for t, v in got.items()} == {"a": [1.0, 1.0], "b": [2.0, 2.0], "c": [3.0, 3.0]}


def test_shards_moved_from_another_models_folder_never_hit(tmp_path):
    other = EmbeddingCache("model-B", tmp_path)
    shard = other.put_many(["a"], torch.full((1, 2), 9.0))
    mine = EmbeddingCache("model-A", tmp_path)
    mine.put_many(["z"], torch.zeros(1, 2))
    shutil.copy(shard, mine.folder / "shard-0000000000000000.npz")
    fresh = EmbeddingCache("model-A", tmp_path)
    assert fresh.get_many(["a"]) == {} and len(fresh) == 2  # B's entry is there but keyed by B's model key
    assert np.array_equal(fresh.get_many(["z"])["z"].numpy(), np.zeros(2, np.float32))
