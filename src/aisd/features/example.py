"""``aisd features init``: a ready-to-apply example repository (Feast's driver-stats quick start, on local data).

The data are synthetic and deterministic (a seeded generator): hourly rows per driver over the last ``days`` days,
so that ``apply``, ``materialize-incremental`` and ``get-online`` work immediately after ``init``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from aisd.core.errors import ConflictError

DEFINITIONS = '''"""Feature definitions: edit, then run `aisd features plan` (diff) and `aisd features apply`."""

from datetime import timedelta

import pandas as pd

from aisd.features import (Entity, FeatureService, FeatureView, Field, FileSource, Float32, Float64, Int64,
                           PushSource, RequestSource, on_demand_feature_view)

driver = Entity(name="driver", join_keys=["driver_id"], description="a driver")

driver_stats_source = FileSource(path="data/driver_stats.parquet", timestamp_field="event_timestamp",
                                 created_timestamp_column="created")

# Streaming updates: `aisd features push driver_stats_push rows.parquet` (or POST /v1/features/push).
driver_stats_push = PushSource(name="driver_stats_push", batch_source=driver_stats_source)

driver_hourly_stats = FeatureView(
    name="driver_hourly_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[Field(name="conv_rate", dtype=Float32), Field(name="acc_rate", dtype=Float32),
            Field(name="avg_daily_trips", dtype=Int64)],
    source=driver_stats_push,
    online=True,
)

input_request = RequestSource(name="vals_to_add", schema=[Field(name="val_to_add", dtype=Int64)])


@on_demand_feature_view(sources=[driver_hourly_stats, input_request],
                        schema=[Field(name="conv_rate_plus_val", dtype=Float64)])
def transformed_conv_rate(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["conv_rate_plus_val"] = inputs["conv_rate"].astype("float64") + inputs["val_to_add"]
    return out


driver_activity = FeatureService(name="driver_activity",
                                 features=[driver_hourly_stats[["conv_rate", "avg_daily_trips"]],
                                           transformed_conv_rate])
'''


def write_example_repo(path: str | Path, *, drivers: int = 5, days: int = 7, now: datetime | None = None,
                       overwrite: bool = False) -> Path:
    """Write ``features.py`` and ``data/driver_stats.parquet`` under ``path``; refuse to overwrite unless told."""
    import numpy as np
    import pandas as pd

    root = Path(path)
    defs = root / "features.py"
    if defs.exists() and not overwrite:
        raise ConflictError(f"{defs} already exists; pass overwrite to replace it")
    (root / "data").mkdir(parents=True, exist_ok=True)
    end = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    hours = days * 24
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(1001, 1001 + drivers), hours)
    stamps = pd.date_range(end - timedelta(hours=hours - 1), end, freq="h", tz="UTC")
    ts = np.tile(stamps.to_numpy(), drivers)
    df = pd.DataFrame({"driver_id": ids, "event_timestamp": pd.DatetimeIndex(ts)})
    df["created"] = df["event_timestamp"] + pd.Timedelta(minutes=2)
    df["conv_rate"] = rng.random(ids.size).astype("float32")
    df["acc_rate"] = rng.random(ids.size).astype("float32")
    df["avg_daily_trips"] = rng.integers(0, 1000, ids.size)
    df.to_parquet(root / "data" / "driver_stats.parquet", index=False)
    defs.write_text(DEFINITIONS)
    return root
