"""The registry: applied definitions and materialization state in one SQLite file (WAL mode).

Definitions are stored as JSON specs keyed by (kind, name) with a content hash, written in one transaction per
apply so a failed apply leaves the previous registry intact. A ``version`` counter lets long-lived readers (the HTTP
server) notice a new apply cheaply. Materialization keeps a checkpoint per run (how far it got) and a log of
finished chunks, which is what makes a killed run resumable without gaps or duplicates.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisd.core.hashing import hash_object
from aisd.core.sqlite import enable_wal, retry_busy

KINDS = ("entity", "feature_view", "on_demand_feature_view", "feature_service", "push_source")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, hash TEXT NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (kind, name));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS materialized (view TEXT PRIMARY KEY, until REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS mat_runs (run_id TEXT PRIMARY KEY, view TEXT NOT NULL, start REAL NOT NULL,
    "end" REAL NOT NULL, done_until REAL NOT NULL, status TEXT NOT NULL, rows_written INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL, finished_at REAL);
CREATE TABLE IF NOT EXISTS mat_chunks (run_id TEXT NOT NULL, chunk_start REAL NOT NULL, chunk_end REAL NOT NULL,
    rows INTEGER NOT NULL, done_at REAL NOT NULL, PRIMARY KEY (run_id, chunk_start));
"""


@dataclass(frozen=True)
class StoredObject:
    kind: str
    name: str
    spec: dict[str, Any]
    hash: str
    updated_at: float


@dataclass(frozen=True)
class MaterializationRun:
    run_id: str
    view: str
    start: float  # epoch seconds, UTC
    end: float
    done_until: float  # every event time in [start, done_until) has been written
    status: str  # running | done
    rows_written: int


class Registry:
    """SQLite-backed registry; safe to share between threads (one connection, a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        enable_wal(self._db)
        retry_busy(self._db, _SCHEMA, script=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- definitions ----------------------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        return int(row[0]) if row else 0

    def list(self, kind: str | None = None) -> list[StoredObject]:
        sql, args = "SELECT kind, name, spec, hash, updated_at FROM objects", ()
        if kind is not None:
            sql, args = sql + " WHERE kind=?", (kind,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY kind, name", args).fetchall()
        return [StoredObject(k, n, json.loads(s), h, u) for k, n, s, h, u in rows]

    def get(self, kind: str, name: str) -> StoredObject | None:
        with self._lock:
            row = self._db.execute("SELECT kind, name, spec, hash, updated_at FROM objects WHERE kind=? AND name=?",
                                   (kind, name)).fetchone()
        return StoredObject(row[0], row[1], json.loads(row[2]), row[3], row[4]) if row else None

    def apply(self, upserts: Iterable[tuple[str, str, dict[str, Any]]], deletes: Iterable[tuple[str, str]] = ()) -> int:
        """Write every upsert (kind, name, spec) and delete (kind, name) in one transaction; returns the new version."""
        now = time.time()
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for kind, name, spec in upserts:
                    if kind not in KINDS:
                        raise ValueError(f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")
                    cur.execute("INSERT INTO objects VALUES (?,?,?,?,?) ON CONFLICT(kind, name) DO UPDATE SET "
                                "spec=excluded.spec, hash=excluded.hash, updated_at=excluded.updated_at",
                                (kind, name, json.dumps(spec, sort_keys=True), hash_object(spec), now))
                for kind, name in deletes:
                    cur.execute("DELETE FROM objects WHERE kind=? AND name=?", (kind, name))
                cur.execute("INSERT INTO meta VALUES ('version', '1') ON CONFLICT(key) DO UPDATE SET "
                            "value=CAST(CAST(value AS INTEGER) + 1 AS TEXT)")
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return self.version

    # ---- materialization state ------------------------------------------------------------------------------------
    def materialized_until(self, view: str) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT until FROM materialized WHERE view=?", (view,)).fetchone()
        return row[0] if row else None

    def unfinished_run(self, view: str, start: float) -> MaterializationRun | None:
        """The newest run of ``view`` from ``start`` that did not finish (killed or failed), if any."""
        with self._lock:
            row = self._db.execute(
                'SELECT run_id, view, start, "end", done_until, status, rows_written FROM mat_runs '
                "WHERE view=? AND start=? AND status='running' ORDER BY started_at DESC LIMIT 1",
                (view, start)).fetchone()
        return MaterializationRun(*row) if row else None

    def start_run(self, view: str, start: float, end: float) -> MaterializationRun:
        run = MaterializationRun(uuid.uuid4().hex, view, start, end, start, "running", 0)
        with self._lock:
            self._db.execute("INSERT INTO mat_runs VALUES (?,?,?,?,?,?,?,?,NULL)",
                             (run.run_id, view, start, end, start, "running", 0, time.time()))
        return run

    def extend_run(self, run_id: str, end: float) -> None:
        with self._lock:
            self._db.execute('UPDATE mat_runs SET "end"=max("end", ?) WHERE run_id=?', (end, run_id))

    def checkpoint(self, run_id: str, chunk_start: float, chunk_end: float, rows: int) -> None:
        """Record one finished chunk and advance the run's ``done_until``, atomically."""
        now = time.time()
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("INSERT INTO mat_chunks VALUES (?,?,?,?,?)", (run_id, chunk_start, chunk_end, rows, now))
                cur.execute("UPDATE mat_runs SET done_until=?, rows_written=rows_written+? WHERE run_id=?",
                            (chunk_end, rows, run_id))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def finish_run(self, run_id: str, view: str, end: float) -> None:
        now = time.time()
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            cur.execute("UPDATE mat_runs SET status='done', finished_at=? WHERE run_id=?", (now, run_id))
            cur.execute("INSERT INTO materialized VALUES (?,?,?) ON CONFLICT(view) DO UPDATE SET "
                        "until=max(until, excluded.until), updated_at=excluded.updated_at", (view, end, now))
            cur.execute("COMMIT")

    def chunks(self, run_id: str) -> list[tuple[float, float, int]]:
        """(chunk_start, chunk_end, rows) of a run's finished chunks, in time order."""
        with self._lock:
            rows = self._db.execute("SELECT chunk_start, chunk_end, rows FROM mat_chunks WHERE run_id=? "
                                    "ORDER BY chunk_start", (run_id,)).fetchall()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def runs(self, view: str | None = None) -> list[MaterializationRun]:
        sql = 'SELECT run_id, view, start, "end", done_until, status, rows_written FROM mat_runs'
        args: tuple[Any, ...] = ()
        if view:
            sql, args = sql + " WHERE view=?", (view,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY started_at", args).fetchall()
        return [MaterializationRun(*r) for r in rows]
