"""index="auto": crossing the threshold rebuilds into the advised kind in the background and swaps atomically."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from aisd.vector import VectorStore
from aisd.vector import collection as collection_mod


def test_auto_collection_migrates_in_background_while_searches_continue(tmp_path: Path, monkeypatch) -> None:
    d = 16
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1200, d)).astype(np.float32)
    # Pretend the guide's flat limit is 500 so a small collection crosses it.
    monkeypatch.setattr("aisd.vector.advisor.FLAT_MAX", 500)
    gate = threading.Event()
    real_rebuild = collection_mod.Collection._rebuild

    def slow_rebuild(self, spec):  # hold the build open until the test has searched during it
        gate.wait(10)
        real_rebuild(self, spec)

    monkeypatch.setattr(collection_mod.Collection, "_rebuild", slow_rebuild)
    s = VectorStore(tmp_path / "db", fsync="never")
    col = s.create_collection("a", dim=d, metric="l2", index="auto", auto_threshold=600)
    col.upsert(list(range(500)), x[:500])
    assert col.info().active_index == "flat" and not col.info().rebuilding
    col.upsert(list(range(500, 700)), x[500:700])  # crosses 600 -> background rebuild starts
    assert col.info().rebuilding and col.info().active_index == "flat"
    # searches and writes keep working on the old index meanwhile
    assert col.search(x[5], k=1)[0].id == 5
    col.upsert(list(range(700, 1200)), x[700:])
    col.delete([3, 800])
    gate.set()
    assert col.wait_for_rebuild(30)
    info = col.info()
    assert info.active_index == "hnsw" and info.count == 1198 and not info.rebuilding
    # writes made during the build were caught up at the swap
    assert col.search(x[1000], k=1)[0].id == 1000 and col.search(x[900], k=1)[0].id == 900
    assert 3 not in [h.id for h in col.search(x[3], k=5)] and 800 not in [h.id for h in col.search(x[800], k=5)]
    s.close()
    s = VectorStore(tmp_path / "db")
    assert s.get_collection("a").info().active_index == "hnsw"  # the swap was snapshotted
    s.close()
