"""apply: a repository folder becomes the registry; diffs; invalid or conflicting definitions are refused and
nothing is written."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from aisd.core.errors import ConflictError, InvalidRequestError, NotFoundError
from aisd.features import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, Float32, Int64, String
from aisd.features.repo import load_repo


def test_apply_repo_creates_then_is_unchanged(repo: Path) -> None:
    store = FeatureStore(repo)
    plan = store.apply_repo()
    assert {(i.kind, i.name, i.action) for i in plan.items} == {
        ("entity", "driver", "create"), ("feature_view", "driver_stats", "create"),
        ("feature_view", "driver_profile", "create"), ("on_demand_feature_view", "transformed", "create"),
        ("feature_service", "driver_activity", "create"), ("push_source", "driver_stats_push", "create")}
    # The entity's key type was settled from the data (BIGINT -> int64) and kept.
    assert str(store.list_entities()[0].value_type) == "int64"
    again = store.plan_repo()
    assert not again.has_changes and "(create)" not in again.to_text()
    # A second process sees the same registry.
    other = FeatureStore(repo)
    assert sorted(v.name for v in other.list_feature_views()) == ["driver_profile", "driver_stats"]
    assert other.get_feature_service("driver_activity").feature_refs() == ["driver_stats:conv_rate",
                                                                           "driver_stats:avg_daily_trips"]


def test_diff_shows_updates_and_deletes(store: FeatureStore, repo: Path) -> None:
    text = (repo / "features.py").read_text()
    text = text.replace("ttl=timedelta(hours=2)", "ttl=timedelta(hours=3)")
    text = text.replace('FeatureService(name="driver_activity"', 'FeatureService(name="driver_activity2"')
    (repo / "features.py").write_text(text)
    plan = store.plan_repo()
    actions = {(i.name, i.action) for i in plan.items}
    assert ("driver_stats", "update") in actions and ("driver_activity", "delete") in actions
    assert ("driver_activity2", "create") in actions
    upd = next(i for i in plan.items if i.name == "driver_stats")
    assert any("ttl_seconds: 7200.0 -> 10800.0" in c for c in upd.changes)
    version = store.registry.version
    store.apply_repo()
    assert store.registry.version == version + 1
    assert store.get_feature_view("driver_stats").ttl == timedelta(hours=3)
    with pytest.raises(NotFoundError):
        store.get_feature_service("driver_activity")


def _view(name: str, field: Field, path: str = "data/driver_stats.parquet") -> FeatureView:
    return FeatureView(name=name, entities=[Entity("driver", ["driver_id"])], schema=[field],
                       source=FileSource(path, created_timestamp_column="created"), ttl=None)


@pytest.mark.parametrize("bad, error, needle", [
    (lambda: [_view("v", Field("conv_rate", String))], InvalidRequestError, "declared string but the column is FLOAT"),
    (lambda: [_view("v", Field("nope", Float32))], InvalidRequestError, "feature 'nope' not found"),
    (lambda: [_view("v", Field("conv_rate", Float32), "data/missing.parquet")], InvalidRequestError, "not found"),
    (lambda: [_view("v", Field("conv_rate", Float32)), _view("v", Field("acc_rate", Float32))], ConflictError,
     "defined twice"),
    (lambda: [FeatureService("s", [_view("v", Field("conv_rate", Float32))[["conv_rate"]]])], NotFoundError,
     "feature view 'v' is not defined"),
])
def test_invalid_definitions_are_refused_and_nothing_is_written(store: FeatureStore, bad, error, needle) -> None:
    version = store.registry.version
    with pytest.raises(error, match=needle):
        store.apply(bad())
    assert store.registry.version == version


def test_type_change_strands_online_data_unless_forced(store: FeatureStore, repo: Path) -> None:
    from datetime import UTC, datetime

    store.materialize(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    assert store.online_store.count("driver_profile") == 3
    changed = _view("driver_profile", Field("avg_daily_trips", Float32))
    with pytest.raises(ConflictError, match="force"):
        store.apply([changed])
    store.apply([changed], force=True)
    assert store.online_store.count("driver_profile") == 0
    assert str(store.get_feature_view("driver_profile").features[0].dtype) == "float32"


def test_load_repo_reports_broken_files(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from aisd.features import Entity\ndriver = Entity('driver')\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.py").write_text("raise SystemExit")
    assert [o.name for o in load_repo(tmp_path)] == ["driver"]
    (tmp_path / "b.py").write_text("this is not python")
    with pytest.raises(InvalidRequestError, match="b.py"):
        load_repo(tmp_path)
    with pytest.raises(NotFoundError, match="does not exist"):
        load_repo(tmp_path / "nope")


def test_int_key_column_check(store: FeatureStore) -> None:
    bad = FeatureView(name="w", entities=[Entity("driver", ["driver_id"])], schema=[Field("city", String)],
                      source=FileSource("data/driver_stats.parquet", timestamp_field="city"))
    with pytest.raises(InvalidRequestError, match="expected a timestamp"):
        store.apply([bad])
    assert Int64  # imported for readers of this file: the entity key type is int64
