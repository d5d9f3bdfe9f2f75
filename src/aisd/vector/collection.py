"""A collection: points (id, vector, payload) with a FAISS index, payload indexes, a WAL and snapshots.

Write path: validate -> append to the WAL (durable under the fsync policy) -> apply to memory (storage, payload
indexes, FAISS index). Recovery applies the same records to the last snapshot, so replay and live writes share one
code path (``_apply``). Searches take the read side of an RW lock; writes, snapshots and index swaps the write side.
Files in the collection directory: ``collection.json`` (config), ``snapshot.bin``, ``wal.log``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from aisd.core.errors import ConflictError, InvalidRequestError
from aisd.vector.advisor import advise
from aisd.vector.base import (
    CollectionConfig,
    CollectionInfo,
    CompactionReport,
    DeleteResult,
    Hit,
    Payload,
    Point,
    PointId,
    ScrollPage,
    UpsertResult,
    as_matrix,
    check_ids,
    check_k,
    check_payloads,
)
from aisd.vector.filters import Filter, FilterContext, parse_filter
from aisd.vector.indexes import IndexSpec, VectorIndex, bitmap_selector
from aisd.vector.locks import RWLock
from aisd.vector.payload_index import PayloadIndex, make_payload_index
from aisd.vector.planner import PlannerConfig, QueryPlan, choose_plan
from aisd.vector.snapshot import read_snapshot, write_snapshot
from aisd.vector.storage import PointStorage
from aisd.vector.wal import (
    OP_CREATE_PAYLOAD_INDEX,
    OP_DELETE,
    OP_DROP_PAYLOAD_INDEX,
    OP_UPSERT,
    WalRecord,
    WriteAheadLog,
    read_wal,
)

log = logging.getLogger(__name__)

SNAPSHOT_FILE, WAL_FILE, CONFIG_FILE = "snapshot.bin", "wal.log", "collection.json"
QUERY_PARAMS = {"ef_search": int, "nprobe": int, "refine": int, "exact": bool, "strategy": str}


class Collection:
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

    # ---- writes -------------------------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self._closed:
            raise ConflictError(f"collection {self.name!r} is closed")
        if self.read_only:
            raise ConflictError(f"collection {self.name!r} is open read-only (another process is the writer)",
                                code="read_only")

    def _prepare(self, vectors: Any, param: str = "vectors") -> np.ndarray:
        x = as_matrix(vectors, self.dim, param=param)
        if self.metric == "cosine":
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            if (norms == 0).any():
                raise InvalidRequestError(f"{param}[{int(np.flatnonzero(norms[:, 0] == 0)[0])}] is a zero vector, "
                                          "which has no direction for cosine similarity", param=param)
            x = np.ascontiguousarray(x / norms, dtype=np.float32)
        return x

    def upsert(self, ids: list[PointId], vectors: Any, payloads: list[Payload | None] | None = None) -> UpsertResult:
        """Insert or replace points; returns once the write is durable under the fsync policy."""
        self._check_writable()
        ids = check_ids(ids)
        x = self._prepare(vectors)
        if len(x) != len(ids):
            raise InvalidRequestError(f"got {len(ids)} ids but {len(x)} vectors", param="vectors")
        pls = check_payloads(payloads, len(ids))
        if not ids:
            return UpsertResult(0, 0, self._lsn)
        with self._lock.write():
            updated = sum(1 for i in ids if i in self._storage.id_to_slot)
            lsn = self._wal.append(OP_UPSERT, {"ids": ids, "payloads": pls}, x.tobytes())
            self._apply_upsert(ids, x, pls)
            self._lsn = lsn
            self._after_write()
        self._maybe_migrate()
        return UpsertResult(len(ids) - updated, updated, lsn)

    def delete(self, ids: list[PointId]) -> DeleteResult:
        self._check_writable()
        ids = check_ids(ids)
        with self._lock.write():
            present = [i for i in ids if i in self._storage.id_to_slot]
            lsn = self._lsn
            if present:
                lsn = self._wal.append(OP_DELETE, {"ids": present})
                self._apply_delete(present)
                self._lsn = lsn
                self._after_write()
        return DeleteResult(len(present), len(ids) - len(present), lsn)

    def create_payload_index(self, field: str, kind: str = "keyword") -> None:
        """Index a payload field ("keyword": equality/in; "numeric": ranges) so filters on it skip the scan."""
        self._check_writable()
        make_payload_index(field, kind)  # validate
        with self._lock.write():
            if self._payload_indexes.get(field) is not None and self._payload_indexes[field].kind == kind:
                return
            self._lsn = self._wal.append(OP_CREATE_PAYLOAD_INDEX, {"field": field, "kind": kind})
            self._build_payload_index(field, kind)

    def drop_payload_index(self, field: str) -> None:
        self._check_writable()
        with self._lock.write():
            if field in self._payload_indexes:
                self._lsn = self._wal.append(OP_DROP_PAYLOAD_INDEX, {"field": field})
                del self._payload_indexes[field]

    def _apply(self, rec: WalRecord) -> None:
        if rec.op == OP_UPSERT:
            x = np.frombuffer(rec.blob, dtype=np.float32).reshape(-1, self.dim)
            self._apply_upsert(list(rec.meta["ids"]), x, list(rec.meta["payloads"]))
        elif rec.op == OP_DELETE:
            self._apply_delete(list(rec.meta["ids"]))
        elif rec.op == OP_CREATE_PAYLOAD_INDEX:
            self._build_payload_index(rec.meta["field"], rec.meta["kind"])
        elif rec.op == OP_DROP_PAYLOAD_INDEX:
            self._payload_indexes.pop(rec.meta["field"], None)
        self._lsn = rec.lsn

    def _apply_upsert(self, ids: list[PointId], x: np.ndarray, payloads: list[Payload | None]) -> None:
        res = self._storage.append(ids, x, payloads)
        self._unindex(res.replaced)
        for pidx in self._payload_indexes.values():
            for s, p in zip(res.slots.tolist(), payloads, strict=True):
                pidx.add(s, p)
        if self._index.is_trained:
            self._index.add(x, res.slots)
        elif self._storage.n_alive >= self._index.spec.train_size:
            self._train_and_fill(None)

    def _apply_delete(self, ids: list[PointId]) -> None:
        slots = self._storage.delete(ids)
        self._unindex(slots)

    def _unindex(self, slots: np.ndarray) -> None:
        if not len(slots):
            return
        for pidx in self._payload_indexes.values():
            for s in slots.tolist():
                pidx.remove(s, self._storage.payloads[s])
        if self._index.is_trained and not self._index.remove(slots):
            self._tombstones += len(slots)

    def _build_payload_index(self, field: str, kind: str) -> None:
        pidx = make_payload_index(field, kind)
        for s in self._storage.live_slots().tolist():
            pidx.add(s, self._storage.payloads[s])
        self._payload_indexes[field] = pidx

    def _train_and_fill(self, sample: np.ndarray | None) -> None:
        live = self._storage.live_slots()
        train_x = sample if sample is not None else self._storage.vectors[live[: self._index.spec.train_size]]
        self._index.train(train_x)
        self._index.add(self._storage.vectors[live], live)
        self._tombstones = 0

    def train(self, sample: Any | None = None) -> None:
        """Train an IVF/PQ/SQ index now, on an explicit sample or on the points stored so far (not WAL-logged:
        after a crash the index is retrained on the first ``train_size`` points when they are replayed)."""
        self._check_writable()
        x = None if sample is None else self._prepare(sample, param="sample")
        with self._lock.write():
            if not self._index.spec.needs_training:
                return
            if x is None and self._storage.n_alive == 0:
                raise InvalidRequestError("nothing to train on: pass a sample or upsert points first",
                                          param="sample")
            self._train_and_fill(x)
            self._write_snapshot()  # persist the trained index so recovery does not retrain differently

    def _after_write(self) -> None:
        if self._wal.size_bytes() >= self.snapshot_wal_bytes:
            self._write_snapshot()

    # ---- snapshots & compaction -----------------------------------------------------------------------------
    def _write_snapshot(self) -> int:
        """Snapshot everything up to the current LSN, then start an empty WAL. Caller holds the write lock."""
        header = {"name": self.name, "dim": self.dim, "metric": self.metric, "active_index": self._index.kind,
                  "active_params": self._index.spec.params, "resolved_params": self._index.params,
                  "tombstones": self._tombstones, "migrated": self._migrated,
                  "payload_indexes": {f: p.kind for f, p in self._payload_indexes.items()}}
        sections = {"points": json.dumps(self._storage.meta(), separators=(",", ":")).encode("utf-8"),
                    "vectors": self._storage.vectors.tobytes(), "index": self._index.to_bytes()}
        size = write_snapshot(self.directory / SNAPSHOT_FILE, self._lsn, header, sections)
        self._snapshot_lsn = self._lsn
        self._wal.reset()
        return size

    def snapshot(self) -> int:
        """Write a snapshot now and truncate the WAL; returns the snapshot's size in bytes."""
        self._check_writable()
        with self._lock.write():
            return self._write_snapshot()

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    def compact(self) -> CompactionReport:
        """Drop dead slots (deleted or overwritten points), rebuild the index without tombstones, snapshot, and
        report the disk bytes reclaimed."""
        self._check_writable()
        t0 = time.perf_counter()
        self.wait_for_rebuild()
        with self._lock.write():
            before = self.disk_bytes()
            removed = self._storage.n_dead
            storage, _ = self._storage.compacted()
            index = VectorIndex(self._index.spec)
            if self._index.spec.needs_training and self._index.is_trained:
                index = self._index
                index.reset()
            elif self._index.spec.needs_training:
                index = VectorIndex(self._index.spec)
            self._storage, self._index, self._tombstones = storage, index, 0
            if index.is_trained:
                index.add(storage.vectors, np.arange(storage.n_slots, dtype=np.int64))
            elif index.spec.needs_training and storage.n_alive >= index.spec.train_size:
                self._train_and_fill(None)
            for field, pidx in list(self._payload_indexes.items()):
                self._build_payload_index(field, pidx.kind)
            self._write_snapshot()
            after = self.disk_bytes()
        return CompactionReport(before, after, removed, time.perf_counter() - t0)

    # ---- auto index: advise, rebuild in the background, swap atomically -------------------------------------
    def _maybe_migrate(self) -> None:
        if self.config.index != "auto" or self._migrated or self.read_only:
            return
        with self._migrate_lock:
            if not self._migrated and not self._rebuilding() and not self._closed:
                self._start_migration()

    def _start_migration(self) -> None:
        n = self._storage.n_alive
        if n < self.config.auto_threshold:
            return
        advice = advise(max(n, self.config.auto_threshold), self.dim,
                        memory_budget_bytes=self.config.memory_budget_bytes,
                        latency_target_ms=self.config.latency_target_ms)
        if advice.kind == self._index.kind:
            self._migrated = True
            return
        log.info("collection %s: %d points crossed auto_threshold=%d; rebuilding %s -> %s in the background (%s)",
                 self.name, n, self.config.auto_threshold, self._index.kind, advice.kind, "; ".join(advice.reasons))
        spec = IndexSpec(advice.kind, self.dim, self.metric,
                         {k: v for k, v in advice.params.items() if k in _allowed(advice.kind)})
        self.rebuild(spec, background=True)

    def _rebuilding(self) -> bool:
        return self._rebuild_thread is not None and self._rebuild_thread.is_alive()

    def rebuild(self, spec: IndexSpec, *, background: bool = False) -> None:
        """Build ``spec`` from the stored vectors without blocking searches or writes, then swap it in."""
        if self._rebuilding():
            raise ConflictError(f"collection {self.name!r} is already rebuilding its index")
        if background:
            self._rebuild_thread = threading.Thread(target=self._rebuild, args=(spec,), daemon=True,
                                                    name=f"vector-rebuild:{self.name}")
            self._rebuild_thread.start()
        else:
            self._rebuild(spec)

    def _rebuild(self, spec: IndexSpec) -> None:
        try:
            with self._lock.read():  # a consistent copy of the live points
                hwm = self._storage.n_slots
                live = self._storage.live_slots()
                x = self._storage.vectors[live].copy()
            index = VectorIndex(spec)  # built without any lock: searches and writes continue
            if spec.needs_training:
                index.train(x[: max(spec.train_size, min(len(x), 50_000))])
            index.add(x, live)
            with self._lock.write():  # catch up with writes made meanwhile, then swap
                alive = self._storage.alive
                died = live[~alive[live]]
                tomb = 0 if index.remove(died) else len(died)
                new = np.flatnonzero(alive[hwm:]) + hwm
                index.add(self._storage.vectors[new], new)
                self._index, self._tombstones = index, tomb
                self._migrated = True
                if not self._closed:
                    self._write_snapshot()
            log.info("collection %s: now serving a %s index over %d points", self.name, spec.kind, len(live) + len(new))
        except Exception:  # noqa: BLE001 - a failed background build must not take the collection down
            log.exception("collection %s: background index rebuild failed; still serving the old index", self.name)

    def wait_for_rebuild(self, timeout: float | None = None) -> bool:
        """Block until a background rebuild finishes; True if none is running afterwards."""
        t = self._rebuild_thread
        if t is not None:
            t.join(timeout)
        return not self._rebuilding()

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
               params: dict[str, Any] | None = None, *, with_vectors: bool = False) -> list[Hit]:
        """Top-k hits for one query vector, best first (higher score is better for every metric)."""
        return self.search_batch(self._prepare(vector, param="vector")[:1], k, filter, params,
                                 with_vectors=with_vectors, _prepared=True)[0]

    def search_batch(self, vectors: Any, k: int = 10, filter: dict[str, Any] | Filter | None = None,
                     params: dict[str, Any] | None = None, *, with_vectors: bool = False,
                     _prepared: bool = False) -> list[list[Hit]]:
        """Top-k hits for each query row; one filter and one plan for the whole batch."""
        k = check_k(k)
        q = vectors if _prepared else self._prepare(vectors, param="vectors")
        overrides = _check_query_params(params)
        flt = parse_filter(filter)
        with self._lock.read():
            plan, mask = self._plan(flt, k, overrides)
            scores, slots = self._execute(plan, q, k, mask, overrides)
            ids, payloads, vecs = self._storage.ids, self._storage.payloads, self._storage.vectors
            new = tuple.__new__  # Hit(...) via tuple.__new__: per-hit cost is most of aisd's overhead over FAISS
            nones = itertools.repeat(None)
            out = []
            for row_s, row_i in zip(scores.tolist(), slots.tolist(), strict=True):
                if with_vectors:
                    out.append([new(Hit, (ids[s], sc, payloads[s], vecs[s].tolist()))
                                for sc, s in zip(row_s, row_i, strict=True) if s >= 0])
                elif -1 not in row_i:  # the common case, without a per-hit branch
                    out.append([new(Hit, t) for t in zip(map(ids.__getitem__, row_i), row_s,
                                                         map(payloads.__getitem__, row_i), nones, strict=False)])
                else:
                    out.append([new(Hit, (ids[s], sc, payloads[s], None))
                                for sc, s in zip(row_s, row_i, strict=True) if s >= 0])
            return out

    def explain(self, filter: dict[str, Any] | None = None, k: int = 10,
                params: dict[str, Any] | None = None) -> QueryPlan:
        """The plan a search with this filter would use (strategy, selectivity, fetch size, reason)."""
        flt, overrides = parse_filter(filter), _check_query_params(params)
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

    def _execute(self, plan: QueryPlan, q: np.ndarray, k: int, mask: np.ndarray | None,
                 overrides: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        nq = len(q)
        if plan.strategy == "empty":
            return np.empty((nq, 0), np.float32), np.empty((nq, 0), np.int64)
        if plan.strategy == "exact":
            return self._exact(q, k, mask)
        if plan.strategy == "in_index_filter":
            selector, _bits = bitmap_selector(mask)  # _bits must outlive the search
            scores, slots = self._index.search(q, plan.fetch_k, plan.index_params, selector)
        elif plan.strategy == "post_filter":
            scores, slots = self._post_filter(q, plan, mask, k * int(overrides.get("refine", 1)))
        else:
            scores, slots = self._index.search(q, plan.fetch_k, plan.index_params)
        if overrides.get("refine", 1) > 1:
            scores, slots = self._rescore(q, slots)
        scores, slots = scores[:, :k], slots[:, :k]
        want = min(k, plan.candidates)
        short = np.flatnonzero((slots >= 0).sum(axis=1) < want)
        if len(short):  # never return fewer hits than exist: redo those queries exactly
            es, ei = self._exact(q[short], k, mask)
            scores = _pad(scores, k)
            slots = _pad(slots, k, -1)
            scores[short, : es.shape[1]], slots[short, : ei.shape[1]] = es, ei
        return scores, slots

    def _post_filter(self, q: np.ndarray, plan: QueryPlan, mask: np.ndarray,
                     want: int) -> tuple[np.ndarray, np.ndarray]:
        fetch, ntotal = plan.fetch_k, self._index.ntotal
        params = dict(plan.index_params)
        while True:
            scores, slots = self._index.search(q, fetch, params)
            keep = (slots >= 0) & mask[np.clip(slots, 0, None)]
            if (keep.sum(axis=1) >= min(want, plan.candidates)).all() or fetch >= ntotal:
                break
            fetch = min(ntotal, fetch * 2)
            if "ef_search" in params:
                params["ef_search"] = max(params["ef_search"], fetch)
        order = np.argsort(~keep, axis=1, kind="stable")  # kept hits first, rank order preserved
        scores = np.take_along_axis(np.where(keep, scores, -np.inf), order, axis=1)
        slots = np.take_along_axis(np.where(keep, slots, -1), order, axis=1)
        return scores, slots

    def _exact(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        st = self._storage
        if mask is None and st.n_dead == 0:
            cand, base = None, st.vectors
        else:
            cand = np.flatnonzero(mask if mask is not None else st.alive)
            base = st.vectors[cand]
        if len(base) == 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        dist, idx = faiss.knn(q, base, min(k, len(base)), metric=metric)
        scores = -dist if self.metric == "l2" else dist
        slots = idx if cand is None else np.where(idx >= 0, cand[np.clip(idx, 0, None)], -1)
        return scores, slots

    def _rescore(self, q: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores from the original vectors for the ANN candidates (re-ranking compressed-code results)."""
        vecs = self._storage.vectors[np.clip(slots, 0, None)]  # (nq, fetch, d)
        if self.metric == "l2":
            exact = -((vecs - q[:, None, :]) ** 2).sum(axis=2)
        else:
            exact = np.einsum("qfd,qd->qf", vecs, q)
        exact = np.where(slots >= 0, exact, -np.inf)
        order = np.argsort(-exact, axis=1, kind="stable")
        return np.take_along_axis(exact, order, axis=1), np.take_along_axis(slots, order, axis=1)

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


def _allowed(kind: str) -> set[str]:
    from aisd.vector.indexes import PARAMS

    return set(PARAMS[kind])


def _check_query_params(params: dict[str, Any] | None) -> dict[str, Any]:
    if not params:
        return {}
    if not isinstance(params, dict):
        raise InvalidRequestError("params must be an object", param="params")
    out: dict[str, Any] = {}
    for key, value in params.items():
        typ = QUERY_PARAMS.get(key)
        if typ is None:
            raise InvalidRequestError(f"unknown search parameter {key!r}; expected one of: "
                                      f"{', '.join(QUERY_PARAMS)}", param=f"params.{key}")
        if typ is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidRequestError(f"params.{key} must be a positive integer", param=f"params.{key}")
        if typ is not int and not isinstance(value, typ):
            raise InvalidRequestError(f"params.{key} must be a {typ.__name__}", param=f"params.{key}")
        out[key] = value
    return out


def _pad(a: np.ndarray, k: int, fill: float = -np.inf) -> np.ndarray:
    if a.shape[1] >= k:
        return a.copy()
    out = np.full((a.shape[0], k), fill, dtype=a.dtype)
    out[:, : a.shape[1]] = a
    return out


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
