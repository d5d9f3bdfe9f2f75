"""HashingEmbedder: a deterministic embedder with no model, for tests and as a dependency-free fallback.

Tokens are lower-cased word pieces (regex ``\\w+``); each token adds +-1 to a dimension chosen by a stable hash
(the hashing trick, Weinberger et al. 2009), so texts sharing words get high cosine similarity.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from aisd.core.hashing import sha256_hex
from aisd.embed.base import TokenSpan, l2_normalize

_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    def __init__(self, dim: int = 64, max_tokens: int = 256) -> None:
        if dim < 2:
            raise ValueError(f"dim must be >= 2, got {dim}")
        self._dim = dim
        self._max_tokens = max_tokens
        self.calls = 0  # number of embed() calls, so cache tests can see what reached the model
        self.texts_embedded = 0

    @property
    def model_name(self) -> str:
        return f"hashing-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def _bucket(self, token: str) -> tuple[int, float]:
        h = int(sha256_hex(token)[:8], 16)
        return h % self._dim, 1.0 if (h >> 31) & 1 else -1.0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for m in list(_WORD.finditer(text.lower()))[: self._max_tokens]:
                j, sign = self._bucket(m.group())
                out[i, j] += sign
        return l2_normalize(out)

    def count_tokens(self, text: str) -> int:
        return sum(1 for _ in _WORD.finditer(text))

    def token_spans(self, text: str) -> list[TokenSpan]:
        return [TokenSpan(m.start(), m.end()) for m in _WORD.finditer(text)]
