"""Retrievers built from others: hybrid (BM25 + dense fused by RRF or alpha-weighted scores) and reranked (a first
stage whose head a ``Reranker`` reorders)."""

from __future__ import annotations

from collections.abc import Sequence

from aisd.rag.bm25_retriever import BM25Retriever
from aisd.rag.dense import DenseRetriever
from aisd.rag.documents import Chunk, RetrievedChunk
from aisd.rag.retriever_base import HYBRID_DEPTH, Retriever, check_chunks, check_k
from aisd.search.fusion import RRF_K, alpha_scores, rrf_scores, top
from aisd.search.rerank import Reranker


class HybridRetriever:
    """BM25 + dense fused by ``fusion``: ``rrf`` (k = 60) or ``alpha`` (alpha x dense + (1 - alpha) x BM25 on
    min-max normalised scores). Each side contributes ``max(k, depth)`` candidates."""

    def __init__(self, bm25: BM25Retriever, dense: DenseRetriever, *, fusion: str = "rrf", alpha: float = 0.5,
                 rrf_k: int = RRF_K, depth: int = HYBRID_DEPTH) -> None:
        if fusion not in ("rrf", "alpha"):
            raise ValueError(f"fusion must be 'rrf' or 'alpha', got {fusion!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.bm25, self.dense = bm25, dense
        self.fusion, self.alpha, self.rrf_k, self.depth = fusion, alpha, rrf_k, depth
        self.name = f"hybrid-{fusion}"

    def add(self, chunks: Sequence[Chunk]) -> None:
        chunks = check_chunks(chunks)
        self.bm25.add(chunks)
        self.dense.add(chunks)

    def delete(self, chunk_ids: Sequence[str]) -> None:
        self.bm25.delete(chunk_ids)
        self.dense.delete(chunk_ids)

    def search(self, query: str, k: int = 10, filter: dict | None = None) -> list[RetrievedChunk]:
        check_k(k)
        n = max(k, self.depth)
        lex = self.bm25.search(query, n, filter)
        vec = self.dense.search(query, n, filter)
        by_id: dict[str, RetrievedChunk] = {}
        for r in lex + vec:
            prev = by_id.get(r.chunk.id)
            by_id[r.chunk.id] = r if prev is None else RetrievedChunk(prev.chunk, prev.score,
                                                                      {**prev.scores, **r.scores})
        if self.fusion == "rrf":
            fused = rrf_scores([[r.chunk.id for r in vec], [r.chunk.id for r in lex]], self.rrf_k)
        else:
            fused = alpha_scores({r.chunk.id: r.score for r in vec}, {r.chunk.id: r.score for r in lex},
                                 self.alpha)
        return [by_id[str(f.id)].with_score(self.fusion, f.score) for f in top(fused, k)]

    def count(self) -> int:
        return self.bm25.count()

    def save(self) -> None:
        self.bm25.save()
        self.dense.save()


class RerankingRetriever:
    """A first-stage retriever whose top ``candidates`` are reordered by a ``Reranker``; results past the reranked
    head (when k > candidates) follow in first-stage order."""

    def __init__(self, base: Retriever, reranker: Reranker, candidates: int = 50) -> None:
        if candidates < 1:
            raise ValueError(f"rerank candidates must be >= 1, got {candidates}")
        self.base, self.reranker, self.candidates = base, reranker, candidates
        self.name = f"{base.name}+{reranker.name}"

    def add(self, chunks: Sequence[Chunk]) -> None:
        self.base.add(chunks)

    def delete(self, chunk_ids: Sequence[str]) -> None:
        self.base.delete(chunk_ids)

    def search(self, query: str, k: int = 10, filter: dict | None = None) -> list[RetrievedChunk]:
        check_k(k)
        first = self.base.search(query, max(k, self.candidates), filter)
        head, tail = first[:self.candidates], first[self.candidates:]
        if not head:
            return []
        ranked = self.reranker.rerank(query, [r.chunk.text for r in head])
        out = [head[r.index].with_score("rerank", r.score) for r in ranked]
        return (out + tail)[:k]

    def count(self) -> int:
        return self.base.count()

    def save(self) -> None:
        self.base.save()
