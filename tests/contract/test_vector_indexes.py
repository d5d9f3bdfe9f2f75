"""One contract for every index kind: what a collection promises no matter which FAISS index serves it."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from aisd.core.errors import InvalidRequestError
from aisd.vector import VectorStore

faiss.omp_set_num_threads(1)

KINDS = ["flat", "hnsw", "ivf", "pq", "ivfpq", "sq8"]
PARAMS = {"flat": {}, "hnsw": {"M": 16}, "ivf": {"nlist": 16, "nprobe": 4, "train_size": 800},
          "pq": {"m": 8, "train_size": 800}, "ivfpq": {"nlist": 16, "nprobe": 4, "m": 8, "train_size": 800},
          "sq8": {"train_size": 800}}
# recall@10 against exact search without rescoring: what each kind must at least reach on this data
MIN_RECALL = {"flat": 1.0, "hnsw": 0.9, "ivf": 0.8, "pq": 0.35, "ivfpq": 0.3, "sq8": 0.9}
N, D = 2000, 16


def data(seed: int = 0) -> np.ndarray:
    """Clustered vectors (like embeddings) rather than isotropic noise."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, D)) * 3
    return (centers[rng.integers(0, 20, N)] + rng.standard_normal((N, D))).astype(np.float32)


def exact_top(x: np.ndarray, q: np.ndarray, k: int, keep: np.ndarray | None = None) -> list[set[int]]:
    ids = np.arange(len(x)) if keep is None else np.flatnonzero(keep)
    d = ((q[:, None, :] - x[None, ids, :]) ** 2).sum(-1)
    return [set(ids[np.argsort(row)[:k]].tolist()) for row in d]


@pytest.fixture(params=KINDS)
def loaded(request, tmp_path: Path):
    kind = request.param
    store = VectorStore(tmp_path / "db", fsync="never")
    col = store.create_collection("c", dim=D, metric="l2", index=kind, params=PARAMS[kind])
    x = data()
    for start in range(0, N, 500):  # several batches: training happens mid-stream for IVF/PQ kinds
        col.upsert(list(range(start, start + 500)), x[start:start + 500],
                   [{"g": i % 10, "v": i} for i in range(start, start + 500)])
    yield kind, store, col, x
    store.close()


def recall(col, x: np.ndarray, q: np.ndarray, k: int = 10, **kw) -> float:
    truth = exact_top(x, q, k, kw.pop("keep", None))
    got = col.search_batch(q, k=k, **kw)
    return float(np.mean([len(t & {h.id for h in hits}) / len(t) for t, hits in zip(truth, got, strict=True)]))


def test_trained_and_recall_floor(loaded) -> None:
    kind, _, col, x = loaded
    assert col.info().trained and col.info().active_index == kind
    q = x[:50] + 0.1
    assert recall(col, x, q) >= MIN_RECALL[kind]
    assert recall(col, x, q, params={"refine": 10}) >= 0.9  # rescoring with the original vectors


def test_exact_param_is_exact(loaded) -> None:
    _, _, col, x = loaded
    assert recall(col, x, x[100:120] + 0.05, params={"exact": True}) == 1.0


def test_scores_are_sorted_negative_squared_l2(loaded) -> None:
    _, _, col, x = loaded
    hits = col.search(x[7], k=10, params={"refine": 4})
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    for h in hits:
        assert h.score == pytest.approx(-float(((x[h.id] - x[7]) ** 2).sum()), rel=1e-3, abs=1e-3)


def test_deleted_points_never_come_back(loaded) -> None:
    _, _, col, x = loaded
    gone = list(range(0, N, 3))
    col.delete(gone)
    hits = col.search_batch(x[gone[:20]], k=10)
    assert all(h.id % 3 for row in hits for h in row) and all(len(row) == 10 for row in hits)
    assert col.count() == N - len(gone)


def test_upsert_replaces_the_vector(loaded) -> None:
    _, _, col, x = loaded
    far = np.full(D, 50.0, dtype=np.float32)
    col.upsert([5], far[None, :], [{"moved": True}])
    hits = col.search(far, k=1)
    assert hits[0].id == 5 and hits[0].payload == {"moved": True}
    assert 5 not in [h.id for h in col.search(x[5], k=3, params={"exact": True})]


FILTERS = [({"g": 3}, lambda i: i % 10 == 3), ({"v": {"lt": 300}}, lambda i: i < 300),
           ({"g": {"in": [1, 2, 3, 4, 5, 6]}}, lambda i: 1 <= i % 10 <= 6)]


def test_filters_hold_for_every_strategy(loaded) -> None:
    kind, _, col, x = loaded
    q = x[:20] + 0.1
    for flt, keep_fn in FILTERS:
        keep = np.array([keep_fn(i) for i in range(N)])
        for strategy in (None, "in_index_filter", "post_filter"):
            params = {"strategy": strategy, "refine": 10} if strategy else {"refine": 10}
            if strategy == "in_index_filter" and kind == "pq":  # FAISS's IndexPQ takes no IDSelector
                with pytest.raises(InvalidRequestError, match="does not support in-index filtering"):
                    col.search_batch(q, k=10, filter=flt, params=params)
                continue
            got = col.search_batch(q, k=10, filter=flt, params=params)
            assert all(keep[h.id] for row in got for h in row) and all(len(row) == 10 for row in got)
            assert recall(col, x, q, filter=flt, params=params, keep=keep) >= 0.8, (flt, strategy)


def test_reopen_gives_identical_results(loaded, tmp_path: Path) -> None:
    kind, store, col, x = loaded
    q = x[:10] + 0.2
    before = [[(h.id, round(h.score, 4)) for h in row] for row in col.search_batch(q, k=5)]
    store.close()
    again = VectorStore(tmp_path / "db")
    after = [[(h.id, round(h.score, 4)) for h in row] for row in again.get_collection("c").search_batch(q, k=5)]
    again.close()
    assert after == before


def test_buffered_exact_search_before_training(tmp_path: Path) -> None:
    for kind in ("ivf", "pq", "ivfpq", "sq8"):
        store = VectorStore(tmp_path / kind, fsync="never")
        col = store.create_collection("c", dim=D, metric="l2", index=kind, params={**PARAMS[kind], "train_size": 5000})
        x = data()
        col.upsert(list(range(300)), x[:300])
        assert not col.info().trained and col.explain().strategy == "exact"
        assert recall(col, x[:300], x[:10] + 0.1) == 1.0
        col.train()  # explicit training on what is stored
        assert col.info().trained and col.search(x[3], k=1, params={"refine": 10})[0].id == 3
        store.close()
