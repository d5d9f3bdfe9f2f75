"""HTTP routes (/v1/features/...) and the `aisd features` CLI over the small driver repository."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aisd.app.commands.features import app as cli
from aisd.app.server import create_app
from aisd.app.settings import Settings
from aisd.app.wiring import Services
from aisd.features import FeatureStore

from .conftest import T0


@pytest.fixture
def client(store: FeatureStore, tmp_path: Path) -> TestClient:
    store.materialize(T0, T0 + timedelta(hours=4))
    settings = Settings(home=tmp_path / "home", engine={"load_on_startup": False})  # no LLM for feature routes
    services = Services(settings)
    services.feature_store = store  # the fixture's store has a manual clock
    with TestClient(create_app(settings, services)) as c:
        yield c


def test_online_route_feast_shape(client: TestClient) -> None:
    r = client.post("/v1/features/online", json={"features": ["driver_stats:avg_daily_trips", "transformed:conv_plus"],
                                                 "entities": {"driver_id": [1001, 5]},
                                                 "request_data": {"val_to_add": [1, 1]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metadata"]["feature_names"] == ["driver_id", "avg_daily_trips", "conv_plus"]
    assert body["results"][1] == {"values": [4, None], "statuses": ["PRESENT", "NOT_FOUND"],
                                  "event_timestamps": ["2024-01-01T03:00:00Z", None]}
    r = client.post("/v1/features/online", json={"feature_service": "driver_activity", "entities": {"driver_id": [1002]}})
    assert r.json()["results"][2]["values"] == [5]


@pytest.mark.parametrize("body, status, param, needle", [
    ({"features": ["driver_stats:avg_daily_trips"], "entities": {"driver_id": ["a"]}}, 400, "driver_id[0]",
     "expected int64"),
    ({"features": ["driver_stats:nope"], "entities": {"driver_id": [1]}}, 404, "features", "no feature 'nope'"),
    ({"features": ["ghost:x"], "entities": {"driver_id": [1]}}, 404, "features", "'ghost' is not defined"),
    ({"features": ["driver_stats:city"], "entities": {"rider": [1]}}, 404, "rider", "unknown entity keys"),
    ({"feature_service": "nope", "entities": {"driver_id": [1]}}, 404, "feature_service", "not defined"),
    ({"entities": {"driver_id": [1]}}, 400, "features", "exactly one"),
    ({"features": ["driver_stats:city"]}, 400, "entities", "Field required"),
])
def test_online_route_errors(client: TestClient, body: dict, status: int, param: str, needle: str) -> None:
    r = client.post("/v1/features/online", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and needle in err["message"]


def test_listing_push_and_materialize_routes(client: TestClient, store: FeatureStore) -> None:
    views = client.get("/v1/features/views").json()["data"]
    assert {v["name"] for v in views} == {"driver_stats", "driver_profile", "transformed"}
    assert client.get("/v1/features/views/driver_stats").json()["ttl_seconds"] == 7200
    assert client.get("/v1/features/views/nope").status_code == 404
    assert client.get("/v1/features/services").json()["data"][0]["name"] == "driver_activity"
    assert client.get("/v1/features/entities").json()["data"] == [
        {"name": "driver", "join_keys": ["driver_id"], "value_type": "int64"}]
    row = {"driver_id": [77], "event_timestamp": ["2024-01-01T03:30:00Z"], "conv_rate": [0.5], "acc_rate": [0.5],
           "avg_daily_trips": [3], "city": ["z"]}
    bad = client.post("/v1/features/push", json={"push_source_name": "driver_stats_push",
                                                 "df": dict(row, avg_daily_trips=["3"])})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "avg_daily_trips[0]"
    assert store.online_store.count("driver_stats") == 3  # nothing written
    ok = client.post("/v1/features/push", json={"push_source_name": "driver_stats_push", "df": row})
    assert ok.json()["online_rows_written"] == 1
    r = client.post("/v1/features/online", json={"features": ["driver_stats:city"], "entities": {"driver_id": [77]}})
    assert r.json()["results"][1]["values"] == ["z"]
    m = client.post("/v1/features/materialize", json={"end_date": "2024-01-01T05:00:00Z"}).json()["data"]
    assert {d["view"] for d in m} == {"driver_stats", "driver_profile"}
    assert client.get("/health").json()["features"]["online_store"] == "sqlite"


def test_cli_end_to_end(tmp_path: Path) -> None:
    runner = CliRunner()
    repo = tmp_path / "repo"
    r = runner.invoke(cli, ["init", str(repo)])
    assert r.exit_code == 0, r.output
    assert "create feature_view driver_hourly_stats" in " ".join(r.output.split())
    r = runner.invoke(cli, ["plan", "--repo", str(repo)])
    assert "no changes" in r.output
    r = runner.invoke(cli, ["list", "entities", "--repo", str(repo), "--json"])
    assert json.loads(r.output) == [{"name": "driver", "join_key": "driver_id", "type": "int64"}]
    r = runner.invoke(cli, ["materialize-incremental", "--repo", str(repo)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["get-online", "--repo", str(repo), "-f", "driver_hourly_stats:avg_daily_trips",
                            "-e", "driver_id=1001", "-e", "driver_id=4242", "--json"])
    body = json.loads(r.output)
    assert body["results"][1]["statuses"] == ["PRESENT", "NOT_FOUND"]
    ents = pd.DataFrame({"driver_id": [1001, 1002], "event_timestamp": [pd.Timestamp.now(tz="UTC")] * 2,
                         "val_to_add": [1, 2]})
    ents.to_csv(tmp_path / "e.csv", index=False)
    r = runner.invoke(cli, ["get-historical", "--repo", str(repo), "--entities", str(tmp_path / "e.csv"),
                            "-s", "driver_activity", "-o", str(tmp_path / "train.parquet")])
    assert r.exit_code == 0, r.output
    train = pd.read_parquet(tmp_path / "train.parquet")
    assert list(train.columns) == ["driver_id", "event_timestamp", "val_to_add", "conv_rate", "avg_daily_trips",
                                   "conv_rate_plus_val"]
    assert train["avg_daily_trips"].notna().all()
    pd.DataFrame({"driver_id": [5], "event_timestamp": [pd.Timestamp.now(tz="UTC")], "conv_rate": [0.1],
                  "acc_rate": [0.2], "avg_daily_trips": [9]}).to_parquet(tmp_path / "push.parquet")
    r = runner.invoke(cli, ["push", "driver_stats_push", str(tmp_path / "push.parquet"), "--repo", str(repo)])
    assert "1 online rows written" in r.output, r.output
    r = runner.invoke(cli, ["get-online", "--repo", str(repo), "-f", "driver_hourly_stats:bogus", "-e", "driver_id=1"])
    assert r.exit_code != 0 and "bogus" in str(r.exception)
