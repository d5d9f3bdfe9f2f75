"""Several processes opening one fresh SQLite file at once (a server and a CLI run sharing a cache): every open
succeeds, the file ends in WAL mode, and a locked file is never reported as corrupt."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from aisd.core.errors import CorruptDataError
from aisd.core.sqlite import connect_cache_db, is_busy, retry_busy

_SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER);"
ROUNDS = 40


def _opener(folder: str, worker: int, barrier, q) -> None:  # type: ignore[no-untyped-def]
    errors = []
    for r in range(ROUNDS):
        barrier.wait()  # all workers open round r's fresh file at the same instant
        try:
            conn = connect_cache_db(Path(folder) / f"r{r}.sqlite", _SCHEMA, "test cache")
            with conn:
                conn.execute("INSERT INTO t VALUES (?, ?)", (f"w{worker}", r))
            conn.close()
        except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the test with it
            errors.append(f"round {r}: {type(e).__name__}: {e}")
    q.put(errors)


def test_racing_processes_all_open_a_fresh_file(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    n = 4
    barrier, q = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_opener, args=(str(tmp_path), w, barrier, q)) for w in range(n)]
    for p in procs:
        p.start()
    errors = [e for _ in procs for e in q.get(timeout=120)]
    for p in procs:
        p.join(30)
    assert errors == []
    for r in range(ROUNDS):
        conn = sqlite3.connect(tmp_path / f"r{r}.sqlite")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == n  # every worker's row landed
        conn.close()


def test_a_held_lock_is_waited_for_not_called_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    connect_cache_db(path, _SCHEMA, "test cache").close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as info:
        retry_busy(other, "INSERT INTO t VALUES ('a', 1)", timeout=0.2)
    assert is_busy(info.value)
    holder.execute("ROLLBACK")
    retry_busy(other, "INSERT INTO t VALUES ('a', 1)", timeout=0.2)


def test_not_sqlite_is_corrupt_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"definitely not a database " * 200)
    with pytest.raises(CorruptDataError, match="bad.sqlite"):
        connect_cache_db(bad, _SCHEMA, "test cache")
