"""Contract: every QueryTransform returns a non-empty list of non-empty strings, whatever the LLM says, and
search_with_transform over it returns at most k distinct chunks, best first."""

from __future__ import annotations

import pytest

from aisd.embed.fake import HashingEmbedder
from aisd.llm.fake import FakeLLMClient
from aisd.rag.documents import Chunk
from aisd.rag.query import TRANSFORM_NAMES, QueryTransform, build_query_transform, search_with_transform
from aisd.rag.retrieval import build_retriever

LLM_REPLIES = ["", "   \n ", "1. assert statement\n2. AssertionError debugging\n3. python assert",
               "Query: " + "very long rambling " * 60, "assert, debugging, AssertionError"]


@pytest.fixture(scope="module")
def retriever():  # noqa: ANN201
    r = build_retriever("bm25", embedder=HashingEmbedder(), home=None)
    r.add([Chunk(f"c{i}", f"d{i}", text, 0, len(text)) for i, text in enumerate([
        "The assert statement raises AssertionError when the condition is false.",
        "The break statement ends the nearest loop.",
        "Debugging assertions can be disabled with -O.",
        "Lists are mutable sequences."])])
    return r


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
@pytest.mark.parametrize("reply", LLM_REPLIES)
def test_transform_contract(name: str, reply: str, retriever) -> None:  # noqa: ANN001
    t = build_query_transform(name, llm=FakeLLMClient(script=[reply]), retriever=retriever)
    assert isinstance(t, QueryTransform) and t.name == name
    out = t.transform("what does assert do")
    assert out and all(isinstance(q, str) and q.strip() for q in out)
    assert len(out) == len({" ".join(q.lower().split()) for q in out})  # no duplicate queries
    hits = search_with_transform(retriever, build_query_transform(name, llm=FakeLLMClient(script=[reply]),
                                                                  retriever=retriever), "what does assert do", k=2)
    assert len(hits) <= 2 and len({h.chunk.id for h in hits}) == len(hits)
    assert hits and hits[0].chunk.id in {"c0", "c2"}
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
