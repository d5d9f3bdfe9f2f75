"""The Embedder contract over every implementation that runs offline in a unit test: shapes, dtype, unit norm,
determinism, batch independence, empty input, token spans that are in-order character offsets.
(The bundled MiniLM is held to the same properties in tests/unit/embed/test_sbert.py, loaded once.)"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from aisd.embed import CachedEmbedder, Embedder, HashingEmbedder
from aisd.embed.remote import RemoteEmbedder

TEXTS = ["The quick brown fox.", "Retrieval-augmented generation, explained!", "naïve café", "x"]


def _remote() -> RemoteEmbedder:
    ref = HashingEmbedder(dim=48)

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        vecs = ref.embed(body["input"])
        return httpx.Response(200, json={"data": [{"index": i, "embedding": v.tolist()} for i, v in enumerate(vecs)],
                                         "model": "m", "object": "list"})
    return RemoteEmbedder("http://srv", "m", batch_size=3, transport=httpx.MockTransport(handler))


@pytest.fixture(params=["hashing", "cached", "remote"])
def embedder(request, tmp_path) -> Embedder:
    if request.param == "hashing":
        return HashingEmbedder(dim=48)
    if request.param == "cached":
        return CachedEmbedder(HashingEmbedder(dim=48), tmp_path / "c.sqlite", batch_size=2)
    return _remote()


def test_protocol(embedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.dim == 48 and embedder.max_tokens > 0 and embedder.model_name


def test_vectors(embedder) -> None:
    out = embedder.embed(TEXTS)
    assert out.shape == (len(TEXTS), 48) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embedder.embed(TEXTS[::-1])[::-1], out, atol=1e-6)  # batch-order independent
    np.testing.assert_allclose(embedder.embed([TEXTS[1]])[0], out[1], atol=1e-6)
    assert embedder.embed([]).shape == (0, 48)


def test_token_spans(embedder) -> None:
    for text in TEXTS:
        spans = embedder.token_spans(text)
        assert len(spans) == embedder.count_tokens(text) > 0
        assert all(0 <= s < e <= len(text) for s, e in spans)
        assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))
