"""A materialization killed with SIGKILL mid-run (a real process, not an exception) resumes on the next call and
ends with the same online store as a clean run; the chunk log tiles the range with no gap and no overlap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aisd.features import Entity, FeatureStore, FeatureStoreConfig, FeatureView, Field, FileSource, Float64, Int64

T0 = datetime(2024, 1, 1, tzinfo=UTC)
START, END = T0, T0 + timedelta(days=10)

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from aisd.features import FeatureStore, FeatureStoreConfig
    repo, marker = Path(sys.argv[1]), Path(sys.argv[2])
    store = FeatureStore(repo, FeatureStoreConfig(materialize_chunk_rows=500))

    def on_chunk(info):
        if info.index == 3:
            marker.write_text(info.run_id)
            time.sleep(60)  # the parent kills us here: chunk 3 is written online but not checkpointed

    store.materialize(float(sys.argv[3]), float(sys.argv[4]), on_chunk=on_chunk)
""")


def _repo(root: Path) -> Path:
    rng = np.random.default_rng(1)
    n = 6000
    df = pd.DataFrame({"user_id": rng.integers(0, 300, n),
                       "ts": pd.to_datetime(T0) + pd.to_timedelta(rng.integers(0, 10 * 86400, n), unit="s"),
                       "score": rng.random(n), "clicks": rng.integers(0, 50, n)})
    root.mkdir(parents=True)
    df.to_parquet(root / "events.parquet")
    store = FeatureStore(root)
    user = Entity("user", ["user_id"], Int64)
    store.apply([FeatureView("user_stats", [user], [Field("score", Float64), Field("clicks", Int64)],
                             FileSource("events.parquet", "ts"))])
    store.close()
    return root


def _dump(store: FeatureStore) -> dict:
    r = store.get_online_features(["user_stats:score", "user_stats:clicks"], {"user_id": list(range(300))})
    return {**r.to_dict(), "ts": r.event_timestamps["score"]}


@pytest.mark.integration
def test_sigkill_mid_materialize_then_resume(tmp_path: Path) -> None:
    killed = _repo(tmp_path / "killed")
    marker = tmp_path / "marker"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(killed), str(marker), str(START.timestamp()),
                             str(END.timestamp())], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "child exited"
        assert time.monotonic() < deadline, "child never reached chunk 3"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    store = FeatureStore(killed, FeatureStoreConfig(materialize_chunk_rows=500))
    run = store.registry.runs("user_stats")[-1]
    assert run.status == "running" and len(store.registry.chunks(run.run_id)) == 3
    [result] = store.materialize(START, END)
    assert result.run_id == run.run_id and result.resumed_from == run.done_until
    chunks = store.registry.chunks(run.run_id)
    assert chunks[0][0] == START.timestamp() and chunks[-1][1] == END.timestamp()
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:], strict=False))  # no gap, no overlap
    assert store.registry.runs("user_stats")[-1].status == "done"

    clean = FeatureStore(_repo(tmp_path / "clean"), FeatureStoreConfig(materialize_chunk_rows=500))
    clean.materialize(START, END)
    assert _dump(store) == _dump(clean)
    # A direct pandas computation agrees too: each user's newest row.
    df = pd.read_parquet(killed / "events.parquet").sort_values("ts").groupby("user_id").tail(1).set_index("user_id")
    got = _dump(store)
    assert got["clicks"] == [int(df.loc[u, "clicks"]) if u in df.index else None for u in range(300)]
    store.close()
    clean.close()
