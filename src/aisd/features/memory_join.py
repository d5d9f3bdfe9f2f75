"""The in-memory point-in-time engine: NumPy as-of matching (``asof.py``) over Arrow columns, streamed in row chunks.

Two phases. **Prepare** (one task per view, run in parallel threads - DuckDB, NumPy's sorts and searches and the
gathers release the GIL): one DuckDB query reads the view's candidate rows (join keys, times, requested features;
projection pushdown, nothing else is read), keys become dense ids shared with the entity rows, and the rows are
sorted once (``AsofIndex``). **Match** (per chunk of entity rows, in entity order): each view's binary search for the
chunk, then a NumPy gather of the feature columns; the chunk is an Arrow table with the entity columns and every
requested feature. ``to_parquet`` hands each chunk to a writer thread as one row group, so the Parquet encoding of
chunk c (single-threaded in Arrow) runs beside the matching of chunk c + 1, and only the prepared views plus three
chunks (being written, waiting, being built) are in memory rather than the whole result.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aisd.features.asof import AsofIndex, key_ids, left_order
from aisd.features.pit import ViewRequest, view_rows_sql

# Rows per streamed chunk (and Parquet row group): big enough that per-chunk overhead vanishes, small enough that
# the writer starts early and two chunks in flight stay small.
CHUNK_ROWS = 131_072


@dataclass
class EntityRows:
    """The entity frame (Arrow table) and its times as int64 epoch microseconds with a not-NULL mask."""

    table: Any
    t_us: np.ndarray  # (n,) int64
    t_ok: np.ndarray  # (n,) bool


@dataclass
class PreparedView:
    """One view ready to match: its candidate rows, the entity rows' key ids against them, the sorted index."""

    request: ViewRequest
    rows: Any  # Arrow table from DuckDB
    left_ids: np.ndarray | None  # (n,) int64 entity key ids; None when the view has no rows (all NULL)
    index: AsofIndex | None
    ttl_us: int | None


def _workers(tasks: int, threads: int) -> int:
    """Threads for ``tasks`` independent views: ``threads`` (0: one per core), never more than there are views."""
    return max(1, min(tasks, threads or os.cpu_count() or 1))


def prepare_views(con: Any, requests: Sequence[ViewRequest], entity: EntityRows, exclude_late: bool,
                  threads: int) -> list[PreparedView] | None:
    """Every view's rows, read and sorted (in parallel). None when some view's keys cannot be matched in memory."""
    workers = _workers(len(requests), threads)
    valid_ts = entity.t_us[entity.t_ok]
    if workers == 1:
        prepared = [_prepare(con, vr, entity, valid_ts, exclude_late) for vr in requests]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="aisd-pit") as pool:  # a cursor per thread
            prepared = list(pool.map(lambda vr: _prepare(con.cursor(), vr, entity, valid_ts, exclude_late),
                                     requests))
    return None if any(p is None for p in prepared) else prepared  # type: ignore[return-value]


def _prepare(con: Any, vr: ViewRequest, entity: EntityRows, valid_ts: np.ndarray,
             exclude_late: bool) -> PreparedView | None:
    spec = view_rows_sql(vr, exclude_late)
    rows = con.sql(spec.sql).to_arrow_table().combine_chunks()  # one chunk per column: zero-copy NumPy views
    ttl = vr.view.ttl_seconds
    ttl_us = int(round(ttl * 1_000_000)) if ttl else None
    if rows.num_rows == 0:
        return PreparedView(vr, rows, None, None, ttl_us)
    keys = list(vr.view.join_keys)
    ids = key_ids([entity.table.column(k) for k in keys], [rows.column(k) for k in keys])
    if ids is None:
        return None
    tie = rows.column(spec.tie).to_numpy() if spec.tie else None
    fresh = rows.column(spec.fresh).to_numpy() if ttl_us else None
    index = AsofIndex(ids[1], rows.column(spec.on).to_numpy(), tie, valid_ts, right_fresh=fresh)
    if not index.ok:
        return None
    # Keys and times now live (sorted) in the index: keep only the feature columns.
    return PreparedView(vr, rows.select(list(vr.features)), ids[0], index, ttl_us)


def match_chunks(entity: EntityRows, views: Sequence[PreparedView], chunk_rows: int | None = None,
                 threads: int = 0) -> Iterator[Any]:
    """Arrow tables of consecutive entity rows (entity columns, then each view's output columns), in entity order;
    ``chunk_rows`` rows each (default ``CHUNK_ROWS``)."""
    import pyarrow as pa

    chunk_rows = chunk_rows or CHUNK_ROWS
    n = entity.table.num_rows
    workers = _workers(len(views), threads)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="aisd-pit") if workers > 1 and len(views) > 1 else None
    try:
        for a in range(0, max(n, 1), chunk_rows):
            b = min(n, a + chunk_rows)
            t_us, t_ok = entity.t_us[a:b], entity.t_ok[a:b]
            orders: dict[tuple[str, ...], np.ndarray] = {}  # one (key, time) sort per set of join keys
            for v in views:
                keys = tuple(v.request.view.join_keys)
                if v.left_ids is not None and keys not in orders:
                    orders[keys] = left_order(v.left_ids[a:b], t_us)

            tasks = [(v, a, b, t_us, t_ok, orders.get(tuple(v.request.view.join_keys))) for v in views]
            per_view = list(pool.map(_view_columns, *zip(*tasks, strict=True))) if pool else \
                [_view_columns(*t) for t in tasks]
            cols = [c.slice(a, b - a) for c in entity.table.columns]
            names = list(entity.table.column_names)
            for v, view_cols in zip(views, per_view, strict=True):
                cols.extend(view_cols)
                names.extend(v.request.output_names)
            yield pa.Table.from_arrays(cols, names=names)
    finally:
        if pool is not None:
            pool.shutdown()


def _view_columns(v: PreparedView, a: int, b: int, t_us: np.ndarray, t_ok: np.ndarray,
                  order: np.ndarray | None) -> list[Any]:
    """One view's output columns for entity rows [a, b); ``order`` is those rows' (key, time) order."""
    import pyarrow as pa

    if v.index is None or v.left_ids is None or order is None:  # no rows: every value is NULL
        return [pa.nulls(b - a, v.rows.schema.field(f).type) for f in v.request.features]
    min_fresh = t_us - v.ttl_us if v.ttl_us else None
    picker = Gather(v.index.match(v.left_ids[a:b], t_us, t_ok, order, min_fresh))
    return [picker.take(v.rows.column(f)) for f in v.request.features]


def write_parquet(chunks: Iterator[Any], path: Path, finish: Any = None) -> None:
    """Write the chunks as row groups of one Parquet file; a writer thread encodes chunk c while the caller's
    iterator computes chunk c + 1 (one chunk waits at most). ``finish`` maps each chunk before writing."""
    import pyarrow.parquet as pq

    pending: queue.Queue[Any] = queue.Queue(maxsize=1)
    failure: list[BaseException] = []

    def writer() -> None:
        out = None
        try:
            while (table := pending.get()) is not None:
                if out is None:  # no dictionary encoding: feature columns are mostly distinct floats (2x cheaper)
                    out = pq.ParquetWriter(str(path), table.schema, use_dictionary=False)
                out.write_table(table, row_group_size=max(table.num_rows, 1))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread below
            failure.append(e)
            while pending.get() is not None:  # drain so the producer never blocks on a dead writer
                pass
        finally:
            if out is not None:
                out.close()

    thread = threading.Thread(target=writer, name="aisd-pit-writer", daemon=True)
    thread.start()
    try:
        for chunk in chunks:
            if failure:
                break
            pending.put(finish(chunk) if finish else chunk)
    finally:
        pending.put(None)
        thread.join()
    if failure:
        raise failure[0]


class Gather:
    """Pick rows ``idx`` (-1: NULL) out of feature columns. Fixed-width numeric columns without NULLs take a NumPy
    gather plus one validity bitmap shared by every column of the view (4x cheaper than Arrow ``take`` on a
    multi-chunk column); anything else goes through Arrow ``take``."""

    def __init__(self, idx: np.ndarray) -> None:
        import pyarrow as pa

        self.idx = idx
        self.missing = int((idx < 0).sum())
        self._clipped = np.clip(idx, 0, None) if self.missing else idx
        self._validity = pa.py_buffer(np.packbits(idx >= 0, bitorder="little")) if self.missing else None
        self._arrow_idx: Any = None

    def take(self, col: Any) -> Any:
        import pyarrow as pa

        typ = col.type
        if (pa.types.is_integer(typ) or pa.types.is_floating(typ)) and col.null_count == 0 and len(col):
            values = np.take(col.to_numpy(), self._clipped)  # ~30% faster than fancy indexing for 1-D gathers
            return pa.Array.from_buffers(typ, len(values), [self._validity, pa.py_buffer(values)],
                                         null_count=self.missing)
        if self._arrow_idx is None:
            self._arrow_idx = pa.array(self.idx, mask=self.idx < 0)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        return col.take(self._arrow_idx)
