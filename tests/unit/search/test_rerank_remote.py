"""RemoteReranker speaks the /v1/rerank shape (Cohere, Jina, vLLM); tested against a fake server."""

from __future__ import annotations

import json

import httpx
import pytest

from aisd.core.errors import RateLimitError, ServiceUnavailableError
from aisd.search.rerank import RemoteReranker, RerankResult, order_results


def _server(log: list) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        log.append((request.url.path, body))
        q = set(body["query"].split())
        scores = [len(q & set(d.split())) / 10 for d in body["documents"]]
        results = sorted(({"index": i, "relevance_score": s} for i, s in enumerate(scores)),
                         key=lambda r: -r["relevance_score"])
        return httpx.Response(200, json={"id": "x", "results": results})
    return httpx.MockTransport(handler)


def test_rerank_batches_and_orders() -> None:
    log: list = []
    rr = RemoteReranker("http://srv", "bge-reranker", batch_size=2, transport=_server(log))
    out = rr.rerank("red apple pie", ["green tea", "apple pie", "red apple pie recipe"], top_n=2)
    assert out == [RerankResult(2, pytest.approx(0.3)), RerankResult(1, pytest.approx(0.2))]
    assert [p for p, _ in log] == ["/v1/rerank", "/v1/rerank"]
    assert log[0][1]["model"] == "bge-reranker" and log[0][1]["documents"] == ["green tea", "apple pie"]
    assert rr.rerank("q", []) == []


def test_errors() -> None:
    def limited(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"error": {"message": "slow down"}})
    with pytest.raises(RateLimitError, match="slow down"):
        RemoteReranker("http://srv/v1", "m", transport=httpx.MockTransport(limited)).rerank("q", ["d"])

    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"nope": 1})
    with pytest.raises(ServiceUnavailableError, match="unexpected body"):
        RemoteReranker("http://srv", "m", transport=httpx.MockTransport(garbage)).rerank("q", ["d"])


def test_order_results_ties_keep_input_order() -> None:
    assert [r.index for r in order_results([1.0, 3.0, 3.0, 0.5])] == [1, 2, 0, 3]
