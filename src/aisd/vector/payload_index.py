"""Payload indexes: make filters on a field cost O(matches) instead of a scan over every payload.

``keyword`` maps each scalar value (str, int, bool; list elements indexed one by one) to the slots holding it, the
inverted index Qdrant calls a "keyword/integer index". ``numeric`` keeps (value, slot) pairs sorted for ranges with
two binary searches; it is rebuilt lazily after writes. Both answer ``exists``. They also give the planner exact
cardinalities, so selectivity is measured rather than guessed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from aisd.core.errors import InvalidRequestError
from aisd.vector.filters import MISSING, get_path, is_number

PAYLOAD_INDEX_KINDS = ("keyword", "numeric")


def _key(v: Any) -> tuple[str, Any]:
    """Hash key that keeps True apart from 1 (JSON booleans are not numbers); 1 and 1.0 share a key."""
    return ("b", v) if isinstance(v, bool) else ("v", v)


class PayloadIndex(ABC):
    """Base: tracks which slots have the field at all."""

    kind = ""

    def __init__(self, field: str) -> None:
        self.field = field
        self._present: set[int] = set()

    def add(self, slot: int, payload: dict[str, Any] | None) -> None:
        v = get_path(payload, self.field)
        if v is MISSING or v is None:
            return
        self._present.add(slot)
        self._add_values(slot, v if isinstance(v, list) else [v])

    def remove(self, slot: int, payload: dict[str, Any] | None) -> None:
        v = get_path(payload, self.field)
        if v is MISSING or v is None:
            return
        self._present.discard(slot)
        self._remove_values(slot, v if isinstance(v, list) else [v])

    def exists_slots(self) -> np.ndarray:
        return np.fromiter(self._present, dtype=np.int64, count=len(self._present))

    def eq_slots(self, value: Any) -> np.ndarray | None:
        return None

    def range_slots(self, gt: Any, gte: Any, lt: Any, lte: Any) -> np.ndarray | None:
        return None

    @abstractmethod
    def _add_values(self, slot: int, values: list[Any]) -> None:
        ...

    @abstractmethod
    def _remove_values(self, slot: int, values: list[Any]) -> None:
        ...


class KeywordIndex(PayloadIndex):
    kind = "keyword"

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self._postings: dict[tuple[str, Any], set[int]] = {}

    def _add_values(self, slot: int, values: list[Any]) -> None:
        for v in values:
            if isinstance(v, str | int | float | bool):
                self._postings.setdefault(_key(v), set()).add(slot)

    def _remove_values(self, slot: int, values: list[Any]) -> None:
        for v in values:
            if isinstance(v, str | int | float | bool):
                posting = self._postings.get(_key(v))
                if posting is not None:
                    posting.discard(slot)
                    if not posting:
                        del self._postings[_key(v)]

    def eq_slots(self, value: Any) -> np.ndarray | None:
        posting = self._postings.get(_key(value), ())
        return np.fromiter(posting, dtype=np.int64, count=len(posting))

    def cardinality(self) -> int:
        return len(self._postings)


class NumericIndex(PayloadIndex):
    kind = "numeric"

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self._by_slot: dict[int, list[float]] = {}
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    def _add_values(self, slot: int, values: list[Any]) -> None:
        nums = [float(v) for v in values if is_number(v)]
        if nums:
            self._by_slot[slot] = nums
            self._sorted = None

    def _remove_values(self, slot: int, values: list[Any]) -> None:
        if self._by_slot.pop(slot, None) is not None:
            self._sorted = None

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._sorted is None:
            vals = [v for nums in self._by_slot.values() for v in nums]
            slots = [s for s, nums in self._by_slot.items() for _ in nums]
            v = np.asarray(vals, dtype=np.float64)
            s = np.asarray(slots, dtype=np.int64)
            order = np.argsort(v, kind="stable")
            self._sorted = (v[order], s[order])
        return self._sorted

    def range_slots(self, gt: Any, gte: Any, lt: Any, lte: Any) -> np.ndarray | None:
        values, slots = self._arrays()
        lo, hi = 0, len(values)
        if gte is not None:
            lo = max(lo, int(np.searchsorted(values, gte, side="left")))
        if gt is not None:
            lo = max(lo, int(np.searchsorted(values, gt, side="right")))
        if lte is not None:
            hi = min(hi, int(np.searchsorted(values, lte, side="right")))
        if lt is not None:
            hi = min(hi, int(np.searchsorted(values, lt, side="left")))
        return slots[lo:hi] if lo < hi else np.empty(0, dtype=np.int64)

    def eq_slots(self, value: Any) -> np.ndarray | None:
        if not is_number(value):  # strings/bools in a numeric field: let the evaluator scan
            return None
        return self.range_slots(None, value, None, value)


def make_payload_index(field: str, kind: str) -> PayloadIndex:
    if not isinstance(field, str) or not field:
        raise InvalidRequestError("payload index field must be a non-empty string", param="field")
    if kind == "keyword":
        return KeywordIndex(field)
    if kind == "numeric":
        return NumericIndex(field)
    raise InvalidRequestError(f"unknown payload index kind {kind!r}; expected one of: "
                              f"{', '.join(PAYLOAD_INDEX_KINDS)}", param="kind")
