"""The Embedder protocol: text -> fixed-size float32 vectors, plus the tokenizer facts chunkers need.

Implementations: ``SentenceTransformerEmbedder`` (bundled all-MiniLM-L6-v2, offline), ``RemoteEmbedder`` (an
OpenAI-compatible /v1/embeddings server), ``CachedEmbedder`` (wraps any embedder with a SQLite cache) and
``HashingEmbedder`` (deterministic, dependency-free, for tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np


class TokenSpan(NamedTuple):
    """One token of the embedder's tokenizer as character offsets into the text: text[start:end]."""

    start: int
    end: int


@runtime_checkable
class Embedder(Protocol):
    @property
    def model_name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """Longest input the model reads; longer texts are truncated by the model."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised rows (cosine = dot)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokenizer tokens in ``text`` (no special tokens)."""
        ...

    def token_spans(self, text: str) -> list[TokenSpan]:
        """Character span of every token, in order (chunkers cut on these so chunks keep exact offsets)."""
        ...


def embed_query(embedder: Embedder, text: str) -> np.ndarray:
    """(dim,) float32 vector of one text."""
    return embedder.embed([text])[0]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero. x: (n, d)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms == 0, 1.0, norms)).astype(np.float32)
