"""The search hot path: query preparation, the unfiltered fast path, hit building and the read lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from aisd.core.errors import InvalidRequestError
from aisd.vector import VectorStore
from aisd.vector.base import as_matrix, prepare_vectors
from aisd.vector.locks import RWLock

D = 16


def reference_prepare(v, metric: str) -> np.ndarray:
    """The straightforward version: validate, then divide by the float64 norm for cosine."""
    x = as_matrix(v, D).astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_prepare_fast_and_general_paths_agree_and_never_touch_the_input(metric: str) -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((4, D)).astype(np.float32) * 3
    inputs = [base[0].copy(), base[:1].copy(), base.copy(), base.astype(np.float64), base[0].tolist(),
              base[:, ::1][::2], np.asfortranarray(base), base.astype(np.float16)]
    for v in inputs:
        before = np.array(v, copy=True)
        out = prepare_vectors(v, D, metric)
        assert out.dtype == np.float32 and out.flags.c_contiguous and out.ndim == 2 and out.shape[1] == D
        np.testing.assert_allclose(out, reference_prepare(v, metric), rtol=1e-3 if np.asarray(v).dtype == np.float16
                                   else 1e-6, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(v), before)  # the caller's array is left alone
    if metric != "cosine":  # dot/L2 single queries are used as they are: no copy
        q = base[0].copy()
        assert np.shares_memory(prepare_vectors(q, D, metric), q)


@pytest.mark.parametrize("bad, fragment", [(np.nan, "NaN or infinity"), (np.inf, "NaN or infinity")])
def test_prepare_rejects_non_finite_single_queries(bad: float, fragment: str) -> None:
    v = np.ones(D, dtype=np.float32)
    v[3] = bad
    for metric in ("cosine", "dot", "l2"):
        with pytest.raises(InvalidRequestError, match=fragment) as e:
            prepare_vectors(v, D, metric, param="vector")
        assert e.value.param == "vector"


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the fast path's float32 dot overflows, then falls back
def test_prepare_zero_and_huge_vectors_for_cosine() -> None:
    with pytest.raises(InvalidRequestError, match="zero vector"):
        prepare_vectors(np.zeros(D, dtype=np.float32), D, "cosine")
    with pytest.raises(InvalidRequestError, match=r"vectors\[1\] is a zero vector"):
        prepare_vectors(np.vstack([np.ones(D), np.zeros(D)]), D, "cosine")
    huge = np.full(D, 1e30, dtype=np.float32)  # finite, but its float32 squared norm overflows
    out = prepare_vectors(huge, D, "cosine")
    np.testing.assert_allclose(out[0], np.full(D, 1 / np.sqrt(D)), rtol=1e-6)


KINDS = {"flat": {}, "hnsw": {"M": 8, "ef_construction": 40}, "ivf": {"nlist": 8, "nprobe": 2, "train_size": 400},
         "sq8": {"train_size": 300}, "pq": {"m": 4, "nbits": 4, "train_size": 400},
         "ivfpq": {"nlist": 4, "nprobe": 2, "m": 4, "nbits": 4, "train_size": 400}}


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((600, D)).astype(np.float32)
    store = VectorStore(tmp_path_factory.mktemp("fast") / "db", fsync="never")
    cols = {}
    for kind, params in KINDS.items():
        col = store.create_collection(kind, dim=D, metric="cosine", index=kind, params=params)
        col.upsert(list(range(600)), x, [{"i": i} for i in range(600)])
        cols[kind] = col
    yield cols, rng.standard_normal((20, D)).astype(np.float32)
    store.close()


@pytest.mark.parametrize("kind", list(KINDS))
def test_single_query_fast_path_equals_the_planned_route(collections, kind: str) -> None:
    cols, queries = collections
    col = cols[kind]
    for params in ([None, {"ef_search": 50}] if kind == "hnsw" else
                   [None, {"nprobe": 4}] if kind in ("ivf", "ivfpq") else [None]):
        for v in queries:
            fast = col.search(v, k=7, params=params)
            planned = col.search_batch(v[None, :], k=7, params={**(params or {}), "strategy": "index"})[0]
            batch = col.search_batch(v[None, :], k=7, params=params)[0]
            assert [h.id for h in fast] == [h.id for h in planned] == [h.id for h in batch]
            np.testing.assert_allclose([h.score for h in fast], [h.score for h in planned], rtol=1e-6)
            assert all(h.payload == {"i": h.id} for h in fast)


def test_with_payload_false_skips_payloads(collections) -> None:
    cols, queries = collections
    col = cols["flat"]
    with_p, without = col.search(queries[0], k=5), col.search(queries[0], k=5, with_payload=False)
    assert [h.id for h in with_p] == [h.id for h in without]
    assert all(h.payload is None for h in without) and all(h.payload is not None for h in with_p)
    batch = col.search_batch(queries[:3], k=5, with_payload=False, with_vectors=True)
    assert all(h.payload is None and len(h.vector) == D for row in batch for h in row)


def test_short_rows_from_the_index_are_completed_exactly(tmp_path: Path) -> None:
    # IVF with nprobe=1 over many small lists: one list often holds fewer than k points, so FAISS returns -1s
    rng = np.random.default_rng(2)
    x = rng.standard_normal((400, D)).astype(np.float32)
    store = VectorStore(tmp_path / "db", fsync="never")
    col = store.create_collection("s", dim=D, metric="l2", index="ivf",
                                  params={"nlist": 64, "nprobe": 1, "train_size": 400})
    col.upsert(list(range(400)), x)
    raw = col._index.search(x[:50], 20)[1]
    assert (raw < 0).any(), "test premise: some IVF rows come back short"
    for v in x[:50]:
        hits = col.search(v, k=20)
        assert len(hits) == 20 and len({h.id for h in hits}) == 20
        assert hits[0].id == int(np.argmin(((x - v) ** 2).sum(axis=1)))
    store.close()


def test_read_lock_lets_readers_share_and_writers_wait() -> None:
    lock, order = RWLock(), []
    with lock.read(), lock.read():  # two readers at once (re-entrant across distinct holds)
        writer_started = threading.Event()

        def writer() -> None:
            writer_started.set()
            with lock.write():
                order.append("writer")

        t = threading.Thread(target=writer)
        t.start()
        writer_started.wait(5)
        time.sleep(0.05)
        order.append("readers done")
    t.join(5)
    assert order == ["readers done", "writer"]
    # a reader waits while a writer holds the lock, and runs once it is released
    with lock.write():
        got = []
        r = threading.Thread(target=lambda: (lock.read().__enter__(), got.append(1), lock.read().__exit__()))
        r.start()
        time.sleep(0.05)
        assert got == []
    r.join(5)
    assert got == [1]


def test_ids_stay_right_when_int_and_str_ids_mix(tmp_path: Path) -> None:
    # int ids use the dense slot -> id array; the first str id switches hit building to the id list
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, D)).astype(np.float32)
    store = VectorStore(tmp_path / "db", fsync="never")
    col = store.create_collection("m", dim=D, metric="l2", index="flat")
    col.upsert(list(range(20)), x[:20])
    assert col.search(x[7], k=1)[0].id == 7 and col._storage._int_ids is not None
    col.upsert([f"s{i}" for i in range(20, 40)], x[20:])
    assert col._storage._int_ids is None
    assert col.search(x[7], k=1)[0].id == 7 and col.search(x[33], k=1)[0].id == "s33"
    assert [row[0].id for row in col.search_batch(x[[3, 25]], k=1)] == [3, "s25"]
    store.close()
    store = VectorStore(tmp_path / "db")  # restored from the snapshot: same answers
    col = store.get_collection("m")
    assert col.search(x[7], k=1)[0].id == 7 and col.search(x[33], k=1)[0].id == "s33"
    store.close()


@pytest.mark.parametrize("kind, params", [("ivf", {"nlist": 16, "nprobe": 4}),
                                          ("ivfpq", {"nlist": 16, "nprobe": 4, "m": 8, "nbits": 6})])
def test_ivf_lists_are_relaid_out_as_the_index_doubles_without_changing_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, params: dict) -> None:
    import faiss

    from aisd.vector import indexes

    monkeypatch.setattr(indexes, "RELAYOUT_MIN", 500)
    calls: list[int] = []
    original = indexes.VectorIndex.relayout

    def counting(self: indexes.VectorIndex) -> None:
        calls.append(self.ntotal)
        original(self)

    monkeypatch.setattr(indexes.VectorIndex, "relayout", counting)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    store = VectorStore(tmp_path / "s", fsync="never")
    col = store.create_collection("c", dim=32, metric="l2", index=kind, params={**params, "train_size": 400})
    for start in range(0, 3000, 250):
        col.upsert(list(range(start, start + 250)), x[start:start + 250])
    assert calls == [500, 1000, 2000]  # doubling: O(1) copying per vector
    q = rng.standard_normal((20, 32)).astype(np.float32)
    before = [[(h.id, round(h.score, 4)) for h in row] for row in col.search_batch(q, k=10)]
    inner = col._index._index
    lists = faiss.extract_index_ivf(inner).invlists
    sizes = [lists.list_size(i) for i in range(16)]
    col._index.relayout()
    lists = faiss.extract_index_ivf(inner).invlists
    assert [lists.list_size(i) for i in range(16)] == sizes and inner.ntotal == 3000
    assert [[(h.id, round(h.score, 4)) for h in row] for row in col.search_batch(q, k=10)] == before
    col.delete([0, 1, 2])  # removal still works on the new lists
    assert col.count() == 2997 and all(h.id not in (0, 1, 2) for h in col.search(x[0], k=10))
    store.close()


def test_big_batches_leave_the_garbage_collector_as_they_found_it(tmp_path: Path) -> None:
    import gc

    from aisd.vector import executor

    rng = np.random.default_rng(5)
    store = VectorStore(tmp_path / "s", fsync="never")
    col = store.create_collection("c", dim=8, metric="dot", index="flat")
    col.upsert(list(range(300)), rng.standard_normal((300, 8)).astype(np.float32))
    q = rng.standard_normal((executor.GC_PAUSE_HITS // 10 + 5, 8)).astype(np.float32)  # above the pause threshold
    small = [[h.id for h in row] for row in col.search_batch(q[:3], k=10)]
    assert gc.isenabled()
    big = col.search_batch(q, k=10)
    assert gc.isenabled()
    assert [[h.id for h in row] for row in big[:3]] == small
    gc.disable()
    try:
        col.search_batch(q, k=10)
        assert not gc.isenabled()  # a caller who turned it off keeps it off
    finally:
        gc.enable()
    store.close()


def _hits_both_ways(col, q, monkeypatch, **kw):
    from aisd.vector import executor

    native = col.search_batch(q, k=5, **kw)
    with monkeypatch.context() as m:
        m.setattr(executor, "native_builder", lambda: None)
        python = col.search_batch(q, k=5, **kw)
    return native, python


@pytest.mark.parametrize("ids", ["int", "str"])
def test_native_hit_builder_matches_the_python_builder(tmp_path: Path, monkeypatch, ids: str) -> None:
    from aisd.vector.native_hits import native_builder

    assert native_builder() is not None, "the C hit builder did not build (see the warning logged with the C error)"
    rng = np.random.default_rng(11)
    store = VectorStore(tmp_path / "s", fsync="never")
    col = store.create_collection("c", dim=D, metric="dot", index="flat")
    keys = [i * 1_000_003 for i in range(200)] if ids == "int" else [f"doc-{i}" for i in range(200)]
    col.upsert(keys, rng.standard_normal((200, D)).astype(np.float32),
               [{"n": i, "tags": ["a", str(i)]} if i % 3 else None for i in range(200)])
    col.upsert(keys[:10], rng.standard_normal((10, D)).astype(np.float32))  # overwritten: new slots, old ones dead
    q = rng.standard_normal((40, D)).astype(np.float32)
    native, python = _hits_both_ways(col, q, monkeypatch)
    assert native == python
    assert all(type(h).__name__ == "Hit" and type(h.score) is float and type(h.id) is type(keys[0])
               for row in native for h in row)
    pairs = [(a.payload, b.payload) for ra, rb in zip(native, python, strict=True) for a, b in zip(ra, rb, strict=True)]
    assert any(a is not None for a, _ in pairs) and all(a is b for a, b in pairs)  # the stored object, not a copy
    native, python = _hits_both_ways(col, q, monkeypatch, with_payload=False)
    assert native == python and all(h.payload is None for row in native for h in row)
    store.close()


def test_native_hit_builder_rejects_a_bad_slot_with_an_error_not_a_crash() -> None:
    from aisd.vector.base import Hit
    from aisd.vector.native_hits import build_hits, native_builder

    fn = native_builder()
    assert fn is not None
    slots = np.array([[0, 1], [2, 7]], dtype=np.int64)
    scores = np.ones((2, 2), dtype=np.float32)
    ok = build_hits(fn, Hit, slots[:1], scores[:1], None, ["a", "b"], [{"x": 1}, None])
    assert ok == [[Hit("a", 1.0, {"x": 1}, None), Hit("b", 1.0, None, None)]]
    with pytest.raises(IndexError, match="slot 2 out of range"):
        build_hits(fn, Hit, slots, scores, None, ["a", "b"], None)
    with pytest.raises(IndexError, match="slot 7 out of range"):
        build_hits(fn, Hit, slots, scores, np.arange(5, dtype=np.int64), [], None)
    with pytest.raises(TypeError, match="tuple subclass"):
        build_hits(fn, dict, slots[:1], scores[:1], None, ["a", "b"], None)


@pytest.mark.parametrize("ids", ["int", "str"])
@pytest.mark.parametrize("index", ["flat", "hnsw", "ivf"])
def test_search_arrays_match_search_batch(tmp_path: Path, ids: str, index: str) -> None:
    rng = np.random.default_rng(13)
    store = VectorStore(tmp_path / "s", fsync="never")
    params = {"nlist": 8, "train_size": 200} if index == "ivf" else None
    col = store.create_collection("c", dim=D, metric="cosine", index=index, params=params)
    keys = list(range(500)) if ids == "int" else [f"p{i}" for i in range(500)]
    col.upsert(keys, rng.standard_normal((500, D)).astype(np.float32), [{"even": i % 2 == 0} for i in range(500)])
    col.delete(keys[:50])  # tombstones / removed ids must not show up
    q = rng.standard_normal((30, D)).astype(np.float32)
    for kw in ({"k": 10}, {"k": 10, "filter": {"even": True}}, {"k": 10, "params": {"exact": True}},
               {"k": 600}):  # k above the live count: rows are padded with -1 / None and -inf
        arrays = col.search_arrays(q, **kw)
        hits = col.search_batch(q, with_payload=False, **kw)
        assert arrays.ids.shape == arrays.scores.shape == (30, kw["k"])
        assert arrays.ids.dtype == (np.int64 if ids == "int" else object) and arrays.scores.dtype == np.float32
        assert [[h.id for h in row] for row in arrays.to_hits()] == [[h.id for h in row] for row in hits]
        for row_a, row_h in zip(arrays.to_hits(), hits, strict=True):
            np.testing.assert_allclose([h.score for h in row_a], [h.score for h in row_h], rtol=1e-6)
        n = len(hits[0])
        assert np.isneginf(arrays.scores[:, n:]).all()
        assert all(i in (-1, None) for i in arrays.ids[:, n:].ravel().tolist())
    store.close()
