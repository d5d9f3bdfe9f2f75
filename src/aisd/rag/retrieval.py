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
paths evaluate them with ``matches_filter`` below, which follows the same semantics.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from aisd.core.errors import CorruptDataError, InvalidRequestError
from aisd.core.progress import progress
from aisd.embed.base import Embedder
from aisd.rag.documents import Chunk, RetrievedChunk
from aisd.search.bm25 import BM25Config, BM25Index
from aisd.search.fusion import RRF_K, alpha_scores, rrf_scores, top
from aisd.search.rerank import Reranker
from aisd.search.tokenize import Tokenizer

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


# ---- filters --------------------------------------------------------------------------------------------------
_MISSING = object()
_OPS = {"eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists"}


def _cmp(op: str, have: Any, want: Any) -> bool:
    if op == "exists":
        return (have is not _MISSING) == bool(want)
    if have is _MISSING:
        return op in ("ne", "nin")
    if op == "eq":
        return have == want or (isinstance(have, list) and want in have)
    if op == "ne":
        return not _cmp("eq", have, want)
    if op == "in":
        return any(_cmp("eq", have, w) for w in want)
    if op == "nin":
        return not _cmp("in", have, want)
    try:
        if op == "gt":
            return have > want
        if op == "gte":
            return have >= want
        if op == "lt":
            return have < want
        if op == "lte":
            return have <= want
    except TypeError:
        return False
    raise InvalidRequestError(f"unknown filter operator {op!r}; allowed: {', '.join(sorted(_OPS))}", param="filter")


def matches_filter(flt: dict[str, Any] | None, payload: dict[str, Any]) -> bool:
    """Does ``payload`` satisfy ``flt``? ``{field: value}`` = equality (a list value = any of), ``{field: {op: v}}``
    with op in eq, ne, in, nin, gt, gte, lt, lte, exists (a leading ``$`` is accepted), and ``and`` / ``or`` (lists
    of filters) and ``not`` (a filter). Several keys in one dict must all hold."""
    if not flt:
        return True
    if not isinstance(flt, dict):
        raise InvalidRequestError(f"a filter must be an object, got {type(flt).__name__}", param="filter")
    for key, cond in flt.items():
        k = key.lstrip("$")
        if k in ("and", "must"):
            if not all(matches_filter(c, payload) for c in cond):
                return False
        elif k in ("or", "should"):
            if not any(matches_filter(c, payload) for c in cond):
                return False
        elif k in ("not", "must_not"):
            subs = cond if isinstance(cond, list) else [cond]
            if any(matches_filter(c, payload) for c in subs):
                return False
        else:
            have = payload.get(key, _MISSING)
            if isinstance(cond, dict):
                for op, want in cond.items():
                    o = op.lstrip("$")
                    if o == "range":
                        if not all(_cmp(r, have, v) for r, v in want.items()):
                            return False
                    elif o not in _OPS:
                        raise InvalidRequestError(f"unknown filter operator {op!r} on field {key!r}; allowed: "
                                                  f"{', '.join(sorted(_OPS | {'range'}))}", param="filter")
                    elif not _cmp(o, have, want):
                        return False
            elif isinstance(cond, list):
                if not _cmp("in", have, cond):
                    return False
            elif not _cmp("eq", have, cond):
                return False
    return True


def filter_predicate(flt: dict[str, Any] | None) -> Callable[[dict[str, Any]], bool]:
    """A payload predicate with aisd.vector's exact semantics (its parser validates the filter and names a bad
    field); ``matches_filter`` above is the fallback when aisd.vector is not importable."""
    if not flt:
        return lambda payload: True
    try:
        from aisd.vector.filters import parse_filter
    except ImportError:  # pragma: no cover - aisd.vector ships with aisd
        return lambda payload: matches_filter(flt, payload)
    parsed = parse_filter(flt)
    return (lambda payload: True) if parsed is None else parsed.matches


# ---- chunk storage --------------------------------------------------------------------------------------------
def chunk_to_dict(c: Chunk) -> dict[str, Any]:
    return {"id": c.id, "doc_id": c.doc_id, "text": c.text, "start": c.start, "end": c.end,
            "metadata": c.metadata, "window": c.window}


def chunk_from_dict(d: dict[str, Any]) -> Chunk:
    return Chunk(id=d["id"], doc_id=d["doc_id"], text=d["text"], start=int(d["start"]), end=int(d["end"]),
                 metadata=dict(d.get("metadata") or {}), window=d.get("window"))


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ChunkStore:
    """Chunks by id, in memory; persisted as gzip JSON lines at ``path`` on ``save()`` (loaded if present)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._chunks: dict[str, Chunk] = {}
        self._lock = threading.RLock()
        if path is not None and path.exists():
            try:
                for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines():
                    if line:
                        c = chunk_from_dict(json.loads(line))
                        self._chunks[c.id] = c
            except (OSError, EOFError, ValueError, KeyError, gzip.BadGzipFile) as e:
                raise CorruptDataError(f"chunk store {path} cannot be read: {e}") from e

    def put(self, chunks: Iterable[Chunk]) -> None:
        with self._lock:
            for c in chunks:
                self._chunks[c.id] = c

    def delete(self, ids: Iterable[str]) -> None:
        with self._lock:
            for i in ids:
                self._chunks.pop(i, None)

    def get(self, chunk_id: str) -> Chunk:
        return self._chunks[chunk_id]

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._chunks

    def __len__(self) -> int:
        return len(self._chunks)

    def ids_matching(self, flt: dict | None) -> set[str]:
        pred = filter_predicate(flt)
        with self._lock:
            return {i for i, c in self._chunks.items() if pred(c.metadata)}

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            body = "\n".join(json.dumps(chunk_to_dict(c), ensure_ascii=False, default=str)
                             for c in self._chunks.values())
        _atomic_write(self.path, gzip.compress(body.encode("utf-8"), compresslevel=5))


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise InvalidRequestError(f"k must be a positive integer, got {k!r}", param="k")


def _check_chunks(chunks: Sequence[Chunk]) -> list[Chunk]:
    out = list(chunks)
    for c in out:
        if not isinstance(c, Chunk):
            raise InvalidRequestError(f"expected Chunk objects, got {type(c).__name__}", param="chunks")
    # the last copy of a repeated id wins, as re-adding does
    return list({c.id: c for c in out}.values())


# ---- BM25 -----------------------------------------------------------------------------------------------------
class BM25Retriever:
    """Lexical retrieval: BM25 over ``chunk.text`` (scores as in aisd.search.bm25)."""

    name = "bm25"

    def __init__(self, store: ChunkStore, index: BM25Index) -> None:
        self.store = store
        self.index = index

    def add(self, chunks: Sequence[Chunk]) -> None:
        chunks = _check_chunks(chunks)
        self.store.put(chunks)
        self.index.add([c.id for c in chunks], [c.text for c in chunks])

    def delete(self, chunk_ids: Sequence[str]) -> None:
        self.index.delete(list(chunk_ids))
        self.store.delete(chunk_ids)

    def search(self, query: str, k: int = 10, filter: dict | None = None) -> list[RetrievedChunk]:
        _check_k(k)
        allowed = self.store.ids_matching(filter) if filter else None
        return [RetrievedChunk(self.store.get(h.id), h.score, {"bm25": h.score})
                for h in self.index.search(query, k, allowed=allowed) if h.id in self.store]

    def count(self) -> int:
        return len(self.index)

    def save(self) -> None:
        if self.index.path is not None:
            self.index.save()
        self.store.save()


# ---- dense ----------------------------------------------------------------------------------------------------
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
        import io

        buf = io.BytesIO()
        np.savez(buf, ids=np.array(ids, dtype=str), vectors=mat)
        _atomic_write(self.path, buf.getvalue())


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
        chunks = _check_chunks(chunks)
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
        _check_k(k)
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


# ---- hybrid ---------------------------------------------------------------------------------------------------
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
        chunks = _check_chunks(chunks)
        self.bm25.add(chunks)
        self.dense.add(chunks)

    def delete(self, chunk_ids: Sequence[str]) -> None:
        self.bm25.delete(chunk_ids)
        self.dense.delete(chunk_ids)

    def search(self, query: str, k: int = 10, filter: dict | None = None) -> list[RetrievedChunk]:
        _check_k(k)
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


# ---- reranking ------------------------------------------------------------------------------------------------
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
        _check_k(k)
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


# ---- factory --------------------------------------------------------------------------------------------------
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
