"""Semantic retrieval: the embedder's vectors in an aisd.vector collection (durable, filters pushed down) or in an
exact in-memory inner-product index saved as ``.npz``."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aisd.core.errors import CorruptDataError
from aisd.core.files import atomic_write
from aisd.core.progress import progress
from aisd.embed.base import Embedder
from aisd.rag.chunk_store import ChunkStore, chunk_from_dict, chunk_to_dict
from aisd.rag.documents import Chunk, RetrievedChunk
from aisd.rag.retriever_base import check_chunks, check_k


def _embed_batches(embedder: Embedder, texts: list[str], batch: int = 256) -> np.ndarray:
    parts = [embedder.embed(texts[i:i + batch])
             for i in progress(range(0, len(texts), batch), total=(len(texts) + batch - 1) // batch,
                               desc=f"embedding {len(texts)} chunks")]
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, embedder.dim), dtype=np.float32)


class ExactVectorIndex:
    """Exact inner-product search over unit vectors in memory (the fallback when no aisd.vector store is given).
    Saved as ``.npz`` (ids + float32 matrix) at ``path``."""

    def __init__(self, dim: int, path: Path | None = None) -> None:
        self.dim = dim
        self.path = path
        self._vecs: dict[str, np.ndarray] = {}
        self._matrix: tuple[list[str], np.ndarray] | None = None
        self._lock = threading.RLock()
        if path is not None and path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    ids, mat = [str(i) for i in z["ids"]], z["vectors"]
            except (OSError, ValueError, KeyError) as e:
                raise CorruptDataError(f"dense index {path} cannot be read: {e}") from e
            if mat.shape[1:] != (dim,):
                raise CorruptDataError(f"dense index {path} holds {mat.shape[1:]} vectors, embedder dim is {dim}")
            self._vecs = dict(zip(ids, mat, strict=True))

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        with self._lock:
            for i, v in zip(ids, vectors, strict=True):
                self._vecs[i] = np.asarray(v, dtype=np.float32)
            self._matrix = None

    def delete(self, ids: Sequence[str]) -> None:
        with self._lock:
            for i in ids:
                self._vecs.pop(i, None)
            self._matrix = None

    def count(self) -> int:
        return len(self._vecs)

    def _compiled(self) -> tuple[list[str], np.ndarray]:
        with self._lock:
            if self._matrix is None:
                ids = list(self._vecs)
                mat = np.stack([self._vecs[i] for i in ids]) if ids else np.zeros((0, self.dim), np.float32)
                self._matrix = (ids, mat)  # (n, dim)
            return self._matrix

    def search(self, vector: np.ndarray, k: int, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        ids, mat = self._compiled()
        if not ids:
            return []
        # (n,) cosine for unit vectors. einsum runs a single-threaded loop: for one query a multi-threaded BLAS
        # matvec is 10-20x slower on a loaded machine (thread hand-off dominates 2M multiply-adds)
        scores = np.einsum("ij,j->i", mat, vector.astype(np.float32))
        if allowed is not None:
            cand = np.fromiter((i for i, d in enumerate(ids) if d in allowed), dtype=np.int64)
        else:
            cand = np.arange(len(ids))
        if cand.size == 0:
            return []
        if cand.size > k:
            cand = cand[np.argpartition(-scores[cand], k - 1)[:k]]
        cand = cand[np.lexsort((cand, -scores[cand]))]
        return [(ids[i], float(scores[i])) for i in cand]

    def save(self) -> None:
        if self.path is None:
            return
        ids, mat = self._compiled()
        buf = io.BytesIO()
        np.savez(buf, ids=np.array(ids, dtype=str), vectors=mat)
        atomic_write(self.path, buf.getvalue())


class DenseRetriever:
    """Semantic retrieval: cosine similarity between the query's and the chunks' embeddings.

    With ``collection`` (an aisd.vector collection) vectors and chunks live there as payloads and filters are pushed
    down; otherwise ``index`` (exact, in memory) plus the shared ``store`` of chunks."""

    name = "dense"

    def __init__(self, embedder: Embedder, store: ChunkStore, *, index: ExactVectorIndex | None = None,
                 collection: Any = None) -> None:
        if (index is None) == (collection is None):
            raise ValueError("give exactly one of index (in-memory) or collection (aisd.vector)")
        self.embedder = embedder
        self.store = store
        self.index = index
        self.collection = collection

    def add(self, chunks: Sequence[Chunk]) -> None:
        chunks = check_chunks(chunks)
        if not chunks:
            return
        self.store.put(chunks)
        vecs = _embed_batches(self.embedder, [c.text for c in chunks])
        ids = [c.id for c in chunks]
        if self.collection is not None:
            payloads = [{**c.metadata, "_chunk": chunk_to_dict(c)} for c in chunks]
            self.collection.upsert(ids, vecs, payloads)
        else:
            assert self.index is not None
            self.index.upsert(ids, vecs)

    def delete(self, chunk_ids: Sequence[str]) -> None:
        ids = list(chunk_ids)
        if self.collection is not None:
            self.collection.delete(ids)
        else:
            assert self.index is not None
            self.index.delete(ids)
        self.store.delete(ids)

    def search(self, query: str, k: int = 10, filter: dict | None = None) -> list[RetrievedChunk]:
        check_k(k)
        if self.count() == 0:
            return []
        q = self.embedder.embed([query])[0]
        out: list[RetrievedChunk] = []
        if self.collection is not None:
            for hit in self.collection.search(q, k=k, filter=filter or None):
                payload = hit.payload or {}
                chunk = chunk_from_dict(payload["_chunk"]) if "_chunk" in payload else self.store.get(str(hit.id))
                out.append(RetrievedChunk(chunk, float(hit.score), {"dense": float(hit.score)}))
            return out
        assert self.index is not None
        allowed = self.store.ids_matching(filter) if filter else None
        for cid, score in self.index.search(q, k, allowed):
            if cid in self.store:
                out.append(RetrievedChunk(self.store.get(cid), score, {"dense": score}))
        return out

    def count(self) -> int:
        return int(self.collection.count()) if self.collection is not None else self.index.count()  # type: ignore

    def save(self) -> None:
        if self.index is not None:
            self.index.save()
        self.store.save()
