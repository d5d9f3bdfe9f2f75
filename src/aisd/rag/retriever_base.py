"""The ``Retriever`` protocol every retriever implements, the names the factory knows, and shared argument checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from aisd.core.errors import InvalidRequestError
from aisd.rag.documents import Chunk, RetrievedChunk

KINDS = ("bm25", "dense", "hybrid-rrf", "hybrid-alpha")
HYBRID_DEPTH = 100  # each side of a hybrid contributes at least this many candidates to the fusion


@runtime_checkable
class Retriever(Protocol):
    name: str

    def add(self, chunks: Sequence[Chunk]) -> None: ...

    def delete(self, chunk_ids: Sequence[str]) -> None: ...

    def search(self, query: str, k: int = 10, filter: dict | None = None) -> list[RetrievedChunk]: ...

    def count(self) -> int: ...

    def save(self) -> None: ...


def check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise InvalidRequestError(f"k must be a positive integer, got {k!r}", param="k")


def check_chunks(chunks: Sequence[Chunk]) -> list[Chunk]:
    out = list(chunks)
    for c in out:
        if not isinstance(c, Chunk):
            raise InvalidRequestError(f"expected Chunk objects, got {type(c).__name__}", param="chunks")
    # the last copy of a repeated id wins, as re-adding does
    return list({c.id: c for c in out}.values())
