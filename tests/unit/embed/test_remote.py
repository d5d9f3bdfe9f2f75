"""RemoteEmbedder and build_embedder against a fake OpenAI-compatible server (httpx MockTransport, no network)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from aisd.app.settings import EmbedSettings
from aisd.core.errors import InvalidRequestError, ServiceUnavailableError
from aisd.embed import CachedEmbedder, HashingEmbedder, build_embedder
from aisd.embed.remote import RemoteEmbedder


def _server(log: list) -> httpx.MockTransport:
    ref = HashingEmbedder(dim=12)

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        log.append(body)
        if body["model"] != "m":
            return httpx.Response(400, json={"error": {"message": "bad model"}})
        vecs = ref.embed(body["input"]) * 3.0  # not normalised: the client must normalise
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vecs)]
        return httpx.Response(200, json={"object": "list", "data": data[::-1], "model": "m",
                                         "usage": {"prompt_tokens": 1, "total_tokens": 1}})
    return httpx.MockTransport(handler)


def test_batches_orders_and_normalises() -> None:
    log: list = []
    e = RemoteEmbedder("http://srv", "m", batch_size=2, transport=_server(log))
    out = e.embed(["a b", "c", "d e f"])
    assert [len(b["input"]) for b in log] == [2, 1]
    assert log[0]["encoding_format"] == "float"
    np.testing.assert_allclose(out, HashingEmbedder(dim=12).embed(["a b", "c", "d e f"]), atol=1e-6)
    assert e.dim == 12 and e.model_name == "m"
    assert e.count_tokens("Hello, world!") == 4
    assert [(s.start, s.end) for s in e.token_spans("Hi, x")] == [(0, 2), (2, 3), (4, 5)]


def test_errors_are_mapped() -> None:
    e = RemoteEmbedder("http://srv/v1", "other", transport=_server([]))
    with pytest.raises(InvalidRequestError, match="bad model"):
        e.embed(["x"])

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")
    with pytest.raises(ServiceUnavailableError, match="cannot reach"):
        RemoteEmbedder("http://srv", "m", transport=httpx.MockTransport(down)).embed(["x"])


def test_build_embedder_choices(tmp_path) -> None:
    e = build_embedder(EmbedSettings(model="hashing-32"), cache_dir=tmp_path)
    assert isinstance(e, CachedEmbedder) and e.dim == 32
    assert (tmp_path / "embeddings.sqlite").parent == tmp_path
    plain = build_embedder(EmbedSettings(model="hashing", cache=False), cache_dir=tmp_path)
    assert isinstance(plain, HashingEmbedder)
    remote = build_embedder(EmbedSettings(remote_url="http://srv", remote_model="m", cache=False))
    assert isinstance(remote, RemoteEmbedder) and remote.base_url == "http://srv/v1"
