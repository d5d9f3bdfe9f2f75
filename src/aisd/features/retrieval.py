"""Historical retrieval: the entity input, the point-in-time query, and ``RetrievalJob`` (to_df / to_arrow /
to_parquet), which runs lazily on a fresh memory-limited DuckDB connection.

Training-set export (``to_parquet``) is a DuckDB ``COPY ... TO`` when no on-demand view is involved, so the result
streams to disk and never sits in Python memory; with on-demand views the result streams in record batches through
the view functions into a Parquet writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from aisd.core.errors import InvalidRequestError, ServiceUnavailableError
from aisd.features.offline import OfflineStore, lit
from aisd.features.pit import ViewRequest, build_pit_sql
from aisd.features.serving import FeaturePlan, run_odfv

ROW = "__aisd_row"


@dataclass(frozen=True)
class EntityInput:
    """How to read the entity frame inside DuckDB: a registered object or a Parquet path."""

    frame: Any  # pandas DataFrame / pyarrow Table, or None for a path
    path: str | None
    columns: tuple[str, ...]
    types: dict[str, str]
    timestamp_column: str


def entity_input(entity_df: Any, offline: OfflineStore, timestamp_column: str | None) -> EntityInput:
    con = offline.connect()
    try:
        if isinstance(entity_df, str | Path):
            path = str(entity_df)
            if not Path(path).exists():
                raise InvalidRequestError(f"entity_df file {path} does not exist", param="entity_df")
            rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(path)})").fetchall()
            frame = None
        elif hasattr(entity_df, "columns") or hasattr(entity_df, "schema"):
            frame, path = entity_df, None
            con.register("__entity_df", frame)
            rows = con.execute("DESCRIBE SELECT * FROM __entity_df").fetchall()
        else:
            raise InvalidRequestError("entity_df must be a pandas DataFrame, a pyarrow Table or a Parquet path",
                                      param="entity_df")
    finally:
        con.close()
    types = {r[0]: r[1] for r in rows}
    if timestamp_column is None:
        stamps = [c for c, t in types.items() if t.startswith("TIMESTAMP") or t == "DATE"]
        if "event_timestamp" in types:
            timestamp_column = "event_timestamp"
        elif len(stamps) == 1:
            timestamp_column = stamps[0]
        else:
            raise InvalidRequestError(f"entity_df needs an 'event_timestamp' column (or pass timestamp_column); "
                                      f"timestamp columns found: {stamps}", param="entity_df")
    if timestamp_column not in types:
        raise InvalidRequestError(f"entity_df has no column {timestamp_column!r}", param="entity_df")
    if not (types[timestamp_column].startswith("TIMESTAMP") or types[timestamp_column] == "DATE"):
        raise InvalidRequestError(f"entity_df column {timestamp_column!r} is {types[timestamp_column]}, expected "
                                  "a timestamp", param=f"entity_df.{timestamp_column}")
    return EntityInput(frame, path, tuple(types), types, timestamp_column)


class RetrievalJob:
    """A point-in-time join ready to run; nothing is computed until one of the ``to_*`` methods is called."""

    def __init__(self, offline: OfflineStore, entity: EntityInput, plan: FeaturePlan,
                 requests: list[ViewRequest], exclude_late: bool) -> None:
        self.offline, self.entity, self.plan = offline, entity, plan
        self._requests, self._exclude_late = requests, exclude_late
        self._engine: str | None = None  # "auto"'s choice, made once

    @property
    def sql(self) -> str:
        """The DuckDB query (for inspection and EXPLAIN)."""
        if self.entity.path:
            src = f"(SELECT *, file_row_number AS {ROW} FROM read_parquet({lit(self.entity.path)}, " \
                  "file_row_number=true))"
            cols = self.entity.columns
        else:
            src, cols = "__entity_rows", self.entity.columns
        return build_pit_sql(src, cols, self.entity.timestamp_column, ROW, self._requests, self._exclude_late)

    @property
    def output_columns(self) -> list[str]:
        return [*self.entity.columns, *(o for _, o in self.plan.outputs)]

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = self.offline.connect()
        if self.entity.frame is not None:
            import pyarrow as pa

            table = self.entity.frame
            if not isinstance(table, pa.Table):
                table = pa.Table.from_pandas(table, preserve_index=False)
            table = table.append_column(ROW, pa.array(range(table.num_rows), pa.int64()))
            con.register("__entity_rows", table)
        return con

    def _finish(self, batch: Any) -> Any:
        """Apply on-demand views to one Arrow batch and keep the requested columns (in order)."""
        import pyarrow as pa

        if not self.plan.odfvs:
            return batch
        cols = batch.to_pydict()
        n = batch.num_rows
        values = {c: v for c, v in cols.items() if c not in self.entity.types}  # internal view__feature names
        request = {f.name: cols.get(f.name, [None] * n) for f in self.plan.request_fields}
        for part in self.plan.odfvs:
            out = run_odfv(part.odfv, values, request, n)
            for feat in part.features:
                values[f"{part.odfv.name}__{feat}"] = out[feat]
        data = {c: cols[c] for c in self.entity.columns}
        data.update({o: values[i] for i, o in self.plan.outputs})
        return pa.table(data)

    # ---- engine choice ------------------------------------------------------------------------------------------
    def engine(self) -> str:
        """"memory" or "duckdb" (see ``OfflineConfig.pit_engine``). "auto" estimates what the memory engine holds
        besides the result - every view's candidate rows (features plus four sorted index arrays), one key-id column
        per view for the entity rows, and three streamed chunks of the result - at 10 bytes per cell (8 for a value,
        plus validity), and picks it while that fits in half the memory limit; otherwise the SQL engine, which stays
        within the limit by spilling, so large exports and huge sources still finish. The result itself is not
        counted: ``to_parquet`` streams it in chunks, and ``to_arrow`` returns it whichever engine runs."""
        choice = self.offline.config.pit_engine
        if choice != "auto":
            return choice
        if self._engine is None:
            from aisd.features.memory_join import CHUNK_ROWS

            if self.entity.path:
                import pyarrow.parquet as pq

                rows = pq.ParquetFile(self.entity.path).metadata.num_rows
            else:
                rows = len(self.entity.frame)
            width = len(self.entity.columns) + sum(len(r.features) for r in self._requests)
            cells = rows * (len(self.entity.columns) + len(self._requests)) + 3 * min(rows, CHUNK_ROWS) * width
            budget = self.offline.config.memory_bytes // 2
            if cells * 10 <= budget:
                con = self.offline.connect()
                try:  # Parquet answers count(*) from its footer; CSV sources are read once
                    cells += sum(con.execute(f"SELECT count(*) FROM {r.source_sql}").fetchone()[0]
                                 * (len(r.features) + 4) for r in self._requests)
                except duckdb.Error as e:
                    raise _query_error(e) from e
                finally:
                    con.close()
            self._engine = "memory" if cells * 10 <= budget else "duckdb"
        return self._engine

    def _entity_table(self) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.entity.path:
            return pq.read_table(self.entity.path)
        table = self.entity.frame
        return table if isinstance(table, pa.Table) else pa.Table.from_pandas(table, preserve_index=False)

    def _memory_views(self) -> tuple[Any, list[Any]] | None:
        """The in-memory engine's prepared state (``memory_join.py``): the entity rows and every view read and
        sorted. None when a view's key types cannot be matched this way (the caller then uses the SQL engine)."""
        from aisd.features.memory_join import EntityRows, prepare_views

        entity = self._entity_table()
        rows = EntityRows(entity, *_epoch_us(entity.column(self.entity.timestamp_column)))
        con = self.offline.connect()
        try:
            views = prepare_views(con, self._requests, rows, self._exclude_late, self.offline.config.threads)
        except duckdb.Error as e:
            raise _query_error(e) from e
        finally:
            con.close()
        return None if views is None else (rows, views)

    def to_arrow(self) -> Any:
        import pyarrow as pa

        if self.engine() == "memory" and (state := self._memory_views()) is not None:
            from aisd.features.memory_join import match_chunks

            rows, views = state
            table = next(match_chunks(rows, views, chunk_rows=max(rows.table.num_rows, 1),
                                      threads=self.offline.config.threads))
            return self._finish(table) if self.plan.odfvs else table
        con = self._connect()
        try:
            table = con.sql(self.sql).to_arrow_table()
        except duckdb.Error as e:
            raise _query_error(e) from e
        finally:
            con.close()
        return self._finish(table) if self.plan.odfvs else pa.table(table)

    def to_df(self) -> Any:
        return self.to_arrow().to_pandas()

    def to_parquet(self, path: str | Path, batch_rows: int = 100_000) -> Path:
        """Write the training set to a Parquet file: streamed by the SQL engine; the memory engine, chosen only when
        the result fits in half the memory limit, writes its Arrow table."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        if self.engine() == "memory" and (state := self._memory_views()) is not None:
            from aisd.features.memory_join import match_chunks, write_parquet

            rows, views = state
            write_parquet(match_chunks(rows, views, threads=self.offline.config.threads), out,
                          self._finish if self.plan.odfvs else None)
            return out
        con = self._connect()
        try:
            if not self.plan.odfvs:
                con.execute(f"COPY ({self.sql}) TO {lit(str(out))} (FORMAT parquet)")
                return out
            import pyarrow.parquet as pq

            writer = None
            for batch in con.sql(self.sql).to_arrow_reader(batch_rows):
                table = self._finish(batch)
                writer = writer or pq.ParquetWriter(str(out), table.schema)
                writer.write_table(table)
            if writer is not None:
                writer.close()
        except duckdb.Error as e:
            raise _query_error(e) from e
        finally:
            con.close()
        return out


def _epoch_us(col: Any) -> tuple[Any, Any]:
    """Entity times as int64 epoch microseconds (naive = UTC, like DuckDB's epoch_us) and a not-NULL mask."""
    import numpy as np
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_date(col.type):
        col = col.cast(pa.timestamp("us"))
    col = col.cast(pa.timestamp("us", tz=col.type.tz), safe=False)  # ns -> us truncates, as DuckDB does
    ok = np.asarray(col.is_valid())
    values = col.cast(pa.int64()).fill_null(0).to_numpy()
    return values, ok


def _query_error(e: Exception) -> Exception:
    if isinstance(e, duckdb.OutOfMemoryException):
        return ServiceUnavailableError(f"historical retrieval ran out of its DuckDB memory limit even after spilling: "
                                       f"{e}; raise features.duckdb_memory_limit (OfflineConfig.memory_limit)")
    return InvalidRequestError(f"historical retrieval failed: {e}", param="entity_df")


def view_requests(offline: OfflineStore, plan: FeaturePlan, entity: EntityInput) -> list[ViewRequest]:
    """One ViewRequest per view, internal output names ``view__feature``; checks entity columns and key types."""
    out = []
    final = dict(plan.outputs)
    for part in plan.views:
        v = part.view
        for k in v.join_keys:
            if k not in entity.types:
                raise InvalidRequestError(f"entity_df lacks join key {k!r} needed by feature view {v.name!r}",
                                          param=f"entity_df.{k}")
        internal = [f"{v.name}__{f}" for f in part.features]
        # Without on-demand views the query names columns as returned; with them _finish renames after the udfs.
        names = tuple(internal if plan.odfvs else [final[i] for i in internal])
        out.append(ViewRequest(v, part.features, names, offline.view_sql(v, list(part.features))))
    for f in plan.request_fields:
        if f.name not in entity.types:
            raise InvalidRequestError(f"entity_df lacks request data column {f.name!r} needed by an on-demand view",
                                      param=f"entity_df.{f.name}")
    return out
