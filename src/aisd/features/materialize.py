"""Materialization: copy each entity's latest feature values in a time range from the offline to the online store,
in chunks, with a checkpoint after each chunk.

Chunks are event-time intervals cut at quantiles of the rows' event times, so each holds about ``chunk_rows`` rows
whatever the data's shape, and rows stream out of DuckDB in record batches: memory stays bounded by the chunk, not the
range (the failure of Feast's materialize on long ranges, issue #6307). Chunks go in time order and online writes are
newer-wins, so after chunks [s, c1), [c1, c2), ... the online store holds each entity's latest row in [s, c_k).
The registry records each finished chunk and the run's ``done_until`` in one transaction; a killed run resumes from
``done_until`` (a chunk written but not checkpointed is written again, which newer-wins makes harmless), so there
are no gaps and no duplicates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aisd.core.progress import progress
from aisd.features.dtypes import DType
from aisd.features.model import FeatureView
from aisd.features.offline import OfflineStore, ts_lit
from aisd.features.online.base import OnlineRow, OnlineStore, encode_key
from aisd.features.registry import Registry


@dataclass(frozen=True)
class ChunkInfo:
    view: str
    run_id: str
    index: int  # 0-based, within this call
    start: float  # epoch seconds
    end: float
    rows: int  # online rows written (entities with a row in the chunk)


@dataclass(frozen=True)
class MaterializeResult:
    view: str
    run_id: str
    start: float
    end: float
    resumed_from: float | None  # done_until of the killed run this call continued, if any
    chunks: int
    rows_written: int


def _converter(dtype: DType) -> Callable[[Any], Any]:
    """Arrow -> JSON-friendly value; identity for the common types keeps 1M-row chunks fast."""
    if dtype.name in ("float32", "float64"):
        return lambda v: None if v is None or v != v else v  # NaN -> null
    if dtype.name in ("int32", "int64", "string", "bool"):
        return lambda v: v
    return lambda v: dtype.coerce(v, "value")


def chunk_bounds(offline: OfflineStore, view: FeatureView, start: float, end: float, chunk_rows: int) -> list[float]:
    """Cut points start < c1 < ... < end at event-time quantiles so chunks hold about ``chunk_rows`` rows each."""
    n = offline.count(view, start, end)
    parts = max(1, math.ceil(n / chunk_rows))
    if parts == 1:
        return [start, end]
    qs = ", ".join(f"{i / parts:.6f}" for i in range(1, parts))
    con = offline.connect()
    try:
        where = f"__ts >= {ts_lit(start)} AND __ts < {ts_lit(end)}"
        row = con.execute(f"SELECT quantile_disc(__ts, [{qs}]) "
                          f"FROM {offline.view_sql(view, [], where)}").fetchone()
    finally:
        con.close()
    cuts = sorted({c / 1e6 for c in (row[0] or []) if start < c / 1e6 < end})
    return [start, *cuts, end]


def materialize_view(offline: OfflineStore, online: OnlineStore, registry: Registry, view: FeatureView,
                     start: float, end: float, *, chunk_rows: int = 200_000, batch_rows: int = 10_000,
                     on_chunk: Callable[[ChunkInfo], None] | None = None) -> MaterializeResult:
    """Materialize ``view`` for event times in [start, end), resuming a killed run with the same start.

    ``on_chunk`` runs after a chunk is written and before it is checkpointed (tests raise there to simulate a crash).
    """
    if end <= start:
        raise ValueError(f"materialize {view.name!r}: end must be after start")
    run = registry.unfinished_run(view.name, start)
    resumed = None
    if run is not None:
        resumed = run.done_until
        registry.extend_run(run.run_id, end)
    else:
        run = registry.start_run(view.name, start, end)
    bounds = chunk_bounds(offline, view, run.done_until, end, chunk_rows) if run.done_until < end else [end]
    keys = view.join_keys
    feats = view.feature_names
    conv = [_converter(f.dtype) for f in view.features]
    total, chunks = 0, 0
    pairs = list(zip(bounds[:-1], bounds[1:], strict=True))
    for i, (cs, ce) in enumerate(progress(pairs, total=len(pairs), desc=f"materialize {view.name}")):
        con = offline.connect()
        written = 0
        try:
            reader = con.sql(offline.latest_sql(view, cs, ce)).to_arrow_reader(batch_rows)
            for batch in reader:
                cols = batch.to_pydict()
                key_cols = [cols[k] for k in keys]
                feat_cols = [cols[f] for f in feats]
                ts, created = cols["__ts_us"], cols["__created_us"]
                rows = [OnlineRow(encode_key([kc[j] for kc in key_cols]),
                                  {f: c(fc[j]) for f, c, fc in zip(feats, conv, feat_cols, strict=True)},
                                  ts[j] / 1e6, created[j] / 1e6)
                        for j in range(batch.num_rows)]
                online.write(view.name, rows)
                written += len(rows)
        finally:
            con.close()
        if on_chunk is not None:
            on_chunk(ChunkInfo(view.name, run.run_id, i, cs, ce, written))
        registry.checkpoint(run.run_id, cs, ce, written)
        total += written
        chunks += 1
    registry.finish_run(run.run_id, view.name, end)
    return MaterializeResult(view.name, run.run_id, start, end, resumed, chunks, total)
