"""Point storage: the original vectors, ids and payloads of a collection, addressed by int64 *slots*.

Slots are append-only: an upsert of an existing id writes a new slot and marks the old one dead, so an index never
has to update a vector in place (FAISS cannot) and a slot is a stable FAISS id until compaction renumbers them.
The original float32 vectors stay here for exact search of filtered subsets, rescoring, training and rebuilds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aisd.vector.base import Payload, PointId


@dataclass(frozen=True)
class AppendResult:
    slots: np.ndarray  # new slots, one per point (int64)
    replaced: np.ndarray  # old slots of ids that already existed (now dead)


class PointStorage:
    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self._vectors = np.zeros((capacity, dim), dtype=np.float32)
        self._alive = np.zeros(capacity, dtype=bool)
        self.ids: list[PointId] = []
        self.payloads: list[Payload | None] = []
        self.id_to_slot: dict[PointId, int] = {}
        # slot -> external id as int64 while every id is an int: building hits then gathers ids from one dense
        # array instead of chasing a pointer per hit into the ``ids`` list (a cache miss each on big collections)
        self._int_ids: np.ndarray | None = np.zeros(capacity, dtype=np.int64)

    # ---- sizes ------------------------------------------------------------------------------------------------------
    @property
    def n_slots(self) -> int:
        return len(self.ids)

    @property
    def n_alive(self) -> int:
        return len(self.id_to_slot)

    @property
    def n_dead(self) -> int:
        return self.n_slots - self.n_alive

    @property
    def vectors(self) -> np.ndarray:
        """(n_slots, dim) view, dead slots included."""
        return self._vectors[: self.n_slots]

    @property
    def alive(self) -> np.ndarray:
        """(n_slots,) bool view."""
        return self._alive[: self.n_slots]

    def live_slots(self) -> np.ndarray:
        return np.flatnonzero(self.alive)

    def nbytes(self) -> int:
        return int(self.vectors.nbytes + self.alive.nbytes)

    # ---- writes -----------------------------------------------------------------------------------------------------
    def _grow(self, need: int) -> None:
        cap = len(self._alive)
        if need <= cap:
            return
        new_cap = max(need, cap * 2)
        vectors = np.zeros((new_cap, self.dim), dtype=np.float32)
        vectors[: self.n_slots] = self.vectors
        alive = np.zeros(new_cap, dtype=bool)
        alive[: self.n_slots] = self.alive
        self._vectors, self._alive = vectors, alive
        if self._int_ids is not None:
            int_ids = np.zeros(new_cap, dtype=np.int64)
            int_ids[: self.n_slots] = self._int_ids[: self.n_slots]
            self._int_ids = int_ids

    def append(self, ids: list[PointId], x: np.ndarray, payloads: list[Payload | None]) -> AppendResult:
        start = self.n_slots
        self._grow(start + len(ids))
        replaced = [self.id_to_slot[i] for i in ids if i in self.id_to_slot]
        self._alive[replaced] = False
        slots = np.arange(start, start + len(ids), dtype=np.int64)
        self._vectors[start:start + len(ids)] = x
        self._alive[start:start + len(ids)] = True
        self._set_int_ids(start, ids)
        self.ids.extend(ids)
        self.payloads.extend(payloads)
        for i, s in zip(ids, slots.tolist(), strict=True):
            self.id_to_slot[i] = s
        return AppendResult(slots, np.asarray(replaced, dtype=np.int64))

    def _set_int_ids(self, start: int, ids: list[PointId]) -> None:
        if self._int_ids is None:
            return
        if all(type(i) is int for i in ids):
            self._int_ids[start:start + len(ids)] = ids
        else:  # a str id: from now on hits look ids up in the list
            self._int_ids = None

    @property
    def int_ids(self) -> np.ndarray | None:
        """(n_slots,) int64 external id per slot while every id is an int, else None."""
        return None if self._int_ids is None else self._int_ids[: self.n_slots]

    def ids_at(self, slots: np.ndarray) -> list[PointId | None]:
        """External ids of a 1-D slot array (None at slot -1)."""
        if self._int_ids is not None and (not len(slots) or slots.min() >= 0):
            return self._int_ids[slots].tolist()
        ids, last = self.ids, len(self.ids) - 1
        return [ids[s] if 0 <= s <= last else None for s in slots.tolist()]

    def delete(self, ids: list[PointId]) -> np.ndarray:
        """Mark ids dead; returns their slots (unknown ids are ignored)."""
        slots = [self.id_to_slot.pop(i) for i in ids if i in self.id_to_slot]
        self._alive[slots] = False
        return np.asarray(slots, dtype=np.int64)

    def compacted(self) -> tuple[PointStorage, np.ndarray]:
        """A copy without dead slots; returns (storage, old slot of each new slot)."""
        keep = self.live_slots()
        out = PointStorage(self.dim, capacity=max(1024, len(keep)))
        out.append([self.ids[s] for s in keep.tolist()], self.vectors[keep],
                   [self.payloads[s] for s in keep.tolist()])
        return out, keep

    # ---- persistence --------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"ids": self.ids, "payloads": self.payloads,
                "alive": np.packbits(self.alive).tobytes().hex()}

    @classmethod
    def restore(cls, dim: int, meta: dict[str, Any], vectors: np.ndarray) -> PointStorage:
        n = len(meta["ids"])
        st = cls(dim, capacity=max(1024, n))
        st._vectors[:n] = vectors.reshape(n, dim)
        st.ids = list(meta["ids"])
        st.payloads = list(meta["payloads"])
        st._set_int_ids(0, st.ids)
        st._alive[:n] = np.unpackbits(np.frombuffer(bytes.fromhex(meta["alive"]), dtype=np.uint8))[:n].astype(bool)
        st.id_to_slot = {st.ids[s]: s for s in np.flatnonzero(st._alive[:n]).tolist()}
        return st
