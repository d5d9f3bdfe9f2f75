"""Benchmark: point-in-time join of N entity rows (default 1M) against 10 feature views, time and peak memory.

Engines, each run in its own child process so that peak memory (ru_maxrss) is that engine's alone:
  aisd          FeatureStore.get_historical_features(parquet path, refs).to_parquet(out), default engine choice:
                in-memory NumPy as-of matching over Arrow columns while the result fits in half the memory limit
  aisd-sql      the same, forced through the single DuckDB query (ASOF JOINs; spills to disk, any size)
  pandas        pandas.merge_asof per view (dedupe ties by created, tolerance = ttl), the usual hand-written baseline
  feast-file    Feast's default local offline store (``type: file``, Dask), from a separate venv at
                bench/.cache/feast-venv when it installs
  feast-duckdb  Feast's DuckDB offline store (``type: duckdb``, through ibis; needs ``feast[duckdb]`` in that venv)
The parent checks that every engine's answer equals aisd's (per-column non-null counts and sums over all rows) and
prints ratios against pandas and both Feast stores, measured in the same run. Medians over --runs runs.

Why feast-file returns fewer rows (about 48k of 1M here): its ``get_historical_features`` left-merges the entity rows
with every feature row of the same key, then ``_filter_ttl`` keeps only candidates inside [t - ttl, t] or with no
match at all. An entity row whose key has feature rows, none of them fresh, loses all its candidates and so
disappears from the result, for every view. Only rows where each of the 10 views has a fresh row or no row for that
user survive. The bench predicts that count from aisd's answer and checks that Feast's surviving rows carry the same
values as aisd's; no setting (ttl, dtypes, time zones) makes that store return the other rows with ttl set.

    python bench/features_pit.py            # 1M entity rows, 10 views x 500k rows
    python bench/features_pit.py --quick    # 100k entity rows, 10 views x 50k rows
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache" / "features_pit"
RESULTS = ROOT / "bench" / "results"
FEAST_PY = ROOT / "bench" / ".cache" / "feast-venv" / "bin" / "python"
VIEWS, FEATS, TTL_DAYS, SPAN_DAYS = 10, 4, 7, 60


def make_data(folder: Path, entity_rows: int, view_rows: int, users: int) -> None:
    import numpy as np
    import pandas as pd

    if (folder / "entities.parquet").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    span = SPAN_DAYS * 86400
    for v in range(VIEWS):
        secs = rng.integers(0, span, view_rows)
        df = pd.DataFrame({"user_id": rng.integers(0, users, view_rows).astype("int64"),
                           "event_timestamp": t0 + pd.to_timedelta(secs, unit="s")})
        # 10% of rows are late corrections: created well after the event time (ties broken by created).
        delay = np.where(rng.random(view_rows) < 0.1, rng.integers(3600, 86400, view_rows), 60)
        # + a unique microsecond offset: no two rows share (user, event, created), so the answer is unique
        df["created"] = (df["event_timestamp"] + pd.to_timedelta(delay, unit="s")
                         + pd.to_timedelta(np.arange(view_rows), unit="us"))
        for f in range(FEATS):
            df[f"v{v}_f{f}"] = rng.random(view_rows)
        df.to_parquet(folder / f"view{v}.parquet", index=False)
    ent = pd.DataFrame({"user_id": rng.integers(0, int(users * 1.05), entity_rows).astype("int64"),
                        "event_timestamp": t0 + pd.to_timedelta(rng.integers(0, span + 86400 * 3, entity_rows),
                                                                unit="s")})
    ent.to_parquet(folder / "entities.parquet", index=False)


def refs() -> list[str]:
    return [f"view{v}:v{v}_f{f}" for v in range(VIEWS) for f in range(FEATS)]


WORKER_AISD = """
import json, resource, sys, time
from datetime import timedelta
from pathlib import Path
import pyarrow.parquet as pq
from aisd.features import Entity, FeatureStore, FeatureStoreConfig, FeatureView, Field, FileSource, Float64, Int64
from aisd.features import OfflineConfig
data, out, memory, engine = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
store = FeatureStore(data / "aisd_repo", FeatureStoreConfig(offline=OfflineConfig(memory_limit=memory,
                                                                                  pit_engine=engine)))
user = Entity("user", ["user_id"], Int64)
store.apply([FeatureView(f"view{v}", [user], [Field(f"v{v}_f{f}", Float64) for f in range(FEATS)],
                         FileSource(str(data / f"view{v}.parquet"), created_timestamp_column="created"),
                         ttl=timedelta(days=TTL)) for v in range(VIEWS)])
t = time.perf_counter()
job = store.get_historical_features(str(data / "entities.parquet"), REFS, exclude_late=LATE)
job.to_parquet(out)
seconds = time.perf_counter() - t
con = store.offline.connect()
cols = [c for c in pq.ParquetFile(out).schema_arrow.names if "_f" in c]
row = con.execute("SELECT count(*), " + ", ".join(f'count("{c}"), sum("{c}")' for c in cols)
                  + f" FROM read_parquet('{out}')").fetchone()
check = {c: [row[1 + 2 * i], row[2 + 2 * i]] for i, c in enumerate(cols)}
print(json.dumps({"seconds": seconds, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": row[0], "check": check, "engine": job.engine()}))
"""

WORKER_PANDAS = """
import json, resource, sys, time
from pathlib import Path
import pandas as pd
data, out = Path(sys.argv[1]), Path(sys.argv[2])
t = time.perf_counter()
ent = pd.read_parquet(data / "entities.parquet")
ent["__row"] = range(len(ent))
ent = ent.sort_values("event_timestamp", kind="stable")
for v in range(VIEWS):
    fv = pd.read_parquet(data / f"view{v}.parquet")
    fv = fv.sort_values(["event_timestamp", "created"]).drop_duplicates(["user_id", "event_timestamp"], keep="last")
    fv = fv.drop(columns=["created"]).rename(columns={"event_timestamp": "__ts"})
    ent = pd.merge_asof(ent, fv, left_on="event_timestamp", right_on="__ts", by="user_id", direction="backward",
                        tolerance=pd.Timedelta(days=TTL), allow_exact_matches=True).drop(columns=["__ts"])
ent = ent.sort_values("__row").drop(columns=["__row"])
ent.to_parquet(out, index=False)
seconds = time.perf_counter() - t
check = {c: [int(ent[c].notna().sum()), float(ent[c].sum())] for c in ent.columns if "_f" in c}
print(json.dumps({"seconds": seconds, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": len(ent), "check": check}))
"""

WORKER_FEAST = """
import json, resource, sys, time, warnings
from datetime import timedelta
from pathlib import Path
warnings.filterwarnings("ignore")
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float64, Int64
data, kind = Path(sys.argv[1]), sys.argv[2]  # kind: Feast's offline store type, file (Dask) or duckdb (ibis)
repo = data / f"feast_repo_{kind}"
repo.mkdir(exist_ok=True)
(repo / "feature_store.yaml").write_text(
    "project: bench\\nregistry: " + str(repo / "registry.db") + "\\nprovider: local\\n"
    "online_store:\\n  type: sqlite\\n  path: " + str(repo / "online.db") + "\\n"
    "offline_store:\\n  type: " + kind + "\\nentity_key_serialization_version: 3\\n")
store = FeatureStore(repo_path=str(repo))
user = Entity(name="user", join_keys=["user_id"])
views = [FeatureView(name=f"view{v}", entities=[user], ttl=timedelta(days=TTL),
                     schema=[Field(name="user_id", dtype=Int64)] +
                            [Field(name=f"v{v}_f{f}", dtype=Float64) for f in range(FEATS)],
                     source=FileSource(path=str(data / f"view{v}.parquet"), timestamp_field="event_timestamp",
                                       created_timestamp_column="created")) for v in range(VIEWS)]
store.apply([user, *views])
t = time.perf_counter()
ent = pd.read_parquet(data / "entities.parquet")
df = store.get_historical_features(entity_df=ent, features=REFS,
                                   **({"filter_by_created_timestamp": True} if LATE else {})).to_df()
df.to_parquet(data / f"feast_{kind}_out.parquet", index=False)
seconds = time.perf_counter() - t
check = {c: [int(df[c].notna().sum()), float(df[c].sum())] for c in df.columns if "_f" in c}
print(json.dumps({"seconds": seconds, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": len(df), "check": check}))
"""


LATE = False  # --exclude-late: rows created after the entity row's time are invisible (Feast: filter_by_created_timestamp)


def _prelude() -> str:
    return f"VIEWS, FEATS, TTL, LATE = {VIEWS}, {FEATS}, {TTL_DAYS}, {LATE}\nREFS = {refs()!r}\n"


def run_worker(python: str, code: str, args: list[str], timeout: float) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    t = time.perf_counter()
    try:
        proc = subprocess.run([python, "-c", _prelude() + textwrap.dedent(code), *args], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t
    return out


def agree(a: dict, b: dict) -> bool:
    if set(a["check"]) != set(b["check"]):
        return False
    return all(a["check"][c][0] == b["check"][c][0] and abs(a["check"][c][1] - b["check"][c][1])
               <= 1e-6 * max(1.0, abs(b["check"][c][1])) for c in a["check"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k entity rows, 10 x 50k feature rows")
    ap.add_argument("--runs", type=int, default=3, help="runs per engine (median reported)")
    ap.add_argument("--feast-runs", type=int, default=1, help="runs for Feast (slow)")
    ap.add_argument("--memory-limit", default="2GB",
                    help="aisd's memory_limit (its default; the SQL engine spills beyond it, auto picks the memory engine "
                         "while its working state fits in half)")
    ap.add_argument("--feast-timeout", type=float, default=1800.0)
    ap.add_argument("--no-feast", action="store_true")
    ap.add_argument("--exclude-late", action="store_true",
                    help="hide rows created after each entity row's time (aisd exclude_late=True, Feast "
                         "filter_by_created_timestamp=True; pandas merge_asof cannot express it and is skipped)")
    args = ap.parse_args()
    global LATE
    LATE = args.exclude_late
    entity_rows, view_rows, users = (100_000, 50_000, 10_000) if args.quick else (1_000_000, 500_000, 100_000)
    data = CACHE / f"{entity_rows}_{view_rows}"
    t = time.perf_counter()
    make_data(data, entity_rows, view_rows, users)
    print(f"data: {entity_rows:,} entity rows, {VIEWS} views x {view_rows:,} rows x {FEATS} features "
          f"({users:,} users, ttl {TTL_DAYS} d, 10% late corrections) ready in {time.perf_counter() - t:.1f} s")

    results: dict[str, list[dict]] = {"aisd": [], "aisd-sql": [], "pandas": [], "feast-file": [], "feast-duckdb": []}
    py = sys.executable
    for i in range(args.runs):
        # aisd: the default engine choice ("auto": in-memory NumPy matching while the result fits in half the
        # memory limit); aisd-sql: the same join forced through the single spilling DuckDB query.
        results["aisd"].append(run_worker(py, WORKER_AISD, [str(data), str(data / "aisd_out.parquet"),
                                                            args.memory_limit, "auto"], 3600))
        results["aisd-sql"].append(run_worker(py, WORKER_AISD, [str(data), str(data / "aisd_sql_out.parquet"),
                                                                args.memory_limit, "duckdb"], 3600))
        if not LATE:
            results["pandas"].append(run_worker(py, WORKER_PANDAS, [str(data), str(data / "pandas_out.parquet")],
                                                3600))
        done = {n: r[-1].get("seconds", r[-1].get("error")) for n, r in results.items() if r}
        print(f"run {i + 1}: " + ", ".join(f"{n} {v} s" for n, v in done.items()), flush=True)
    feast_note = ""
    if args.no_feast:
        feast_note = "skipped (--no-feast)"
    elif not FEAST_PY.exists():
        feast_note = ("not installed: create it with `python3 -m venv bench/.cache/feast-venv && "
                      "bench/.cache/feast-venv/bin/pip install 'feast[duckdb]'`")
    else:
        # With --exclude-late only the DuckDB store: the file store's ttl filter drops rows as above either way.
        for kind in ("duckdb",) if LATE else ("duckdb", "file"):
            for _ in range(args.feast_runs):
                results[f"feast-{kind}"].append(run_worker(str(FEAST_PY), WORKER_FEAST, [str(data), kind],
                                                           args.feast_timeout))
                r = results[f"feast-{kind}"][-1]
                print(f"feast-{kind}: {r.get('seconds', r.get('error'))}", flush=True)

    def summary(name: str) -> dict | None:
        ok = [r for r in results[name] if "error" not in r]
        if not ok:
            return None
        return {"seconds": statistics.median(r["seconds"] for r in ok),
                "maxrss_mb": statistics.median(r["maxrss_mb"] for r in ok), "runs": len(ok), "rows": ok[0]["rows"]}

    table = {n: summary(n) for n in results}
    print(f"\nPIT join{' with exclude_late' if LATE else ''}, {entity_rows:,} entity rows x {VIEWS} views x {view_rows:,} rows ({VIEWS * FEATS} features, "
          f"{users:,} users); aisd memory_limit {args.memory_limit}; machine: {os.cpu_count()} cores, "
          f"{platform.machine()}, shared (load average {os.getloadavg()[0]:.1f} at the end); medians")
    bases = [n for n in ("aisd-sql", "pandas", "feast-file", "feast-duckdb") if table[n]]
    print(f"{'engine':<13} {'seconds':>9} {'peak RSS MB':>12} {'rows out':>10} "
          + " ".join(f"{'aisd speedup vs ' + b:>{max(22, len(b) + 17)}}" for b in bases) + " runs")
    for name, s in table.items():
        if s is None:
            err = next((r["error"] for r in results[name] if "error" in r), feast_note or "no run")
            print(f"{name:<13} {'-':>9} {'-':>12} {'-':>10}  {err}")
            continue
        ratios = " ".join(f"{table[b]['seconds'] / table['aisd']['seconds'] if table['aisd'] else float('nan'):>{max(21, len(b) + 16)}.2f}x"
                          if name == "aisd" else f"{'':>{max(22, len(b) + 17)}}" for b in bases)
        print(f"{name:<13} {s['seconds']:>9.2f} {s['maxrss_mb']:>12.0f} {s['rows']:>10,} {ratios} {s['runs']}")
    first = {n: next((r for r in v if "error" not in r), None) for n, v in results.items()}
    checks: dict[str, object] = {
        f"aisd_equals_{n.replace('-', '_')}": (bool(first["aisd"] and agree(first["aisd"], first[n]))
                                               if first[n] else None)
        for n in ("aisd-sql", "pandas", "feast-duckdb", "feast-file")}
    if first["aisd"] and first["feast-file"]:
        checks.update(feast_file_subset(data, entity_rows))
    print("results agree with aisd (non-null counts and sums per column): "
          + ", ".join(f"{k.removeprefix('aisd_equals_')}: {checks[k]}" for k in list(checks)[:4]))
    if "feast_file_rows" in checks:
        print(f"feast-file returned {checks['feast_file_rows']:,} of {entity_rows:,} rows; predicted from aisd's answer "
              f"(rows where every view has a fresh value or no row for that user): {checks['feast_file_predicted']:,}; "
              f"its rows equal to aisd's: {checks['feast_file_rows_equal']:,} -> the missing rows are dropped by its "
              "ttl filter, not a setup difference (see this script's docstring)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"features_pit{'_late' if LATE else ''}{'_quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"entity_rows": entity_rows, "views": VIEWS, "view_rows": view_rows,
                               "features": VIEWS * FEATS, "users": users, "cores": os.cpu_count(), "loadavg": os.getloadavg(),
                               "memory_limit": args.memory_limit, "exclude_late": LATE, "summary": table, "checks": checks,
                               "feast_note": feast_note,
                               "raw": {k: [{x: y for x, y in r.items() if x != "check"} for r in v]
                                       for k, v in results.items()}}, indent=2))
    print(f"wrote {out}")


def feast_file_subset(data: Path, entity_rows: int) -> dict[str, int]:
    """How many rows Feast's file store should keep (each view fresh or absent for the user), and how many of the
    rows it kept equal aisd's answer for the same (user, time)."""
    import duckdb

    con = duckdb.connect()
    aisd, feast = lit_path(data / "aisd_out.parquet"), lit_path(data / "feast_file_out.parquet")
    alive = " AND ".join(f"(a.v{v}_f0 IS NOT NULL OR a.user_id NOT IN (SELECT user_id FROM "
                         f"{lit_path(data / f'view{v}.parquet')}))" for v in range(VIEWS))
    predicted = con.execute(f"SELECT count(*) FROM {aisd} a WHERE {alive}").fetchone()[0]
    same = " AND ".join(f"f.v{v}_f{f} IS NOT DISTINCT FROM a.v{v}_f{f}" for v in range(VIEWS) for f in range(FEATS))
    rows, equal = con.execute(f"SELECT count(*), count(*) FILTER (WHERE {same}) FROM {feast} f JOIN "
                              f"(SELECT DISTINCT * FROM {aisd}) a USING (user_id, event_timestamp)").fetchone()
    return {"feast_file_rows": int(rows), "feast_file_predicted": int(predicted), "feast_file_rows_equal": int(equal)}


def lit_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


if __name__ == "__main__":
    main()
