"""Offline store: Parquet and CSV sources queried with DuckDB, plus Parquet files appended by ``push``.

Every query runs on a fresh DuckDB connection with a memory limit and a temp directory, so joins and sorts larger
than memory spill to disk instead of failing (the failure mode of Feast's pandas-based local store, issues #3003 and
#6307). All times are compared as integer microseconds since the Unix epoch (``epoch_us``: exact for TIMESTAMP, TIMESTAMPTZ
and DATE, and ~100x cheaper than casting TIMESTAMPTZ to TIMESTAMP, which goes through ICU). Each view's rows are
exposed as a SQL subquery with the join keys, ``__ts`` (event time), ``__created`` (created time, or 0 when the
source has none) and the features.
"""

from __future__ import annotations

import glob
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from aisd.core.errors import InvalidRequestError, NotFoundError
from aisd.features.model import FeatureView, FileSource


@dataclass(frozen=True)
class OfflineConfig:
    memory_limit: str = "2GB"  # DuckDB's limit; beyond it operators spill to temp_directory
    threads: int = 0  # 0: DuckDB's default (all cores)
    temp_directory: str = ""  # "" : <repo>/.aisd/tmp
    # Point-in-time join engine: "memory" matches in NumPy over Arrow columns (fastest; holds the result in memory),
    # "duckdb" is one SQL query that spills to temp_directory, "auto" picks "memory" while the result is estimated
    # to fit in half of memory_limit.
    pit_engine: str = "auto"

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if not self.memory_limit or not self.memory_limit[0].isdigit():
            raise ValueError(f"memory_limit must look like '2GB' or '512MB', got {self.memory_limit!r}")
        parse_bytes(self.memory_limit)
        if self.pit_engine not in PIT_ENGINES:
            raise ValueError(f"pit_engine {self.pit_engine!r}; expected one of: {', '.join(PIT_ENGINES)}")

    @property
    def memory_bytes(self) -> int:
        return parse_bytes(self.memory_limit)


PIT_ENGINES = ("auto", "memory", "duckdb")
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_bytes(text: str) -> int:
    """'2GB' / '512MB' / '1.5GiB' -> bytes (DuckDB's units: KB, MB, GB are powers of 1000, KiB... of 1024)."""
    import re

    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = (m.group(2).lower() or "b") if m else ""
    if not m or unit not in _UNITS:
        raise ValueError(f"memory_limit must look like '2GB' or '512MB', got {text!r}")
    return int(float(m.group(1)) * _UNITS[unit])


def q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    """Quote an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def ts_lit(ts: datetime | float) -> str:
    """Epoch microseconds (the unit of ``__ts``) from a datetime (naive = UTC) or epoch seconds, as SQL."""
    if isinstance(ts, int | float):
        return str(int(round(ts * 1_000_000)))
    from aisd.features.dtypes import to_epoch

    return str(int(round(to_epoch(ts, "timestamp") * 1_000_000)))


class OfflineStore:
    def __init__(self, root: str | Path, config: OfflineConfig | None = None) -> None:
        self.root = Path(root)  # the feature repository; relative source paths resolve against it
        self.config = config or OfflineConfig()
        self.push_dir = self.root / ".aisd" / "offline_push"
        self.tmp_dir = Path(self.config.temp_directory) if self.config.temp_directory else self.root / ".aisd" / "tmp"
        self._db: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A cursor on this store's in-memory DuckDB database (opening a database costs ~0.1 s, a cursor ~0.1 ms).

        Memory limit, threads and spill directory are database-wide; the time zone is per cursor.
        """
        if self._db is None:
            with self._lock:
                if self._db is None:
                    self.tmp_dir.mkdir(parents=True, exist_ok=True)
                    config = {"memory_limit": self.config.memory_limit, "temp_directory": str(self.tmp_dir),
                              "preserve_insertion_order": False}
                    if self.config.threads:
                        config["threads"] = self.config.threads
                    self._db = duckdb.connect(config=config)
        con = self._db.cursor()
        con.execute("SET TimeZone='UTC'")
        return con

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # ---- sources --------------------------------------------------------------------------------------------------
    def resolve(self, path: str) -> str:
        p = os.path.expanduser(path)
        return p if os.path.isabs(p) else str(self.root / p)

    def _files(self, source: FileSource) -> list[str]:
        path = self.resolve(source.path)
        if os.path.isdir(path):
            ext = "csv" if source.file_format == "csv" else "parquet"
            return sorted(glob.glob(os.path.join(path, "**", f"*.{ext}"), recursive=True))
        return sorted(glob.glob(path)) if any(c in path for c in "*?[") else ([path] if os.path.exists(path) else [])

    def pushed_files(self, source_name: str) -> list[str]:
        return sorted(glob.glob(str(self.push_dir / source_name / "*.parquet")))

    def source_sql(self, source: FileSource, pushed_as: str = "") -> str:
        """A FROM-able SQL expression over the source's files and, if ``pushed_as``, that push source's files."""
        files = self._files(source)
        pushed = self.pushed_files(pushed_as) if pushed_as else []
        if not files and not pushed:
            raise NotFoundError(f"source {source.name!r}: no {source.file_format} files at {self.resolve(source.path)}")
        parts = []
        if files:
            listing = "[" + ",".join(lit(f) for f in files) + "]"
            if source.file_format == "csv":
                parts.append(f"SELECT * FROM read_csv({listing}, auto_detect=true, union_by_name=true)")
            else:
                parts.append(f"SELECT * FROM read_parquet({listing}, union_by_name=true)")
        if pushed:
            parts.append("SELECT * FROM read_parquet([" + ",".join(lit(f) for f in pushed) + "], union_by_name=true)")
        return "(" + " UNION ALL BY NAME ".join(parts) + ")"

    def describe(self, source: FileSource) -> dict[str, str]:
        """Column name -> DuckDB type of a source (reads metadata / a sample only)."""
        con = self.connect()
        try:
            rows = con.execute(f"DESCRIBE SELECT * FROM {self.source_sql(source)}").fetchall()
        except duckdb.Error as e:
            raise InvalidRequestError(f"source {source.name!r} at {source.path}: cannot be read: {e}",
                                      param="source") from e
        finally:
            con.close()
        return {r[0]: r[1] for r in rows}

    def view_sql(self, view: FeatureView, features: list[str] | None = None, where: str = "") -> str:
        """Subquery with the view's join keys, __ts, __created and ``features`` (default: all)."""
        src = view.batch_source
        pushed_as = view.source.name if hasattr(view.source, "batch_source") else ""
        created = f"epoch_us({q(src.created_timestamp_column)})" if src.created_timestamp_column else "0::BIGINT"
        cols = [q(k) for k in view.join_keys] + [f"epoch_us({q(src.timestamp_field)}) AS __ts",
                                                 f"{created} AS __created"]
        cols += [q(f) for f in (features if features is not None else view.feature_names)]
        sql = f"SELECT {', '.join(cols)} FROM {self.source_sql(src, pushed_as)}"
        return f"(SELECT * FROM ({sql}) WHERE {where})" if where else f"({sql})"

    # ---- materialization reads ------------------------------------------------------------------------------------
    def time_range(self, view: FeatureView) -> tuple[float | None, float | None]:
        """(min, max) event time of a view's rows, epoch seconds."""
        con = self.connect()
        try:
            lo, hi = con.execute(f"SELECT min(__ts), max(__ts) FROM {self.view_sql(view, [])}").fetchone()
        finally:
            con.close()
        return (lo / 1e6 if lo is not None else None, hi / 1e6 if hi is not None else None)

    def count(self, view: FeatureView, start: float, end: float) -> int:
        con = self.connect()
        try:
            where = f"__ts >= {ts_lit(start)} AND __ts < {ts_lit(end)}"
            return con.execute(f"SELECT count(*) FROM {self.view_sql(view, [], where)}").fetchone()[0]
        finally:
            con.close()

    def latest_sql(self, view: FeatureView, start: float, end: float) -> str:
        """Each entity's newest row with event time in [start, end); created time breaks ties."""
        keys = ", ".join(q(k) for k in view.join_keys)
        where = f"__ts >= {ts_lit(start)} AND __ts < {ts_lit(end)}"
        return (f"SELECT {keys}, __ts AS __ts_us, __created AS __created_us, "
                f"{', '.join(q(f) for f in view.feature_names)} FROM {self.view_sql(view, None, where)} "
                f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY __ts DESC, __created DESC) = 1")
