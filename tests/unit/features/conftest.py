"""A small driver-stats repository (Feast's quick-start shape) built fresh for each test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from aisd.core.clock import ManualClock
from aisd.features import (
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    Float32,
    Float64,
    Int64,
    PushSource,
    RequestSource,
    String,
    on_demand_feature_view,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def driver_frame() -> pd.DataFrame:
    """3 drivers x 4 hourly rows; driver 1002's 02:00 row is corrected later (same event time, newer created)."""
    rows = []
    for d in (1001, 1002, 1003):
        for h in range(4):
            ts = T0 + timedelta(hours=h)
            rows.append({"driver_id": d, "event_timestamp": ts, "created": ts + timedelta(minutes=5),
                         "conv_rate": d / 10000 + h / 10, "acc_rate": 0.5 + h / 100, "avg_daily_trips": d - 1000 + h,
                         "city": f"city{d % 2}"})
    rows.append({"driver_id": 1002, "event_timestamp": T0 + timedelta(hours=2), "created": T0 + timedelta(hours=9),
                 "conv_rate": 0.999, "acc_rate": 0.0, "avg_daily_trips": 99, "city": "late"})
    df = pd.DataFrame(rows)
    df["conv_rate"] = df["conv_rate"].astype("float32")
    return df


REPO_PY = '''
from datetime import timedelta
import pandas as pd
from aisd.features import (Entity, FeatureService, FeatureView, Field, FileSource, Float32, Float64, Int64,
                           PushSource, RequestSource, String, on_demand_feature_view)

driver = Entity(name="driver", join_keys=["driver_id"])
source = FileSource(path="data/driver_stats.parquet", timestamp_field="event_timestamp",
                    created_timestamp_column="created")
stats_push = PushSource(name="driver_stats_push", batch_source=source)
driver_stats = FeatureView(name="driver_stats", entities=[driver], ttl=timedelta(hours=2),
                           schema=[Field(name="conv_rate", dtype=Float32), Field(name="acc_rate", dtype=Float64),
                                   Field(name="avg_daily_trips", dtype=Int64), Field(name="city", dtype=String)],
                           source=stats_push)
driver_profile = FeatureView(name="driver_profile", entities=[driver], ttl=None,
                             schema=[Field(name="avg_daily_trips", dtype=Int64)], source=source)
request = RequestSource(name="req", schema=[Field(name="val_to_add", dtype=Int64)])


@on_demand_feature_view(sources=[driver_stats[["conv_rate"]], request], schema=[Field(name="conv_plus", dtype=Float64)])
def transformed(inputs):
    out = pd.DataFrame()
    out["conv_plus"] = inputs["conv_rate"].astype("float64") + inputs["val_to_add"]
    return out


driver_activity = FeatureService(name="driver_activity", features=[driver_stats[["conv_rate", "avg_daily_trips"]]])
'''


def make_repo(root: Path, df: pd.DataFrame | None = None) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (df if df is not None else driver_frame()).to_parquet(root / "data" / "driver_stats.parquet")
    (root / "features.py").write_text(REPO_PY)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0 + timedelta(hours=4))


@pytest.fixture
def store(repo: Path, clock: ManualClock) -> FeatureStore:
    s = FeatureStore(repo, clock=clock)
    s.apply_repo()
    yield s
    s.close()


__all__ = ["T0", "Entity", "FeatureService", "FeatureView", "Field", "FileSource", "Float32", "Float64", "Int64",
           "PushSource", "RequestSource", "String", "driver_frame", "make_repo", "on_demand_feature_view"]
