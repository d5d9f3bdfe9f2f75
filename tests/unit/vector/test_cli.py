"""aisd vector ...: create, upsert from .npy and .jsonl, search, info, list, delete, compact, advise, drop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aisd.app.cli import app


@pytest.fixture()
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AISD_HOME", str(tmp_path / "home"))
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(app, ["vector", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def test_cli_end_to_end(run, tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"g": i % 3}) for i in range(30)))
    run("create", "c", "--dim", "4", "--metric", "l2", "--index", "hnsw", "-p", "M=8", "--payload-index", "g:keyword")
    assert "30 inserted" in run("upsert", "c", str(tmp_path / "x.npy"), "--payloads", str(tmp_path / "p.jsonl"))
    rows = [{"id": "extra", "vector": [0, 0, 0, 9], "payload": {"g": 7}}]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert "31 points" in run("upsert", "c", str(tmp_path / "e.jsonl"))
    out = json.loads(run("search", "c", "--vector", json.dumps(x[4].tolist()), "--k", "3", "--filter",
                         '{"g": 1}', "--explain", "--json"))
    assert out["hits"][0]["id"] == 4 and out["plan"]["strategy"] == "exact"
    info = json.loads(run("info", "c", "--json"))
    assert info["count"] == 31 and info["params"]["M"] == 8
    assert "deleted 2" in run("delete", "c", "4", "extra")
    rep = json.loads(run("compact", "c", "--json"))
    assert rep["points_removed"] == 2 and rep["bytes_reclaimed"] > 0
    assert "c" in run("list")
    assert "dropped c" in run("drop", "c", "--yes")


def test_cli_advise(run) -> None:
    out = json.loads(run("advise", "--count", "5000000", "--dim", "768", "--memory", "2GiB", "--json"))
    assert out["kind"] == "ivfpq" and out["estimated_index_bytes"] <= 2 * 2**30
    assert "hnsw" in run("advise", "--count", "1000000", "--dim", "384")
