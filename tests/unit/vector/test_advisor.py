"""The index advisor follows the selection guide, and its memory formulas match what FAISS really holds."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from aisd.core.errors import InvalidRequestError
from aisd.vector import advise, estimate_index_bytes
from aisd.vector.indexes import IndexSpec, build_faiss

GiB = 2**30


@pytest.mark.parametrize("count,budget,kind", [
    (10_000, None, "flat"),
    (99_999, None, "flat"),
    (500_000, None, "hnsw"),
    (5_000_000, None, "hnsw"),
    (5_000_000, 1 * GiB, "ivfpq"),  # HNSW would need ~9 GiB
    (50_000_000, 8 * GiB, "ivfpq"),
    (20_000_000, None, "ivfpq"),  # > 10M: HNSW's memory grows too large
    (500_000, 300 * 2**20, "sq8"),  # below 1M, SQ8 fits where HNSW does not
])
def test_selection_guide(count: int, budget: int | None, kind: str) -> None:
    adv = advise(count, 384, memory_budget_bytes=budget)
    assert adv.kind == kind and adv.reasons
    if budget is not None and kind == "ivfpq":
        assert adv.estimated_index_bytes <= budget


def test_beyond_one_node_is_sharded() -> None:
    adv = advise(500_000_000, 768)
    assert adv.kind == "ivfpq" and adv.shards == 10 and "shard" in adv.reasons[0]


def test_latency_target_moves_small_collections_to_hnsw() -> None:
    assert advise(90_000, 1536).kind == "flat"
    adv = advise(90_000, 1536, latency_target_ms=1.0)
    assert adv.kind == "hnsw" and "target" in adv.reasons[0]


def test_params_are_usable_index_specs() -> None:
    for count in (1_000, 200_000, 3_000_000, 30_000_000):
        adv = advise(count, 96, memory_budget_bytes=2 * GiB)
        IndexSpec(adv.kind, 96, "l2", {k: v for k, v in adv.params.items() if k != "nprobe" or adv.kind != "hnsw"})


def test_bad_inputs() -> None:
    with pytest.raises(InvalidRequestError):
        advise(-1, 8)
    with pytest.raises(InvalidRequestError):
        advise(10, 8, memory_budget_bytes=0)


@pytest.mark.parametrize("kind,params", [("flat", {}), ("hnsw", {"M": 16}), ("ivf", {"nlist": 16}),
                                         ("pq", {"m": 8, "nbits": 6}), ("ivfpq", {"nlist": 16, "m": 8, "nbits": 6}),
                                         ("sq8", {})])
def test_memory_estimate_matches_the_serialised_faiss_index(kind: str, params: dict) -> None:
    """Serialised size ~ the payload FAISS keeps in RAM (id maps' hash tables are not serialised)."""
    n, d = 2000, 32
    x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    index = build_faiss(IndexSpec(kind, d, "l2", params), n)
    index.train(x)
    index.add_with_ids(x, np.arange(n, dtype=np.int64))
    actual = len(faiss.serialize_index(index))
    est = estimate_index_bytes(kind, n, d, {**params, "nlist": params.get("nlist")})
    hash_overhead = 32 * n if kind in ("flat", "hnsw", "pq", "sq8") else 0
    assert abs(est - hash_overhead - actual) / actual < 0.15, (est, actual)


def test_total_estimate_adds_original_vectors_and_bookkeeping() -> None:
    from aisd.vector import estimate_total_bytes
    from aisd.vector.advisor import POINT_BOOKKEEPING_BYTES

    adv = advise(500_000, 384)
    assert adv.estimated_total_bytes == estimate_total_bytes(adv.kind, 500_000, 384, adv.params)
    assert adv.estimated_total_bytes - adv.estimated_index_bytes == 500_000 * (4 * 384 + POINT_BOOKKEEPING_BYTES)
