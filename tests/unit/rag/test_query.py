"""Query transforms: prompts, output cleaning, fallbacks, PRF term weights, RRF fusion over queries."""

from __future__ import annotations

import pytest

from aisd.core.errors import InvalidRequestError
from aisd.embed.fake import HashingEmbedder
from aisd.llm.fake import FakeLLMClient
from aisd.rag.documents import Chunk, RetrievedChunk
from aisd.rag.query import (
    ExpansionTransform,
    HyDETransform,
    IdentityTransform,
    MultiQueryTransform,
    PRFExpansion,
    QueryTransform,
    RewriteTransform,
    build_query_transform,
    clean_line,
    prf_terms,
    search_with_transform,
)
from aisd.rag.retrieval import build_retriever
from aisd.search.fusion import reciprocal_rank_fusion


def _rc(cid: str, text: str, score: float) -> RetrievedChunk:
    return RetrievedChunk(Chunk(cid, cid, text, 0, len(text)), score)


class ScriptedRetriever:
    """Returns a fixed list per query string (records the queries)."""

    name = "scripted"

    def __init__(self, results: dict[str, list[RetrievedChunk]]) -> None:
        self.results = results
        self.queries: list[tuple[str, int]] = []

    def search(self, query: str, k: int = 10, filter: dict | None = None) -> list[RetrievedChunk]:
        self.queries.append((query, k))
        return self.results.get(query, [])[:k]


def test_clean_line_strips_markers() -> None:
    assert clean_line('1. "Search query: python assert"') == "python assert"
    assert clean_line("- Rewritten query: foo bar") == "foo bar"
    assert clean_line("  plain  ") == "plain"


def test_rewrite_keeps_original_and_falls_back() -> None:
    llm = FakeLLMClient(script=["Query: assert statement python\nextra chatter"])
    t = RewriteTransform(llm)
    assert t.transform("what does assert do?") == ["what does assert do?", "assert statement python"]
    assert "what does assert do?" in llm.requests[0].messages[-1].text()
    assert llm.requests[0].temperature == 0.0 and llm.requests[0].max_tokens == 64
    assert RewriteTransform(FakeLLMClient(script=[""])).transform("q") == ["q"]
    rambling = "x " * 200
    assert RewriteTransform(FakeLLMClient(script=[rambling])).transform("q") == ["q"]
    assert RewriteTransform(FakeLLMClient(script=["new q"]), keep_original=False).transform("q") == ["new q"]


def test_expansion_appends_new_terms_only() -> None:
    t = ExpansionTransform(FakeLLMClient(script=["1. assertion, debugging, Assert, AssertionError\n"]))
    assert t.transform("python assert") == ["python assert assertion debugging AssertionError"]


def test_hyde_and_multi_query() -> None:
    h = HyDETransform(FakeLLMClient(script=["Passage: The assert statement\nchecks a condition."]))
    assert h.transform("q?") == ["q?", "The assert statement checks a condition."]
    m = MultiQueryTransform(FakeLLMClient(script=["1. first way\n2. second way\n3. first way\n4. fourth\n5. five"]),
                            n=3)
    assert m.transform("orig") == ["orig", "first way", "second way", "fourth"]
    with pytest.raises(ValueError):
        MultiQueryTransform(FakeLLMClient(), n=0)


def test_prf_terms_weighting() -> None:
    fb = [_rc("a", "apple banana apple cherry", 3.0), _rc("b", "banana durian", 1.0), _rc("c", "zzz", 1.0)]
    # weights (s - min + eps): a ~2, b ~0, c ~0 -> a's terms dominate; apple (tf 2/4) > banana = cherry (1/4)
    assert prf_terms("fruit", fb, 2) == ["apple", "banana"]
    assert prf_terms("apple", fb, 1) == ["banana"]  # query words are not expansion terms
    assert prf_terms("q", [], 3) == []


def test_prf_transform_uses_retriever() -> None:
    r = ScriptedRetriever({"fruit": [_rc("a", "apple apple banana", 2.0), _rc("b", "banana", 1.0)]})
    assert PRFExpansion(r, docs=2, terms=1).transform("fruit") == ["fruit apple"]
    assert r.queries == [("fruit", 2)]


def test_build_query_transform() -> None:
    assert isinstance(build_query_transform(None), IdentityTransform)
    assert isinstance(build_query_transform("none"), IdentityTransform)
    llm = FakeLLMClient()
    for name in ("rewrite", "expansion", "hyde", "multi-query"):
        t = build_query_transform(name, llm=llm)
        assert isinstance(t, QueryTransform) and t.name == name
    assert build_query_transform("prf", retriever=ScriptedRetriever({})).name == "prf"
    with pytest.raises(InvalidRequestError, match="needs an LLM"):
        build_query_transform("hyde")
    with pytest.raises(InvalidRequestError, match="needs a retriever"):
        build_query_transform("prf", llm=llm)
    with pytest.raises(InvalidRequestError, match="expected one of"):
        build_query_transform("magic", llm=llm)


def test_search_with_transform_fuses_by_rrf() -> None:
    a, b, c, d = (_rc(x, x, 1.0) for x in "abcd")
    r = ScriptedRetriever({"q": [a, b, c], "q2": [c, d, a]})

    class Two:
        name = "two"

        def transform(self, query: str) -> list[str]:
            return [query, query + "2"]

    got = search_with_transform(r, Two(), "q", k=3)
    expected = reciprocal_rank_fusion([["a", "b", "c"], ["c", "d", "a"]], k=60, n=3)
    assert [h.chunk.id for h in got] == [f.id for f in expected]
    assert [h.score for h in got] == pytest.approx([f.score for f in expected])
    assert all("query_rrf" in h.scores for h in got)
    assert r.queries == [("q", 20), ("q2", 20)]  # each query searched to depth max(k, 20)
    r.queries.clear()
    assert [h.chunk.id for h in search_with_transform(r, IdentityTransform(), "q", k=2)] == ["a", "b"]
    assert r.queries == [("q", 2)]


def test_prf_over_real_bm25_finds_vocabulary_mismatch() -> None:
    """PRF adds the feedback documents' words, so a document that shares none of the query's words can be found."""
    retriever = build_retriever("bm25", embedder=HashingEmbedder(), home=None)
    chunks = [Chunk("1", "1", "feline pets purr; a feline pet sleeps all day", 0, 10),
              Chunk("2", "2", "cats are feline pets that purr", 0, 10),
              Chunk("3", "3", "rockets burn fuel to reach orbit", 0, 10)]
    retriever.add(chunks)
    plain = [h.chunk.id for h in retriever.search("cats", k=3)]
    assert plain == ["2"]
    expanded = search_with_transform(retriever, PRFExpansion(retriever, docs=1, terms=3), "cats", k=3)
    assert [h.chunk.id for h in expanded][:2] == ["2", "1"] or [h.chunk.id for h in expanded][:2] == ["1", "2"]
