"""Retrievers over chunks: BM25, dense, hybrid (RRF or alpha fusion), each optionally reranked.

Every retriever has the same small interface (``Retriever``) so the pipeline, query transforms and the evaluation
grid switch between them by name with ``build_retriever(kind, ...)``:

- ``bm25``: aisd.search.bm25 over the chunk text, persisted to ``home/<collection>.bm25.json.gz`` on ``save()``.
- ``dense``: the embedder's vectors in an aisd.vector collection when a ``vector_store`` is given (durable; filters
  are pushed down to it), else an exact in-memory inner-product index (saved to ``home`` on ``save()``).
- ``hybrid-rrf``: reciprocal rank fusion (k = 60) of the BM25 and dense lists; ``hybrid-alpha``: alpha x min-max
  normalised dense score + (1 - alpha) x normalised BM25 score (the seed's formula).
- any of them + a ``Reranker``: the first stage fetches ``rerank_candidates`` chunks, the reranker reorders them.

Filters are ``{field: value}`` (equality) or aisd.vector's filter language over ``Chunk.metadata``; the in-memory
paths evaluate them with ``aisd.rag.filters``, which follows the same semantics.

Modules, one concept each: ``retriever_base`` (protocol, names), ``filters``, ``chunk_store``, ``bm25_retriever``,
``dense``, ``fused`` (hybrid, reranked); this module is the factory and re-exports their public names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aisd.core.errors import InvalidRequestError
from aisd.embed.base import Embedder
from aisd.rag.bm25_retriever import BM25Retriever
from aisd.rag.chunk_store import ChunkStore, chunk_from_dict, chunk_to_dict
from aisd.rag.dense import DenseRetriever, ExactVectorIndex
from aisd.rag.filters import filter_predicate, matches_filter
from aisd.rag.fused import HybridRetriever, RerankingRetriever
from aisd.rag.retriever_base import HYBRID_DEPTH, KINDS, Retriever
from aisd.search.bm25 import BM25Config, BM25Index
from aisd.search.rerank import Reranker
from aisd.search.tokenize import Tokenizer

__all__ = ["HYBRID_DEPTH", "KINDS", "BM25Retriever", "ChunkStore", "DenseRetriever", "ExactVectorIndex",
           "HybridRetriever", "RerankingRetriever", "Retriever", "build_retriever", "chunk_from_dict", "chunk_to_dict",
           "filter_predicate", "matches_filter"]


def _collection(vector_store: Any, name: str, dim: int) -> Any:
    has = getattr(vector_store, "has_collection", None)
    exists = has(name) if has is not None else name in [getattr(c, "name", c) for c in
                                                         vector_store.list_collections()]
    if exists:
        col = vector_store.get_collection(name)
        col_dim = getattr(col, "dim", None)
        if col_dim is not None and int(col_dim) != dim:
            raise InvalidRequestError(f"collection {name!r} holds {col_dim}-d vectors but the embedder makes {dim}-d "
                                      f"ones; use another collection or the same embedder", param="collection")
        return col
    return vector_store.create_collection(name, dim=dim, metric="cosine", index="auto")


def build_retriever(kind: str, *, embedder: Embedder | None, home: Path | None, vector_store: Any = None,
                    collection: str = "rag", alpha: float = 0.5, reranker: Reranker | None = None,
                    rerank_candidates: int = 50, bm25: BM25Config | None = None,
                    tokenizer: Tokenizer | None = None) -> Retriever:
    """A retriever by name: bm25 | dense | hybrid-rrf | hybrid-alpha, reranked when ``reranker`` is given.

    ``home=None`` keeps everything in memory; otherwise BM25 (and the exact dense index, when there is no
    ``vector_store``) are loaded from and saved to ``home/<collection>.*``."""
    if kind not in KINDS:
        raise InvalidRequestError(f"unknown retriever {kind!r}; choose one of {', '.join(KINDS)}", param="retriever")
    if not collection or "/" in collection or collection.startswith("."):
        raise InvalidRequestError(f"invalid collection name {collection!r}", param="collection")
    home = Path(home) if home is not None else None
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)

    def at(suffix: str) -> Path | None:
        return home / f"{collection}.{suffix}" if home is not None else None

    store = ChunkStore(at("chunks.jsonl.gz"))

    def make_bm25() -> BM25Retriever:
        return BM25Retriever(store, BM25Index(bm25, tokenizer, path=at("bm25.json.gz")))

    def make_dense() -> DenseRetriever:
        if embedder is None:
            raise InvalidRequestError(f"retriever {kind!r} needs an embedder", param="embedder")
        if vector_store is not None:
            return DenseRetriever(embedder, store, collection=_collection(vector_store, collection, embedder.dim))
        return DenseRetriever(embedder, store, index=ExactVectorIndex(embedder.dim, at("dense.npz")))

    builders: dict[str, Callable[[], Retriever]] = {
        "bm25": make_bm25,
        "dense": make_dense,
        "hybrid-rrf": lambda: HybridRetriever(make_bm25(), make_dense(), fusion="rrf"),
        "hybrid-alpha": lambda: HybridRetriever(make_bm25(), make_dense(), fusion="alpha", alpha=alpha),
    }
    retriever = builders[kind]()
    if reranker is not None:
        retriever = RerankingRetriever(retriever, reranker, rerank_candidates)
    return retriever
