"""Shared vocabulary of the vector database: metrics, point ids, named results and input validation.

Scores are "higher is better" for every metric: cosine similarity, inner product, and for L2 the *negative squared*
Euclidean distance (so ``-score`` is the squared distance FAISS reports).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from aisd.core.errors import InvalidRequestError

METRICS = ("cosine", "dot", "l2")
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf", "pq", "ivfpq", "sq8")
FSYNC_POLICIES = ("always", "batch", "never")

PointId = str | int
Payload = dict[str, Any]


class Hit(NamedTuple):
    """One search result: the point's id, its score (higher is better) and payload (and vector if asked).

    A NamedTuple rather than a frozen dataclass: building hits is the per-result cost of a search, and a tuple is
    built ~4x faster. The payload is the stored object itself: treat it as read-only."""

    id: PointId
    score: float
    payload: Payload | None = None
    vector: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "score": self.score, "payload": self.payload}
        if self.vector is not None:
            out["vector"] = self.vector
        return out


@dataclass(frozen=True)
class HitArrays:
    """A batch search's top-k as arrays (``Collection.search_arrays``), FAISS-style: no Python object per hit.

    ``ids`` (nq, k): int64 with -1 where a row has fewer than k hits when every id in the collection is an int;
    otherwise an object array of ids with None there. ``scores`` (nq, k) float32, higher is better, -inf where
    missing. Row i, column j is the j-th best hit of query i, exactly as ``search_batch`` orders them."""

    ids: np.ndarray
    scores: np.ndarray

    def to_hits(self) -> list[list[Hit]]:
        """The same result as named hits without payloads (what ``search_batch(..., with_payload=False)`` gives)."""
        def present(i: Any) -> bool:
            return i is not None if self.ids.dtype == object else i != -1

        return [[Hit(i, s) for i, s in zip(ids, scores, strict=True) if present(i)]
                for ids, scores in zip(self.ids.tolist(), self.scores.tolist(), strict=True)]


@dataclass(frozen=True)
class Point:
    """A stored point as returned by ``get`` and ``scroll``."""

    id: PointId
    payload: Payload | None
    vector: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "payload": self.payload}
        if self.vector is not None:
            out["vector"] = self.vector
        return out


@dataclass(frozen=True)
class ScrollPage:
    """A page of points in insertion order; pass ``next_offset`` back to get the next page (None = done)."""

    points: list[Point]
    next_offset: int | None


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert did: how many points were new, how many replaced, and the WAL sequence number."""

    inserted: int
    updated: int
    lsn: int


@dataclass(frozen=True)
class DeleteResult:
    deleted: int
    missing: int
    lsn: int


@dataclass(frozen=True)
class CompactionReport:
    """Result of ``Collection.compact``: disk bytes before/after and the dead slots that were dropped."""

    bytes_before: int
    bytes_after: int
    points_removed: int
    seconds: float

    @property
    def bytes_reclaimed(self) -> int:
        return self.bytes_before - self.bytes_after


@dataclass(frozen=True)
class CollectionConfig:
    """Immutable definition of a collection (persisted as ``collection.json``)."""

    name: str
    dim: int
    metric: str = "cosine"
    index: str = "auto"
    params: dict[str, Any] = field(default_factory=dict)
    # index="auto": rebuild into the advisor's choice once the collection holds this many points.
    auto_threshold: int = 100_000
    memory_budget_bytes: int | None = None
    latency_target_ms: float | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or not 1 <= self.dim <= 65_536:
            raise InvalidRequestError(f"dim must be an integer in [1, 65536], got {self.dim!r}", param="dim")
        if self.metric not in METRICS:
            raise InvalidRequestError(f"unknown metric {self.metric!r}; expected one of: {', '.join(METRICS)}",
                                      param="metric")
        if self.index not in INDEX_KINDS:
            raise InvalidRequestError(f"unknown index {self.index!r}; expected one of: {', '.join(INDEX_KINDS)}",
                                      param="index")
        if not isinstance(self.params, dict):
            raise InvalidRequestError("params must be an object", param="params")
        if self.auto_threshold < 1:
            raise InvalidRequestError("auto_threshold must be >= 1", param="auto_threshold")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "metric": self.metric, "index": self.index,
                "params": dict(self.params), "auto_threshold": self.auto_threshold,
                "memory_budget_bytes": self.memory_budget_bytes, "latency_target_ms": self.latency_target_ms}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectionConfig:
        keys = {"name", "dim", "metric", "index", "params", "auto_threshold", "memory_budget_bytes",
                "latency_target_ms"}
        return cls(**{k: v for k, v in d.items() if k in keys})


@dataclass(frozen=True)
class CollectionInfo:
    """Status of a collection, as shown by ``aisd vector info`` and ``GET /v1/collections/{name}``."""

    name: str
    dim: int
    metric: str
    index: str  # configured kind ("auto" included)
    active_index: str  # kind currently serving searches
    params: dict[str, Any]
    count: int
    deleted: int  # dead slots waiting for compaction
    trained: bool
    payload_indexes: dict[str, str]
    disk_bytes: int
    wal_bytes: int
    lsn: int
    rebuilding: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---- validation -----------------------------------------------------------------------------------------------------
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def check_name(name: str) -> None:
    """Collection names become directory names: 1-128 chars of letters, digits, ``_ - .``, not starting with '.'."""
    if not isinstance(name, str) or not name or len(name) > 128 or name[0] == "." or set(name) - _NAME_OK:
        raise InvalidRequestError(
            f"invalid collection name {name!r}: use 1-128 letters, digits, '_', '-' or '.', not starting with '.'",
            param="name")


def as_matrix(vectors: Any, dim: int, *, param: str = "vectors") -> np.ndarray:
    """Validate vectors into a C-contiguous float32 matrix of shape (n, dim); a single vector becomes (1, dim)."""
    try:
        arr = np.asarray(vectors)
    except (ValueError, TypeError) as e:  # ragged lists
        raise InvalidRequestError(f"{param} must be a rectangular array of numbers: {e}", param=param) from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidRequestError(f"{param} must contain numbers (float32/float64), got dtype {arr.dtype}",
                                  param=param)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidRequestError(f"{param} must be 1-D or 2-D, got shape {arr.shape}", param=param)
    if arr.shape[1] != dim:
        raise InvalidRequestError(f"{param} have dimension {arr.shape[1]} but the collection expects {dim}",
                                  param=param)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise InvalidRequestError(f"{param}[{bad}] contains NaN or infinity", param=param)
    return arr


def check_ids(ids: Sequence[Any], *, param: str = "ids") -> list[PointId]:
    """Ids are str (1-256 chars) or int (int64 range); bools and duplicates are rejected."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence | np.ndarray):
        raise InvalidRequestError(f"{param} must be a list of str or int ids", param=param)
    out: list[PointId] = []
    for i in ids:
        if isinstance(i, np.integer):
            i = int(i)
        if isinstance(i, bool) or not isinstance(i, str | int):
            raise InvalidRequestError(f"{param}: id {i!r} must be a string or an integer", param=param)
        if isinstance(i, str) and not 1 <= len(i) <= 256:
            raise InvalidRequestError(f"{param}: string ids must have 1-256 characters", param=param)
        if isinstance(i, int) and not -(2**63) <= i < 2**63:
            raise InvalidRequestError(f"{param}: integer id {i} is outside the int64 range", param=param)
        out.append(i)
    if len(set(out)) != len(out):
        seen: set[PointId] = set()
        dup = next(i for i in out if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise InvalidRequestError(f"{param}: id {dup!r} appears more than once in one request", param=param)
    return out


def check_payloads(payloads: Sequence[Any] | None, n: int) -> list[Payload | None]:
    """Payloads are JSON objects (or None), one per point."""
    if payloads is None:
        return [None] * n
    if len(payloads) != n:
        raise InvalidRequestError(f"got {len(payloads)} payloads for {n} ids", param="payloads")
    out: list[Payload | None] = []
    for p in payloads:
        if p is not None and not isinstance(p, dict):
            raise InvalidRequestError(f"each payload must be a JSON object or null, got {type(p).__name__}",
                                      param="payloads")
        try:
            json.dumps(p, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InvalidRequestError(f"payload is not JSON-serialisable: {e}", param="payloads") from None
        out.append(p)
    return out


MAX_K = 10_000


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
        raise InvalidRequestError(f"k must be an integer in [1, {MAX_K}], got {k!r}", param="k")
    return int(k)


_F32 = np.dtype(np.float32)


def prepare_vectors(vectors: Any, dim: int, metric: str, *, param: str = "vectors") -> np.ndarray:
    """Validated (n, dim) float32 C-contiguous rows, L2-normalised for cosine; never modifies the caller's array.

    Fast path for the common single query (a float32, C-contiguous (dim,) or (1, dim) ndarray): one dot product both
    checks finiteness (NaN/inf propagate into it) and, for cosine, gives the norm; no dtype conversion, no copy for
    dot/L2. Everything else goes through ``as_matrix``, and cosine normalises in place when that made a private copy.
    """
    if (type(vectors) is np.ndarray and vectors.dtype is _F32 and vectors.size == dim and vectors.shape[-1] == dim
            and vectors.ndim <= 2 and vectors.flags.c_contiguous):
        flat = vectors if vectors.ndim == 1 else vectors.reshape(dim)
        sq = float(flat.dot(flat))
        if math.isfinite(sq):  # else: NaN/inf in the vector, or a float32 overflow - let as_matrix decide
            q = vectors.reshape(1, dim)
            if metric != "cosine":
                return q
            if sq == 0.0:
                raise InvalidRequestError(f"{param}[0] is a zero vector, which has no direction for cosine "
                                          "similarity", param=param)
            return q * np.float32(1.0 / math.sqrt(sq))  # a new array: the caller's vector is left alone
    x = as_matrix(vectors, dim, param=param)
    if metric != "cosine":
        return x
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))[:, None]  # float64: no overflow for big values
    if (norms == 0).any():
        raise InvalidRequestError(f"{param}[{int(np.flatnonzero(norms[:, 0] == 0)[0])}] is a zero vector, which has "
                                  "no direction for cosine similarity", param=param)
    owned = not (isinstance(vectors, np.ndarray) and np.may_share_memory(x, vectors))
    if owned:
        np.divide(x, norms, out=x, casting="unsafe")  # normalise once, in place, on our private copy
        return x
    return np.ascontiguousarray(x / norms, dtype=np.float32)
