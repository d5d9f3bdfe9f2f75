"""`aisd exp ...`: create, list, start, assign, log, simulate, analyze (table + HTML), power, stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aisd.app.cli import app


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AISD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "160")
    runner = CliRunner()

    def _run(*args: str) -> str:
        result = runner.invoke(app, ["exp", *args])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    return _run


def test_cli_end_to_end(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = run("create", "btn", "-H", "green wins", "-p", "conversion=proportion(purchase)",
              "-g", "p95=quantile(request.latency_ms,0.95);lower;margin=0.1", "--mde", "0.3")
    assert "conversion=proportion(purchase.count)" in out
    assert "btn" in run("list")
    run("start", "btn")
    out = json.loads(run("assign", "btn", "user-1", "--json"))
    assert out["variant"] in ("control", "treatment") and out["reason"] == "assigned"
    events = tmp_path / "events.jsonl"
    events.write_text('{"unit_id": "user-1", "name": "purchase"}\n{"unit_id": "user-1"}\n')
    exposures = tmp_path / "exp.csv"
    exposures.write_text(f"unit_id,variant\nuser-1,{out['variant']}\nuser-2,purple\n")
    out = run("log", "btn", "--exposures", str(exposures), "--events", str(events))
    assert "exposures: accepted 1" in out and "row 1: variant must be one of" in out
    assert "events: accepted 1" in out and "row 1: name is required" in out
    run("simulate", "btn", "--users", "1500", "--days", "3", "--effect", "0.3")
    rep = tmp_path / "offline.json"
    rep.write_text(json.dumps({"name": "squad", "metrics": {"control": {"f1": 0.4}, "treatment": {"f1": 0.5}}}))
    assert "attached offline report 'squad'" in run("attach", "btn", str(rep))
    html = tmp_path / "r.html"
    out = run("analyze", "btn", "--html", str(html))
    assert "conversion" in out and "SRM p" in out and html.read_text().count("base64,") == 2
    data = json.loads(run("analyze", "btn", "--json", "--no-html"))
    assert data["metrics"][0]["metric"] == "conversion" and data["srm"]["mismatch"] is False
    assert data["reports"][0]["metrics"]["treatment"]["f1"] == 0.5
    assert "stopped" in run("stop", "btn")
    run("export", "btn", str(tmp_path / "pq"))
    assert (tmp_path / "pq" / "events.parquet").is_file()


def test_cli_power(run) -> None:  # type: ignore[no-untyped-def]
    out = json.loads(run("power", "--sigma", "2", "--delta", "0.5", "--json"))
    assert out["n_per_arm"] == 252 and abs(out["closed_form_n"] - 251.16) < 0.01
    assert "days" in run("power", "--baseline-rate", "0.2", "--mde", "0.1", "--daily-traffic", "1000")


def test_cli_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISD_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["exp", "start", "nope"])
    assert result.exit_code != 0
    assert "not found" in str(result.exception)
