"""CachedEmbedder: an exact-match embedding cache in SQLite, keyed by (model, sha256(text)).

Embedding is the slow part of ingestion and evaluation (SciFact's 5,183 abstracts take minutes on a laptop CPU),
and the same texts come back on every re-ingest and every eval run. The cache is one SQLite file in WAL mode: readers
never block the writer and several processes (a server, a CLI run, a benchmark) can share it. Only misses reach the
wrapped model; rows are written with ``INSERT OR IGNORE`` so two processes embedding the same text is harmless.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from aisd.core.errors import CorruptDataError
from aisd.core.hashing import sha256_hex
from aisd.core.progress import progress
from aisd.core.sqlite import connect_cache_db
from aisd.embed.base import Embedder, TokenSpan

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, text_hash)
) WITHOUT ROWID;
"""
_SQL_BATCH = 500  # keeps "IN (?, ?, ...)" well under SQLite's host-parameter limit


class CacheStats(NamedTuple):
    """Texts served without the model (``hits``: found in the file, or repeated within one call) vs texts the model
    embedded (``misses``), counted by this object since it was made; ``entries``: rows stored for this model."""

    hits: int
    misses: int
    entries: int

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


def _chunks(items: Sequence[str], n: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class CachedEmbedder:
    """Wraps any ``Embedder``; same protocol, plus ``stats()``. ``path`` is the SQLite file (created on demand);
    ``batch_size`` is how many missed texts go to the model per call (progress is reported per batch)."""

    def __init__(self, inner: Embedder, path: str | Path, *, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.inner = inner
        self.path = Path(path)
        self.batch_size = batch_size
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    # ---- storage ----------------------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        # a connection must not cross a fork: reopen in a child process
        if self._conn is None or self._pid != os.getpid():
            conn = connect_cache_db(self.path, _SCHEMA, "embedding cache")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @property
    def cache_key(self) -> str:
        """What identifies the model in the cache: its name and dimension (a different model never hits)."""
        return f"{self.inner.model_name}/{self.inner.dim}"

    def _lookup(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        key, dim = self.cache_key, self.inner.dim
        db = self._db()
        for part in _chunks(hashes, _SQL_BATCH):
            rows = db.execute(
                f"SELECT text_hash, dim, vector FROM embeddings WHERE model = ? AND text_hash IN "
                f"({','.join('?' * len(part))})", (key, *part)).fetchall()
            for h, d, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if d != dim or vec.shape[0] != dim:
                    raise CorruptDataError(f"embedding cache {self.path}: row for {h} has dim {vec.shape[0]}, "
                                           f"expected {dim}")
                found[h] = vec
        return found

    def _store(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        key, dim = self.cache_key, self.inner.dim
        db = self._db()
        with db:
            db.executemany("INSERT OR IGNORE INTO embeddings (model, text_hash, dim, vector) VALUES (?, ?, ?, ?)",
                           [(key, h, dim, np.ascontiguousarray(v, dtype=np.float32).tobytes())
                            for h, v in zip(hashes, vectors, strict=True)])

    # ---- Embedder protocol ------------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.inner.dim), dtype=np.float32) if texts else \
            np.zeros((0, self.inner.dim), dtype=np.float32)
        if not texts:
            return out
        hashes = [sha256_hex(t) for t in texts]
        with self._lock:
            cached = self._lookup(sorted(set(hashes)))
            missing: dict[str, str] = {}
            for h, t in zip(hashes, texts, strict=True):
                if h not in cached:
                    missing.setdefault(h, t)
            # a miss is a text the model must embed; a repeat inside one call is served from the first copy
            self._misses += len(missing)
            self._hits += len(texts) - len(missing)
        if missing:
            items = list(missing.items())
            batches = list(_chunks(items, self.batch_size))
            for batch in progress(batches, total=len(batches), desc=f"embedding {len(items)} texts"):
                vecs = self.inner.embed([t for _, t in batch])
                with self._lock:
                    self._store([h for h, _ in batch], vecs)
                for (h, _), v in zip(batch, vecs, strict=True):
                    cached[h] = v
        for i, h in enumerate(hashes):
            out[i] = cached[h]
        return out

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def token_spans(self, text: str) -> list[TokenSpan]:
        return self.inner.token_spans(text)

    def token_embeddings(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per-token vectors from the wrapped embedder (not cached: they are large and query-time only)."""
        fn = getattr(self.inner, "token_embeddings", None)
        if fn is None:
            from aisd.core.errors import UnsupportedError

            raise UnsupportedError(f"embedder {self.inner.model_name!r} does not expose token embeddings")
        return fn(texts)

    # ---- introspection ----------------------------------------------------------------------------------------
    def stats(self) -> CacheStats:
        with self._lock:
            (entries,) = self._db().execute("SELECT COUNT(*) FROM embeddings WHERE model = ?",
                                            (self.cache_key,)).fetchone()
            return CacheStats(self._hits, self._misses, int(entries))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
