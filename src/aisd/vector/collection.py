"""A collection: points (id, vector, payload) with a FAISS index, payload indexes, a WAL and snapshots.

This module holds the collection's lifecycle (open/recover, close), its reads (get, scroll, count) and search;
the concepts around it live beside it and are mixed into ``Collection``:

* ``writes.py`` - the write path: validate -> append to the WAL (durable under the fsync policy) -> apply to
  memory (storage, payload indexes, FAISS index); WAL replay on open uses the same ``_apply``;
* ``maintenance.py`` - snapshots, compaction, background rebuilds and the ``auto`` index migration;
* ``planner.py`` chooses a route for a (filtered) search and ``executor.py`` runs it and builds the hits.

Searches take the read side of an RW lock; writes, snapshots and index swaps the write side.
Files in the collection directory: ``collection.json`` (config), ``snapshot.bin``, ``wal.log``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from aisd.core.errors import InvalidRequestError
from aisd.vector.base import (
    MAX_K,
    CollectionConfig,
    CollectionInfo,
    Hit,
    HitArrays,
    Point,
    PointId,
    ScrollPage,
    check_ids,
    check_k,
)
from aisd.vector.executor import (
    INDEX_ONLY_PARAMS,
    QUERY_PARAMS,
    Ranked,
    check_query_params,
    execute,
    fill_short,
    hit_arrays,
    make_hits,
)
from aisd.vector.filters import Filter, FilterContext, parse_filter
from aisd.vector.indexes import IndexSpec, VectorIndex
from aisd.vector.locks import RWLock
from aisd.vector.maintenance import SNAPSHOT_FILE, IndexMaintenance
from aisd.vector.payload_index import PayloadIndex
from aisd.vector.planner import PlannerConfig, QueryPlan, choose_plan
from aisd.vector.snapshot import read_snapshot
from aisd.vector.storage import PointStorage
from aisd.vector.wal import WriteAheadLog, read_wal
from aisd.vector.writes import WritePath

log = logging.getLogger(__name__)
_NONES = itertools.repeat(None)

WAL_FILE, CONFIG_FILE = "wal.log", "collection.json"
__all__ = ["CONFIG_FILE", "QUERY_PARAMS", "SNAPSHOT_FILE", "WAL_FILE", "Collection", "read_config", "write_config"]


class Collection(WritePath, IndexMaintenance):
    """Use ``VectorStore.create_collection`` / ``get_collection``; the constructor only stores parameters."""

    def __init__(self, directory: Path, config: CollectionConfig, *, fsync: str = "always", read_only: bool = False,
                 snapshot_wal_bytes: int = 64 * 2**20, planner: PlannerConfig | None = None) -> None:
        self.directory = Path(directory)
        self.config = config
        self.read_only = read_only
        self.snapshot_wal_bytes = snapshot_wal_bytes
        self.planner = planner or PlannerConfig()
        self._wal = WriteAheadLog(self.directory / WAL_FILE, fsync=fsync)
        self._lock = RWLock()
        self._storage = PointStorage(config.dim)
        self._index = VectorIndex(self._initial_spec())
        self._payload_indexes: dict[str, PayloadIndex] = {}
        self._tombstones = 0  # dead slots still inside an index that cannot delete (HNSW)
        self._lsn = 0
        self._snapshot_lsn = 0
        self._rebuild_thread: threading.Thread | None = None
        self._migrated = False
        self._migrate_lock = threading.Lock()
        self._closed = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def metric(self) -> str:
        return self.config.metric

    def _initial_spec(self) -> IndexSpec:
        kind = "flat" if self.config.index == "auto" else self.config.index
        params = {} if self.config.index == "auto" else self.config.params
        return IndexSpec(kind, self.config.dim, self.config.metric, dict(params))

    # ---- open / recover -----------------------------------------------------------------------------------------
    def load(self) -> Collection:
        """Load the last snapshot, replay the WAL after it, and open the WAL for appending (writers only)."""
        snap_path = self.directory / SNAPSHOT_FILE
        if snap_path.exists():
            self._restore(snap_path)
        result = read_wal(self.directory / WAL_FILE, repair=not self.read_only)
        replayed = 0
        for rec in result.records:
            if rec.lsn > self._lsn:
                self._apply(rec)
                replayed += 1
        if replayed:
            log.info("collection %s: replayed %d WAL records after snapshot lsn %d", self.name, replayed,
                     self._snapshot_lsn)
        if not self.read_only:
            self._wal.open(self._lsn)
            self._maybe_migrate()
        return self

    def _restore(self, path: Path) -> None:
        snap = read_snapshot(path)
        h = snap.header
        try:
            meta = json.loads(snap.sections["points"].decode("utf-8"))
            vectors = np.frombuffer(snap.sections["vectors"], dtype=np.float32)
            self._storage = PointStorage.restore(self.dim, meta, vectors)
            spec = IndexSpec(h["active_index"], self.dim, self.metric, h.get("active_params", {}))
            self._index = VectorIndex.from_bytes(spec, snap.sections.get("index", b""), h.get("resolved_params", {}))
        except (KeyError, ValueError, RuntimeError) as e:
            from aisd.core.errors import CorruptDataError

            raise CorruptDataError(f"snapshot {path} is corrupt: {e}") from None
        self._tombstones = int(h.get("tombstones", 0))
        self._migrated = bool(h.get("migrated", False))
        for field, kind in h.get("payload_indexes", {}).items():
            self._build_payload_index(field, kind)
        self._lsn = self._snapshot_lsn = snap.lsn

    # ---- reads --------------------------------------------------------------------------------------------------
    def count(self, filter: dict[str, Any] | None = None) -> int:
        flt = parse_filter(filter)
        with self._lock.read():
            if flt is None:
                return self._storage.n_alive
            return int(flt.mask(self._ctx()).sum())

    def __len__(self) -> int:
        return self._storage.n_alive

    def get(self, ids: list[PointId], *, with_vectors: bool = False) -> list[Point]:
        """Points for the ids that exist, in the order asked."""
        ids = check_ids(ids)
        with self._lock.read():
            slots = [self._storage.id_to_slot[i] for i in ids if i in self._storage.id_to_slot]
            return [self._point(s, with_vectors) for s in slots]

    def scroll(self, limit: int = 100, offset: int | None = None, filter: dict[str, Any] | None = None, *,
               with_vectors: bool = False) -> ScrollPage:
        """Points in insertion order, ``limit`` at a time; ``offset`` is the ``next_offset`` of the previous page."""
        if not 1 <= limit <= 10_000:
            raise InvalidRequestError("limit must be in [1, 10000]", param="limit")
        flt = parse_filter(filter)
        with self._lock.read():
            mask = flt.mask(self._ctx()) if flt is not None else self._storage.alive
            slots = np.flatnonzero(mask[offset or 0:]) + (offset or 0)
            page = slots[:limit]
            nxt = int(slots[limit]) if len(slots) > limit else None
            return ScrollPage([self._point(s, with_vectors) for s in page.tolist()], nxt)

    def _point(self, slot: int, with_vectors: bool) -> Point:
        st = self._storage
        return Point(st.ids[slot], st.payloads[slot], st.vectors[slot].tolist() if with_vectors else None)

    def _ctx(self) -> FilterContext:
        return FilterContext(self._storage.payloads, self._storage.alive, self._payload_indexes)

    def search(self, vector: Any, k: int = 10, filter: dict[str, Any] | Filter | None = None,
               params: dict[str, Any] | None = None, *, with_payload: bool = True,
               with_vectors: bool = False) -> list[Hit]:
        """Top-k hits for one query vector, best first (higher score is better for every metric)."""
        q = self._prepare(vector, param="vector")[:1]
        overrides = check_query_params(params) if params else None
        if (filter is None and not with_vectors and type(k) is int and 1 <= k <= MAX_K
                and (overrides is None or INDEX_ONLY_PARAMS.issuperset(overrides))):
            # Single-query fast path (profiled: per-call overhead lives here). No plan, no mask, and as few numpy
            # calls as possible after FAISS returns - its scan has just evicted the interpreter's working set from
            # the CPU caches, so every extra call is slow. Anything unusual (tombstones, an untrained index, a short
            # row) takes the general route below, which gives the same answer.
            with self._lock.read():
                index = self._index
                if index.is_trained and not self._tombstones:
                    scores, slots = index.search(q, k, overrides)
                    row_i = slots.tolist()[0]
                    if row_i[-1] >= 0:  # a full row (FAISS pads short rows with -1 at the end)
                        st = self._storage
                        int_ids = st._int_ids
                        ids = int_ids[slots[0]].tolist() if int_ids is not None else map(st.ids.__getitem__, row_i)
                        pls = map(st.payloads.__getitem__, row_i) if with_payload else _NONES
                        return list(map(tuple.__new__, itertools.repeat(Hit), zip(ids, scores.tolist()[0], pls,
                                                                                   _NONES, strict=False)))
        return self.search_batch(q, k, filter, params, with_payload=with_payload, with_vectors=with_vectors,
                                 _prepared=True)[0]

    def search_batch(self, vectors: Any, k: int = 10, filter: dict[str, Any] | Filter | None = None,
                     params: dict[str, Any] | None = None, *, with_payload: bool = True, with_vectors: bool = False,
                     _prepared: bool = False) -> list[list[Hit]]:
        """Top-k hits for each query row: one plan and one FAISS call for the whole batch."""
        k = check_k(k)
        q = vectors if _prepared else self._prepare(vectors, param="vectors")
        overrides = check_query_params(params) if params else {}
        flt = parse_filter(filter) if filter is not None else None
        with self._lock.read():
            return make_hits(self._ranked(q, k, flt, overrides), self._storage, with_payload=with_payload,
                             with_vectors=with_vectors)

    def search_arrays(self, vectors: Any, k: int = 10, filter: dict[str, Any] | Filter | None = None,
                      params: dict[str, Any] | None = None) -> HitArrays:
        """``search_batch`` returning (nq, k) id and score arrays instead of named hits - no Python object per hit,
        for bulk work (evaluation, candidate generation); same plan, same order, no payloads."""
        k = check_k(k)
        q = self._prepare(vectors, param="vectors")
        overrides = check_query_params(params) if params else {}
        flt = parse_filter(filter) if filter is not None else None
        with self._lock.read():
            return hit_arrays(self._ranked(q, k, flt, overrides), self._storage, k)

    def _ranked(self, q: np.ndarray, k: int, flt: Filter | None, overrides: dict[str, Any]) -> Ranked:
        """Scores and slots of the top-k for each row of q; the caller holds the read lock."""
        st = self._storage
        if flt is None and not self._tombstones and self._index.is_trained and INDEX_ONLY_PARAMS.issuperset(overrides):
            # unfiltered fast path: no planning, no mask - straight to the index (same route the planner picks)
            scores, slots = self._index.search(q, k, overrides)
            ranked = Ranked(scores, slots)
            if (slots[:, -1] < 0).any():  # some row is short (e.g. HNSW missed nodes)
                ranked = fill_short(ranked, q, k, min(k, st.n_alive), st, self.metric, None)
            return ranked
        plan, mask = self._plan(flt, k, overrides)
        return execute(plan, q, k, mask, overrides, index=self._index, storage=st, metric=self.metric)

    def explain(self, filter: dict[str, Any] | None = None, k: int = 10,
                params: dict[str, Any] | None = None) -> QueryPlan:
        """The plan a search with this filter would use (strategy, selectivity, fetch size, reason)."""
        flt, overrides = parse_filter(filter), check_query_params(params)
        with self._lock.read():
            return self._plan(flt, check_k(k), overrides)[0]

    def _plan(self, flt: Filter | None, k: int, overrides: dict[str, Any]) -> tuple[QueryPlan, np.ndarray | None]:
        st = self._storage
        mask = flt.mask(self._ctx()) if flt is not None else (st.alive if self._tombstones else None)
        candidates = int(mask.sum()) if mask is not None else st.n_alive
        plan = choose_plan(kind=self._index.kind, trained=self._index.is_trained,
                           supports_selector=self._index.supports_selector, k=k, n_live=st.n_alive,
                           candidates=candidates, filtered=flt is not None, has_tombstones=self._tombstones > 0,
                           index_params=self._index.params, overrides=overrides, config=self.planner)
        return plan, mask

    # ---- status -------------------------------------------------------------------------------------------------
    def info(self) -> CollectionInfo:
        with self._lock.read():
            return CollectionInfo(
                name=self.name, dim=self.dim, metric=self.metric, index=self.config.index,
                active_index=self._index.kind, params=dict(self._index.params or self._index.spec.params),
                count=self._storage.n_alive, deleted=self._storage.n_dead, trained=self._index.is_trained,
                payload_indexes={f: p.kind for f, p in self._payload_indexes.items()},
                disk_bytes=self.disk_bytes(), wal_bytes=self._wal.size_bytes(), lsn=self._lsn,
                rebuilding=self._rebuilding())

    def close(self) -> None:
        """Wait for a background rebuild, snapshot if the WAL has records, and close the WAL."""
        if self._closed:
            return
        self.wait_for_rebuild()
        if not self.read_only:
            with self._lock.write():
                if self._lsn > self._snapshot_lsn:
                    self._write_snapshot()
                self._wal.close()
        self._closed = True


def write_config(directory: Path, config: CollectionConfig) -> None:
    """Persist collection.json atomically."""
    tmp = directory / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, directory / CONFIG_FILE)


def read_config(directory: Path) -> CollectionConfig:
    from aisd.core.errors import CorruptDataError

    path = directory / CONFIG_FILE
    try:
        return CollectionConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, InvalidRequestError) as e:
        raise CorruptDataError(f"collection config {path} is unreadable: {e}") from None
