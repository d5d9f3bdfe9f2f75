"""HTTP routes under /v1/collections: happy path and the documented error statuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisd.app.server import create_app
from aisd.app.settings import Settings
from aisd.app.wiring import Services


@pytest.fixture()
def client(tmp_path: Path):
    # The vector routes need no model: keep the engine from loading one at startup.
    settings = Settings(home=tmp_path, engine={"load_on_startup": False})
    with TestClient(create_app(settings, Services(settings))) as c:
        yield c


def test_collection_lifecycle(client: TestClient) -> None:
    r = client.post("/v1/collections", json={"name": "docs", "dim": 3, "metric": "l2", "index": "hnsw",
                                             "payload_indexes": {"lang": "keyword"}})
    assert r.status_code == 201 and r.json()["active_index"] == "hnsw"
    pts = [{"id": i, "vector": [i, 0, 0], "payload": {"lang": "en" if i % 2 else "fr"}} for i in range(10)]
    r = client.post("/v1/collections/docs/points", json={"points": pts})
    assert r.json()["inserted"] == 10
    r = client.post("/v1/collections/docs/search", json={"vector": [3.2, 0, 0], "k": 2, "filter": {"lang": "en"},
                                                         "explain": True})
    body = r.json()
    assert [h["id"] for h in body["hits"]] == [3, 5] and body["hits"][0]["score"] == pytest.approx(-0.04, abs=1e-4)
    assert body["plan"]["strategy"] == "exact"
    r = client.post("/v1/collections/docs/search", json={"vectors": [[0, 0, 0], [9, 0, 0]], "k": 1})
    assert [[h["id"] for h in row] for row in r.json()["results"]] == [[0], [9]]
    assert r.json()["results"][1][0]["payload"] == {"lang": "en"}
    r = client.post("/v1/collections/docs/search", json={"vector": [9, 0, 0], "k": 1, "with_payload": False})
    assert r.json()["hits"] == [{"id": 9, "score": 0.0, "payload": None}]
    r = client.post("/v1/collections/docs/points/delete", json={"ids": [0, 42]})
    assert r.json() | {"lsn": 0} == {"deleted": 1, "missing": 1, "lsn": 0, "count": 9}
    assert client.post("/v1/collections/docs/points/get", json={"ids": [1]}).json()["points"][0]["payload"] == \
        {"lang": "en"}
    assert len(client.post("/v1/collections/docs/scroll", json={"limit": 4}).json()["points"]) == 4
    assert client.get("/v1/collections").json()["data"][0]["count"] == 9
    assert client.get("/v1/collections/docs").json()["payload_indexes"] == {"lang": "keyword"}
    assert client.post("/v1/collections/docs/compact").json()["points_removed"] == 1
    assert client.get("/health").json()["vector"]["collections"] == 1
    assert client.delete("/v1/collections/docs").json()["deleted"] is True
    assert client.get("/v1/collections/docs").status_code == 404


def test_error_statuses(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "c", "dim": 3}).status_code == 201
    r = client.post("/v1/collections", json={"name": "c", "dim": 3})
    assert r.status_code == 409 and r.json()["error"]["type"] == "conflict_error"
    r = client.get("/v1/collections/nope")
    assert r.status_code == 404 and "not found" in r.json()["error"]["message"]
    r = client.post("/v1/collections/nope/search", json={"vector": [1, 2, 3]})
    assert r.status_code == 404
    r = client.post("/v1/collections/c/points", json={"points": [{"id": 1, "vector": [1, 2]}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "points.vector"
    assert "dimension 2" in r.json()["error"]["message"]
    r = client.post("/v1/collections/c/search", json={"vector": [1, 2]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "vector"
    r = client.post("/v1/collections/c/search", json={"vector": [1, 2, 3], "filter": {"a": {"bogus": 1}}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "filter"
    r = client.post("/v1/collections", json={"name": "x", "dim": 3, "index": "annoy"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "index"


def test_advise_route(client: TestClient) -> None:
    r = client.post("/v1/collections/advise", json={"count": 2_000_000, "dim": 768})
    assert r.status_code == 200 and r.json()["kind"] == "hnsw" and r.json()["reasons"]
