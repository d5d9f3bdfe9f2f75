"""Point-in-time joins against a naive Python loop on random data: ties on event time (created breaks them), late
rows (created long after their event time, optionally excluded), TTL edges (integer minutes make equality common),
entities with no rows, and entity rows before any feature row."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aisd.features.memory_join as mj
from aisd.features import Entity, FeatureStore, FeatureStoreConfig, FeatureView, Field, FileSource, Int64, OfflineConfig

T0 = datetime(2024, 1, 1, tzinfo=UTC)

feature_rows = st.lists(st.tuples(st.integers(1, 3), st.integers(0, 20), st.integers(0, 12)), min_size=0,
                        max_size=40)  # (key, event minute, created delay in minutes)
entity_rows = st.lists(st.tuples(st.integers(1, 4), st.integers(-2, 26)), min_size=1, max_size=25)


def naive(rows: list[tuple[int, int, int, int]], key: int, t: int, ttl: int | None, exclude_late: bool) -> set:
    """Every value an exact point-in-time join may return for (key, t): {None} when nothing qualifies."""
    cands = [(ev, ev + d, v) for k, ev, d, v in rows
             if k == key and ev <= t and (ttl is None or ev >= t - ttl) and (not exclude_late or ev + d <= t)]
    if not cands:
        return {None}
    best = max((ev, cr) for ev, cr, _ in cands)
    return {v for ev, cr, v in cands if (ev, cr) == best}


# NumPy over Arrow (whole result), the same streamed to Parquet in 3-row chunks, and the spilling SQL query
@pytest.mark.parametrize("engine", ["memory", "memory-streamed", "duckdb"])
@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feature_rows, entity_rows, st.sampled_from([None, 0, 3, 5]), st.booleans())
def test_pit_join_matches_naive_loop(engine, feats, ents, ttl_min, exclude_late) -> None:  # noqa: ANN001
    rows = [(k, ev, d, i) for i, (k, ev, d) in enumerate(feats)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = pd.DataFrame({
            "k": pd.Series([r[0] for r in rows], dtype="int64"),
            "ts": pd.to_datetime([T0 + timedelta(minutes=r[1]) for r in rows], utc=True),
            "created": pd.to_datetime([T0 + timedelta(minutes=r[1] + r[2]) for r in rows], utc=True),
            "v": pd.Series([r[3] for r in rows], dtype="int64")})
        data.to_parquet(root / "f.parquet")
        key = Entity("key", ["k"], Int64)
        src = FileSource("f.parquet", timestamp_field="ts", created_timestamp_column="created")
        ttl = None if ttl_min is None else timedelta(minutes=ttl_min)  # 0 means "no expiry", like Feast
        streamed = engine == "memory-streamed"
        engine = "memory" if streamed else engine
        store = FeatureStore(root, FeatureStoreConfig(offline=OfflineConfig(pit_engine=engine)))
        store.apply([FeatureView("a", [key], [Field("v", Int64)], src, ttl=ttl),
                     FeatureView("b", [key], [Field("v", Int64)], src, ttl=None)])
        entity_df = pd.DataFrame({"k": [k for k, _ in ents],
                                  "event_timestamp": [T0 + timedelta(minutes=t) for _, t in ents]})
        job = store.get_historical_features(entity_df, ["a:v", "b:v"], full_feature_names=True,
                                            exclude_late=exclude_late)
        assert job.engine() == engine
        if streamed:
            saved, mj.CHUNK_ROWS = mj.CHUNK_ROWS, 3  # many row groups, written by the writer thread
            try:
                got = pd.read_parquet(job.to_parquet(root / "out.parquet"))
            finally:
                mj.CHUNK_ROWS = saved
        else:
            got = job.to_df()
        store.close()
    assert got["k"].tolist() == entity_df["k"].tolist()  # same rows, same order
    eff_ttl = ttl_min or None
    for i, (k, t) in enumerate(ents):
        a = got["a__v"].iloc[i]
        b = got["b__v"].iloc[i]
        a = None if pd.isna(a) else int(a)
        b = None if pd.isna(b) else int(b)
        assert a in naive(rows, k, t, eff_ttl, exclude_late), (k, t, a)
        assert b in naive(rows, k, t, None, exclude_late), (k, t, b)
