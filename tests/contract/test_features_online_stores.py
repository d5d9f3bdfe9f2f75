"""One contract suite over every online store: SQLite (embedded) and Redis (a real redis-server started here on a
free port). If redis-server is missing the Redis cases fail and say how to install it (`make test` does)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from aisd.features import FeatureStore, FeatureStoreConfig
from aisd.features.online import OnlineRow, OnlineStore, create_online_store, encode_key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed; run `make redis` (or apt-get install -y redis-server)")
    port = _free_port()
    work = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"redis-server did not answer PING on port {port}")
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


_counter = iter(range(10**6))


@pytest.fixture(params=["sqlite", "redis"])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        store = create_online_store("sqlite", path=tmp_path / "online.db")
    else:
        url = request.getfixturevalue("redis_url")
        store = create_online_store("redis", redis_url=url, prefix=f"t{next(_counter)}", batch_size=7)
    yield store
    store.close()


def test_write_then_read_in_key_order_with_missing(online: OnlineStore) -> None:
    rows = [OnlineRow(encode_key([i]), {"a": i, "b": f"s{i}", "c": [1.5, None]}, 100.0 + i, 1.0) for i in range(20)]
    assert online.write("v", rows) == 20
    got = online.read("v", [encode_key([3]), encode_key([99]), encode_key([0]), encode_key([3])])
    assert got[0].values == {"a": 3, "b": "s3", "c": [1.5, None]} and got[0].event_ts == 103.0
    assert got[1] is None and got[2].values["a"] == 0 and got[3] == got[0]
    assert online.read("v", []) == []
    assert online.read("other_view", [encode_key([3])]) == [None]
    assert online.count("v") == 20


def test_newer_wins_and_created_breaks_ties(online: OnlineStore) -> None:
    k = encode_key(["u1", 7])
    assert online.write("v", [OnlineRow(k, {"x": 1}, 10.0, 1.0)]) == 1
    assert online.write("v", [OnlineRow(k, {"x": 0}, 9.0, 50.0)]) == 0  # older event: ignored
    assert online.write("v", [OnlineRow(k, {"x": 2}, 10.0, 0.5)]) == 0  # same event, older created: ignored
    assert online.write("v", [OnlineRow(k, {"x": 3}, 10.0, 2.0)]) == 1  # same event, newer created: a correction
    assert online.write("v", [OnlineRow(k, {"x": 3}, 10.0, 2.0)]) == 1  # replay is harmless (idempotent)
    assert online.read("v", [k])[0].values == {"x": 3}
    assert online.write("v", [OnlineRow(k, {"x": 4}, 11.0, 0.0)]) == 1
    assert online.read("v", [k])[0] .values == {"x": 4}


def test_delete_view_and_unicode(online: OnlineStore) -> None:
    online.write("v", [OnlineRow(encode_key(["zoë"]), {"x": "ü"}, 1.0)])
    online.write("w", [OnlineRow(encode_key(["zoë"]), {"x": 1}, 1.0)])
    assert online.read("v", [encode_key(["zoë"])])[0].values == {"x": "ü"}
    online.delete_view("v")
    assert online.count("v") == 0 and online.count("w") == 1


def test_concurrent_writers_keep_the_newest(online: OnlineStore) -> None:
    k = encode_key([1])

    def writer(offset: int) -> None:
        for t in range(offset, 200, 4):
            online.write("v", [OnlineRow(k, {"t": t}, float(t))])

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert online.read("v", [k])[0].values == {"t": 199}


T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_feature_store_end_to_end(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from aisd.core.clock import ManualClock
    from aisd.features import Entity, FeatureView, Field, FileSource, Float64, Int64

    url = request.getfixturevalue("redis_url") if kind == "redis" else "redis://unused"
    pd.DataFrame({"user_id": [1, 1, 2], "ts": pd.to_datetime([T0, T0 + timedelta(hours=1), T0], utc=True),
                  "score": [0.1, 0.2, 0.3]}).to_parquet(tmp_path / "u.parquet")
    cfg = FeatureStoreConfig(online_store=kind, redis_url=url, redis_prefix=f"e2e{next(_counter)}")
    store = FeatureStore(tmp_path, cfg, clock=ManualClock(T0 + timedelta(hours=2)))
    user = Entity("user", ["user_id"], Int64)
    store.apply([FeatureView("u", [user], [Field("score", Float64)], FileSource("u.parquet", "ts"),
                             ttl=timedelta(hours=1, minutes=30))])
    store.materialize(T0, T0 + timedelta(days=1))
    r = store.get_online_features(["u:score"], [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}])
    assert r.to_dict() == {"user_id": [1, 2, 3], "score": [0.2, None, None]}
    assert r.statuses["score"] == ["PRESENT", "EXPIRED", "NOT_FOUND"]
    store.close()
