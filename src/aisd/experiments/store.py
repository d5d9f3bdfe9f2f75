"""ExperimentStore: experiments, exposures, events and offline reports in one DuckDB file.

One store holds one DuckDB connection (the single writer) guarded by a lock, so a server's worker threads and
batch appends serialise; other processes read exported Parquet. DuckDB allows one read-write process per file: stop
``aisd serve`` before writing with the CLI, or point the CLI at the server over HTTP.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from aisd.core.errors import ConflictError, InvalidRequestError, NotFoundError, ServiceUnavailableError
from aisd.experiments import events as ev
from aisd.experiments.assignment import Assignment, assignment, bucket
from aisd.experiments.model import Experiment
from aisd.experiments.offline import OfflineReport

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS experiments (name VARCHAR PRIMARY KEY, spec VARCHAR NOT NULL, status VARCHAR NOT NULL,"
    " updated_at TIMESTAMP)",
    "CREATE TABLE IF NOT EXISTS offline_reports (experiment VARCHAR, name VARCHAR, variant VARCHAR, metric VARCHAR,"
    " value DOUBLE, n BIGINT, source VARCHAR, created_at TIMESTAMP)",
    *ev.SCHEMA_SQL,
)


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _invalid(e: Exception, param: str = "experiment") -> InvalidRequestError:
    return InvalidRequestError(str(e), param=param)


class ExperimentStore:
    """Durable experiments with their lifecycle, assignment, logging and analysis; ``path`` is a DuckDB file."""

    def __init__(self, path: str | Path, srm_threshold: float = 0.001) -> None:
        self.path = Path(path)
        self.srm_threshold = srm_threshold
        self._lock = threading.RLock()
        self._con: Any = None
        # definitions cached in process: this store is the file's only writer, so the cache cannot go stale
        self._cache: dict[str, Experiment] = {}

    # ---------------------------------------------------------------------------------------------- connection
    @property
    def con(self) -> Any:
        """The store's one DuckDB connection (opened and migrated on first use)."""
        if self._con is None:
            import duckdb

            with self._lock:
                if self._con is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        con = duckdb.connect(str(self.path))
                    except duckdb.IOException as e:  # another process holds the write lock
                        raise ServiceUnavailableError(
                            f"experiments database {self.path} is locked by another process (is `aisd serve` "
                            f"running? use its HTTP API, or stop it): {e}") from None
                    for sql in _SCHEMA:
                        con.execute(sql).fetchall()
                    self._con = con
        return self._con

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def __enter__(self) -> ExperimentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------- experiments
    def create(self, experiment: Experiment | Mapping[str, Any]) -> Experiment:
        """Store a new draft experiment; a layer without a range gets the first free slice of width ``traffic``."""
        try:
            exp = experiment if isinstance(experiment, Experiment) else Experiment.from_dict(dict(experiment))
        except (TypeError, ValueError) as e:
            raise _invalid(e) from None
        with self._lock:
            if self._row(exp.name) is not None:
                raise ConflictError(f"experiment {exp.name!r} already exists", param="name")
            if exp.layer is not None:
                exp = self._place_in_layer(exp)
            exp = exp.with_(status="draft", created_at=_iso_now(), started_at=None, stopped_at=None)
            self._run("INSERT INTO experiments VALUES (?, ?, ?, now())",
                             [exp.name, json.dumps(exp.to_dict()), exp.status])
        return exp

    def _place_in_layer(self, exp: Experiment) -> Experiment:
        taken = sorted(o.layer_range for o in self.list() if o.layer == exp.layer and o.status != "stopped"
                       and o.layer_range is not None)
        if exp.layer_range is not None:
            lo, hi = exp.layer_range
            for olo, ohi in taken:
                if lo < ohi and olo < hi:
                    raise ConflictError(f"layer {exp.layer!r}: range [{lo}, {hi}) overlaps a live experiment's "
                                        f"[{olo}, {ohi})", param="layer_range")
            return exp
        width, start = exp.traffic, 0.0
        for olo, ohi in taken + [(1.0, 1.0)]:
            if olo - start >= width - 1e-12:
                return exp.with_(layer_range=(start, start + width), traffic=1.0)
            start = max(start, ohi)
        raise ConflictError(f"layer {exp.layer!r} has no free slice of width {width}; taken: {taken}",
                            param="traffic")

    def _run(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Execute and drain the result: DuckDB 2 refuses new work while a result is unfinished."""
        return self.con.execute(sql, params).fetchall() if params is not None else self.con.execute(sql).fetchall()

    def _row(self, name: str) -> tuple[str, str] | None:
        rows = self._run("SELECT spec, status FROM experiments WHERE name = ?", [name])
        return rows[0] if rows else None

    def get(self, name: str) -> Experiment:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        with self._lock:
            row = self._row(name)
        if row is None:
            raise NotFoundError(f"experiment {name!r} not found", param="name")
        exp = Experiment.from_dict(json.loads(row[0]))
        self._cache[name] = exp
        return exp

    def list(self, status: str | None = None) -> list[Experiment]:
        with self._lock:
            rows = self.con.execute("SELECT spec FROM experiments ORDER BY name").fetchall()
        exps = [Experiment.from_dict(json.loads(r[0])) for r in rows]
        return [e for e in exps if status is None or e.status == status]

    def _save(self, exp: Experiment) -> Experiment:
        self._run("UPDATE experiments SET spec = ?, status = ?, updated_at = now() WHERE name = ?",
                         [json.dumps(exp.to_dict()), exp.status, exp.name])
        self._cache[exp.name] = exp
        return exp

    def update(self, name: str, **changes: Any) -> Experiment:
        """Change a draft's definition (variants, metrics, traffic ...); running experiments are frozen."""
        with self._lock:
            exp = self.get(name)
            if exp.status != "draft":
                raise ConflictError(f"experiment {name!r} is {exp.status}; only drafts can be edited", param="status")
            bad = {"name", "status", "created_at", "started_at", "stopped_at"} & set(changes)
            if bad:
                raise InvalidRequestError(f"cannot change {sorted(bad)} with update", param=sorted(bad)[0])
            try:
                new = Experiment.from_dict({**exp.to_dict(), **changes})
            except (TypeError, ValueError) as e:
                raise _invalid(e) from None
            return self._save(new)

    def start(self, name: str) -> Experiment:
        with self._lock:
            exp = self.get(name)
            if exp.status != "draft":
                raise ConflictError(f"experiment {name!r} is {exp.status}; only a draft can start", param="status")
            return self._save(exp.with_(status="running", started_at=_iso_now()))

    def stop(self, name: str) -> Experiment:
        with self._lock:
            exp = self.get(name)
            if exp.status != "running":
                raise ConflictError(f"experiment {name!r} is {exp.status}; only a running one can stop",
                                    param="status")
            return self._save(exp.with_(status="stopped", stopped_at=_iso_now()))

    def delete(self, name: str) -> None:
        """Delete an experiment with its exposures and reports (events are shared facts and stay)."""
        with self._lock:
            self.get(name)
            self._cache.pop(name, None)
            for table in ("experiments", "exposures", "offline_reports"):
                col = "name" if table == "experiments" else "experiment"
                self._run(f"DELETE FROM {table} WHERE {col} = ?", [name])

    # ----------------------------------------------------------------------------------------------- assignment
    def assign(self, name: str, unit_id: str, attributes: Mapping[str, Any] | None = None,
               log_exposure: bool = False, ts: Any = None) -> Assignment:
        """Assign a unit; only running experiments assign (others answer variant None, reason "not_running")."""
        exp = self.get(name)
        if not str(unit_id):
            raise InvalidRequestError("unit_id must be a non-empty string", param="unit_id")
        if exp.status != "running":
            return Assignment(exp.name, str(unit_id), None, bucket(exp.salt, exp.name, str(unit_id)), "not_running")
        result = assignment(exp, unit_id, attributes)
        if log_exposure and result.variant is not None:
            self._log_one_exposure(exp.name, result.unit_id, result.variant, ts, attributes)
        return result

    def _log_one_exposure(self, name: str, unit_id: str, variant: str, ts: Any,
                          attributes: Mapping[str, Any] | None) -> None:
        """The per-request path of ``assign``: one parameterised upsert, no DataFrame (about 1 ms)."""
        try:
            when = pd.Timestamp(ts) if ts is not None else pd.Timestamp(datetime.now(UTC))
        except (TypeError, ValueError):
            raise InvalidRequestError(f"ts {ts!r} is not an ISO-8601 time", param="ts") from None
        if when.tzinfo is not None:
            when = when.tz_convert(None)
        attrs = json.dumps(dict(attributes), default=str) if attributes else None
        with self._lock:
            self._run("INSERT INTO exposures VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE "
                      "SET ts = least(exposures.ts, excluded.ts)", [name, unit_id, variant, when.to_pydatetime(),
                                                                   attrs])

    # --------------------------------------------------------------------------------------------------- logging
    def log_exposures(self, name: str, rows: Iterable[Any] | pd.DataFrame) -> ev.BatchResult:
        """Append exposures; each unit keeps its first variant and earliest time; bad rows are rejected by index."""
        exp = self.get(name)
        if exp.status == "draft":
            raise ConflictError(f"experiment {name!r} is a draft; start it before logging exposures", param="status")
        valid, rejected = ev.validate_exposures(rows, exp.name, [v.name for v in exp.variants])
        valid, dupes = ev.dedupe_exposures(valid)
        if valid.empty:
            return ev.BatchResult(0, rejected, dupes)
        with self._lock:
            before = self._exposure_total(name)
            self.con.register("_batch", valid)
            try:
                self._run("INSERT INTO exposures SELECT * FROM _batch ON CONFLICT DO UPDATE "
                                 "SET ts = least(exposures.ts, excluded.ts)")
            finally:
                self.con.unregister("_batch")
            added = self._exposure_total(name) - before
        return ev.BatchResult(int(added), rejected, int(dupes + len(valid) - added))

    def _exposure_total(self, name: str) -> int:
        return int(self._run("SELECT count(*) FROM exposures WHERE experiment = ?", [name])[0][0])

    def log_events(self, rows: Iterable[Any] | pd.DataFrame) -> ev.BatchResult:
        """Append metric events in one batch; malformed rows are rejected with a reason, valid rows are kept."""
        known = {e.name: [v.name for v in e.variants] for e in self.list()}
        valid, rejected = ev.validate_events(rows, known)
        if not valid.empty:
            with self._lock:
                self.con.register("_batch", valid)
                try:
                    self._run("INSERT INTO events SELECT * FROM _batch")
                finally:
                    self.con.unregister("_batch")
        return ev.BatchResult(len(valid), rejected)

    def load_file(self, path: str | Path, kind: str, experiment: str | None = None) -> ev.BatchResult:
        """Log events or exposures from a Parquet, CSV or JSON-lines file."""
        p = Path(path)
        if not p.is_file():
            raise NotFoundError(f"file {p} not found", param="path")
        suffix = p.suffix.lower()
        if suffix == ".parquet":
            frame = pd.read_parquet(p)
        elif suffix == ".csv":
            frame = pd.read_csv(p)
        elif suffix in (".jsonl", ".ndjson", ".json"):
            frame = pd.read_json(p, lines=suffix != ".json")
        else:
            raise InvalidRequestError(f"unsupported file type {suffix!r}; use .parquet, .csv or .jsonl", param="path")
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        if kind == "events":
            return self.log_events(records)
        if kind == "exposures":
            if experiment is None:
                raise InvalidRequestError("exposures need an experiment name", param="experiment")
            return self.log_exposures(experiment, records)
        raise InvalidRequestError(f"kind must be 'events' or 'exposures', got {kind!r}", param="kind")

    def exposure_counts(self, name: str, end: datetime | None = None) -> dict[str, int]:
        """Exposed units per variant (first exposures before ``end``, naive UTC, when given)."""
        exp = self.get(name)
        with self._lock:
            if end is None:
                rows = self._run("SELECT variant, count(*) FROM exposures WHERE experiment = ? GROUP BY variant",
                                 [name])
            else:
                rows = self._run("SELECT variant, count(*) FROM exposures WHERE experiment = ? AND ts < ? "
                                 "GROUP BY variant", [name, end])
        got = dict(rows)
        return {v.name: int(got.get(v.name, 0)) for v in exp.variants}

    def export_parquet(self, directory: str | Path, name: str | None = None) -> dict[str, Path]:
        """Write exposures (of ``name``, or all) and events to Parquet files in ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"exposures": out / "exposures.parquet", "events": out / "events.parquet"}
        with self._lock:
            where = "WHERE experiment = ?" if name else ""
            params = [name] if name else []
            if name:
                self.get(name)
            self._run(f"COPY (SELECT * FROM exposures {where} ORDER BY ts) TO '{paths['exposures']}' "
                             "(FORMAT PARQUET)", params)
            self._run(f"COPY (SELECT * FROM events ORDER BY ts) TO '{paths['events']}' (FORMAT PARQUET)")
        return paths

    # ---------------------------------------------------------------------------------------------- offline reports
    def attach_report(self, name: str, report: OfflineReport) -> OfflineReport:
        """Attach an offline evaluation (accuracy, F1, BLEU ... per variant) to an experiment."""
        exp = self.get(name)
        names = {v.name for v in exp.variants}
        unknown = sorted(set(report.metrics) - names)
        if unknown:
            raise InvalidRequestError(f"report variants {unknown} are not variants of {name!r}", param="metrics")
        rows = [(name, report.name, variant, metric, float(value), report.n, report.source)
                for variant, values in report.metrics.items() for metric, value in values.items()]
        with self._lock:
            self._run("DELETE FROM offline_reports WHERE experiment = ? AND name = ?", [name, report.name])
            for row in rows:
                self._run("INSERT INTO offline_reports VALUES (?, ?, ?, ?, ?, ?, ?, now())", list(row))
        return report

    def reports(self, name: str) -> list[OfflineReport]:
        self.get(name)
        with self._lock:
            rows = self.con.execute("SELECT name, variant, metric, value, n, source FROM offline_reports "
                                    "WHERE experiment = ? ORDER BY name, variant, metric", [name]).fetchall()
        grouped: dict[str, dict[str, Any]] = {}
        for rname, variant, metric, value, n, source in rows:
            g = grouped.setdefault(rname, {"metrics": {}, "n": n, "source": source})
            g["metrics"].setdefault(variant, {})[metric] = value
        return [OfflineReport(k, g["metrics"], g["n"], g["source"] or "") for k, g in grouped.items()]

    # --------------------------------------------------------------------------------------------------- analysis
    def analyze(self, name: str, **options: Any) -> Any:
        """Analyse an experiment (see ``aisd.experiments.analyze.analyze`` for options)."""
        from aisd.experiments.analyze import analyze

        options.setdefault("srm_threshold", self.srm_threshold)
        return analyze(self, name, **options)
