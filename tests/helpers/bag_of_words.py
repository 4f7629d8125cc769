"""A deterministic stand-in text encoder (a bag of fixed random word vectors) for text-conditioned segmentation
tests that need no tokenizer or language model."""
from __future__ import annotations

import re

import torch


class BagOfWordsEncoder:
    """Deterministic text encoder: the mean of fixed random word vectors (``encode(list[str]) -> (N, D)``)."""

    spec = {"name": "bag-of-words-test"}

    def __init__(self, dim: int = 16) -> None:
        self.dim = dim
        self.vocab = {}

    def _word(self, w):
        if w not in self.vocab:
            g = torch.Generator().manual_seed(sum(ord(c) * 31 ** i for i, c in enumerate(w)) % (2 ** 31))
            self.vocab[w] = torch.randn(self.dim, generator=g)
        return self.vocab[w]

    def encode(self, texts):
        """``(N, dim)`` embeddings of the ``N`` ``texts``: the mean vector of each text's lower-case words (a word's
        vector is seeded by the word itself, so the same on every call and in every encoder)."""
        return torch.stack([torch.stack([self._word(w) for w in re.findall(r"[a-z]+", t.lower())]).mean(0)
                            for t in texts])
