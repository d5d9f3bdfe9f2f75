"""HTTP API under /v1/experiments: lifecycle, assign, batches with per-row rejections, analysis JSON, report."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from aisd.app.server import create_app
from aisd.app.settings import Settings
from aisd.app.wiring import Services


@contextmanager
def _client(tmp_path: Path) -> Iterator[TestClient]:
    """A client without the app's lifespan: other systems' startup hooks (loading an LLM) are not needed here."""
    settings = Settings(home=tmp_path)
    services = Services(settings)
    try:
        yield TestClient(create_app(settings, services))
    finally:
        services.close()


def test_full_flow_over_http(tmp_path: Path) -> None:
    with _client(tmp_path) as c:
        r = c.post("/v1/experiments", json={"name": "prompt-v2", "hypothesis": "shorter prompt, same quality",
                                            "variants": [{"name": "v1", "config": {"prompt": "long"}},
                                                         {"name": "v2", "config": {"prompt": "short"}}],
                                            "unit": "request",
                                            "primary_metrics": ["thumbs_up=proportion(feedback.value)"],
                                            "guardrail_metrics": ["p95=quantile(llm.latency_ms, 0.95);lower;margin=0.1"]})
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "draft"
        assert c.post("/v1/experiments", json={"name": "prompt-v2"}).status_code == 409
        assert c.get("/v1/experiments").json()["data"][0]["name"] == "prompt-v2"
        r = c.post("/v1/experiments/prompt-v2/assign", json={"unit_id": "req-1"})
        assert r.json()["variant"] is None and r.json()["reason"] == "not_running"
        assert c.post("/v1/experiments/prompt-v2/start").json()["status"] == "running"
        variants = {}
        for i in range(120):
            a = c.post("/v1/experiments/prompt-v2/assign", json={"unit_id": f"req-{i}"}).json()
            variants[f"req-{i}"] = a["variant"]
        assert set(variants.values()) == {"v1", "v2"}
        again = c.post("/v1/experiments/prompt-v2/assign", json={"unit_id": "req-7", "log_exposure": False}).json()
        assert again["variant"] == variants["req-7"]
        events = []
        for uid, v in variants.items():
            events.append({"unit_id": uid, "name": "llm", "experiment": "prompt-v2", "variant": v, "model": "smollm2",
                           "latency_ms": 100.0 + (uid.__hash__() % 50), "cost_usd": 1e-4, "tokens_in": 50,
                           "tokens_out": 20})
            events.append({"unit_id": uid, "name": "feedback", "value": 1.0 if int(uid[4:]) % 3 else 0.0})
        events.append({"unit_id": "req-1", "name": "feedback", "value": "great"})
        events.append(["not", "an", "object"])
        r = c.post("/v1/experiments/events", json={"events": events})
        body = r.json()
        assert r.status_code == 200 and body["accepted"] == 240
        assert [x["reason"] for x in body["rejected"]] == ["value must be a finite number",
                                                          "must be an object, got list"]
        r = c.get("/v1/experiments/prompt-v2/analysis")
        assert r.status_code == 200
        a = r.json()
        assert a["exposures"]["v1"] + a["exposures"]["v2"] == 120
        assert {m["metric"] for m in a["metrics"]} == {"thumbs_up", "p95"}
        assert a["srm"]["mismatch"] is False
        html = c.get("/v1/experiments/prompt-v2/report")
        assert html.status_code == 200 and html.text.startswith("<!doctype html>")
        r = c.post("/v1/experiments/prompt-v2/reports", json={"name": "offline", "metrics": {"v1": {"bleu": 0.21},
                                                                                              "v2": {"bleu": 0.2}}})
        assert r.status_code == 201
        assert c.get("/v1/experiments/prompt-v2/reports").json()["data"][0]["metrics"]["v2"]["bleu"] == 0.2
        assert c.post("/v1/experiments/prompt-v2/stop").json()["status"] == "stopped"
        assert c.get("/health").json()["experiments"]["store_open"] is True


def test_exposure_batches_and_errors_over_http(tmp_path: Path) -> None:
    with _client(tmp_path) as c:
        c.post("/v1/experiments", json={"name": "x"})
        r = c.post("/v1/experiments/x/exposures", json={"exposures": [{"unit_id": "u1", "variant": "control"}]})
        assert r.status_code == 409 and r.json()["error"]["type"] == "conflict_error"
        c.post("/v1/experiments/x/start")
        r = c.post("/v1/experiments/x/exposures", json={"exposures": [
            {"unit_id": "u1", "variant": "control"}, {"unit_id": "u1", "variant": "control"},
            {"unit_id": "u2", "variant": "blue"}]})
        assert r.json() == {"accepted": 1, "duplicates": 1,
                            "rejected": [{"index": 2, "reason": "variant must be one of control, treatment"}]}
        r = c.get("/v1/experiments/missing")
        assert r.status_code == 404 and r.json()["error"]["param"] == "name"
        r = c.post("/v1/experiments", json={"name": "bad", "alpha": 2})
        assert r.status_code == 400 and "alpha" in r.json()["error"]["message"]
        r = c.post("/v1/experiments/x/assign", json={})
        assert r.status_code == 400 and r.json()["error"]["param"] == "unit_id"
        r = c.patch("/v1/experiments/x", json={"mde": 0.1})
        assert r.status_code == 409


def test_power_over_http(tmp_path: Path) -> None:
    with _client(tmp_path) as c:
        r = c.post("/v1/experiments/power", json={"baseline_rate": 0.1, "mde": 0.05, "daily_traffic": 5000})
        assert r.status_code == 200
        assert r.json()["n_per_arm"] == 56512 and r.json()["days"] == 28
        r = c.post("/v1/experiments/power", json={"sigma": 1.0})
        assert r.status_code == 400 and r.json()["error"]["param"] == "delta"
