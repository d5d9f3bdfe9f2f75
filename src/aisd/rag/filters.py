"""Metadata filters over ``Chunk.metadata`` for the in-memory retrieval paths, with aisd.vector's semantics.

``{field: value}`` is equality; ``{field: {op: v}}`` with op in eq, ne, in, nin, gt, gte, lt, lte, exists, range;
``and`` / ``or`` / ``not`` combine filters. ``filter_predicate`` uses aisd.vector's parser (which validates the filter
and names a bad field); ``matches_filter`` is the dependency-free evaluator with the same meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aisd.core.errors import InvalidRequestError

_MISSING = object()
_OPS = {"eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists"}


def _cmp(op: str, have: Any, want: Any) -> bool:
    if op == "exists":
        return (have is not _MISSING) == bool(want)
    if have is _MISSING:
        return op in ("ne", "nin")
    if op == "eq":
        return have == want or (isinstance(have, list) and want in have)
    if op == "ne":
        return not _cmp("eq", have, want)
    if op == "in":
        return any(_cmp("eq", have, w) for w in want)
    if op == "nin":
        return not _cmp("in", have, want)
    try:
        if op == "gt":
            return have > want
        if op == "gte":
            return have >= want
        if op == "lt":
            return have < want
        if op == "lte":
            return have <= want
    except TypeError:
        return False
    raise InvalidRequestError(f"unknown filter operator {op!r}; allowed: {', '.join(sorted(_OPS))}", param="filter")


def matches_filter(flt: dict[str, Any] | None, payload: dict[str, Any]) -> bool:
    """Does ``payload`` satisfy ``flt``? ``{field: value}`` = equality (a list value = any of), ``{field: {op: v}}``
    with op in eq, ne, in, nin, gt, gte, lt, lte, exists (a leading ``$`` is accepted), and ``and`` / ``or`` (lists
    of filters) and ``not`` (a filter). Several keys in one dict must all hold."""
    if not flt:
        return True
    if not isinstance(flt, dict):
        raise InvalidRequestError(f"a filter must be an object, got {type(flt).__name__}", param="filter")
    for key, cond in flt.items():
        k = key.lstrip("$")
        if k in ("and", "must"):
            if not all(matches_filter(c, payload) for c in cond):
                return False
        elif k in ("or", "should"):
            if not any(matches_filter(c, payload) for c in cond):
                return False
        elif k in ("not", "must_not"):
            subs = cond if isinstance(cond, list) else [cond]
            if any(matches_filter(c, payload) for c in subs):
                return False
        else:
            have = payload.get(key, _MISSING)
            if isinstance(cond, dict):
                for op, want in cond.items():
                    o = op.lstrip("$")
                    if o == "range":
                        if not all(_cmp(r, have, v) for r, v in want.items()):
                            return False
                    elif o not in _OPS:
                        raise InvalidRequestError(f"unknown filter operator {op!r} on field {key!r}; allowed: "
                                                  f"{', '.join(sorted(_OPS | {'range'}))}", param="filter")
                    elif not _cmp(o, have, want):
                        return False
            elif isinstance(cond, list):
                if not _cmp("in", have, cond):
                    return False
            elif not _cmp("eq", have, cond):
                return False
    return True


def filter_predicate(flt: dict[str, Any] | None) -> Callable[[dict[str, Any]], bool]:
    """A payload predicate with aisd.vector's exact semantics (its parser validates the filter and names a bad
    field); ``matches_filter`` above is the fallback when aisd.vector is not importable."""
    if not flt:
        return lambda payload: True
    try:
        from aisd.vector.filters import parse_filter
    except ImportError:  # pragma: no cover - aisd.vector ships with aisd
        return lambda payload: matches_filter(flt, payload)
    parsed = parse_filter(flt)
    return (lambda payload: True) if parsed is None else parsed.matches
