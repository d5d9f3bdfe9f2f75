"""HTTP: /v1/rag/ingest, /v1/rag/query (JSON and SSE), /v1/rag/retrieve, /v1/rag/documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisd.app.server import create_app
from aisd.app.settings import Settings
from aisd.app.wiring import Services
from aisd.embed.fake import HashingEmbedder
from aisd.llm.fake import FakeLLMClient
from aisd.rag.pipeline import RAGPipeline


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    settings = Settings(home=tmp_path)
    services = Services(settings)
    llm = FakeLLMClient(lambda r: "Alpha uses port 7000 [1]. Bogus [4].")
    services.rag = RAGPipeline.in_memory(embedder=HashingEmbedder(dim=128), llm=llm, retriever="bm25",
                                         answerability="none",
                                         min_similarity=None)
    return TestClient(create_app(settings, services))  # no lifespan: other systems' start-up is not needed


def _ingest_docs(client: TestClient) -> None:
    r = client.post("/v1/rag/ingest", json={"documents": [
        {"id": "a", "text": "The alpha protocol uses port 7000.", "title": "Alpha", "metadata": {"team": "net"}},
        {"id": "b", "text": "Beta servers run in Lisbon.", "title": "Beta"}]})
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 2


def test_ingest_documents_and_path(client: TestClient, tmp_path: Path) -> None:
    _ingest_docs(client)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "c.md").write_text("# Gamma\nGamma is green.", encoding="utf-8")
    r = client.post("/v1/rag/ingest", json={"path": str(folder), "glob": "*.md"})
    assert r.status_code == 200 and r.json()["added"] == 1 and r.json()["object"] == "rag.ingest"
    r = client.post("/v1/rag/ingest", json={"path": str(folder), "glob": "*.md"})
    assert r.json()["skipped"] == 1
    listing = client.get("/v1/rag/documents", params={"limit": 2}).json()
    assert listing["total"] == 3 and [d["id"] for d in listing["data"]] == sorted(listing_ids(client))[:2]


def test_ingest_errors(client: TestClient, tmp_path: Path) -> None:
    r = client.post("/v1/rag/ingest", json={})
    assert r.status_code == 400 and r.json()["error"]["param"] == "path"
    r = client.post("/v1/rag/ingest", json={"path": str(tmp_path / "missing")})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = client.post("/v1/rag/ingest", json={"documents": [{"text": "no id"}]})
    assert r.status_code == 400


def test_query_json(client: TestClient) -> None:
    _ingest_docs(client)
    r = client.post("/v1/rag/query", json={"question": "Which port does the alpha protocol use?", "k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == "Alpha uses port 7000 [1]. Bogus." and body["invalid_citations"] == [4]
    assert body["sources"][0]["doc_id"] == "a" and body["citations"][0]["number"] == 1
    assert body["not_in_sources"] is False and body["trace"]
    r = client.post("/v1/rag/query", json={"question": "port", "filter": {"team": "net"}, "include_trace": False})
    assert {s["doc_id"] for s in r.json()["sources"]} == {"a"} and "trace" not in r.json()


def test_query_validation(client: TestClient) -> None:
    assert client.post("/v1/rag/query", json={"question": ""}).status_code == 400
    r = client.post("/v1/rag/query", json={"question": "x", "mode": "psychic"})
    assert r.status_code == 400 and "mode" in r.json()["error"]["message"]
    r = client.post("/v1/rag/query", json={"question": "x", "mode": "psychic", "stream": True})
    assert r.status_code == 400  # validated before the stream starts
    assert client.post("/v1/rag/query", json={"question": "x", "colour": 1}).status_code == 400


def test_query_stream_sse(client: TestClient) -> None:
    _ingest_docs(client)
    with client.stream("POST", "/v1/rag/query", json={"question": "alpha port", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    types = [e["type"] for e in events]
    assert types[0] == "step" and "sources" in types and types[-1] == "done"
    assert "".join(e["text"] for e in events if e["type"] == "delta") == "Alpha uses port 7000 [1]. Bogus [4]."
    assert events[-1]["answer"]["text"] == "Alpha uses port 7000 [1]. Bogus."


def test_retrieve_and_delete(client: TestClient) -> None:
    _ingest_docs(client)
    r = client.post("/v1/rag/retrieve", json={"question": "Lisbon servers", "k": 1})
    assert r.status_code == 200 and r.json()["data"][0]["doc_id"] == "b"
    assert client.delete("/v1/rag/documents/b").json()["deleted"] is True
    assert client.delete("/v1/rag/documents/b").status_code == 404
    r = client.post("/v1/rag/retrieve", json={"question": "Lisbon servers", "k": 1})
    assert all(h["doc_id"] != "b" for h in r.json()["data"])


def test_health_reports_rag(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["rag"]["loaded"] is True and body["rag"]["retriever"] == "bm25"


def listing_ids(client: TestClient) -> list[str]:
    return [d["id"] for d in client.get("/v1/rag/documents", params={"limit": 100}).json()["data"]]


def test_query_answerability_override(client: TestClient) -> None:
    _ingest_docs(client)
    q = {"question": "Which port does the omega protocol use in Madrid?", "k": 2}
    assert client.post("/v1/rag/query", json=q).json()["not_in_sources"] is False  # off by default: the model answers
    body = client.post("/v1/rag/query", json={**q, "answerability": "coverage"}).json()
    assert body["not_in_sources"] is True and body["sources"] == []
    step = body["trace"][-1]
    assert step["name"] == "answerability" and set(step["detail"]["checks"][0]["missing_entities"]) == {"Madrid"}
    r = client.post("/v1/rag/query", json={**q, "answerability": "psychic"})
    assert r.status_code == 400 and "answerability" in r.json()["error"]["message"]
