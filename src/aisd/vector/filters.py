"""The payload filter language: parse a JSON filter into a tree, match payloads, and evaluate to a slot mask.

Grammar (every operator may also be written with a ``$`` prefix, Mongo/Chroma style)::

    filter    := {field: value, ...}                 # equality; several keys = and
               | {field: {op: operand, ...}}         # ops: eq ne in nin gt gte lt lte exists
               | {"and": [filter, ...]} | {"or": [filter, ...]} | {"not": filter}
    field     := a payload key, dots for nesting ("meta.lang")

Semantics (Qdrant-like): a list-valued payload field matches eq/in/range if *any* element matches; ``ne``/``nin``
match points whose field is missing or different; ranges only match numbers (never bools or strings); ``exists``
is true when the field is present and not null; booleans never equal integers (``True != 1``).
Evaluation uses payload indexes (``payload_index.py``) where they exist and scans payloads otherwise; inside an
``and`` the indexed children run first and the unindexed ones only check the surviving candidates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from aisd.core.errors import InvalidRequestError

MISSING = object()
_OPS = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists")
_BOOL = ("and", "or", "not")


def get_path(payload: dict[str, Any] | None, field: str) -> Any:
    """The value at a dotted path, or MISSING."""
    cur: Any = payload
    for part in field.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def _values(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def same(a: Any, b: Any) -> bool:
    """Equality that keeps bools apart from numbers (JSON true is not 1)."""
    return (type(a) is bool) == (type(b) is bool) and a == b


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class IndexLookup(Protocol):
    """What a payload index offers the evaluator (see payload_index.py)."""

    def eq_slots(self, value: Any) -> np.ndarray | None: ...
    def range_slots(self, gt: Any, gte: Any, lt: Any, lte: Any) -> np.ndarray | None: ...
    def exists_slots(self) -> np.ndarray: ...


@dataclass
class FilterContext:
    """What evaluation needs: the payload of every slot, which slots are alive, and payload indexes by field."""

    payloads: Sequence[dict[str, Any] | None]
    alive: np.ndarray  # bool (n_slots,)
    indexes: dict[str, IndexLookup]

    def from_slots(self, slots: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(self.alive), dtype=bool)
        mask[slots] = True
        return mask & self.alive


class Filter(ABC):
    """A node of the filter tree."""

    @abstractmethod
    def matches(self, payload: dict[str, Any] | None) -> bool:
        ...

    def indexed_mask(self, ctx: FilterContext) -> np.ndarray | None:
        """Mask from payload indexes alone, or None when some field has no usable index."""
        return None

    def mask(self, ctx: FilterContext) -> np.ndarray:
        """Alive slots that match (bool over slots)."""
        m = self.indexed_mask(ctx)
        if m is not None:
            return m
        return self._scan(ctx, np.flatnonzero(ctx.alive))

    def _scan(self, ctx: FilterContext, candidates: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ctx.alive), dtype=bool)
        payloads = ctx.payloads
        keep = [s for s in candidates.tolist() if self.matches(payloads[s])]
        out[keep] = True
        return out


@dataclass
class Eq(Filter):
    field: str
    value: Any

    def matches(self, payload: dict[str, Any] | None) -> bool:
        v = get_path(payload, self.field)
        return v is not MISSING and any(same(x, self.value) for x in _values(v))

    def indexed_mask(self, ctx: FilterContext) -> np.ndarray | None:
        idx = ctx.indexes.get(self.field)
        slots = idx.eq_slots(self.value) if idx is not None else None
        return None if slots is None else ctx.from_slots(slots)


@dataclass
class In(Filter):
    field: str
    values: list[Any]

    def matches(self, payload: dict[str, Any] | None) -> bool:
        v = get_path(payload, self.field)
        return v is not MISSING and any(same(x, y) for x in _values(v) for y in self.values)

    def indexed_mask(self, ctx: FilterContext) -> np.ndarray | None:
        idx = ctx.indexes.get(self.field)
        if idx is None:
            return None
        parts = [idx.eq_slots(v) for v in self.values]
        if any(p is None for p in parts):
            return None
        return ctx.from_slots(np.concatenate(parts) if parts else np.empty(0, np.int64))


@dataclass
class Range(Filter):
    field: str
    gt: Any = None
    gte: Any = None
    lt: Any = None
    lte: Any = None

    def _ok(self, x: Any) -> bool:
        return is_number(x) and (self.gt is None or x > self.gt) and (self.gte is None or x >= self.gte) and \
            (self.lt is None or x < self.lt) and (self.lte is None or x <= self.lte)

    def matches(self, payload: dict[str, Any] | None) -> bool:
        v = get_path(payload, self.field)
        return v is not MISSING and any(self._ok(x) for x in _values(v))

    def indexed_mask(self, ctx: FilterContext) -> np.ndarray | None:
        idx = ctx.indexes.get(self.field)
        slots = idx.range_slots(self.gt, self.gte, self.lt, self.lte) if idx is not None else None
        return None if slots is None else ctx.from_slots(slots)


@dataclass
class Exists(Filter):
    field: str

    def matches(self, payload: dict[str, Any] | None) -> bool:
        v = get_path(payload, self.field)
        return v is not MISSING and v is not None

    def indexed_mask(self, ctx: FilterContext) -> np.ndarray | None:
        idx = ctx.indexes.get(self.field)
        return None if idx is None else ctx.from_slots(idx.exists_slots())


@dataclass
class Not(Filter):
    child: Filter

    def matches(self, payload: dict[str, Any] | None) -> bool:
        return not self.child.matches(payload)

    def indexed_mask(self, ctx: FilterContext) -> np.ndarray | None:
        m = self.child.indexed_mask(ctx)
        return None if m is None else ctx.alive & ~m

    def mask(self, ctx: FilterContext) -> np.ndarray:
        return ctx.alive & ~self.child.mask(ctx)


@dataclass
class And(Filter):
    children: list[Filter]

    def matches(self, payload: dict[str, Any] | None) -> bool:
        return all(c.matches(payload) for c in self.children)

    def indexed_mask(self, ctx: FilterContext) -> np.ndarray | None:
        masks = [c.indexed_mask(ctx) for c in self.children]
        if any(m is None for m in masks):
            return None
        return np.logical_and.reduce(masks + [ctx.alive])

    def mask(self, ctx: FilterContext) -> np.ndarray:
        m = ctx.alive.copy()
        rest = []
        for c in self.children:
            cm = c.indexed_mask(ctx)
            if cm is None:
                rest.append(c)
            else:
                m &= cm
        if rest:  # unindexed conditions only look at the candidates that survived the indexed ones
            m = And(rest)._scan(ctx, np.flatnonzero(m))
        return m


@dataclass
class Or(Filter):
    children: list[Filter]

    def matches(self, payload: dict[str, Any] | None) -> bool:
        return any(c.matches(payload) for c in self.children)

    def indexed_mask(self, ctx: FilterContext) -> np.ndarray | None:
        masks = [c.indexed_mask(ctx) for c in self.children]
        if any(m is None for m in masks):
            return None
        return np.logical_or.reduce(masks) & ctx.alive if masks else np.zeros_like(ctx.alive)

    def mask(self, ctx: FilterContext) -> np.ndarray:
        out = np.zeros_like(ctx.alive)
        for c in self.children:
            out |= c.mask(ctx)
        return out


# ---- parsing ----------------------------------------------------------------------------------------------------------
def _bad(msg: str, where: str) -> InvalidRequestError:
    return InvalidRequestError(f"invalid filter at {where}: {msg}", param="filter")


def _scalar(v: Any, where: str) -> Any:
    if isinstance(v, str | int | float | bool) and v is not None:
        return v
    raise _bad(f"expected a string, number or boolean, got {type(v).__name__}", where)


def _number(v: Any, where: str) -> float | int:
    if not is_number(v):
        raise _bad(f"range bounds must be numbers, got {v!r}", where)
    return v


def _field(field: str, spec: Any, where: str) -> Filter:
    if not isinstance(spec, dict):
        return Eq(field, _scalar(spec, where))
    if not spec:
        raise _bad("empty condition", where)
    ops = {k.lstrip("$"): v for k, v in spec.items()}
    unknown = [k for k in ops if k not in _OPS]
    if unknown:
        raise _bad(f"unknown operator {unknown[0]!r}; expected one of: {', '.join(_OPS)} "
                   f"(for nested fields write 'a.b')", where)
    parts: list[Filter] = []
    bounds = {k: _number(ops[k], f"{where}.{k}") for k in ("gt", "gte", "lt", "lte") if k in ops}
    if bounds:
        parts.append(Range(field, **bounds))
    for op, v in ops.items():
        w = f"{where}.{op}"
        if op == "eq":
            parts.append(Eq(field, _scalar(v, w)))
        elif op == "ne":
            parts.append(Not(Eq(field, _scalar(v, w))))
        elif op in ("in", "nin"):
            if not isinstance(v, list):
                raise _bad("expected a list", w)
            node = In(field, [_scalar(x, w) for x in v])
            parts.append(node if op == "in" else Not(node))
        elif op == "exists":
            if not isinstance(v, bool):
                raise _bad("expected true or false", w)
            parts.append(Exists(field) if v else Not(Exists(field)))
    return parts[0] if len(parts) == 1 else And(parts)


def parse_filter(spec: dict[str, Any] | Filter | None, where: str = "filter") -> Filter | None:
    """Parse a JSON filter into a Filter tree (None or {} means no filter); errors name the offending path."""
    if spec is None or isinstance(spec, Filter):
        return spec
    if not isinstance(spec, dict):
        raise _bad(f"expected an object, got {type(spec).__name__}", where)
    if not spec:
        return None
    parts: list[Filter] = []
    for key, value in spec.items():
        if not isinstance(key, str) or not key:
            raise _bad("field names must be non-empty strings", where)
        op = key.lstrip("$")
        w = f"{where}.{key}"
        if op in ("and", "or"):
            if not isinstance(value, list) or not value:
                raise _bad("expected a non-empty list of filters", w)
            children = [parse_filter(v, f"{w}[{i}]") for i, v in enumerate(value)]
            kids = [c for c in children if c is not None]
            if op == "and":
                parts.append(And(kids) if kids else And([]))
            else:
                parts.append(Or(kids))
        elif op == "not":
            child = parse_filter(value, w)
            if child is None:
                raise _bad("'not' needs a non-empty filter", w)
            parts.append(Not(child))
        else:
            parts.append(_field(key, value, w))
    return parts[0] if len(parts) == 1 else And(parts)
