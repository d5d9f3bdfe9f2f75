"""Push: streaming updates written straight to the online store and, optionally, appended to the offline store.

The whole frame is validated and converted first (columns present, every value of the declared type); only then is
anything written, so a bad row leaves both stores untouched. Offline appends are Parquet files written to a temp
name and renamed (atomic on POSIX), one per push, under ``<repo>/.aisd/offline_push/<push source>/``; the offline
store reads them together with the batch source.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from aisd.core.errors import InvalidRequestError
from aisd.features.dtypes import to_epoch
from aisd.features.model import FeatureView, PushSource
from aisd.features.online.base import OnlineRow, OnlineStore, encode_key


class PushMode(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    ONLINE_AND_OFFLINE = "online_and_offline"


@dataclass(frozen=True)
class PushResult:
    push_source: str
    rows: int
    views: tuple[str, ...]
    online_rows_written: int
    offline_file: str | None


def _columns(df: Any) -> dict[str, list[Any]]:
    """Column name -> Python values, from a pandas DataFrame, a pyarrow Table or a dict of lists."""
    if isinstance(df, dict):
        cols = {k: list(v) for k, v in df.items()}
    elif hasattr(df, "to_pydict"):
        cols = df.to_pydict()
    elif hasattr(df, "to_dict"):
        cols = {c: df[c].tolist() for c in df.columns}
    else:
        raise InvalidRequestError("push data must be a pandas DataFrame, a pyarrow Table or a dict of lists",
                                  param="df")
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise InvalidRequestError(f"push data columns have different lengths: {sorted(lengths)}", param="df")
    return cols


def build_rows(source: PushSource, views: list[FeatureView], entity_types: dict[str, Any], df: Any,
               now: float) -> tuple[dict[str, list[OnlineRow]], dict[str, list[Any]]]:
    """Validate and convert; returns online rows per view and the converted columns (for the offline append)."""
    cols = _columns(df)
    n = len(next(iter(cols.values()))) if cols else 0
    if n == 0:
        raise InvalidRequestError("push data has no rows", param="df")
    ts_field = source.timestamp_field
    needed = {ts_field}
    for v in views:
        needed |= set(v.join_keys) | set(v.feature_names)
    missing = sorted(needed - set(cols))
    if missing:
        raise InvalidRequestError(f"push source {source.name!r}: missing columns {missing}", param=missing[0])
    converted: dict[str, list[Any]] = {ts_field: [to_epoch(t, f"{ts_field}[{i}]") for i, t in enumerate(cols[ts_field])]}
    types: dict[str, Any] = dict(entity_types)
    for v in views:
        types.update({f.name: f.dtype for f in v.features})
    for name in needed - {ts_field}:
        dtype = types[name]
        converted[name] = [dtype.coerce(x, f"{name}[{i}]") for i, x in enumerate(cols[name])]
        if name in entity_types and any(x is None for x in converted[name]):
            raise InvalidRequestError(f"push source {source.name!r}: entity key {name!r} has null values", param=name)
    out: dict[str, list[OnlineRow]] = {}
    for v in views:
        out[v.name] = [OnlineRow(encode_key([converted[k][i] for k in v.join_keys]),
                                 {f: converted[f][i] for f in v.feature_names}, converted[ts_field][i], now)
                       for i in range(n)]
    return out, converted


def write_offline(push_dir: Path, source: PushSource, converted: dict[str, list[Any]], types: dict[str, Any],
                  now: float) -> str:
    """Append one Parquet file with the pushed rows (typed as declared) and return its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ts_field = source.timestamp_field
    arrays, names = [], []
    for name, values in converted.items():
        if name == ts_field or types.get(name) is not None and str(types[name]) == "unix_timestamp":
            arrays.append(pa.array([None if t is None else int(t * 1_000_000) for t in values], pa.int64()).cast(pa.timestamp("us", "UTC")))
        else:
            arrays.append(pa.array(values, _arrow_type(types[name])))
        names.append(name)
    created = source.batch_source.created_timestamp_column
    if created and created not in converted:
        arrays.append(pa.array([int(now * 1_000_000)] * len(arrays[0]), pa.int64()).cast(pa.timestamp("us", "UTC")))
        names.append(created)
    folder = push_dir / source.name
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{int(now * 1000):015d}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = folder / ("." + final.name + ".tmp")
    pq.write_table(pa.table(arrays, names=names), tmp)
    os.replace(tmp, final)
    return str(final)


def _arrow_type(dtype: Any) -> Any:
    import pyarrow as pa

    if dtype.element is not None:
        return pa.list_(_arrow_type(dtype.element))
    return {"int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(), "float64": pa.float64(),
            "string": pa.string(), "bool": pa.bool_(), "bytes": pa.string(),
            "unix_timestamp": pa.timestamp("us", "UTC")}[dtype.name]


def push(source: PushSource, views: list[FeatureView], entity_types: dict[str, Any], df: Any,
         online: OnlineStore | None, push_dir: Path | None, now: float) -> PushResult:
    rows, converted = build_rows(source, views, entity_types, df, now)
    written = 0
    if online is not None:
        for v in views:
            if v.online:
                written += online.write(v.name, rows[v.name])
    path = None
    if push_dir is not None:
        types = dict(entity_types)
        for v in views:
            types.update({f.name: f.dtype for f in v.features})
        path = write_offline(push_dir, source, converted, types, now)
    n = len(next(iter(rows.values()))) if rows else 0
    return PushResult(source.name, n, tuple(v.name for v in views), written, path)
