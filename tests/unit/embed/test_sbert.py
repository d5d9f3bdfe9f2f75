"""SentenceTransformerEmbedder over the bundled all-MiniLM-L6-v2 (offline): vectors equal sentence-transformers'
own, token spans are exact character offsets, token embeddings line up with tokens."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from aisd.core.errors import ModelNotFoundError
from aisd.embed.sbert import SentenceTransformerEmbedder


@lru_cache(maxsize=1)
def minilm() -> SentenceTransformerEmbedder:
    import torch

    torch.set_num_threads(1)
    return SentenceTransformerEmbedder().load()


def test_vectors_equal_sentence_transformers_and_are_normalised() -> None:
    e = minilm()
    texts = ["A cat sits on the mat.", "Das ist ein Test.", "BM25 is a lexical ranking function."]
    ours = e.embed(texts)
    assert ours.shape == (3, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    ref = e.st.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert e.model_name == "all-minilm-l6-v2" and e.dim == 384 and e.max_tokens == 256
    assert e.embed([]).shape == (0, 384)


def test_semantics() -> None:
    e = minilm()
    q, near, far = e.embed(["How do I bake bread?", "A recipe for baking a loaf of bread", "Stock market news"])
    assert q @ near > q @ far + 0.2


def test_token_spans_are_exact_offsets() -> None:
    e = minilm()
    text = "Tokenization of unbelievably long words, e.g. 'antidisestablishmentarianism'."
    spans = e.token_spans(text)
    pieces = e.st.tokenizer.tokenize(text)
    assert len(spans) == len(pieces) == e.count_tokens(text)
    for (s, t), piece in zip(spans, pieces, strict=True):
        assert text[s:t].lower() == piece.removeprefix("##")
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))


def test_token_embeddings() -> None:
    e = minilm()
    mats = e.token_embeddings(["short text here", "another one"])
    assert [m.shape for m in mats] == [(e.count_tokens("short text here"), 384), (e.count_tokens("another one"), 384)]
    np.testing.assert_allclose(np.linalg.norm(mats[0], axis=1), 1.0, atol=1e-5)


def test_missing_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelNotFoundError, match="neither a bundled model"):
        SentenceTransformerEmbedder(str(tmp_path / "nope")).load()
