"""The Reranker protocol, its result type, and a client for remote ``/v1/rerank`` servers.

A reranker re-scores (query, text) pairs more carefully than first-stage retrieval. Implementations:
``CrossEncoderReranker`` (aisd.embed.cross_encoder: local sentence-transformers CrossEncoder weights),
``RemoteReranker`` (here: the rerank API Cohere, Jina and vLLM serve), ``LLMReranker`` and ``MaxSimReranker``
(aisd.rag.rerank: an LLMClient judging relevance; late interaction over the embedder's token vectors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import httpx

from aisd.core.errors import InvalidRequestError, RateLimitError, ServiceUnavailableError


class RerankResult(NamedTuple):
    """``index`` into the texts given to ``rerank``; ``score``: higher is more relevant."""

    index: int
    score: float


@runtime_checkable
class Reranker(Protocol):
    name: str

    def rerank(self, query: str, texts: Sequence[str], top_n: int | None = None) -> list[RerankResult]:
        """Scores for ``texts`` against ``query``, best first, at most ``top_n`` of them."""
        ...


def order_results(scores: Sequence[float], top_n: int | None = None) -> list[RerankResult]:
    """Best-first results from one score per text; ties keep the input (first-stage) order."""
    if top_n is not None and top_n < 1:
        raise InvalidRequestError(f"top_n must be >= 1, got {top_n}", param="top_n")
    ranked = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    if top_n is not None:
        ranked = ranked[:top_n]
    return [RerankResult(i, float(scores[i])) for i in ranked]


class RemoteReranker:
    """Client for ``POST {base_url}/rerank`` with ``{"model", "query", "documents", "top_n"}`` returning
    ``{"results": [{"index", "relevance_score"}]}`` - the shape of Cohere's, Jina's and vLLM's rerank APIs.

    ``base_url`` may end in ``/v1`` (default path ``/v1/rerank``) or ``/v2``; ``api_key`` is sent as a Bearer token.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 60.0,
                 batch_size: int = 64, transport: httpx.BaseTransport | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        url = base_url.rstrip("/")
        if not (url.endswith("/v1") or url.endswith("/v2")):
            url += "/v1"
        self.base_url = url
        self.model = model
        self.name = f"remote:{model}"
        self.batch_size = batch_size
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)

    def _call(self, query: str, documents: list[str]) -> list[float]:
        body: dict[str, Any] = {"model": self.model, "query": query, "documents": documents,
                                "top_n": len(documents)}
        try:
            r = self._http.post("/rerank", json=body)
        except httpx.HTTPError as e:
            raise ServiceUnavailableError(f"cannot reach rerank server {self.base_url}: {e}") from e
        if r.status_code >= 400:
            try:
                msg = r.json().get("error", {}).get("message") or r.text[:300]
            except ValueError:
                msg = r.text[:300]
            cls = {400: InvalidRequestError, 429: RateLimitError}.get(r.status_code, ServiceUnavailableError)
            raise cls(f"rerank server {self.base_url} answered {r.status_code}: {msg}")
        try:
            results = r.json()["results"]
            scores = [float("-inf")] * len(documents)
            for item in results:
                scores[int(item["index"])] = float(item.get("relevance_score", item.get("score")))
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise ServiceUnavailableError(f"rerank server {self.base_url} sent an unexpected body: {e}") from e
        return scores

    def rerank(self, query: str, texts: Sequence[str], top_n: int | None = None) -> list[RerankResult]:
        texts = list(texts)
        if not texts:
            return []
        scores: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            scores.extend(self._call(query, texts[i:i + self.batch_size]))
        return order_results(scores, top_n)

    def close(self) -> None:
        self._http.close()
