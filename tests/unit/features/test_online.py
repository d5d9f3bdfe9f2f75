"""Online reads: values, statuses (PRESENT / NULL_VALUE / NOT_FOUND / EXPIRED), event times, clear errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aisd.core.clock import ManualClock
from aisd.core.errors import InvalidRequestError, NotFoundError
from aisd.features import EXPIRED, NOT_FOUND, PRESENT, FeatureStore

from .conftest import T0


@pytest.fixture
def loaded(store: FeatureStore) -> FeatureStore:
    store.materialize(T0, T0 + timedelta(hours=4))
    return store


def test_values_statuses_and_event_times(loaded: FeatureStore) -> None:
    resp = loaded.get_online_features(["driver_stats:avg_daily_trips", "driver_stats:city"],
                                      [{"driver_id": 1001}, {"driver_id": 1002}, {"driver_id": 7}])
    assert resp.to_dict() == {"driver_id": [1001, 1002, 7], "avg_daily_trips": [4, 5, None],
                              "city": ["city1", "city0", None]}
    assert resp.statuses["avg_daily_trips"] == [PRESENT, PRESENT, NOT_FOUND]
    assert resp.event_timestamps["city"][0] == (T0 + timedelta(hours=3)).timestamp()
    with_ts = resp.to_dict(include_event_timestamps=True)
    assert with_ts["city__ts"] == ["2024-01-01T03:00:00Z", "2024-01-01T03:00:00Z", None]
    body = resp.to_feast_json()
    assert body["metadata"]["feature_names"] == ["driver_id", "avg_daily_trips", "city"]
    assert body["results"][1]["statuses"] == [PRESENT, PRESENT, NOT_FOUND]
    # Columnar input gives the same answer.
    cols = loaded.get_online_features(["driver_stats:avg_daily_trips"], {"driver_id": [1001, 1002, 7]})
    assert cols.to_dict()["avg_daily_trips"] == [4, 5, None]


def test_ttl_enforced_on_read(loaded: FeatureStore, clock: ManualClock) -> None:
    refs = ["driver_stats:avg_daily_trips", "driver_profile:avg_daily_trips"]
    clock.advance(3600)  # 05:00: the 03:00 rows are exactly 2 h old - still fresh (ttl edge inclusive)
    r = loaded.get_online_features(refs, [{"driver_id": 1001}], full_feature_names=True)
    assert r.statuses["driver_stats__avg_daily_trips"] == [PRESENT]
    clock.advance(1)
    r = loaded.get_online_features(refs, [{"driver_id": 1001}], full_feature_names=True)
    assert r.to_dict()["driver_stats__avg_daily_trips"] == [None]
    assert r.statuses["driver_stats__avg_daily_trips"] == [EXPIRED]
    assert r.event_timestamps["driver_stats__avg_daily_trips"] == [(T0 + timedelta(hours=3)).timestamp()]
    assert r.to_dict()["driver_profile__avg_daily_trips"] == [4]  # no ttl: never expires


def test_feature_service_and_on_demand(loaded: FeatureStore) -> None:
    svc = loaded.get_feature_service("driver_activity")
    assert loaded.get_online_features(svc, [{"driver_id": 1003}]).to_dict() == {
        "driver_id": [1003], "conv_rate": [pytest.approx(0.4003, rel=1e-6)], "avg_daily_trips": [6]}
    r = loaded.get_online_features(["transformed:conv_plus"], [{"driver_id": 1003, "val_to_add": 2}])
    assert r.to_dict()["conv_plus"] == [pytest.approx(2.4003, rel=1e-6)]


def test_errors_name_the_problem(loaded: FeatureStore) -> None:
    refs = ["driver_stats:avg_daily_trips"]
    with pytest.raises(InvalidRequestError, match=r"driver_id\[0\]: expected int64, got str") as e:
        loaded.get_online_features(refs, [{"driver_id": "1001"}])
    assert e.value.param == "driver_id[0]"
    with pytest.raises(NotFoundError, match="unknown entity keys \\['rider_id'\\]"):
        loaded.get_online_features(refs, [{"driver_id": 1, "rider_id": 2}])
    with pytest.raises(InvalidRequestError, match="entity key 'driver_id' is required"):
        loaded.get_online_features(refs, [{"val_to_add": 1}])
    with pytest.raises(NotFoundError, match="has no feature 'speed'"):
        loaded.get_online_features(["driver_stats:speed"], [{"driver_id": 1}])
    with pytest.raises(InvalidRequestError, match="request data field 'val_to_add'"):
        loaded.get_online_features(["transformed:conv_plus"], [{"driver_id": 1}])
    with pytest.raises(InvalidRequestError, match="null"):
        loaded.get_online_features(refs, {"driver_id": [None]})
    with pytest.raises(InvalidRequestError, match="empty"):
        loaded.get_online_features(refs, [])


def test_new_apply_is_seen_by_a_long_lived_store(loaded: FeatureStore, repo) -> None:  # noqa: ANN001
    from aisd.features import FeatureStoreConfig

    server = FeatureStore(repo, FeatureStoreConfig(registry_refresh_seconds=0))
    assert "driver_profile2" not in [v.name for v in server.list_feature_views()]
    text = (repo / "features.py").read_text()
    (repo / "features.py").write_text(text + "driver_profile2 = FeatureView(name='driver_profile2', "
                                      "entities=[driver], schema=[Field(name='acc_rate', dtype=Float64)], "
                                      "source=source)\n")
    FeatureStore(repo).apply_repo()  # another process (the CLI) applies
    assert "driver_profile2" in [v.name for v in server.list_feature_views()]
    server.close()


def test_sqlite_format_is_versioned_and_foreign_layouts_are_refused(tmp_path) -> None:  # noqa: ANN001
    import sqlite3

    from aisd.core.errors import CorruptDataError
    from aisd.features.online.base import OnlineRow
    from aisd.features.online.sqlite import FORMAT_VERSION, SqliteOnlineStore

    path = tmp_path / "online.db"
    store = SqliteOnlineStore(path)
    store.write("v", [OnlineRow("[1]", {"a": 1.5, "b": None}, 10.0)])
    store.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
    con.execute("PRAGMA user_version = 0")  # a file from before versions were recorded: same layout, stamped
    con.close()
    store = SqliteOnlineStore(path)
    assert store.read("v", ["[1]", "[2]", "[1]"])[0].values == {"a": 1.5, "b": None}
    store.close()
    feast_like = tmp_path / "rows.db"  # one row per feature: another layout, refused rather than misread
    con = sqlite3.connect(feast_like)
    con.execute("CREATE TABLE online (entity_key BLOB, feature_name TEXT, value BLOB, event_ts TIMESTAMP)")
    con.close()
    with pytest.raises(CorruptDataError, match="unknown layout"):
        SqliteOnlineStore(feast_like)
    newer = tmp_path / "newer.db"
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    con.close()
    with pytest.raises(CorruptDataError, match="newer"):
        SqliteOnlineStore(newer)


def test_columns_follow_request_order_across_views(loaded: FeatureStore) -> None:
    refs = ["driver_stats:avg_daily_trips", "driver_profile:avg_daily_trips", "driver_stats:city"]
    resp = loaded.get_online_features(refs, {"driver_id": [1001, 1002]}, full_feature_names=True)
    assert list(resp.values) == ["driver_stats__avg_daily_trips", "driver_profile__avg_daily_trips",
                                 "driver_stats__city"]
    assert list(resp.statuses) == list(resp.values) == list(resp.event_timestamps)
    assert resp.values["driver_stats__city"] == ["city1", "city0"]
