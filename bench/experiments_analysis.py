"""Benchmark: A/B analysis over ~10M events in DuckDB, and assignment throughput.

Figures are ratios against baselines measured in the same run:
- ingest: validated batch appends (aisd ``log_events``) vs a raw DuckDB ``INSERT ... SELECT`` of the same frame;
- metric statistics: aisd's one-SQL-aggregation sufficient statistics vs the same numbers with pandas
  (merge + groupby), on the same data;
- full analysis: ``ExperimentStore.analyze`` (5 metrics, CUPED, daily series, quantiles) in absolute seconds;
- assignment: ``assign()`` per id and ``assign_many`` vs a bare ``hashlib.sha256`` loop (the floor of any salted-hash
  scheme).
Medians over ``--runs`` repetitions. Usage: ``python bench/experiments_analysis.py [--quick] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aisd.experiments import Experiment, assign
from aisd.experiments.assignment import assign_many
from aisd.experiments.metrics import unit_stats
from aisd.experiments.simulate import DEMO_METRICS, simulate
from aisd.experiments.store import ExperimentStore

RESULTS = Path(__file__).resolve().parent / "results"


def _median_time(fn, runs: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def pandas_unit_stats(con, exp: Experiment, end: datetime) -> dict[str, tuple[int, float, float]]:  # type: ignore[no-untyped-def]
    """Baseline: the revenue metric's per-variant (n, sum, sumsq) with pandas on frames pulled from the store."""
    exposures = con.execute("SELECT unit_id, variant, ts AS t0 FROM exposures WHERE experiment = ?",
                            [exp.name]).df()
    events = con.execute("SELECT unit_id, ts, value FROM events WHERE name = 'purchase' AND ts < ?", [end]).df()
    joined = events.merge(exposures, on="unit_id")
    joined = joined[joined["ts"] >= joined["t0"]]
    per_unit = joined.groupby("unit_id")["value"].sum()
    units = exposures.set_index("unit_id")
    units["y"] = per_unit.reindex(units.index).fillna(0.0)
    g = units.groupby("variant")["y"]
    return {v: (int(c), float(s), float(q)) for v, c, s, q in
            zip(g.count().index, g.count(), g.sum(), g.apply(lambda y: float((y * y).sum())), strict=True)}


def bench_assignment(n_ids: int, runs: int) -> dict[str, float]:
    exp = Experiment("bench-assign", variants=("a", "b", "c"))
    ids = [f"user-{i}" for i in range(n_ids)]

    def raw() -> int:
        return sum(hashlib.sha256(f"aisd:bench-assign:{u}".encode()).digest()[0] for u in ids)

    def one_by_one() -> int:
        return sum(assign(exp, u) is not None for u in ids)

    t_raw, _ = _median_time(raw, runs)
    t_assign, _ = _median_time(one_by_one, runs)
    t_many, _ = _median_time(lambda: assign_many(exp, ids), runs)
    return {"ids": n_ids, "sha256_per_s": n_ids / t_raw, "assign_per_s": n_ids / t_assign,
            "assign_many_per_s": n_ids / t_many, "assign_vs_sha256": t_raw / t_assign,
            "assign_many_vs_sha256": t_raw / t_many}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="~1M events instead of ~10M")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--users", type=int, default=None, help="units to simulate (about 14 events each)")
    args = ap.parse_args()
    users = args.users or (70_000 if args.quick else 700_000)
    runs = max(1, args.runs)
    tmp = Path(tempfile.mkdtemp(prefix="aisd-bench-exp-"))
    store = ExperimentStore(tmp / "bench.duckdb")
    store.create(Experiment("bench", **DEMO_METRICS))
    store.start("bench")

    t = time.perf_counter()
    sim = simulate(store, "bench", users=users, days=14, effect=0.05, seed=1, batch_units=100_000)
    t_sim = time.perf_counter() - t
    n_events = int(store.con.execute("SELECT count(*) FROM events").fetchall()[0][0])

    # ingest: validated append vs raw INSERT of the same 1M-row frame
    frame = store.con.execute("SELECT * FROM events LIMIT 1000000").df()
    frame = frame.drop(columns=[c for c in frame.columns if frame[c].isna().all()])

    scratch = ExperimentStore(tmp / "scratch.duckdb")
    t_valid, _ = _median_time(lambda: scratch.log_events(frame).accepted, runs)
    scratch.close()
    raw_store = ExperimentStore(tmp / "raw.duckdb")
    raw_store.con  # noqa: B018 - open and create the schema

    def raw_ins() -> int:
        cols = list(raw_store.con.execute("SELECT * FROM events LIMIT 0").df().columns)
        raw_store.con.register("_f", frame.reindex(columns=cols))
        raw_store.con.execute("INSERT INTO events SELECT * FROM _f").fetchall()
        raw_store.con.unregister("_f")
        return len(frame)

    t_raw, _ = _median_time(raw_ins, runs)
    raw_store.close()

    exp = store.get("bench")
    end = datetime.now(UTC).replace(tzinfo=None)
    revenue = exp.secondary_metrics[0]
    t_sql, ours = _median_time(lambda: unit_stats(store.con, exp, revenue, end), runs)
    t_pd, base = _median_time(lambda: pandas_unit_stats(store.con, exp, end), runs)
    for v, (n, s, q) in base.items():  # same numbers both ways
        assert ours[v].n == n and abs(ours[v].sum_y - s) <= 1e-6 * max(1, abs(s)), (v, ours[v], (n, s, q))
    t_full, result = _median_time(lambda: store.analyze("bench"), runs)
    t_noseries, _ = _median_time(lambda: store.analyze("bench", timeseries=False), runs)
    assign_res = bench_assignment(20_000 if args.quick else 200_000, runs)

    machine = {"cores": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
               "load_avg": os.getloadavg()[0]}
    out = {
        "machine": machine, "users": users, "exposures": sim.exposures, "events": n_events, "runs": runs,
        "simulate_s": t_sim,
        "ingest": {"rows": len(frame), "validated_s": t_valid, "raw_insert_s": t_raw,
                   "validated_rows_per_s": len(frame) / t_valid, "raw_rows_per_s": len(frame) / t_raw,
                   "validated_vs_raw": t_raw / t_valid},
        "metric_stats": {"duckdb_sql_s": t_sql, "pandas_s": t_pd, "speedup_vs_pandas": t_pd / t_sql},
        "analyze": {"full_s": t_full, "without_timeseries_s": t_noseries, "metrics": len(result.metrics),
                    "days": len({p.day for p in result.timeseries})},
        "assignment": assign_res,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"experiments_analysis{'_quick' if args.quick else ''}.json"
    path.write_text(json.dumps(out, indent=2))
    rows = [
        ("events in store", f"{n_events:,}", f"{sim.exposures:,} exposed units"),
        ("ingest 1M rows, validated", f"{len(frame) / t_valid:,.0f} rows/s",
         f"{t_raw / t_valid:.2f}x of raw INSERT ({len(frame) / t_raw:,.0f} rows/s)"),
        ("metric stats (revenue), SQL", f"{t_sql:.2f} s", f"{t_pd / t_sql:.1f}x faster than pandas ({t_pd:.2f} s)"),
        ("full analysis (5 metrics + daily)", f"{t_full:.2f} s", f"{t_noseries:.2f} s without daily series"),
        ("assign() per id", f"{assign_res['assign_per_s']:,.0f} ids/s",
         f"{assign_res['assign_vs_sha256']:.2f}x of bare sha256 ({assign_res['sha256_per_s']:,.0f}/s)"),
        ("assign_many", f"{assign_res['assign_many_per_s']:,.0f} ids/s",
         f"{assign_res['assign_many_vs_sha256']:.2f}x of bare sha256"),
    ]
    print(f"machine: {machine}; medians of {runs} runs")
    w = max(len(r[0]) for r in rows)
    for name, value, ratio in rows:
        print(f"{name:<{w}}  {value:>18}  {ratio}")
    print(f"wrote {path}")
    store.close()


if __name__ == "__main__":
    main()
