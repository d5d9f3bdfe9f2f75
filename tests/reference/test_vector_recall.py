"""Filtered recall against FAISS exact search (the oracle) at selectivities 50%, 10%, 1% and 0.1%.

20,000 random 32-d vectors; a numeric payload ``r`` (a random permutation of 0..n-1) so ``r < s*n`` selects exactly a
fraction s. The oracle is ``faiss.IndexFlatL2`` searched with an ``IDSelectorBatch`` of the matching ids. Each index
must keep recall@10 >= 0.95 at every selectivity, both with the default planner and with a planner forced onto the
approximate routes (post-filter and in-index IDSelector filtering) by a tiny exact-scan threshold.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from aisd.vector import PlannerConfig, VectorStore

faiss.omp_set_num_threads(1)

N, D, NQ, K = 20_000, 32, 100, 10
SELECTIVITIES = (0.5, 0.1, 0.01, 0.001)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(42)
    x = rng.standard_normal((N, D)).astype(np.float32)
    q = rng.standard_normal((NQ, D)).astype(np.float32)
    return x, q, rng.permutation(N)


def oracle(x: np.ndarray, q: np.ndarray, perm: np.ndarray, s: float) -> np.ndarray:
    flat = faiss.IndexFlatL2(D)
    flat.add(x)
    sel = faiss.IDSelectorBatch(np.flatnonzero(perm < s * N).astype(np.int64))
    _, ids = flat.search(q, K, params=faiss.SearchParameters(sel=sel))
    return ids


@pytest.fixture(scope="module", params=[("hnsw", {}), ("ivf", {"nlist": 64, "nprobe": 40})],
                ids=["hnsw", "ivf"])
def collection(request, data, tmp_path_factory):
    kind, params = request.param
    x, _, perm = data
    store = VectorStore(Path(tmp_path_factory.mktemp("recall")) / "db", fsync="never")
    col = store.create_collection(kind, dim=D, metric="l2", index=kind, params=params)
    col.create_payload_index("r", "numeric")
    for start in range(0, N, 5000):
        col.upsert(list(range(start, start + 5000)), x[start:start + 5000],
                   [{"r": int(perm[i])} for i in range(start, start + 5000)])
    yield kind, col
    store.close()


def _recall(truth: np.ndarray, hits: list) -> float:
    return float(np.mean([len(set(t.tolist()) & {h.id for h in row}) / K for t, row in zip(truth, hits, strict=True)]))


@pytest.mark.parametrize("planner,expected", [
    (PlannerConfig(), ("exact", "exact", "exact", "exact")),  # <= 20k candidates: exact subset scan
    (PlannerConfig(exact_max_candidates=50), ("post_filter", "in_index_filter", "in_index_filter", "exact")),
], ids=["default", "approximate-routes"])
def test_filtered_recall_at_every_selectivity(collection, data, planner, expected) -> None:
    kind, col = collection
    x, q, perm = data
    col.planner = planner
    try:
        for s, strategy in zip(SELECTIVITIES, expected, strict=True):
            flt = {"r": {"lt": int(s * N)}}
            assert col.explain(flt).strategy == strategy
            hits = col.search_batch(q, k=K, filter=flt)
            assert all(perm[h.id] < s * N for row in hits for h in row)
            assert all(len(row) == min(K, int(s * N)) for row in hits)
            r = _recall(oracle(x, q, perm, s), hits)
            assert r >= 0.95, f"{kind} recall@10 {r:.3f} at selectivity {s} ({strategy})"
    finally:
        col.planner = PlannerConfig()


@pytest.mark.slow  # builds a second HNSW graph; bench/vector_ann.py makes the same comparison on real embeddings
def test_unfiltered_recall_matches_raw_faiss(collection, data) -> None:
    """aisd adds no recall loss over the same FAISS index with the same parameters."""
    kind, col = collection
    x, q, _ = data
    truth = oracle(x, q, np.zeros(N, dtype=np.int64), 1.0)
    ours = _recall(truth, col.search_batch(q, k=K))
    p = col.info().params
    raw = faiss.IndexHNSWFlat(D, p["M"]) if kind == "hnsw" else faiss.IndexIVFFlat(faiss.IndexFlatL2(D), D, p["nlist"])
    if kind == "hnsw":
        raw.hnsw.efConstruction, raw.hnsw.efSearch = p["ef_construction"], p["ef_search"]
    else:
        raw.train(x)
        raw.nprobe = p["nprobe"]
    raw.add(x)
    _, ids = raw.search(q, K)
    theirs = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(truth, ids, strict=True)]))
    assert ours >= 0.95 and abs(ours - theirs) <= 0.02, (ours, theirs)
