"""One way to open the small SQLite caches shared by several processes (a server, a CLI run, a benchmark).

WAL mode so readers never block the writer (https://sqlite.org/wal.html); ``synchronous=NORMAL`` because a cache
row lost in a power cut is recomputed, not data lost; a 30 s busy timeout so a second writer waits instead of
failing. A file that is not SQLite is reported as CorruptDataError naming the file and what it holds.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aisd.core.errors import CorruptDataError


def connect_cache_db(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """Open (creating it and its folder if needed) the SQLite file at ``path`` and apply ``schema``.

    ``what`` names the file's role in the error message, e.g. "embedding cache".
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.executescript(schema)
    except sqlite3.DatabaseError as e:
        conn.close()
        raise CorruptDataError(f"{what} {path} is not a readable SQLite file: {e}") from e
    return conn
