"""POST /v1/embeddings: OpenAI shape (checked with the official openai client), base64, errors naming the field."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aisd.app.server import create_app
from aisd.app.settings import Settings
from aisd.app.wiring import Services
from aisd.embed import CachedEmbedder, HashingEmbedder


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("route")
    # the engine is another system: don't load an LLM at startup for embedding tests
    settings = Settings(home=tmp_path, engine={"load_on_startup": False})
    services = Services(settings)
    services.embedder = CachedEmbedder(HashingEmbedder(dim=24), tmp_path / "e.sqlite")
    with TestClient(create_app(settings, services)) as c:
        yield c


def test_float_and_usage(client) -> None:
    r = client.post("/v1/embeddings", json={"input": ["hello world", "bye"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "hashing-24"
    assert [d["index"] for d in body["data"]] == [0, 1]
    np.testing.assert_allclose(np.array(body["data"][0]["embedding"]),
                               HashingEmbedder(dim=24).embed(["hello world"])[0], atol=1e-6)
    assert body["usage"]["prompt_tokens"] == 3 == body["usage"]["total_tokens"]


def test_openai_client_decodes_base64(client) -> None:
    openai = pytest.importorskip("openai")
    oc = openai.OpenAI(base_url="http://testserver/v1", api_key="x", http_client=client)
    res = oc.embeddings.create(model="hashing-24", input="some text")  # the SDK asks for base64 by default
    np.testing.assert_allclose(np.array(res.data[0].embedding), HashingEmbedder(dim=24).embed(["some text"])[0],
                               atol=1e-6)


@pytest.mark.parametrize(("payload", "status", "param"), [
    ({"input": []}, 400, "input"),
    ({"input": ["ok", ""]}, 400, "input"),
    ({"input": "x", "model": "gpt-4"}, 404, "model"),
    ({"input": "x", "dimensions": 8}, 400, "dimensions"),
    ({}, 400, "input"),
])
def test_errors(client, payload, status, param) -> None:
    r = client.post("/v1/embeddings", json=payload)
    assert r.status_code == status
    assert r.json()["error"]["param"] == param


def test_health_reports_cache(client) -> None:
    before = client.get("/health").json()["embeddings"]["cache"]
    client.post("/v1/embeddings", json={"input": ["fresh words", "fresh words"]})
    h = client.get("/health").json()["embeddings"]
    assert h["loaded"]
    assert h["cache"]["hits"] - before["hits"] == 1 and h["cache"]["misses"] - before["misses"] == 1
