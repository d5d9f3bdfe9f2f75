"""Materialization in checkpointed chunks (a crash mid-run resumes with no gaps and no duplicates), incremental
materialization, and push (validated in full before anything is written)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aisd.core.clock import ManualClock
from aisd.core.errors import InvalidRequestError, NotFoundError
from aisd.features import ChunkInfo, FeatureStore, FeatureStoreConfig

from .conftest import T0, make_repo


def _big_frame(n_drivers: int = 40, hours: int = 48, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(1000, 1000 + n_drivers), hours)
    ts = np.tile(pd.date_range(T0, periods=hours, freq="h").to_numpy(), n_drivers)
    jitter = pd.to_timedelta(rng.integers(0, 3600, ids.size), unit="s")
    df = pd.DataFrame({"driver_id": ids, "event_timestamp": pd.DatetimeIndex(ts, tz="UTC") + jitter})
    df["created"] = df["event_timestamp"] + pd.Timedelta(minutes=1)
    df["conv_rate"] = rng.random(ids.size).astype("float32")
    df["acc_rate"] = rng.random(ids.size)
    df["avg_daily_trips"] = rng.integers(0, 100, ids.size)
    df["city"] = [f"c{i % 7}" for i in range(ids.size)]
    return df.sample(frac=1.0, random_state=seed)  # files are not sorted by time


def _online_dump(store: FeatureStore, n: int = 40) -> dict:
    refs = ["driver_stats:conv_rate", "driver_stats:avg_daily_trips", "driver_profile:avg_daily_trips"]
    r = store.get_online_features(refs, {"driver_id": list(range(1000, 1000 + n))}, full_feature_names=True)
    return {**r.to_dict(), "ts": r.event_timestamps["driver_stats__conv_rate"]}


def _store(root: Path, df: pd.DataFrame) -> FeatureStore:
    # The clock sits at the end of the range so that the 2 h ttl keeps the latest values fresh.
    s = FeatureStore(make_repo(root, df), FeatureStoreConfig(materialize_chunk_rows=300),
                     clock=ManualClock(T0 + timedelta(hours=45)))
    s.apply_repo()
    return s


def test_crash_midway_resumes_without_gaps_or_duplicates(tmp_path: Path) -> None:
    df = _big_frame()
    start, end = T0 + timedelta(hours=3), T0 + timedelta(hours=45)
    clean = _store(tmp_path / "clean", df)
    [_, clean_stats] = clean.materialize(start, end)
    assert clean_stats.chunks >= 4 and clean_stats.rows_written > 0

    crashed = _store(tmp_path / "crashed", df)

    def boom(info: ChunkInfo) -> None:
        if info.view == "driver_stats" and info.index == 2:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        crashed.materialize(start, end, on_chunk=boom)
    run = crashed.registry.runs("driver_stats")[-1]
    assert run.status == "running" and len(crashed.registry.chunks(run.run_id)) == 2
    [_, resumed] = crashed.materialize(start, end)
    assert resumed.resumed_from == run.done_until and resumed.run_id == run.run_id
    chunks = crashed.registry.chunks(run.run_id)
    # The chunk log tiles [start, end) exactly: no gap, no overlap, each interval once.
    assert chunks[0][0] == start.timestamp() and chunks[-1][1] == end.timestamp()
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:], strict=False))
    assert _online_dump(crashed) == _online_dump(clean)

    # And the online store equals a direct computation: each driver's newest row in [start, end).
    window = df[(df.event_timestamp >= start) & (df.event_timestamp < end)]
    latest = window.sort_values(["event_timestamp", "created"]).groupby("driver_id").tail(1).set_index("driver_id")
    dump = _online_dump(crashed)
    assert dump["driver_stats__avg_daily_trips"] == [int(latest.loc[d, "avg_daily_trips"]) for d in dump["driver_id"]]


def test_incremental_continues_from_last_end(tmp_path: Path) -> None:
    df = _big_frame(n_drivers=5, hours=10)
    s = _store(tmp_path / "r", df)
    first = s.materialize_incremental(T0 + timedelta(hours=5))
    assert [r.start for r in first] == [df.event_timestamp.min().timestamp(), (T0 + timedelta(hours=3)).timestamp()]
    second = s.materialize_incremental(T0 + timedelta(hours=11))
    assert {r.start for r in second} == {(T0 + timedelta(hours=5)).timestamp()}
    assert s.materialize_incremental(T0 + timedelta(hours=11)) == []  # nothing new
    full = _store(tmp_path / "full", df)
    full.materialize(T0 - timedelta(hours=1), T0 + timedelta(hours=11))
    assert _online_dump(s, 5) == _online_dump(full, 5)


def test_push_online_and_offline(store: FeatureStore) -> None:
    row = {"driver_id": [1009], "event_timestamp": [T0 + timedelta(hours=3, minutes=30)], "conv_rate": [0.5],
           "acc_rate": [0.25], "avg_daily_trips": [7], "city": ["x"]}
    res = store.push("driver_stats_push", pd.DataFrame(row), to="online_and_offline")
    assert res.online_rows_written == 1 and res.offline_file and Path(res.offline_file).exists()
    assert store.get_online_features(["driver_stats:avg_daily_trips"], [{"driver_id": 1009}]).to_dict() == {
        "driver_id": [1009], "avg_daily_trips": [7]}
    hist = store.get_historical_features(pd.DataFrame({"driver_id": [1009], "event_timestamp": [T0 + timedelta(hours=4)]}),
                                         ["driver_stats:avg_daily_trips"]).to_df()
    assert hist["avg_daily_trips"].tolist() == [7]
    # An older event never overwrites a newer one online (a late-arriving push).
    old = dict(row, event_timestamp=[T0], avg_daily_trips=[1])
    assert store.push("driver_stats_push", old).online_rows_written == 0
    assert store.get_online_features(["driver_stats:avg_daily_trips"], [{"driver_id": 1009}]).to_dict()[
        "avg_daily_trips"] == [7]


def test_bad_push_writes_nothing(store: FeatureStore) -> None:
    good = {"driver_id": [1, 2], "event_timestamp": [T0, T0], "conv_rate": [0.5, 0.1], "acc_rate": [0.2, 0.2],
            "avg_daily_trips": [7, 8], "city": ["x", "y"]}
    with pytest.raises(InvalidRequestError, match=r"avg_daily_trips\[1\]: expected int64, got str"):
        store.push("driver_stats_push", dict(good, avg_daily_trips=[7, "8"]), to="online_and_offline")
    with pytest.raises(InvalidRequestError, match="missing columns \\['city'\\]"):
        store.push("driver_stats_push", {k: v for k, v in good.items() if k != "city"})
    with pytest.raises(NotFoundError, match="push source 'nope'"):
        store.push("nope", good)
    with pytest.raises(InvalidRequestError, match="to="):
        store.push("driver_stats_push", good, to="sideways")
    assert store.online_store.count("driver_stats") == 0
    assert store.offline.pushed_files("driver_stats_push") == []


def test_push_only_view_starts_empty(tmp_path: Path) -> None:
    """A push-fed view may be applied before its batch source has any file; pushes then feed both stores."""
    from aisd.features import Entity, FeatureView, Field, FileSource, Int64, PushSource

    src = PushSource("clicks_push", FileSource("data/clicks.parquet", created_timestamp_column="created"))
    view = FeatureView("clicks", [Entity("user", ["user_id"], Int64)], [Field("n", Int64)], src)
    store = FeatureStore(tmp_path, clock=ManualClock(T0 + timedelta(hours=1)))
    store.apply([view])
    assert store.materialize(T0, T0 + timedelta(days=1)) == []
    assert store.materialize_incremental(T0 + timedelta(days=1)) == []
    store.push("clicks_push", {"user_id": [1], "event_timestamp": [T0], "n": [5]}, to="online_and_offline")
    assert store.get_online_features(["clicks:n"], {"user_id": [1]}).to_dict()["n"] == [5]
    hist = store.get_historical_features(pd.DataFrame({"user_id": [1], "event_timestamp": [T0 + timedelta(hours=1)]}),
                                         ["clicks:n"]).to_df()
    assert hist["n"].tolist() == [5]
    store.close()
