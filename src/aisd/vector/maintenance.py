"""Index maintenance of a collection: snapshots, compaction, background rebuilds and the ``auto`` index migration.

A snapshot captures storage + index + payload-index definitions at the current LSN (written atomically by
``snapshot.py``) and empties the WAL. Compaction drops dead slots and rebuilds the index without tombstones. A
rebuild builds the new index from a copy of the live vectors *without* holding the lock (searches and writes go on
against the old index), then takes the write lock briefly to catch up with the writes made meanwhile and swap.
``Collection`` mixes this in.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import numpy as np

from aisd.core.errors import ConflictError
from aisd.vector.advisor import advise
from aisd.vector.base import CompactionReport
from aisd.vector.indexes import PARAMS, IndexSpec, VectorIndex
from aisd.vector.snapshot import write_snapshot
from aisd.vector.state import CollectionState

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "snapshot.bin"


class IndexMaintenance(CollectionState):
    """Snapshot, compact, rebuild and auto-migrate (state lives on ``Collection``)."""

    # name, dim, metric, _check_writable, _train_and_fill and _build_payload_index come from Collection / WritePath.

    # ---- snapshots ----------------------------------------------------------------------------------------------
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

    # ---- compaction ---------------------------------------------------------------------------------------------
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
                index = self._index  # keep what was trained; only the vectors change
                index.reset()
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
                         {k: v for k, v in advice.params.items() if k in PARAMS[advice.kind]})
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
