"""SQLite online store: the embedded default. WAL mode so readers never block on a materialization writing.

On-disk format 1 (``PRAGMA user_version = 1``): one table ``online(view, entity_key, event_ts, created_ts, value)``
keyed by (view, entity key) WITHOUT ROWID (the primary key is the clustered index). ``entity_key`` is the JSON array of
the join-key values (``encode_key``), ``event_ts`` / ``created_ts`` are epoch seconds, ``value`` is one JSON object
{feature: value} per entity and view, so a read of any number of features is one B-tree lookup and one JSON parse.
A file with this table but no version (written before versions were recorded) is the same format and is stamped; a
file with another layout or a newer version is refused with a clear error rather than misread.
One connection per thread (SQLite connections are not shared across threads without a lock, and WAL lets them read
concurrently); the read statements are fixed strings, so sqlite3's statement cache keeps them prepared.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from aisd.core.errors import CorruptDataError
from aisd.core.sqlite import enable_wal
from aisd.features.online.base import OnlineRecord, OnlineRow, dumps, loads

FORMAT_VERSION = 1
_COLUMNS = ["view", "entity_key", "event_ts", "created_ts", "value"]
_READ_ONE = "SELECT entity_key, event_ts, value FROM online WHERE view=? AND entity_key=?"

_SCHEMA = """CREATE TABLE IF NOT EXISTS online (view TEXT NOT NULL, entity_key TEXT NOT NULL,
    event_ts REAL NOT NULL, created_ts REAL NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (view, entity_key)) WITHOUT ROWID"""

# Newer-wins upsert: an older or equal-time-but-older-created row never overwrites a newer one.
_UPSERT = """INSERT INTO online VALUES (?,?,?,?,?) ON CONFLICT(view, entity_key) DO UPDATE SET
    event_ts=excluded.event_ts, created_ts=excluded.created_ts, value=excluded.value
    WHERE excluded.event_ts > online.event_ts
       OR (excluded.event_ts = online.event_ts AND excluded.created_ts >= online.created_ts)"""


class SqliteOnlineStore:
    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._check_format(self._conn())

    def _check_format(self, conn: sqlite3.Connection) -> None:
        """Create format 1, stamp an unversioned file of the same layout, refuse anything else."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        columns = [r[1] for r in conn.execute("PRAGMA table_info(online)")]
        if version > FORMAT_VERSION:
            raise CorruptDataError(f"online store {self.path} has format {version}, newer than this aisd's "
                                   f"{FORMAT_VERSION}: upgrade aisd, or delete the file and materialize again")
        if columns and columns != _COLUMNS:
            raise CorruptDataError(f"online store {self.path} has an unknown layout (table 'online' with columns "
                                   f"{columns}, expected {_COLUMNS}): delete the file and materialize again")
        if not columns:
            conn.execute(_SCHEMA)
        if version != FORMAT_VERSION:
            conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30, check_same_thread=False)
            enable_wal(conn)  # synchronous=NORMAL: durable at checkpoints; WAL keeps the file consistent
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def write(self, view: str, rows: Sequence[OnlineRow]) -> int:
        if not rows:
            return 0
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            conn.executemany(_UPSERT, [(view, r.entity_key, r.event_ts, r.created_ts, dumps(r.values))
                                       for r in rows])
            changed = conn.total_changes - before
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return changed

    def read(self, view: str, keys: Sequence[str]) -> list[OnlineRecord | None]:
        if not keys:
            return []
        conn = self._conn()
        if len(keys) == 1:  # the hot path: one prepared point lookup
            row = conn.execute(_READ_ONE, (view, keys[0])).fetchone()
            return [OnlineRecord(loads(row[2]), row[1]) if row else None]
        found: dict[str, OnlineRecord] = {}
        for i in range(0, len(keys), 500):  # one query per 500 keys: under SQLite's host-parameter limit
            part = list(dict.fromkeys(keys[i:i + 500]))
            marks = ",".join("?" * len(part))
            for key, ts, value in conn.execute(f"SELECT entity_key, event_ts, value FROM online WHERE view=? "
                                               f"AND entity_key IN ({marks})", (view, *part)):
                found[key] = OnlineRecord(loads(value), ts)  # parsed once per distinct key
        return [found.get(k) for k in keys]

    def count(self, view: str) -> int:
        return self._conn().execute("SELECT count(*) FROM online WHERE view=?", (view,)).fetchone()[0]

    def delete_view(self, view: str) -> None:
        self._conn().execute("DELETE FROM online WHERE view=?", (view,))

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:  # closed from another thread already
                    pass
            self._all.clear()
        self._local = threading.local()
