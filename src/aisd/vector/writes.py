"""The write path of a collection: validate -> append to the WAL -> apply to memory, and WAL replay.

Live writes and recovery share one code path (``_apply``), so a replayed record changes memory exactly like the
original write did. Every write holds the write side of the collection's RW lock from the WAL append to the end of
the in-memory update, so a search never sees half a batch. ``Collection`` mixes this in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aisd.core.errors import ConflictError, InvalidRequestError
from aisd.vector.base import (
    DeleteResult,
    Payload,
    PointId,
    UpsertResult,
    check_ids,
    check_payloads,
    prepare_vectors,
)
from aisd.vector.payload_index import make_payload_index
from aisd.vector.state import CollectionState
from aisd.vector.wal import (
    OP_CREATE_PAYLOAD_INDEX,
    OP_DELETE,
    OP_DROP_PAYLOAD_INDEX,
    OP_UPSERT,
    WalRecord,
)


class WritePath(CollectionState):
    """Upsert, delete, payload-index DDL, training and WAL replay (state lives on ``Collection``)."""

    # name, dim, metric and _maybe_migrate come from Collection; _write_snapshot from IndexMaintenance.

    def _check_writable(self) -> None:
        if self._closed:
            raise ConflictError(f"collection {self.name!r} is closed")
        if self.read_only:
            raise ConflictError(f"collection {self.name!r} is open read-only (another process is the writer)",
                                code="read_only")

    def _prepare(self, vectors: Any, param: str = "vectors") -> np.ndarray:
        """Validated float32 rows (n, dim), normalised for cosine (the caller's array is never modified)."""
        return prepare_vectors(vectors, self.dim, self.metric, param=param)

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
        """Delete points by id; unknown ids are counted as ``missing``, not an error."""
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

    # ---- applying records (live writes and WAL replay) -----------------------------------------------------------
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

    # ---- training -----------------------------------------------------------------------------------------------
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
