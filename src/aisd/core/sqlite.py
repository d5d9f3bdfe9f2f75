"""One way to open the SQLite files shared by several processes (a server, a CLI run, a benchmark).

WAL mode so readers never block the writer (https://sqlite.org/wal.html); ``synchronous=NORMAL`` because WAL keeps
the file consistent and a cache row lost in a power cut is recomputed; a 30 s busy timeout so a second writer waits
instead of failing. A file that is not SQLite is reported as CorruptDataError naming the file and what it holds.

Switching a new file to WAL takes an exclusive lock, and SQLite returns SQLITE_BUSY for it without calling the busy
handler when another process is doing the same (https://sqlite.org/pragma.html#pragma_journal_mode): two processes
opening one fresh file at once would fail. ``enable_wal`` retries that step until the timeout instead.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from aisd.core.errors import CorruptDataError

BUSY_TIMEOUT_S = 30.0


def is_busy(e: sqlite3.Error) -> bool:
    """True for the transient 'database is locked' / 'database is busy' errors, which are not corruption."""
    msg = str(e).lower()
    return isinstance(e, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg)


def retry_busy(conn: sqlite3.Connection, sql: str, *, script: bool = False, timeout: float = BUSY_TIMEOUT_S) -> None:
    """Run ``sql`` (one statement, or a script), retrying with backoff while another process holds the lock."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            if script:
                conn.executescript(sql)
            else:
                conn.execute(sql)
            return
        except sqlite3.OperationalError as e:
            if not is_busy(e) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def enable_wal(conn: sqlite3.Connection, *, synchronous: str = "NORMAL") -> None:
    """Put ``conn``'s file in WAL mode (a no-op when it already is), safe when several processes race to do it."""
    (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    if str(mode).lower() != "wal":
        retry_busy(conn, "PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")


def connect_cache_db(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """Open (creating it and its folder if needed) the SQLite file at ``path`` and apply ``schema``.

    ``what`` names the file's role in the error message, e.g. "embedding cache".
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    try:
        enable_wal(conn)
        retry_busy(conn, schema, script=True)
    except sqlite3.DatabaseError as e:
        conn.close()
        if is_busy(e):
            raise TimeoutError(f"{what} {path} stayed locked by another process for {BUSY_TIMEOUT_S:.0f} s") from e
        raise CorruptDataError(f"{what} {path} is not a readable SQLite file: {e}") from e
    return conn
