"""Benchmark: point-in-time join of N entity rows (default 1M) against 10 feature views, time and peak memory.

Engines, each run in its own child process so that peak memory (ru_maxrss) is that engine's alone:
  aisd    FeatureStore.get_historical_features(parquet path, refs).to_parquet(out)  (DuckDB ASOF JOIN, spills)
  pandas  pandas.merge_asof per view (dedupe ties by created, tolerance = ttl), the usual hand-written baseline
  feast   Feast's local (file) offline store, from a separate venv at bench/.cache/feast-venv when it installs
All three produce the same training set; the parent checks that aisd and pandas agree (per-column non-null counts
and sums) and prints ratios against pandas and Feast measured in the same run. Medians over --runs runs.

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
data, out, memory = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
store = FeatureStore(data / "aisd_repo", FeatureStoreConfig(offline=OfflineConfig(memory_limit=memory)))
user = Entity("user", ["user_id"], Int64)
store.apply([FeatureView(f"view{v}", [user], [Field(f"v{v}_f{f}", Float64) for f in range(FEATS)],
                         FileSource(str(data / f"view{v}.parquet"), created_timestamp_column="created"),
                         ttl=timedelta(days=TTL)) for v in range(VIEWS)])
t = time.perf_counter()
job = store.get_historical_features(str(data / "entities.parquet"), REFS)
job.to_parquet(out)
seconds = time.perf_counter() - t
con = store.offline.connect()
cols = [c for c in pq.ParquetFile(out).schema_arrow.names if "_f" in c]
row = con.execute("SELECT count(*), " + ", ".join(f'count("{c}"), sum("{c}")' for c in cols)
                  + f" FROM read_parquet('{out}')").fetchone()
check = {c: [row[1 + 2 * i], row[2 + 2 * i]] for i, c in enumerate(cols)}
print(json.dumps({"seconds": seconds, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": row[0], "check": check}))
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
data = Path(sys.argv[1])
repo = data / "feast_repo"
repo.mkdir(exist_ok=True)
(repo / "feature_store.yaml").write_text(
    "project: bench\\nregistry: " + str(repo / "registry.db") + "\\nprovider: local\\n"
    "online_store:\\n  type: sqlite\\n  path: " + str(repo / "online.db") + "\\n"
    "offline_store:\\n  type: file\\nentity_key_serialization_version: 3\\n")
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
df = store.get_historical_features(entity_df=ent, features=REFS).to_df()
df.to_parquet(data / "feast_out.parquet", index=False)
seconds = time.perf_counter() - t
check = {c: [int(df[c].notna().sum()), float(df[c].sum())] for c in df.columns if "_f" in c}
print(json.dumps({"seconds": seconds, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": len(df), "check": check}))
"""


def _prelude() -> str:
    return f"VIEWS, FEATS, TTL = {VIEWS}, {FEATS}, {TTL_DAYS}\nREFS = {refs()!r}\n"


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
    ap.add_argument("--memory-limit", default="1GB", help="aisd's DuckDB memory_limit (spills beyond it)")
    ap.add_argument("--feast-timeout", type=float, default=1800.0)
    ap.add_argument("--no-feast", action="store_true")
    args = ap.parse_args()
    entity_rows, view_rows, users = (100_000, 50_000, 10_000) if args.quick else (1_000_000, 500_000, 100_000)
    data = CACHE / f"{entity_rows}_{view_rows}"
    t = time.perf_counter()
    make_data(data, entity_rows, view_rows, users)
    print(f"data: {entity_rows:,} entity rows, {VIEWS} views x {view_rows:,} rows x {FEATS} features "
          f"({users:,} users, ttl {TTL_DAYS} d, 10% late corrections) ready in {time.perf_counter() - t:.1f} s")

    results: dict[str, list[dict]] = {"aisd": [], "pandas": [], "feast": []}
    py = sys.executable
    for i in range(args.runs):
        results["aisd"].append(run_worker(py, WORKER_AISD, [str(data), str(data / "aisd_out.parquet"),
                                                            args.memory_limit], 3600))
        results["pandas"].append(run_worker(py, WORKER_PANDAS, [str(data), str(data / "pandas_out.parquet")], 3600))
        print(f"run {i + 1}: aisd {results['aisd'][-1].get('seconds', results['aisd'][-1].get('error'))} s, "
              f"pandas {results['pandas'][-1].get('seconds', results['pandas'][-1].get('error'))} s", flush=True)
    feast_note = ""
    if args.no_feast:
        feast_note = "skipped (--no-feast)"
    elif not FEAST_PY.exists():
        feast_note = ("not installed: create it with `python3 -m venv bench/.cache/feast-venv && "
                      "bench/.cache/feast-venv/bin/pip install feast`")
    else:
        for _ in range(args.feast_runs):
            results["feast"].append(run_worker(str(FEAST_PY), WORKER_FEAST, [str(data)], args.feast_timeout))
            print(f"feast: {results['feast'][-1].get('seconds', results['feast'][-1].get('error'))}", flush=True)

    def summary(name: str) -> dict | None:
        ok = [r for r in results[name] if "error" not in r]
        if not ok:
            return None
        return {"seconds": statistics.median(r["seconds"] for r in ok),
                "maxrss_mb": statistics.median(r["maxrss_mb"] for r in ok), "runs": len(ok), "rows": ok[0]["rows"]}

    table = {n: summary(n) for n in results}
    base = table["pandas"]
    print(f"\nPIT join, {entity_rows:,} entity rows x {VIEWS} views ({VIEWS * FEATS} features); machine: "
          f"{os.cpu_count()} cores, {platform.machine()}, shared and loaded; medians")
    print(f"{'engine':<8} {'seconds':>9} {'peak RSS MB':>12} {'rows out':>10} {'speed vs pandas':>16} "
          f"{'speed vs feast':>15} runs")
    for name, s in table.items():
        if s is None:
            err = next((r["error"] for r in results[name] if "error" in r), feast_note or "no run")
            print(f"{name:<8} {'-':>9} {'-':>12} {'-':>10} {'-':>16} {'-':>15} {err}")
            continue
        vs_p = base["seconds"] / s["seconds"] if base else float("nan")
        vs_f = table["feast"]["seconds"] / s["seconds"] if table["feast"] else float("nan")
        print(f"{name:<8} {s['seconds']:>9.2f} {s['maxrss_mb']:>12.0f} {s['rows']:>10,} {vs_p:>15.2f}x "
              f"{vs_f:>14.2f}x {s['runs']}")
    ok_a = [r for r in results["aisd"] if "error" not in r]
    ok_p = [r for r in results["pandas"] if "error" not in r]
    ok_f = [r for r in results["feast"] if "error" not in r]
    checks = {"aisd_equals_pandas": bool(ok_a and ok_p and agree(ok_a[0], ok_p[0])),
              "aisd_equals_feast": bool(ok_a and ok_f and agree(ok_a[0], ok_f[0])) if ok_f else None}
    print(f"results agree: aisd = pandas merge_asof: {checks['aisd_equals_pandas']}; "
          f"aisd = feast: {checks['aisd_equals_feast']}")
    if ok_f and ok_f[0]["rows"] != entity_rows:
        print(f"note: Feast returned {ok_f[0]['rows']:,} rows for {entity_rows:,} entity rows (it drops rows), so its "
              "time is for a different, incomplete answer")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"features_pit{'_quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"entity_rows": entity_rows, "views": VIEWS, "view_rows": view_rows,
                               "features": VIEWS * FEATS, "users": users, "cores": os.cpu_count(),
                               "memory_limit": args.memory_limit, "summary": table, "checks": checks,
                               "feast_note": feast_note,
                               "raw": {k: [{x: y for x, y in r.items() if x != "check"} for r in v]
                                       for k, v in results.items()}}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
