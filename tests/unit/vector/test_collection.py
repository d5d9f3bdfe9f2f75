"""Collections: upsert/get/delete/scroll/search semantics, validation, scores per metric, recovery, compaction."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from aisd.core.errors import ConflictError, CorruptDataError, InvalidRequestError, NotFoundError
from aisd.vector import PlannerConfig, VectorStore

D = 8


def rand(n: int, seed: int = 0, d: int = D) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


@pytest.fixture()
def store(tmp_path: Path):
    s = VectorStore(tmp_path / "db", fsync="never")
    yield s
    s.close()


def test_public_api_round_trip(store: VectorStore) -> None:
    col = store.create_collection("docs", dim=D, metric="cosine", index="auto")
    x = rand(50)
    res = col.upsert([f"d{i}" for i in range(50)], x, [{"lang": "en" if i % 2 else "fr", "i": i} for i in range(50)])
    assert (res.inserted, res.updated) == (50, 0) and col.count() == 50
    hits = col.search(x[3], k=5, filter={"lang": "en"})
    assert hits[0].id == "d3" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert all(h.payload["lang"] == "en" for h in hits) and len(hits) == 5
    col.delete(["d3"])
    assert col.count() == 49 and "d3" not in [h.id for h in col.search(x[3], k=5)]
    assert store.get_collection("docs") is col and store.has_collection("docs")
    assert store.list_collections() == ["docs"]


def test_upsert_is_idempotent_and_replaces(store: VectorStore) -> None:
    col = store.create_collection("c", dim=D, index="flat")
    x = rand(10)
    col.upsert(list(range(10)), x)
    again = col.upsert(list(range(10)), x)
    assert (again.inserted, again.updated) == (0, 10) and col.count() == 10
    col.upsert([4], rand(1, seed=9), [{"v": 2}])
    assert col.get([4])[0].payload == {"v": 2}
    assert [h.id for h in col.search(rand(1, seed=9)[0], k=1)] == [4]
    assert col.info().deleted == 11  # overwritten slots wait for compaction


def test_int_and_str_ids_are_distinct(store: VectorStore) -> None:
    col = store.create_collection("c", dim=D)
    col.upsert([1, "1"], rand(2), [{"t": "int"}, {"t": "str"}])
    assert col.count() == 2 and {p.payload["t"] for p in col.get([1, "1"])} == {"int", "str"}


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_scores_match_numpy_and_higher_is_better(store: VectorStore, metric: str) -> None:
    col = store.create_collection(metric, dim=D, metric=metric, index="flat")
    x, q = rand(40), rand(1, seed=1)[0]
    col.upsert(list(range(40)), x)
    hits = col.search(q, k=40)
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        ref = xn @ (q / np.linalg.norm(q))
    elif metric == "dot":
        ref = x @ q
    else:
        ref = -((x - q) ** 2).sum(axis=1)
    assert [h.id for h in hits] == np.argsort(-ref, kind="stable").tolist()
    np.testing.assert_allclose([h.score for h in hits], np.sort(ref)[::-1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("vectors,ids,fragment,param", [
    (rand(2, d=D + 1), [1, 2], "dimension 9 but the collection expects 8", "vectors"),
    ([[float("nan")] * D], [1], "NaN", "vectors"),
    ([["a"] * D], [1], "numbers", "vectors"),
    ([[1.0] * D, [1.0] * 3], [1, 2], "rectangular", "vectors"),
    (rand(2), [1, 1], "more than once", "ids"),
    (rand(2), [1, True], "string or an integer", "ids"),
    (rand(2), [1], "1 ids but 2 vectors", "vectors"),
    (np.zeros((1, D)), [1], "zero vector", "vectors"),
])
def test_bad_input_is_rejected_and_changes_nothing(store: VectorStore, vectors, ids, fragment, param) -> None:
    col = store.create_collection("c", dim=D)
    col.upsert(["keep"], rand(1))
    with pytest.raises(InvalidRequestError) as e:
        col.upsert(ids, vectors)
    assert fragment in e.value.message and e.value.param == param
    assert col.count() == 1 and col.info().lsn == 1


def test_bad_payloads_and_params(store: VectorStore) -> None:
    col = store.create_collection("c", dim=D, index="hnsw")
    with pytest.raises(InvalidRequestError, match="JSON object"):
        col.upsert([1], rand(1), ["not a dict"])
    col.upsert([1], rand(1))
    with pytest.raises(InvalidRequestError, match="unknown search parameter 'efsearch'"):
        col.search(rand(1)[0], params={"efsearch": 10})
    with pytest.raises(InvalidRequestError) as e:
        col.search(rand(1)[0], k=0)
    assert e.value.param == "k"
    with pytest.raises(InvalidRequestError) as e:
        col.search(rand(1, d=3)[0])
    assert e.value.param == "vector"


def test_store_errors(store: VectorStore) -> None:
    store.create_collection("c", dim=D)
    with pytest.raises(ConflictError) as e:
        store.create_collection("c", dim=D)
    assert e.value.status_code == 409
    assert store.create_collection("c", dim=D, exist_ok=True) is store.get_collection("c")
    with pytest.raises(ConflictError, match="dim=8"):
        store.create_collection("c", dim=4, exist_ok=True)
    with pytest.raises(NotFoundError):
        store.get_collection("nope")
    with pytest.raises(InvalidRequestError, match="metric"):
        store.create_collection("m", dim=D, metric="manhattan")
    with pytest.raises(InvalidRequestError, match="params.M"):
        store.create_collection("h", dim=D, index="hnsw", params={"M": 1})
    with pytest.raises(InvalidRequestError, match="must divide"):
        store.create_collection("p", dim=D, index="pq", params={"m": 3})
    with pytest.raises(InvalidRequestError, match="name"):
        store.create_collection("../evil", dim=D)
    store.drop_collection("c")
    assert not store.has_collection("c") and store.list_collections() == []


def test_get_scroll_count(store: VectorStore) -> None:
    col = store.create_collection("c", dim=D)
    x = rand(25)
    col.upsert(list(range(25)), x, [{"even": i % 2 == 0} for i in range(25)])
    col.delete([0, 1])
    got = col.get([5, 999, 3], with_vectors=True)
    assert [p.id for p in got] == [5, 3]
    np.testing.assert_allclose(got[0].vector, x[5] / np.linalg.norm(x[5]), rtol=1e-5)
    seen, offset = [], None
    while True:
        page = col.scroll(limit=7, offset=offset)
        seen += [p.id for p in page.points]
        if page.next_offset is None:
            break
        offset = page.next_offset
    assert seen == list(range(2, 25))
    assert col.count({"even": True}) == 12
    assert [p.id for p in col.scroll(limit=100, filter={"even": False}).points] == list(range(3, 25, 2))


def test_search_batch_equals_single_searches(store: VectorStore) -> None:
    col = store.create_collection("c", dim=D, index="hnsw")
    x = rand(300)
    col.upsert(list(range(300)), x, [{"g": i % 3} for i in range(300)])
    q = rand(5, seed=3)
    batch = col.search_batch(q, k=4, filter={"g": 1})
    for row, hits in zip(q, batch, strict=True):
        assert [h.id for h in hits] == [h.id for h in col.search(row, k=4, filter={"g": 1})]


def test_recovery_replays_the_wal_after_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "db"
    s = VectorStore(path)
    col = s.create_collection("c", dim=D, index="hnsw")
    col.create_payload_index("g", "keyword")
    x = rand(100)
    col.upsert(list(range(60)), x[:60], [{"g": i % 4} for i in range(60)])
    col.snapshot()
    col.upsert(list(range(60, 100)), x[60:], [{"g": i % 4} for i in range(60, 100)])
    col.delete([1, 2, 61])
    expect = [h.id for h in col.search(x[7], k=10, filter={"g": 3})]
    s._writer_lock.release()  # simulate a crash: no close(), so no final snapshot
    s2 = VectorStore(path)
    c2 = s2.get_collection("c")
    assert c2.count() == 97 and c2.info().payload_indexes == {"g": "keyword"}
    assert [h.id for h in c2.search(x[7], k=10, filter={"g": 3})] == expect
    s2.close()


def test_corrupt_snapshot_names_the_file(tmp_path: Path) -> None:
    s = VectorStore(tmp_path / "db")
    s.create_collection("c", dim=D).upsert([1], rand(1))
    s.close()
    snap = tmp_path / "db" / "c" / "snapshot.bin"
    data = bytearray(snap.read_bytes())
    data[-3] ^= 0xFF
    snap.write_bytes(bytes(data))
    s = VectorStore(tmp_path / "db")
    with pytest.raises(CorruptDataError, match=str(snap)):
        s.get_collection("c")
    s.close()


def test_compaction_reclaims_space_and_keeps_results(store: VectorStore) -> None:
    for kind in ("hnsw", "ivf", "flat"):
        col = store.create_collection(kind, dim=D, index=kind, params={"train_size": 200} if kind == "ivf" else {})
        x = rand(600)
        col.upsert(list(range(600)), x, [{"i": i} for i in range(600)])
        col.snapshot()
        col.delete(list(range(0, 600, 2)))
        col.upsert(list(range(1, 100, 2)), x[1:100:2])  # overwrite: more dead slots
        q = rand(3, seed=4)
        before = [[h.id for h in hits] for hits in col.search_batch(q, k=5, params={"exact": True})]
        rep = col.compact()
        assert rep.points_removed == 350 and rep.bytes_reclaimed > 0 and rep.bytes_after < rep.bytes_before
        info = col.info()
        assert (info.count, info.deleted) == (300, 0)
        after = [[h.id for h in hits] for hits in col.search_batch(q, k=5, params={"exact": True})]
        assert after == before
        assert {h.id for h in col.search(q[0], k=5)} & {h.id for h in col.search(q[0], k=5, params={"exact": True})}


def test_hnsw_tombstones_are_filtered(store: VectorStore) -> None:
    col = store.create_collection("c", dim=D, index="hnsw")
    x = rand(200)
    col.upsert(list(range(200)), x)
    col.delete(list(range(100)))
    for i in range(100, 110):
        hits = col.search(x[i], k=10)
        assert hits[0].id == i and all(h.id >= 100 for h in hits) and len(hits) == 10
    assert col.explain().strategy == "post_filter"


def test_explain_covers_every_strategy(tmp_path: Path) -> None:
    s = VectorStore(tmp_path / "db", planner=PlannerConfig(exact_max_candidates=50))
    col = s.create_collection("c", dim=D, index="hnsw")
    col.create_payload_index("b", "numeric")
    col.upsert(list(range(1000)), rand(1000), [{"b": i % 100} for i in range(1000)])
    assert col.explain().strategy == "index"
    assert col.explain({"b": {"lt": 50}}).strategy == "post_filter"
    assert col.explain({"b": {"lt": 10}}).strategy == "in_index_filter"
    assert col.explain({"b": {"lt": 2}}).strategy == "exact"
    assert col.explain({"b": -1}).strategy == "empty" and col.search(rand(1)[0], filter={"b": -1}) == []
    assert col.explain(params={"exact": True}).strategy == "exact"
    s.close()


def test_second_writer_gets_a_clear_error_and_readers_work(tmp_path: Path) -> None:
    s = VectorStore(tmp_path / "db")
    s.create_collection("c", dim=D).upsert([1, 2], rand(2))
    with pytest.raises(ConflictError, match="already open for writing"):
        VectorStore(tmp_path / "db")
    ro = VectorStore(tmp_path / "db", read_only=True)
    assert ro.get_collection("c").count() == 2  # sees the WAL without a snapshot
    with pytest.raises(ConflictError, match="read-only"):
        ro.get_collection("c").upsert([3], rand(1))
    s.get_collection("c").upsert([3], rand(1, seed=5))
    ro.refresh()
    assert ro.get_collection("c").count() == 3
    ro.close()
    s.close()
    VectorStore(tmp_path / "db").close()  # the lock is released on close


def test_concurrent_searches_during_writes(store: VectorStore) -> None:
    col = store.create_collection("c", dim=D, index="hnsw")
    col.upsert(list(range(200)), rand(200))
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        q = rand(1, seed=7)[0]
        while not stop.is_set():
            try:
                hits = col.search(q, k=5, filter={"w": {"exists": False}})
                assert len(hits) == 5
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(20):
        col.upsert(list(range(1000 + 10 * i, 1010 + 10 * i)), rand(10, seed=i), [{"w": i}] * 10)
        col.delete([i])
    stop.set()
    for t in threads:
        t.join()
    assert not errors and col.count() == 380
