"""medfm.text: frozen text encoders, poolers, prompt templates and an on-disk embedding cache.

* :mod:`~medfm.text.encoders`: ``HFTextEncoder`` over transformers AutoModel/AutoTokenizer
  (mean, CLS or last-token pooling, frozen by default); registered as ``"minilm"`` (offline default) and
  ``"hf"`` (any model by path or hub id) in ``TEXT_ENCODERS``.
* :mod:`~medfm.text.model_files`: where a model's files are (bundled MiniLM, local folder, Hugging Face
  cache, bounded hub download) and their fingerprint.
* :mod:`~medfm.text.cache`: ``EmbeddingCache`` keyed by sha256(model + pooler + text).
* :mod:`~medfm.text.prompts`: modality descriptions, MedMNIST flag -> modality, readable
  class names and zero-shot class prompts.

Importing this package does not import transformers; loading a model does.
"""
from medfm.registry import TEXT_ENCODERS
from medfm.text.cache import EmbeddingCache, medfm_cache_dir
from medfm.text.encoders import (
    DEFAULT_TEXT_ENCODER,
    POOLERS,
    HFTextEncoder,
    TextEncoderArgumentError,
    TextEncoderError,
    UnknownTextEncoderError,
    create_text_encoder,
    text_encoder_dim,
)
from medfm.text.prompts import class_names, class_prompts, modality_of, modality_texts

__all__ = [
    "TEXT_ENCODERS", "DEFAULT_TEXT_ENCODER", "POOLERS", "HFTextEncoder", "TextEncoderError", "UnknownTextEncoderError",
    "TextEncoderArgumentError", "create_text_encoder", "text_encoder_dim", "EmbeddingCache", "medfm_cache_dir",
    "class_names", "class_prompts", "modality_of", "modality_texts",
]
