"""A persistent cache of per-token embedding matrices for the MaxSim late-interaction reranker.

Keyed by (model, sha256(text)) in SQLite like the embedding cache (aisd.embed.cache) and stored next to it: the same
candidate chunks come back across queries and processes, and recomputing their token vectors is the reranker's whole
cost. Matrices are float16 (n_tokens, dim): MiniLM's 384-d token vectors take ~0.75 KB per token, ~100-200 KB per
256-token chunk (ColBERT stores its token vectors compressed for the same reason, Santhanam et al. 2022). WAL mode
makes it safe for several processes; a row that does not decode is reported as CorruptDataError.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aisd.core.errors import CorruptDataError
from aisd.core.sqlite import connect_cache_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS token_vectors (
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    matrix BLOB NOT NULL,
    PRIMARY KEY (model, text_hash)
) WITHOUT ROWID;
"""
_SQL_BATCH = 500  # SQLite's default limit on host parameters is 999


class TokenVectorCache:
    """``get(model, hashes) -> {hash: (n, dim) float16}`` and ``put(model, {hash: matrix})`` over a SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # a connection must not cross a fork
            conn = connect_cache_db(self.path, _SCHEMA, "token vector cache")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            db = self._db()
            for i in range(0, len(hashes), _SQL_BATCH):
                part = list(hashes[i:i + _SQL_BATCH])
                rows = db.execute(f"SELECT text_hash, n_tokens, dim, matrix FROM token_vectors WHERE model = ? AND "
                                  f"text_hash IN ({','.join('?' * len(part))})", (model, *part)).fetchall()
                for h, n, dim, blob in rows:
                    flat = np.frombuffer(blob, dtype=np.float16)
                    if flat.size != n * dim:
                        raise CorruptDataError(f"token vector cache {self.path}: row {h} holds {flat.size} values, "
                                               f"expected {n} x {dim}")
                    found[h] = flat.reshape(n, dim)
        return found

    def put(self, model: str, matrices: dict[str, np.ndarray]) -> None:
        rows = []
        for h, m in matrices.items():
            m16 = np.ascontiguousarray(m, dtype=np.float16)
            if m16.ndim != 2:
                raise ValueError(f"token matrix for {h} must be 2-d (n_tokens, dim), got shape {m16.shape}")
            rows.append((model, h, int(m16.shape[0]), int(m16.shape[1]), m16.tobytes()))
        with self._lock:
            db = self._db()
            with db:
                db.executemany("INSERT OR REPLACE INTO token_vectors (model, text_hash, n_tokens, dim, matrix) "
                               "VALUES (?, ?, ?, ?, ?)", rows)

    def count(self, model: str | None = None) -> int:
        with self._lock:
            db = self._db()
            q = ("SELECT COUNT(*) FROM token_vectors WHERE model = ?", (model,)) if model else \
                ("SELECT COUNT(*) FROM token_vectors", ())
            return int(db.execute(*q).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
