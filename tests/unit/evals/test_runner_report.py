"""Grid runner (latency percentiles, chunk->doc dedupe, missing queries score 0) and the table / JSON report."""

from __future__ import annotations

import json

import pytest

from aisd.evals.beir import BeirDataset, BeirDoc
from aisd.evals.report import format_table, to_json, write_json
from aisd.evals.runner import dedupe, percentile, run_grid

DS = BeirDataset("toy", {d: BeirDoc(d, "", d) for d in ("d1", "d2", "d3")},
                 {"q1": "one", "q2": "two"}, {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}}, "test")


def test_run_grid_scores_and_report(tmp_path) -> None:
    seen = []

    def perfect():
        return lambda q, k: {"one": ["d1", "d1", "d2"], "two": ["d3", "d2"]}[q]

    def empty():
        return lambda q, k: []

    results = run_grid({"perfect": perfect, "empty": empty}, DS, k_values=(1, 10), on_result=seen.append)
    assert [r.config for r in seen] == ["perfect", "empty"]
    p, e = results
    assert p.metrics["ndcg@10"] == pytest.approx(1.0) and p.metrics["mrr@10"] == 1.0
    assert p.metrics["precision@1"] == 1.0 and p.metrics["recall@1"] == pytest.approx(0.75)
    assert e.metrics["ndcg@10"] == 0.0 and e.num_queries == 2
    assert p.latency_ms_p50 >= 0 and p.latency_ms_p99 >= p.latency_ms_p50
    table = format_table(results, k=10, title="toy")
    assert "perfect" in table and "ndcg@10" in table and "latency_ms_p99" in table
    doc = to_json(results, dataset="toy")
    row = doc["results"][0]
    assert row["config"] == "perfect" and {"ndcg@10", "recall@10", "mrr@10", "latency_ms_p50"} <= set(row)
    out = write_json(tmp_path / "r.json", results, dataset="toy")
    assert json.loads(out.read_text())["meta"]["dataset"] == "toy"


def test_helpers() -> None:
    assert dedupe(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 99) == 0.0
    with pytest.raises(ValueError):
        run_grid({}, DS)
