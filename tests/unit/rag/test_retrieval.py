"""Retriever internals: hybrid scores equal RRF / alpha fusion of the two single lists, reranking reorders only the
candidate head, filters, validation errors."""

from __future__ import annotations

import pytest

from aisd.core.errors import InvalidRequestError
from aisd.embed import HashingEmbedder
from aisd.rag.documents import Chunk
from aisd.rag.retrieval import build_retriever, matches_filter
from aisd.search.fusion import alpha_scores, rrf_scores
from aisd.search.rerank import order_results

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def _chunks(n: int = 40) -> list[Chunk]:
    out = []
    for i in range(n):
        text = " ".join(WORDS[(i * j) % len(WORDS)] for j in range(1, 2 + i % 7))
        out.append(Chunk(id=f"c{i}", doc_id=f"d{i // 2}", text=text, start=0, end=len(text),
                         metadata={"shard": i % 3, "tags": ["even"] if i % 2 == 0 else ["odd"]}))
    return out


@pytest.fixture(scope="module")
def parts():
    emb = HashingEmbedder(dim=128)
    made = {}
    for kind in ("bm25", "dense", "hybrid-rrf", "hybrid-alpha"):
        r = build_retriever(kind, embedder=emb, home=None, alpha=0.3)
        r.add(_chunks())
        made[kind] = r
    return made


def test_hybrid_rrf_equals_fusion_of_single_lists(parts) -> None:
    q = "beta gamma kappa"
    lex = parts["bm25"].search(q, 100)
    vec = parts["dense"].search(q, 100)
    expected = rrf_scores([[h.chunk.id for h in vec], [h.chunk.id for h in lex]], 60)
    got = parts["hybrid-rrf"].search(q, 10)
    assert len(got) == 10
    for h in got:
        assert h.score == pytest.approx(expected[h.chunk.id])
    assert [h.score for h in got] == sorted(expected.values(), reverse=True)[:10]


def test_hybrid_alpha_equals_weighted_minmax(parts) -> None:
    q = "delta epsilon"
    lex = {h.chunk.id: h.score for h in parts["bm25"].search(q, 100)}
    vec = {h.chunk.id: h.score for h in parts["dense"].search(q, 100)}
    expected = alpha_scores(vec, lex, 0.3)
    got = parts["hybrid-alpha"].search(q, 5)
    assert [h.score for h in got] == pytest.approx(sorted(expected.values(), reverse=True)[:5])
    assert set(got[0].scores) >= {"alpha"}


class _ReverseReranker:
    name = "reverse"

    def __init__(self) -> None:
        self.seen: list[int] = []

    def rerank(self, query, texts, top_n=None):
        self.seen.append(len(texts))
        return order_results([float(i) for i in range(len(texts))], top_n)  # last candidate first


def test_reranking_reorders_the_head_only() -> None:
    emb = HashingEmbedder(dim=128)
    base = build_retriever("bm25", embedder=emb, home=None)
    base.add(_chunks())
    rr = _ReverseReranker()
    r = build_retriever("bm25", embedder=emb, home=None, reranker=rr, rerank_candidates=5)
    r.add(_chunks())
    assert r.name == "bm25+reverse"
    first = [h.chunk.id for h in base.search("alpha beta", 8)]
    got = r.search("alpha beta", 8)
    assert rr.seen == [5]
    assert [h.chunk.id for h in got] == first[:5][::-1] + first[5:8]
    assert got[0].scores["rerank"] == 4.0 and "bm25" in got[0].scores


def test_filter_language_in_memory(parts) -> None:
    hits = parts["hybrid-rrf"].search("alpha beta", 20, filter={"shard": {"in": [0, 2]}, "tags": "even"})
    assert hits and all(h.chunk.metadata["shard"] in (0, 2) and "even" in h.chunk.metadata["tags"] for h in hits)
    hits = parts["bm25"].search("alpha", 20, filter={"not": {"shard": 1}})
    assert hits and all(h.chunk.metadata["shard"] != 1 for h in hits)
    with pytest.raises(InvalidRequestError):
        parts["bm25"].search("alpha", 5, filter={"shard": {"near": 3}})


def test_matches_filter_fallback_semantics() -> None:
    p = {"lang": "en", "year": 2020, "tags": ["a", "b"]}
    assert matches_filter({"lang": "en"}, p) and not matches_filter({"lang": "fr"}, p)
    assert matches_filter({"tags": "a"}, p) and matches_filter({"year": {"$gte": 2020, "lt": 2021}}, p)
    assert matches_filter({"or": [{"lang": "fr"}, {"year": {"range": {"gt": 2000}}}]}, p)
    assert matches_filter({"missing": {"exists": False}}, p) and matches_filter({"missing": {"ne": 1}}, p)
    assert not matches_filter({"not": {"lang": {"in": ["en", "de"]}}}, p)
    with pytest.raises(InvalidRequestError, match="operator"):
        matches_filter({"lang": {"like": "e%"}}, p)


def test_validation() -> None:
    emb = HashingEmbedder(dim=16)
    with pytest.raises(InvalidRequestError, match="bm25, dense, hybrid-rrf, hybrid-alpha"):
        build_retriever("splade", embedder=emb, home=None)
    with pytest.raises(InvalidRequestError, match="needs an embedder"):
        build_retriever("dense", embedder=None, home=None)
    r = build_retriever("bm25", embedder=None, home=None)
    with pytest.raises(InvalidRequestError, match="k must"):
        r.search("x", 0)
    with pytest.raises(InvalidRequestError, match="Chunk"):
        r.add(["not a chunk"])  # type: ignore[list-item]
    assert build_retriever("dense", embedder=emb, home=None).search("anything", 3) == []
