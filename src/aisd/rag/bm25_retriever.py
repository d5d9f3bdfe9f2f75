"""Lexical retrieval: BM25 (aisd.search.bm25) over the chunks' text, persisted beside the chunk store."""

from __future__ import annotations

from collections.abc import Sequence

from aisd.rag.chunk_store import ChunkStore
from aisd.rag.documents import Chunk, RetrievedChunk
from aisd.rag.retriever_base import check_chunks, check_k
from aisd.search.bm25 import BM25Index


class BM25Retriever:
    """Lexical retrieval: BM25 over ``chunk.text`` (scores as in aisd.search.bm25)."""

    name = "bm25"

    def __init__(self, store: ChunkStore, index: BM25Index) -> None:
        self.store = store
        self.index = index

    def add(self, chunks: Sequence[Chunk]) -> None:
        chunks = check_chunks(chunks)
        self.store.put(chunks)
        self.index.add([c.id for c in chunks], [c.text for c in chunks])

    def delete(self, chunk_ids: Sequence[str]) -> None:
        self.index.delete(list(chunk_ids))
        self.store.delete(chunk_ids)

    def search(self, query: str, k: int = 10, filter: dict | None = None) -> list[RetrievedChunk]:
        check_k(k)
        allowed = self.store.ids_matching(filter) if filter else None
        return [RetrievedChunk(self.store.get(h.id), h.score, {"bm25": h.score})
                for h in self.index.search(query, k, allowed=allowed) if h.id in self.store]

    def count(self) -> int:
        return len(self.index)

    def save(self) -> None:
        if self.index.path is not None:
            self.index.save()
        self.store.save()
