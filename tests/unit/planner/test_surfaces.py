"""The CLI (``aisd plan ...``) and the HTTP routes (``/v1/plan/...``) over the same planner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aisd.app.commands.planner import app as plan_app

runner = CliRunner()


def _json(args: list[str]) -> dict:
    result = runner.invoke(plan_app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_cli_kv_json_public_contract() -> None:
    out = _json(["kv", "--model", "llama-3-8b", "--json"])
    assert out["kv_bytes_per_token"] == 131_072
    assert out["hidden_formula_bytes_per_token"] == 524_288 and out["overstatement"] == 4.0


def test_root_cli_routes_plan_kv() -> None:
    from aisd.app.cli import app as root

    result = runner.invoke(root, ["plan", "kv", "--model", "llama-2-7b", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["kv_bytes_per_token"] == 524_288


@pytest.mark.parametrize("args", [
    ["models"], ["hardware"], ["prices"],
    ["memory", "-m", "llama-3-70b", "--gpu", "h100-80", "--tp", "4", "--context", "8192"],
    ["kv", "-m", "llama-3-70b", "--gpu", "a100-80", "--tp", "2"],
    ["gpus", "-m", "llama-3-70b", "--context", "8192", "--concurrency", "16"],
    ["gpus", "-m", "llama-3-8b", "--gpu", "l4", "--target-tokens-per-s", "3000"],
    ["latency", "-m", "llama-3-8b", "--gpu", "h100-80"],
    ["cost", "-m", "llama-3-8b", "--gpu", "h100-80", "--api", "gpt-4o-mini", "--queries-per-month", "1000000"],
])
def test_cli_tables_render(args: list[str]) -> None:
    result = runner.invoke(plan_app, args)
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) > 3


def test_cli_json_outputs_and_measured_file(tmp_path: Path) -> None:
    mem = _json(["memory", "-m", "llama-3-70b", "--json"])
    assert 140e9 < mem["weights_by_precision"]["fp16"]["bytes"] < 142e9
    path = tmp_path / "engine_bench.json"
    path.write_text(json.dumps({"ttft_ms_median": 50.0, "tpot_ms_median": 20.0}))
    lat = _json(["latency", "-m", "smollm2-135m", "--measured", str(path), "--output-tokens", "10", "--json"])
    assert lat["tpot_ms"] == 20.0 and lat["items"][3]["ms"] == 200.0
    cost = _json(["cost", "-m", "llama-3-8b", "--queries-per-month", "100", "--on-prem", "--json"])
    assert cost["recommendation"]["decision"] == "build"


def test_cli_reads_a_config_json_path(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
                               "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256}))
    assert _json(["kv", "--model", str(cfg), "--json"])["kv_bytes_per_token"] == 131_072


def test_cli_unknown_model_is_an_error_naming_close_ids() -> None:
    from aisd.core.errors import ModelNotFoundError

    result = runner.invoke(plan_app, ["kv", "--model", "llama-3-80b"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ModelNotFoundError) and "llama-3-70b" in str(result.exception)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    from aisd.app.server import create_app
    from aisd.app.settings import Settings
    from aisd.app.wiring import Services

    settings = Settings(home=tmp_path_factory.mktemp("home"))
    return TestClient(create_app(settings, Services(settings)))


def test_http_catalogs(client: TestClient) -> None:
    models = client.get("/v1/plan/models").json()["data"]
    assert {"llama-3-8b", "mixtral-8x7b"} <= {m["id"] for m in models}
    assert client.get("/v1/plan/models/llama-3-8b").json()["params"] == 8_030_261_248
    assert client.get("/v1/plan/hardware").json()["prices_as_of"]
    assert client.get("/v1/plan/prices").json()["as_of"] == "2025-06"


def test_http_plans(client: TestClient) -> None:
    kv = client.post("/v1/plan/kv", json={"model": "llama-3-70b", "context": 8192, "gpu": "h100-80",
                                          "tensor_parallel": 4}).json()
    assert kv["kv_bytes_per_token"] == 327_680 and kv["capacity"]["fits"]
    mem = client.post("/v1/plan/memory", json={"model": "llama-3-70b", "precision": "int4"}).json()
    assert 34 < mem["estimate"]["weights_gb"] < 38
    gpus = client.post("/v1/plan/gpus", json={"model": "llama-3-70b", "gpu": "a100-80", "concurrency": 8}).json()
    assert gpus["reports"][0]["plans"]
    lat = client.post("/v1/plan/latency", json={"model": "llama-3-8b", "gpu": "h100-80",
                                                "measured": {"tpot_ms_median": 9.0}}).json()
    assert lat["tpot_ms"] == 9.0
    cost = client.post("/v1/plan/cost", json={"model": "llama-3-8b", "queries_per_month": 1e6,
                                              "api_price": {"input_per_mtok": 1, "output_per_mtok": 2}}).json()
    assert cost["api"]["cost_per_query"] == pytest.approx((500 * 1 + 250 * 2) / 1e6)


def test_http_inline_config_for_a_model_outside_the_catalog(client: TestClient) -> None:
    body = {"model": "my-gqa-model", "config": {"hidden_size": 2048, "num_attention_heads": 16,
                                                "num_hidden_layers": 24, "num_key_value_heads": 4,
                                                "intermediate_size": 5632, "vocab_size": 32000}}
    out = client.post("/v1/plan/kv", json=body).json()
    assert out["model"] == "my-gqa-model" and out["kv_bytes_per_token"] == 2 * 24 * 4 * 128 * 2


def test_http_errors_are_openai_shaped(client: TestClient) -> None:
    r = client.post("/v1/plan/kv", json={"model": "llama-3-9b"})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["param"] == "model" and "llama-3-8b" in err["message"]
    r = client.post("/v1/plan/memory", json={"model": "llama-3-8b", "gpu": "h100-81"})
    assert r.status_code == 404 and "h100-80" in r.json()["error"]["message"]
    r = client.post("/v1/plan/kv", json={"model": "llama-3-8b", "context": -5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "context"
    r = client.post("/v1/plan/memory", json={"model": "llama-3-8b", "precision": "int3"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "precision"
    r = client.post("/v1/plan/kv", json={"model": "llama-3-8b", "gpu": "h100-80", "tensor_parallel": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tensor_parallel"
    r = client.post("/v1/plan/cost", json={"model": "llama-3-8b", "api": "gpt-5-ultra"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "api"


def test_configured_catalog_reaches_the_server_and_the_cli(tmp_path: Path, monkeypatch) -> None:
    from aisd.app.server import create_app
    from aisd.app.settings import Settings
    from aisd.app.wiring import Services

    path = tmp_path / "ours.json"
    path.write_text(json.dumps({"gpus": [{"id": "h100-80", "name": "H100 (reserved)", "memory_mib": 81559,
                                          "bandwidth_gbs": 3350, "fp16_tflops": 989, "price_per_hour": 1.5}],
                                "prices_as_of": "2026-02"}))
    settings = Settings(home=tmp_path / "home", planner={"catalog": str(path)})
    client = TestClient(create_app(settings, Services(settings)))
    hw = client.get("/v1/plan/hardware").json()
    assert hw["prices_as_of"] == "2026-02"
    assert next(g for g in hw["data"] if g["id"] == "h100-80")["price_per_hour"] == 1.5
    monkeypatch.setenv("AISD_PLANNER__CATALOG", str(path))
    out = _json(["hardware", "--json"])
    assert next(g for g in out["gpus"] if g["id"] == "h100-80")["price_per_hour"] == 1.5
