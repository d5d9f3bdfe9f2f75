"""Kill -9 the writer in the middle of a stream of upserts; on reopen every acknowledged write is there, intact.

The writer is a real subprocess: it upserts batches (and deletes some points), printing ``ACK`` lines only after
``upsert``/``delete`` returned, with small snapshot thresholds so snapshots (and WAL resets) happen mid-stream too.
The parent SIGKILLs it at an arbitrary moment, reopens the store, and checks ids, vectors and payloads. Two rounds
each resume the same store, so recovery of a recovered store is covered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from aisd.vector import VectorStore

pytestmark = pytest.mark.integration

WRITER = r"""
import sys, numpy as np
from aisd.vector import VectorStore
path, policy, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = VectorStore(path, fsync=policy, snapshot_wal_bytes=48_000)
col = store.create_collection("c", dim=16, metric="l2", index="hnsw", exist_ok=True)
print("READY", flush=True)
i = start
while True:
    ids = list(range(i, i + 5))
    vecs = np.stack([np.random.default_rng(j).standard_normal(16).astype("float32") for j in ids])
    col.upsert(ids, vecs, [{"n": j, "text": "x" * (j % 50)} for j in ids])
    print("ACK", i + 4, flush=True)
    if i % 35 == 0:
        col.delete([i + 1])
        print("DEL", i + 1, flush=True)
    i += 5
"""


def vec(j: int) -> np.ndarray:
    return np.random.default_rng(j).standard_normal(16).astype(np.float32)


def run_writer(path: Path, policy: str, start: int, kill_after: float) -> tuple[int, set[int]]:
    """Start the writer, let it stream for kill_after seconds after READY, SIGKILL it; returns (last acked, deleted)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), policy, str(start)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY", proc.stderr.read() if proc.stderr else ""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    time.sleep(kill_after)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(5)
    last, deleted = start - 1, set()
    for line in lines:  # only complete lines count as acknowledged
        if not line.endswith("\n"):
            continue
        kind, _, n = line.strip().partition(" ")
        if kind == "ACK":
            last = int(n)
        elif kind == "DEL":
            deleted.add(int(n))
    return last, deleted


@pytest.mark.parametrize("policy", ["always", "never"])
def test_sigkill_mid_stream_loses_no_acknowledged_write(tmp_path: Path, policy: str) -> None:
    path = tmp_path / "db"
    start, deleted = 0, set()
    for kill_after in (1.0, 0.6):
        last, dels = run_writer(path, policy, start, kill_after)
        deleted |= dels
        assert last > start, "the writer acknowledged nothing"
        print(f"round: acked up to {last}, snapshot={(path / 'c' / 'snapshot.bin').exists()}")
        store = VectorStore(path)  # recovery: snapshot + WAL replay, torn tail truncated
        col = store.get_collection("c")
        # the writer deletes i + 1 right after acking the batch starting at i when i % 35 == 0: if it was killed
        # between that delete and its DEL line, the delete was in flight and may or may not have landed
        batch = last - 4
        in_flight = {batch + 1} if batch >= start and batch % 35 == 0 and batch + 1 not in deleted else set()
        acked = [j for j in range(last + 1) if j not in deleted and j not in in_flight]
        points = {p.id: p for p in col.get(acked, with_vectors=True)}
        missing = [j for j in acked if j not in points]
        assert not missing, f"acknowledged writes lost: {missing[:10]}"
        if in_flight and not col.get(sorted(in_flight)):
            deleted |= in_flight  # the in-flight delete landed: from now on it counts as deleted
        acked_live = len(acked) + sum(1 for _ in col.get(sorted(in_flight - deleted)))
        for j in acked[:: max(1, len(acked) // 200)]:
            np.testing.assert_allclose(points[j].vector, vec(j), rtol=1e-6)
            assert points[j].payload == {"n": j, "text": "x" * (j % 50)}
        assert not col.get(sorted(deleted))
        # unacknowledged (in-flight) writes may or may not have landed, but whole batches only
        extra = col.count() - acked_live
        assert extra in (0, 5), extra
        hits = col.search(vec(last), k=1)
        assert hits[0].id == last
        store.close()
        start = last + 1 + extra
