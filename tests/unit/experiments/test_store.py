"""ExperimentStore: durable lifecycle, layers, exposure dedup, event batches with per-row rejections, Parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from aisd.core.errors import ConflictError, InvalidRequestError, NotFoundError
from aisd.experiments import Experiment, MetricSpec, assign
from aisd.experiments.offline import OfflineReport
from aisd.experiments.store import ExperimentStore


def test_lifecycle_is_durable(tmp_path: Path) -> None:
    path = tmp_path / "e.duckdb"
    with ExperimentStore(path) as s:
        exp = s.create({"name": "btn", "hypothesis": "green converts better",
                        "primary_metrics": ["conversion=proportion(purchase)"], "mde": 0.02})
        assert exp.status == "draft" and exp.created_at
        with pytest.raises(ConflictError):
            s.create(Experiment("btn"))
        with pytest.raises(ConflictError, match="only a running"):
            s.stop("btn")
        s.start("btn")
        with pytest.raises(ConflictError, match="only drafts"):
            s.update("btn", mde=0.1)
    with ExperimentStore(path) as s:  # reopened: state survived
        got = s.get("btn")
        assert got.status == "running" and got.started_at and got.primary_metrics[0].kind == "proportion"
        assert [e.name for e in s.list(status="running")] == ["btn"]
        s.stop("btn")
        assert s.get("btn").status == "stopped"
        with pytest.raises(ConflictError):
            s.start("btn")
        with pytest.raises(NotFoundError):
            s.get("nope")


def test_invalid_definitions_are_400_with_the_field(store: ExperimentStore) -> None:
    with pytest.raises(InvalidRequestError, match="unit must be one of"):
        store.create({"name": "x", "unit": "device"})
    with pytest.raises(InvalidRequestError, match="unknown experiment field"):
        store.create({"name": "x", "variantz": []})
    with pytest.raises(InvalidRequestError, match="kind must be one of"):
        store.create({"name": "x", "primary_metrics": [{"name": "m", "kind": "median"}]})


def test_update_a_draft(store: ExperimentStore) -> None:
    store.create(Experiment("d"))
    assert store.update("d", traffic=0.5, variants=["a", "b", "c"]).traffic == 0.5
    assert [v.name for v in store.get("d").variants] == ["a", "b", "c"]


def test_layer_slices_are_allocated_and_overlaps_refused(store: ExperimentStore) -> None:
    a = store.create(Experiment("a", layer="home", traffic=0.4))
    b = store.create(Experiment("b", layer="home", traffic=0.5))
    assert a.layer_range == (0.0, 0.4) and b.layer_range == pytest.approx((0.4, 0.9))
    with pytest.raises(ConflictError, match="no free slice"):
        store.create(Experiment("c", layer="home", traffic=0.2))
    with pytest.raises(ConflictError, match="overlaps"):
        store.create(Experiment("d", layer="home", layer_range=(0.85, 0.95)))
    store.create(Experiment("e", layer="home", layer_range=(0.9, 1.0)))
    ids = [f"u{i}" for i in range(3000)]
    ea, eb = store.get("a"), store.get("b")
    both = [u for u in ids if assign(ea, u) and assign(eb, u)]
    assert both == []


def test_assign_through_the_store_logs_first_exposure_once(store: ExperimentStore) -> None:
    store.create(Experiment("x"))
    assert store.assign("x", "u1").reason == "not_running"
    store.start("x")
    first = store.assign("x", "u1", log_exposure=True, ts="2026-01-02T00:00:00Z")
    again = store.assign("x", "u1", log_exposure=True, ts="2026-01-01T00:00:00Z")
    assert first.variant == again.variant == assign(store.get("x"), "u1")
    assert sum(store.exposure_counts("x").values()) == 1
    ts = store.con.execute("SELECT ts FROM exposures").fetchall()[0][0]
    assert ts.isoformat() == "2026-01-01T00:00:00"  # the earliest exposure time is kept


def test_exposure_batches_dedupe_and_reject_with_reasons(store: ExperimentStore) -> None:
    store.create(Experiment("x"))
    with pytest.raises(ConflictError, match="draft"):
        store.log_exposures("x", [{"unit_id": "u1", "variant": "control"}])
    store.start("x")
    rows = [{"unit_id": "u1", "variant": "control", "ts": "2026-01-01T10:00:00Z"},
            {"unit_id": "u2", "variant": "nope"},
            {"unit_id": "u1", "variant": "treatment", "ts": "2026-01-01T09:00:00Z"},
            "not an object",
            {"variant": "control"},
            {"unit_id": "u3", "variant": "treatment", "ts": "yesterday-ish"},
            {"unit_id": "u4", "variant": "treatment", "attributes": {"country": "US"}, "ts": 1767225600}]
    r = store.log_exposures("x", rows)
    assert r.accepted == 2 and r.duplicates == 1
    assert {x.index: x.reason for x in r.rejected} == {
        1: "variant must be one of control, treatment", 3: "must be an object, got str",
        4: "unit_id is required", 5: "ts must be an ISO-8601 time or epoch seconds"}
    r2 = store.log_exposures("x", [{"unit_id": "u1", "variant": "control"}])
    assert r2.accepted == 0 and r2.duplicates == 1
    got = dict(store.con.execute("SELECT unit_id, variant FROM exposures").fetchall())
    assert got == {"u1": "control", "u4": "treatment"}  # first variant wins


def test_event_batches_keep_valid_rows_and_explain_rejections(store: ExperimentStore) -> None:
    store.create(Experiment("gw", variants=["small", "large"]))
    rows = [
        {"unit_id": "u1", "name": "purchase", "value": 12.5, "ts": "2026-01-01T00:00:00Z"},
        {"unit_id": "u1", "name": "request", "experiment": "gw", "variant": "large", "model": "qwen-1.5b",
         "latency_ms": 812.0, "cost_usd": 0.0004, "tokens_in": 120, "tokens_out": 80, "error": None,
         "request_id": "r1", "properties": {"route": "chat"}},
        {"unit_id": "u2", "name": "request", "latency_ms": -5},
        {"unit_id": "u2", "name": "purchase", "value": "lots"},
        {"name": "click"},
        {"unit_id": "u3", "name": "click", "colour": "red"},
        {"unit_id": "u3", "name": "request", "experiment": "gw", "variant": "medium"},
        {"unit_id": "u3", "name": "request", "experiment": "ghost"},
        {"unit_id": "u3", "name": "click", "value": float("nan")},
        {"unit_id": "u3", "name": "request", "tokens_in": 1.5},
        {"unit_id": 7, "name": "click"},
    ]
    r = store.log_events(rows)
    reasons = {x.index: x.reason for x in r.rejected}
    assert r.accepted == 3
    assert reasons[2] == "latency_ms must be >= 0"
    assert reasons[3] == "value must be a finite number"
    assert reasons[4] == "unit_id is required"
    assert reasons[5].startswith("unknown field(s) ['colour']")
    assert reasons[6] == "variant is not one of the experiment's variants"
    assert reasons[7] == "unknown experiment"
    assert reasons[8] == "value must be a finite number"
    assert reasons[9] == "tokens_in must be an integer"
    stored = store.con.execute("SELECT unit_id, name, value, model, tokens_in, properties FROM events "
                               "ORDER BY unit_id, name").fetchall()
    assert stored[0][:5] == ("7", "click", 1.0, None, None)
    assert stored[2][3:] == ("qwen-1.5b", 120, '{"route": "chat"}')


def test_bulk_frames_are_validated_too(store: ExperimentStore) -> None:
    frame = pd.DataFrame({"unit_id": ["a", "b", None], "name": ["x", "x", "x"], "value": [1.0, float("inf"), 2.0],
                          "ts": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"])})
    r = store.log_events(frame)
    assert r.accepted == 1 and [x.index for x in r.rejected] == [1, 2]


def test_parquet_export_and_file_import(store: ExperimentStore, tmp_path: Path) -> None:
    store.create(Experiment("x"))
    store.start("x")
    store.log_exposures("x", [{"unit_id": f"u{i}", "variant": "control"} for i in range(5)])
    store.log_events([{"unit_id": "u1", "name": "click"}, {"unit_id": "u2", "name": "click", "value": 3}])
    paths = store.export_parquet(tmp_path / "out", "x")
    assert len(pd.read_parquet(paths["exposures"])) == 5
    events = pd.read_parquet(paths["events"])
    assert list(events.columns)[:4] == ["ts", "unit_id", "name", "value"] and len(events) == 2
    # round trip: a fresh store loads the exported files
    other = ExperimentStore(tmp_path / "other.duckdb")
    other.create(Experiment("x"))
    other.start("x")
    assert other.load_file(paths["events"], "events").accepted == 2
    assert other.load_file(paths["exposures"], "exposures", "x").accepted == 5
    csv = tmp_path / "ev.csv"
    csv.write_text("unit_id,name,value\nu1,click,1\nu2,,2\n")
    r = other.load_file(csv, "events")
    assert r.accepted == 1 and r.rejected[0].reason == "name is required"
    other.close()


def test_offline_reports_attach(store: ExperimentStore) -> None:
    store.create(Experiment("m", variants=["small", "large"]))
    store.attach_report("m", OfflineReport("squad-dev", {"small": {"f1": 0.41, "exact": 0.3},
                                                         "large": {"f1": 0.55, "exact": 0.44}}, n=500, source="eval"))
    [rep] = store.reports("m")
    assert rep.metrics["large"]["f1"] == 0.55 and rep.n == 500
    with pytest.raises(InvalidRequestError, match="not variants"):
        store.attach_report("m", OfflineReport("x", {"medium": {"f1": 0.5}}))
    store.delete("m")
    with pytest.raises(NotFoundError):
        store.reports("m")


def test_metric_spec_parsing() -> None:
    m = MetricSpec.parse("latency_p99=quantile(request.latency_ms, 0.99);lower;margin=0.1")
    assert (m.kind, m.event, m.column, m.quantile, m.higher_is_better, m.margin) == (
        "quantile", "request", "latency_ms", 0.99, False, 0.1)
    r = MetricSpec.parse("ctr=ratio(click/session)")
    assert (r.event, r.column, r.denominator, r.denominator_column) == ("click", "count", "session", "count")
    assert MetricSpec.parse("revenue=mean(purchase.value)").column == "value"
    with pytest.raises(ValueError, match="cannot parse"):
        MetricSpec.parse("revenue")
    with pytest.raises(ValueError, match="column must be one of"):
        MetricSpec.parse("x=mean(purchase.price)")


def test_a_second_writer_process_gets_a_clear_503(store: ExperimentStore) -> None:
    import subprocess
    import sys

    store.con  # noqa: B018 - this process now holds the file's write lock
    code = ("from aisd.experiments.store import ExperimentStore\n"
            f"try:\n    ExperimentStore({str(store.path)!r}).con\n"
            "except Exception as e:\n    print(type(e).__name__, e.status_code, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ServiceUnavailableError 503") and "locked by another process" in out
