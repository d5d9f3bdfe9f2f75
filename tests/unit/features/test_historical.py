"""Point-in-time retrieval on the small driver repository: values checked by hand."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from aisd.core.errors import InvalidRequestError, NotFoundError
from aisd.features import FeatureStore

from .conftest import T0, driver_frame, make_repo


def _entities(rows: list[tuple[int, float]]) -> pd.DataFrame:
    return pd.DataFrame({"driver_id": [d for d, _ in rows],
                         "event_timestamp": [T0 + timedelta(hours=h) for _, h in rows]})


def test_latest_row_at_or_before_time_within_ttl(store: FeatureStore) -> None:
    ent = _entities([(1001, 1.5), (1001, 3), (1003, 0), (1003, 5.0), (1003, 6.0), (1004, 2), (1001, -1)])
    df = store.get_historical_features(ent, ["driver_stats:conv_rate", "driver_stats:avg_daily_trips"]).to_df()
    assert list(df.columns) == ["driver_id", "event_timestamp", "conv_rate", "avg_daily_trips"]
    assert df["driver_id"].tolist() == [1001, 1001, 1003, 1003, 1003, 1004, 1001]  # input order kept
    trips = df["avg_daily_trips"].tolist()
    assert trips[:3] == [2, 4, 3]  # 01:00 row at 01:30, 03:00 row at 03:00 (<=), 00:00 row at 00:00
    assert trips[3] == 6  # 03:00 row at 05:00: exactly 2 h old, ttl edge is inclusive
    assert pd.isna(trips[4])  # at 06:00 the newest row is 3 h old: outside ttl
    assert pd.isna(trips[5]) and pd.isna(trips[6])  # unknown driver; before any row
    assert df["conv_rate"].iloc[0] == pytest.approx(0.2001, rel=1e-6)


def test_created_time_breaks_ties_and_late_corrections_can_be_excluded(store: FeatureStore) -> None:
    ent = _entities([(1002, 2.5), (1002, 10.0), (1002, 2.0)])
    refs = ["driver_profile:avg_daily_trips"]  # no ttl
    # Two rows at 02:00: the correction (created 09:00) wins over the original (created 02:05).
    assert store.get_historical_features(ent, refs).to_df()["avg_daily_trips"].tolist() == [99, 5, 99]
    # Excluding late rows: at 02:30 only the original was known; at 02:00 not even that (created 02:05),
    # so the 01:00 row (trips 3) is what a model could have seen.
    late = store.get_historical_features(ent, refs, exclude_late=True).to_df()["avg_daily_trips"].tolist()
    assert late == [4, 5, 3]


def test_full_feature_names_multiple_views_and_on_demand(store: FeatureStore) -> None:
    ent = _entities([(1001, 3)]).assign(val_to_add=[10])
    df = store.get_historical_features(ent, ["driver_stats:avg_daily_trips", "driver_profile:avg_daily_trips",
                                             "transformed:conv_plus"], full_feature_names=True).to_df()
    assert df["driver_stats__avg_daily_trips"].tolist() == [4]
    assert df["driver_profile__avg_daily_trips"].tolist() == [4]
    assert df["transformed__conv_plus"].iloc[0] == pytest.approx(10.4001, rel=1e-6)
    with pytest.raises(InvalidRequestError, match="full_feature_names"):
        store.get_historical_features(ent, ["driver_stats:avg_daily_trips", "driver_profile:avg_daily_trips"])
    with pytest.raises(InvalidRequestError, match="val_to_add"):
        store.get_historical_features(_entities([(1001, 3)]), ["transformed:conv_plus"])


def test_feature_service_parquet_export_and_parquet_input(store: FeatureStore, tmp_path: Path) -> None:
    ent = _entities([(1001, 3), (1002, 1)])
    job = store.get_historical_features(ent, store.get_feature_service("driver_activity"))
    out = job.to_parquet(tmp_path / "train.parquet")
    table = pq.read_table(out).to_pandas()
    assert table["avg_daily_trips"].tolist() == [4, 3]
    ent.to_parquet(tmp_path / "entities.parquet")
    again = store.get_historical_features(str(tmp_path / "entities.parquet"), ["driver_stats:avg_daily_trips"])
    assert again.to_df()["avg_daily_trips"].tolist() == [4, 3]
    # On-demand views stream through the Parquet writer too.
    odfv = store.get_historical_features(ent.assign(val_to_add=[1, 2]), ["transformed:conv_plus"])
    assert pq.read_table(odfv.to_parquet(tmp_path / "o.parquet")).num_rows == 2


def test_csv_source(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    driver_frame().to_csv(repo / "data" / "stats.csv", index=False)
    (repo / "features.py").write_text(
        "from aisd.features import Entity, FeatureView, Field, FileSource, Int64\n"
        "d = Entity(name='driver', join_keys=['driver_id'])\n"
        "v = FeatureView(name='csv_stats', entities=[d], schema=[Field(name='avg_daily_trips', dtype=Int64)],\n"
        "                source=FileSource(path='data/stats.csv', created_timestamp_column='created'))\n")
    store = FeatureStore(repo)
    store.apply_repo()
    df = store.get_historical_features(_entities([(1002, 2.5)]), ["csv_stats:avg_daily_trips"]).to_df()
    assert df["avg_daily_trips"].tolist() == [99]


def test_clear_errors(store: FeatureStore) -> None:
    ent = _entities([(1001, 1)])
    with pytest.raises(NotFoundError, match="no feature 'nope'"):
        store.get_historical_features(ent, ["driver_stats:nope"])
    with pytest.raises(NotFoundError, match="'ghost' is not defined"):
        store.get_historical_features(ent, ["ghost:x"])
    with pytest.raises(InvalidRequestError, match="view:feature"):
        store.get_historical_features(ent, ["conv_rate"])
    with pytest.raises(InvalidRequestError, match="lacks join key 'driver_id'"):
        store.get_historical_features(ent.rename(columns={"driver_id": "d"}), ["driver_stats:conv_rate"])
    with pytest.raises(InvalidRequestError, match="event_timestamp"):
        store.get_historical_features(ent.drop(columns=["event_timestamp"]), ["driver_stats:conv_rate"])
    with pytest.raises(InvalidRequestError, match="clash"):
        store.get_historical_features(ent.assign(conv_rate=1.0), ["driver_stats:conv_rate"])


def test_memory_limit_is_enforced_and_named(repo: Path) -> None:
    """The join runs inside DuckDB's memory limit; when even spilling cannot fit, the error says which setting."""
    import numpy as np

    from aisd.core.errors import ServiceUnavailableError
    from aisd.features import FeatureStoreConfig, OfflineConfig

    store = FeatureStore(repo, FeatureStoreConfig(offline=OfflineConfig(memory_limit="1MB", threads=1)))
    store.apply_repo()
    n = 50_000
    ent = pd.DataFrame({"driver_id": np.random.default_rng(0).integers(1000, 1004, n),
                        "event_timestamp": [T0 + timedelta(hours=2)] * n})
    with pytest.raises(ServiceUnavailableError, match="duckdb_memory_limit"):
        store.get_historical_features(ent, ["driver_stats:city"]).to_df()
    store.close()


def test_dedupe_keeps_rows_with_null_created_times_and_keyword_feature_names(tmp_path: Path) -> None:
    """The (keys, event time) dedupe ranks by created time: a NULL created time ranks lowest, a group whose created
    times are all NULL still yields its row, and feature names that are SQL keywords survive the struct packing."""
    from aisd.features import Entity, FeatureView, Field, FileSource, Int64

    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    pd.DataFrame({"k": [1, 1, 2, 2, 3], "ts": [t1, t1, t1, t2, t1],
                  "created": [None, t1, None, None, t2],
                  "order": [10, 11, 20, 21, 30], "Group": [1, 2, 3, 4, 5]}).to_parquet(tmp_path / "f.parquet")
    store = FeatureStore(tmp_path)
    key = Entity("key", ["k"], Int64)
    store.apply([FeatureView("odd", [key], [Field("order", Int64), Field("Group", Int64)],
                             FileSource("f.parquet", timestamp_field="ts", created_timestamp_column="created"))])
    ent = pd.DataFrame({"k": [1, 2, 2, 3, 4], "event_timestamp": [t1, t1, t2, t2, t2]})
    df = store.get_historical_features(ent, ["odd:order", "odd:Group"]).to_df()
    # exclude_late: a NULL created time counts as created at the event time; key 3's row (created t2) is hidden at t1
    late_ent = pd.DataFrame({"k": [1, 2, 2, 3, 3], "event_timestamp": [t1, t1, t2, t1, t2]})
    late = store.get_historical_features(late_ent, ["odd:order"], exclude_late=True).to_df()["order"]
    store.close()
    assert late.iloc[[0, 1, 2, 4]].tolist() == [11, 20, 21, 30] and pd.isna(late.iloc[3])
    assert df["order"].tolist()[:4] == [11, 20, 21, 30]  # key 1: the non-NULL created wins the tie
    assert df["Group"].tolist()[:4] == [2, 3, 4, 5]  # values of one row stay together
    assert pd.isna(df["order"].iloc[4])  # unknown key


def test_auto_engine_holds_small_results_in_memory_and_hands_large_ones_to_sql(repo: Path) -> None:
    """``pit_engine="auto"``: the NumPy engine while its working state fits in half the memory limit, else the
    spilling SQL query; both give the same training set, and an invalid engine name is refused."""
    from aisd.features import FeatureStoreConfig, OfflineConfig

    ent = _entities([(1001, 1.5), (1002, 2.5), (1003, 6.0), (1004, 2), (1001, -1)] * 20_000)  # 100k rows
    refs = ["driver_stats:conv_rate", "driver_stats:city", "driver_profile:avg_daily_trips"]
    frames, chosen = {}, {}
    for limit, engine in (("2GB", "auto"), ("8MB", "auto"), ("2GB", "duckdb")):
        store = FeatureStore(repo, FeatureStoreConfig(offline=OfflineConfig(memory_limit=limit, pit_engine=engine)))
        store.apply_repo()
        job = store.get_historical_features(ent, refs)
        chosen[(limit, engine)] = job.engine()
        if limit == "2GB":
            frames[engine] = job.to_df()
        store.close()
    assert chosen == {("2GB", "auto"): "memory", ("8MB", "auto"): "duckdb",  # 100k x 5 cells x 10 B > 4 MB
                      ("2GB", "duckdb"): "duckdb"}
    pd.testing.assert_frame_equal(frames["auto"], frames["duckdb"])
    with pytest.raises(ValueError, match="auto, memory, duckdb"):
        OfflineConfig(pit_engine="pandas")


@pytest.mark.parametrize("odfv", [False, True])
def test_streamed_parquet_export_in_small_chunks_equals_the_sql_engine(repo: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        odfv: bool) -> None:
    """The memory engine writes its result in row groups of ``CHUNK_ROWS`` from a writer thread; with chunks of 7
    rows (many row groups, a short last one) the file equals the SQL engine's, in entity order."""
    import aisd.features.memory_join as mj
    from aisd.features import FeatureStoreConfig, OfflineConfig

    monkeypatch.setattr(mj, "CHUNK_ROWS", 7)
    rows = [(1001 + i % 5, (i * 7919) % 97 / 10 - 1) for i in range(53)]  # 5 keys incl. an unknown one
    ent = _entities(rows)
    refs = ["driver_stats:conv_rate", "driver_stats:city", "driver_profile:avg_daily_trips"]
    if odfv:
        ent = ent.assign(val_to_add=list(range(53)))
        refs.append("transformed:conv_plus")
    tables = {}
    for engine in ("memory", "duckdb"):
        store = FeatureStore(repo, FeatureStoreConfig(offline=OfflineConfig(pit_engine=engine)))
        store.apply_repo()
        out = store.get_historical_features(ent, refs).to_parquet(tmp_path / f"{engine}.parquet")
        tables[engine] = pq.read_table(out)
        store.close()
    assert pq.ParquetFile(tmp_path / "memory.parquet").metadata.num_row_groups == 8  # 53 rows / 7
    assert tables["memory"].num_rows == 53
    pd.testing.assert_frame_equal(tables["memory"].to_pandas(), tables["duckdb"].to_pandas())
    assert tables["memory"].column("conv_rate").null_count > 0  # the unknown key and early rows stay NULL


def test_a_failing_parquet_write_raises_instead_of_hanging(store: FeatureStore, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import aisd.features.memory_join as mj

    monkeypatch.setattr(mj, "CHUNK_ROWS", 2)
    (tmp_path / "taken").mkdir()  # a directory where the file should go
    job = store.get_historical_features(_entities([(1001, 3), (1002, 1)] * 5), ["driver_stats:conv_rate"])
    with pytest.raises(OSError):
        job.to_parquet(tmp_path / "taken")
