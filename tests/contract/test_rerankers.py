"""The Reranker contract over every implementation runnable offline: best first, indices are a permutation of the
input (or its top_n head), scores non-increasing, empty input, the relevant text wins on an obvious case.
The cross-encoder needs user-provided weights: without them it must fail clearly, which is checked too."""

from __future__ import annotations

import json

import httpx
import pytest

from aisd.core.errors import ModelNotFoundError
from aisd.embed import HashingEmbedder
from aisd.embed.cross_encoder import CrossEncoderReranker
from aisd.llm.fake import FakeLLMClient
from aisd.rag.rerank import LLMReranker, MaxSimReranker
from aisd.search.rerank import RemoteReranker, Reranker

QUERY = "volcano eruption lava"
TEXTS = ["A recipe for apple pie.", "The volcano eruption sent lava down the slope.", "Stock prices fell.",
         "Lava flows from an erupting volcano are hot.", "Cats sleep a lot."]


class _TokenHashing(HashingEmbedder):
    def token_embeddings(self, texts):
        return [self.embed([t[s:e] for s, e in self.token_spans(t)]) for t in texts]


def _overlap(query: str, text: str) -> int:
    return len(set(query.lower().split()) & set(text.lower().strip(".").split()))


def _remote() -> RemoteReranker:
    def handler(request: httpx.Request) -> httpx.Response:
        b = json.loads(request.content)
        res = [{"index": i, "relevance_score": float(_overlap(b["query"], d))} for i, d in enumerate(b["documents"])]
        return httpx.Response(200, json={"results": res})
    return RemoteReranker("http://srv", "m", transport=httpx.MockTransport(handler))


def _llm() -> LLMReranker:
    def judge(req):
        text = req.messages[-1].content
        passage = text.split("Passage: ", 1)[1].split("\n")[0]
        return str(min(10, 3 * _overlap(QUERY, passage)))
    return LLMReranker(FakeLLMClient(judge), mode="rating")


@pytest.fixture(params=["remote", "llm", "maxsim"])
def reranker(request) -> Reranker:
    return {"remote": _remote, "llm": _llm, "maxsim": lambda: MaxSimReranker(_TokenHashing(dim=128))}[request.param]()


def test_contract(reranker) -> None:
    assert isinstance(reranker, Reranker) and reranker.name
    out = reranker.rerank(QUERY, TEXTS)
    assert sorted(r.index for r in out) == list(range(len(TEXTS)))
    assert all(a.score >= b.score for a, b in zip(out, out[1:], strict=False))
    assert {out[0].index, out[1].index} == {1, 3}
    head = reranker.rerank(QUERY, TEXTS, top_n=2)
    assert [r.index for r in head] == [r.index for r in out[:2]]
    assert reranker.rerank(QUERY, []) == []


def test_cross_encoder_without_weights_fails_clearly(tmp_path) -> None:
    ce = CrossEncoderReranker(tmp_path / "ms-marco-MiniLM-L-6-v2")
    assert ce.name == "cross-encoder:ms-marco-MiniLM-L-6-v2"
    with pytest.raises(ModelNotFoundError, match="ships no cross-encoder weights"):
        ce.rerank("q", ["d"])
