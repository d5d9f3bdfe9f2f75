"""Index advisor: the index selection guide as code, with memory and latency estimates.

Guide (the design seeds' vector-database chapter): < 100K vectors -> Flat; 100K-10M that fit in RAM -> HNSW;
1M-100M with limited memory -> IVF-PQ; larger -> IVF-PQ on disk / sharded. The advisor applies it to a vector count,
dimension, memory budget and latency target and says why. Memory formulas follow FAISS's data layout (see
``estimate_index_bytes``); the benchmark checks them against measured RSS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aisd.core.errors import InvalidRequestError
from aisd.vector.indexes import default_pq_m, largest_divisor_at_most

FLAT_MAX = 100_000
HNSW_MAX = 10_000_000
SINGLE_NODE_MAX = 100_000_000
# Brute force is memory-bound: a flat query streams n*d*4 bytes; ~8 GB/s per query on one core is typical DRAM
# bandwidth for a modern CPU (measure yours with bench/vector_ann.py).
SCAN_BYTES_PER_MS = 8e6
IDMAP_BYTES = 8 + 32  # IndexIDMap2: int64 id array + reverse unordered_map entry (~32 B per node with libstdc++)
# What a collection keeps per point besides its vector and index entry: the id in a list and in the id -> slot dict
# (~100 B with CPython dicts), the id int object, the payload slot, the int64 slot -> id array and the alive flag.
# bench/vector_ann.py's memory section measures ~200-280 B on 10k-50k points (RSS growth of a whole collection).
POINT_BOOKKEEPING_BYTES = 200


@dataclass(frozen=True)
class Advice:
    kind: str
    params: dict[str, Any]
    estimated_index_bytes: int  # what the FAISS index holds in RAM
    estimated_total_bytes: int  # + the original float32 vectors and per-point bookkeeping a collection keeps
    estimated_latency_ms: float  # one query, one thread, rough
    reasons: list[str] = field(default_factory=list)
    shards: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def hnsw_links_per_node(m: int) -> float:
    """Level 0 holds 2M links and level l >= 1 holds M links with P(level >= l) = M^-l (Malkov & Yashunin 2018,
    FAISS's level multiplier 1/ln M), so the expected count is 2M + M * sum_l M^-l = 2M + M / (M - 1)."""
    return 2 * m + m / (m - 1)


def estimate_index_bytes(kind: str, n: int, dim: int, params: dict[str, Any] | None = None) -> int:
    """Bytes a FAISS index of this kind holds for n vectors (float32 = 4 B; ids int64 = 8 B)."""
    p = params or {}
    if kind == "flat":
        return n * (4 * dim + IDMAP_BYTES)
    if kind == "hnsw":
        m = int(p.get("M", 32))
        # vectors + int32 links + per-node offsets (8 B) and level (4 B) + id map
        return int(n * (4 * dim + 4 * hnsw_links_per_node(m) + 12 + IDMAP_BYTES))
    if kind == "sq8":
        return n * (dim + IDMAP_BYTES) + 8 * dim
    nbits = int(p.get("nbits", 8))
    m = int(p.get("m") or default_pq_m(kind, dim))
    codebooks = (2 ** nbits) * dim * 4  # m sub-quantisers x 2^nbits centroids x d/m floats
    if kind == "pq":
        return n * (math.ceil(m * nbits / 8) + IDMAP_BYTES) + codebooks
    nlist = int(p.get("nlist") or max(1, int(4 * math.sqrt(max(n, 1)))))
    centroids = nlist * dim * 4
    if kind == "ivf":
        return n * (4 * dim + 8) + centroids
    if kind == "ivfpq":
        return n * (math.ceil(m * nbits / 8) + 8) + centroids + codebooks
    raise InvalidRequestError(f"unknown index kind {kind!r}", param="kind")


def estimate_latency_ms(kind: str, n: int, dim: int, params: dict[str, Any]) -> float:
    """Rough single-query latency from the bytes a query touches (memory-bound model)."""
    if kind in ("flat", "sq8", "pq"):
        per = {"flat": 4 * dim, "sq8": dim, "pq": int(params.get("m") or default_pq_m("pq", dim))}[kind]
        return n * per / SCAN_BYTES_PER_MS
    if kind == "hnsw":
        # ~ef * M distance computations on random rows (cache misses): ~0.2 us per 4*dim bytes row at d=384
        visits = int(params.get("ef_search", 64)) * int(params.get("M", 32)) * max(1.0, math.log10(max(n, 10)))
        return visits * 4 * dim / (SCAN_BYTES_PER_MS / 4)
    nlist = int(params.get("nlist") or 1)
    nprobe = int(params.get("nprobe") or 1)
    per = 4 * dim if kind == "ivf" else int(params.get("m") or default_pq_m("ivfpq", dim))
    return (nlist * 4 * dim + n * nprobe / nlist * per) / SCAN_BYTES_PER_MS


def _pow2_nlist(n: int) -> int:
    """4*sqrt(n) rounded to a power of two (the FAISS wiki's 4*sqrt(N) .. 16*sqrt(N) guideline)."""
    return int(min(65_536, max(1, 2 ** round(math.log2(max(1.0, 4 * math.sqrt(n)))))))


def estimate_total_bytes(kind: str, n: int, dim: int, params: dict[str, Any] | None = None) -> int:
    """A whole collection in RAM: the index + the original float32 vectors + per-point bookkeeping (payloads
    themselves not included - they are whatever JSON you store)."""
    return estimate_index_bytes(kind, n, dim, params) + n * (4 * dim + POINT_BOOKKEEPING_BYTES)


def _make(kind: str, n: int, dim: int, params: dict[str, Any], reasons: list[str], shards: int = 1) -> Advice:
    idx = estimate_index_bytes(kind, n, dim, params)
    return Advice(kind, params, idx, estimate_total_bytes(kind, n, dim, params),
                  round(estimate_latency_ms(kind, n, dim, params), 3), reasons, shards)


def advise(count: int, dim: int, *, memory_budget_bytes: int | None = None,
           latency_target_ms: float | None = None) -> Advice:
    """Pick an index kind and parameters for ``count`` vectors of dimension ``dim``."""
    if count < 0:
        raise InvalidRequestError("count must be >= 0", param="count")
    if dim < 1:
        raise InvalidRequestError("dim must be >= 1", param="dim")
    if memory_budget_bytes is not None and memory_budget_bytes <= 0:
        raise InvalidRequestError("memory budget must be positive", param="memory_budget_bytes")
    n = max(count, 1)
    fits = (lambda b: True) if memory_budget_bytes is None else (lambda b: b <= memory_budget_bytes)
    budget_txt = "no memory budget" if memory_budget_bytes is None else f"budget {memory_budget_bytes / 2**20:.0f} MiB"
    hnsw_params = {"M": 32 if n <= 1_000_000 else 16, "ef_construction": 200, "ef_search": 64}
    nlist = _pow2_nlist(n)
    ivfpq_params = {"nlist": nlist, "nprobe": max(1, nlist // 32), "m": default_pq_m("ivfpq", dim), "nbits": 8}

    if count > SINGLE_NODE_MAX:
        shards = math.ceil(count / 50_000_000)
        return _make("ivfpq", n, dim, ivfpq_params, [
            f"{count:,} vectors > 100M: beyond one node's RAM even compressed - IVF-PQ with inverted lists on disk, "
            f"or {shards} shards of <= 50M (one collection per shard, merge top-k)"], shards)
    flat = _make("flat", n, dim, {}, [])
    if count < FLAT_MAX:
        slow = latency_target_ms is not None and flat.estimated_latency_ms > latency_target_ms
        if fits(flat.estimated_index_bytes) and not slow:
            return _make("flat", n, dim, {}, [
                f"{count:,} vectors < 100K: exact brute force is fast enough "
                f"(~{flat.estimated_latency_ms:.2f} ms/query) and has recall 1.0", f"{budget_txt}: fits"])
        if slow and fits(estimate_index_bytes("hnsw", n, dim, hnsw_params)):
            return _make("hnsw", n, dim, hnsw_params, [
                f"flat would take ~{flat.estimated_latency_ms:.1f} ms > target {latency_target_ms} ms: HNSW"])
        return _make("sq8", n, dim, {}, [f"flat needs {flat.estimated_index_bytes / 2**20:.1f} MiB > {budget_txt}: "
                                         "8-bit scalar quantisation is 4x smaller with ~1% recall loss"])
    hnsw = _make("hnsw", n, dim, hnsw_params, [])
    if count <= HNSW_MAX and fits(hnsw.estimated_index_bytes):
        return _make("hnsw", n, dim, hnsw_params, [
            f"{count:,} vectors in 100K-10M and HNSW fits in RAM ({hnsw.estimated_index_bytes / 2**20:.0f} MiB, "
            f"{budget_txt}): graph search, ~95-99% recall at ef_search=64-128",
            f"M={hnsw_params['M']} (16 above 1M vectors to save link memory)"])
    reasons = [f"{count:,} vectors: HNSW needs {hnsw.estimated_index_bytes / 2**20:.0f} MiB ({budget_txt})"
               if count <= HNSW_MAX else f"{count:,} vectors > 10M: HNSW's memory grows too large"]
    sq8 = _make("sq8", n, dim, {}, [])
    if count < 1_000_000 and fits(sq8.estimated_index_bytes):
        return _make("sq8", n, dim, {}, reasons + ["below 1M vectors SQ8 fits: 4x smaller than float32, "
                                                   "exhaustive and ~99% recall"])
    m = ivfpq_params["m"]
    while not fits(estimate_index_bytes("ivfpq", n, dim, {**ivfpq_params, "m": m})) and m > 1:
        m = largest_divisor_at_most(dim, m - 1)
    ivfpq_params["m"] = m
    advice = _make("ivfpq", n, dim, ivfpq_params, reasons + [
        f"IVF-PQ: {m} bytes/vector codes (vs {4 * dim} float32), nlist={nlist} ~ 4*sqrt(n), nprobe={nlist // 32 or 1}; "
        "expect 5-10% recall loss - rescore with params.refine to recover it"])
    if not fits(advice.estimated_index_bytes):
        advice.reasons.append("even the smallest IVF-PQ exceeds the budget: shard across machines")
    return advice
