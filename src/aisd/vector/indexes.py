"""Index kinds on FAISS: flat, hnsw, ivf (IVF-Flat), pq, ivfpq (IVF-PQ) and sq8 (8-bit scalar quantisation).

Every index stores int64 ids that are the collection's storage *slots*, so a FAISS ``IDSelectorBitmap`` over slots
filters inside the index. Kinds without native ids (flat, hnsw, pq, sq8) are wrapped in ``IndexIDMap2`` (FAISS
translates selectors through the map). HNSW cannot delete (``remove_ids`` is not implemented for graphs), so the
collection keeps tombstones for it and rebuilds on compaction. Cosine is inner product on L2-normalised vectors
(the collection normalises), and L2 scores are the negative squared distance so higher is always better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from aisd.core.errors import InvalidRequestError
from aisd.core.memory import release_free_memory

# Allowed build + search parameters per kind (search-time ones may also be overridden per query).
PARAMS: dict[str, dict[str, type]] = {
    "flat": {},
    "hnsw": {"M": int, "ef_construction": int, "ef_search": int},
    "ivf": {"nlist": int, "nprobe": int, "train_size": int},
    "pq": {"m": int, "nbits": int, "train_size": int},
    "ivfpq": {"nlist": int, "nprobe": int, "m": int, "nbits": int, "train_size": int},
    "sq8": {"train_size": int},
}
SEARCH_PARAMS: dict[str, tuple[str, ...]] = {"hnsw": ("ef_search",), "ivf": ("nprobe",), "ivfpq": ("nprobe",)}
DEFAULTS: dict[str, dict[str, Any]] = {
    "hnsw": {"M": 32, "ef_construction": 100, "ef_search": 64},
    "ivf": {"train_size": 10_000},
    "pq": {"nbits": 8, "train_size": 10_000},
    "ivfpq": {"nbits": 8, "train_size": 10_000},
    "sq8": {"train_size": 1_000},
}
TRAINED_KINDS = ("ivf", "pq", "ivfpq", "sq8")
_F32 = np.dtype(np.float32)


# Below this many vectors an IVF index is small enough that where its lists live does not matter.
RELAYOUT_MIN = 10_000


def auto_nlist(n: int) -> int:
    """IVF list count: ~4*sqrt(n) (the FAISS wiki's guideline), capped so each centroid gets >= 39 training points."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def largest_divisor_at_most(d: int, limit: int) -> int:
    """PQ needs m | d: the largest divisor of d that is <= limit (>= 1)."""
    for m in range(max(1, min(limit, d)), 0, -1):
        if d % m == 0:
            return m
    return 1


def default_pq_m(kind: str, dim: int) -> int:
    """PQ sub-quantisers: d/4 for pq (16x smaller than float32), d/8 for ivfpq (32x), rounded to a divisor of d."""
    return largest_divisor_at_most(dim, max(1, dim // (4 if kind == "pq" else 8)))


@dataclass(frozen=True)
class IndexSpec:
    """A concrete index kind with its parameters (unset ones are filled in at train time)."""

    kind: str
    dim: int
    metric: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in PARAMS:
            raise InvalidRequestError(f"unknown index kind {self.kind!r}; expected one of: {', '.join(PARAMS)}",
                                      param="index")
        allowed = PARAMS[self.kind]
        for key, value in self.params.items():
            if key not in allowed:
                raise InvalidRequestError(
                    f"parameter {key!r} is not valid for index {self.kind!r}; allowed: "
                    f"{', '.join(allowed) or '(none)'}", param=f"params.{key}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidRequestError(f"params.{key} must be a positive integer, got {value!r}",
                                          param=f"params.{key}")
        m = self.params.get("m")
        if m is not None and self.dim % m:
            raise InvalidRequestError(f"params.m={m} must divide the dimension {self.dim}", param="params.m")
        if self.params.get("nbits") is not None and not 1 <= self.params["nbits"] <= 16:
            raise InvalidRequestError("params.nbits must be in [1, 16]", param="params.nbits")
        if self.kind == "hnsw" and self.params.get("M", 32) < 2:
            raise InvalidRequestError("params.M must be >= 2", param="params.M")

    def get(self, key: str) -> Any:
        return self.params.get(key, DEFAULTS.get(self.kind, {}).get(key))

    @property
    def needs_training(self) -> bool:
        return self.kind in TRAINED_KINDS

    @property
    def train_size(self) -> int:
        """How many vectors to buffer (served by exact search) before training on them."""
        return int(self.get("train_size") or 0)

    def resolved(self, n_train: int) -> dict[str, Any]:
        """All parameters with defaults filled in for a training set of n_train vectors."""
        out = {**DEFAULTS.get(self.kind, {}), **self.params}
        if self.kind in ("ivf", "ivfpq"):
            out.setdefault("nlist", auto_nlist(n_train))
            out.setdefault("nprobe", max(1, min(out["nlist"], out["nlist"] // 8 or 1)))
        if self.kind in ("pq", "ivfpq"):
            out.setdefault("m", default_pq_m(self.kind, self.dim))
        return out


def faiss_metric(metric: str) -> int:
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def build_faiss(spec: IndexSpec, n_train: int = 0) -> faiss.Index:
    """An empty (possibly untrained) FAISS index that accepts ``add_with_ids``; raw FAISS baselines use this too."""
    d, metric, p = spec.dim, faiss_metric(spec.metric), spec.resolved(n_train)
    if spec.kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlat(d, metric))
    if spec.kind == "hnsw":
        inner = faiss.IndexHNSWFlat(d, p["M"], metric)
        inner.hnsw.efConstruction = p["ef_construction"]
        inner.hnsw.efSearch = p["ef_search"]
        return faiss.IndexIDMap2(inner)
    if spec.kind == "ivf":
        quantizer = faiss.IndexFlat(d, metric)
        index = faiss.IndexIVFFlat(quantizer, d, p["nlist"], metric)
    elif spec.kind == "ivfpq":
        quantizer = faiss.IndexFlat(d, metric)
        index = faiss.IndexIVFPQ(quantizer, d, p["nlist"], p["m"], p["nbits"], metric)
    elif spec.kind == "pq":
        return faiss.IndexIDMap2(faiss.IndexPQ(d, p["m"], p["nbits"], metric))
    else:  # sq8
        return faiss.IndexIDMap2(faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, metric))
    index.nprobe = p["nprobe"]
    index.own_fields = True  # the IVF owns its quantizer (needed once the Python reference goes away)
    quantizer.this.disown()
    return index


class VectorIndex:
    """One FAISS index whose ids are storage slots, with per-query parameters and in-index filtering."""

    def __init__(self, spec: IndexSpec) -> None:
        self.spec = spec
        self.params: dict[str, Any] = spec.resolved(spec.train_size) if not spec.needs_training else {}
        self._index: faiss.Index | None = None if spec.needs_training else build_faiss(spec)
        self._trained = self._index is not None  # cached: FAISS's is_trained is a SWIG call on every search
        self._params_cache: dict[int, Any] = {}  # ef_search / nprobe -> SearchParameters (read-only in FAISS)
        self._laid_out_at = 0  # ntotal when the inverted lists were last laid out contiguously (IVF kinds)

    # ---- capabilities ------------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def is_trained(self) -> bool:
        return self._trained

    @property
    def supports_remove(self) -> bool:
        return self.kind != "hnsw"

    @property
    def supports_selector(self) -> bool:
        return self.kind != "pq"  # IndexPQ::search rejects SearchParameters

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    # ---- building ----------------------------------------------------------------------------------------------
    def train(self, x: np.ndarray) -> None:
        """Train quantisers on x (n, d); fills in the automatic parameters from n."""
        if not self.spec.needs_training:
            return
        if len(x) < 1:
            raise InvalidRequestError("cannot train an index on zero vectors", param="vectors")
        self.params = self.spec.resolved(len(x))
        index = build_faiss(self.spec, len(x))
        if self.kind in ("ivf", "ivfpq") and self.params["nlist"] > len(x):
            raise InvalidRequestError(f"nlist={self.params['nlist']} needs at least that many training vectors, "
                                      f"got {len(x)}", param="params.nlist")
        if self.kind in ("pq", "ivfpq") and 2 ** self.params["nbits"] > len(x):
            raise InvalidRequestError(f"nbits={self.params['nbits']} needs at least {2 ** self.params['nbits']} "
                                      f"training vectors, got {len(x)}", param="params.nbits")
        index.train(np.ascontiguousarray(x, dtype=np.float32))
        self._index = index
        self._trained = bool(index.is_trained)
        self._params_cache = {}

    def add(self, x: np.ndarray, slots: np.ndarray) -> None:
        assert self._index is not None and self.is_trained, "add() before train()"
        if len(x):
            self._index.add_with_ids(np.ascontiguousarray(x, dtype=np.float32), slots.astype(np.int64))
            if self.kind in ("ivf", "ivfpq") and self.ntotal >= max(2 * self._laid_out_at, RELAYOUT_MIN):
                self.relayout()

    def relayout(self) -> None:
        """Copy an IVF index's inverted lists into freshly allocated ones, list after list. Lists grown by many
        separate adds end up scattered among the process's other allocations; scanning them was measured 4-10%
        slower than the same lists laid out in one pass (53k x 384, IVF512: 19.4 -> 17.1 ms per 500 queries at
        nprobe 4). Done when the index has doubled since the last layout, so the copying is O(1) amortised per
        vector (~50 ms per 80 MB). Caller holds the write lock; ids, codes and results are unchanged."""
        ivf = faiss.extract_index_ivf(self._index)
        old = faiss.downcast_InvertedLists(ivf.invlists)
        if not isinstance(old, faiss.ArrayInvertedLists):
            return
        new = faiss.ArrayInvertedLists(old.nlist, old.code_size)
        for lst in range(old.nlist):
            size = old.list_size(lst)
            if size:
                new.add_entries(lst, size, old.get_ids(lst), old.get_codes(lst))
        ivf.replace_invlists(new, True)
        new.this.disown()  # the index owns it now
        self._laid_out_at = self.ntotal
        release_free_memory()  # the old lists' pages (else RSS stays ~10% above the index size: 355 vs 318 MiB)

    def remove(self, slots: np.ndarray) -> bool:
        """Remove slots from the index; False when the kind cannot delete (the caller keeps tombstones)."""
        if self._index is None or not len(slots):
            return True
        if not self.supports_remove:
            return False
        self._index.remove_ids(np.ascontiguousarray(slots, dtype=np.int64))
        return True

    def reset(self) -> None:
        """Drop all vectors but keep what was trained."""
        if self._index is not None:
            self._index.reset()
            if self.kind == "hnsw":  # HNSW graphs cannot be reset in place
                self._index = build_faiss(self.spec)

    # ---- searching ---------------------------------------------------------------------------------------------
    def search(self, q: np.ndarray, k: int, overrides: dict[str, Any] | None = None,
               selector: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of q (nq, d) -> (scores (nq, k) higher-is-better, slots (nq, k) with -1 for missing)."""
        index = self._index
        assert index is not None and self._trained
        params = self._search_params(overrides or {}, selector)
        n, k = len(q), min(k, max(1, int(index.ntotal)))
        if q.dtype is not _F32 or not q.flags.c_contiguous:
            q = np.ascontiguousarray(q, dtype=np.float32)
        dist = np.empty((n, k), dtype=np.float32)
        slots = np.empty((n, k), dtype=np.int64)
        # What FAISS's Python search() wrapper does, minus re-validating a query matrix the collection already
        # validated (~4 us a call); one call for the whole batch, the GIL released inside.
        index.search_c(n, faiss.swig_ptr(q), k, faiss.swig_ptr(dist), faiss.swig_ptr(slots), params)
        if self.spec.metric == "l2":
            np.negative(dist, out=dist)
        return dist, slots

    def _search_params(self, overrides: dict[str, Any], selector: Any | None) -> Any | None:
        if self.kind == "hnsw":
            ef = int(overrides.get("ef_search", self.params["ef_search"]))
            if selector is not None:
                return faiss.SearchParametersHNSW(efSearch=ef, sel=selector)
            params = self._params_cache.get(ef)
            if params is None:  # building one costs a few us of SWIG calls; FAISS only reads it during a search
                params = self._cache_params(ef, faiss.SearchParametersHNSW(efSearch=ef))
            return params
        if self.kind in ("ivf", "ivfpq"):
            nprobe = min(int(overrides.get("nprobe", self.params["nprobe"])), self.params["nlist"])
            if selector is not None:
                return faiss.SearchParametersIVF(nprobe=nprobe, sel=selector)
            params = self._params_cache.get(nprobe)
            if params is None:
                params = self._cache_params(nprobe, faiss.SearchParametersIVF(nprobe=nprobe))
            return params
        if selector is not None and self.supports_selector:
            return faiss.SearchParameters(sel=selector)
        return None

    def _cache_params(self, key: int, params: Any) -> Any:
        if len(self._params_cache) >= 256:  # post-filter retries widen ef_search freely: keep the cache bounded
            self._params_cache = {}
        self._params_cache[key] = params
        return params

    # ---- persistence -------------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        if self._index is None:
            return b""
        return faiss.serialize_index(self._index).tobytes()

    @classmethod
    def from_bytes(cls, spec: IndexSpec, data: bytes, params: dict[str, Any]) -> VectorIndex:
        index = cls(spec)
        if data:
            index._index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
            index._trained = bool(index._index.is_trained)
            index.params = params or spec.resolved(spec.train_size)
            index._laid_out_at = index.ntotal  # deserialising allocates the lists one after another
        return index


def bitmap_selector(mask: np.ndarray) -> tuple[Any, np.ndarray]:
    """An IDSelectorBitmap over slots; returns (selector, packed bits) - keep the bits alive during the search."""
    bits = np.packbits(mask.astype(bool), bitorder="little")
    return faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits)), bits
