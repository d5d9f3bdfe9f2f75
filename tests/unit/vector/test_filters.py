"""The filter language: parsing, semantics, and index-backed evaluation equal to a payload scan."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aisd.core.errors import InvalidRequestError
from aisd.vector.filters import FilterContext, parse_filter
from aisd.vector.payload_index import make_payload_index

PAYLOADS = [
    {"lang": "en", "year": 2001, "tags": ["a", "b"], "meta": {"src": "web"}, "ok": True},
    {"lang": "fr", "year": 1999, "tags": ["b"], "meta": {"src": "pdf"}, "ok": False},
    {"lang": "en", "year": 2010.5, "tags": [], "ok": 1},
    {"lang": "de", "year": "2005"},
    None,
    {"lang": "en", "year": None},
]


def matches(spec: dict) -> list[int]:
    flt = parse_filter(spec)
    return [i for i, p in enumerate(PAYLOADS) if flt.matches(p)]


@pytest.mark.parametrize("spec,expected", [
    ({"lang": "en"}, [0, 2, 5]),
    ({"lang": {"eq": "en"}}, [0, 2, 5]),
    ({"lang": {"$ne": "en"}}, [1, 3, 4]),  # ne matches missing fields too
    ({"lang": {"in": ["fr", "de"]}}, [1, 3]),
    ({"lang": {"nin": ["fr", "de"]}}, [0, 2, 4, 5]),
    ({"year": {"gte": 2001}}, [0, 2]),  # "2005" is a string: ranges only match numbers
    ({"year": {"gt": 1999, "lt": 2010}}, [0]),
    ({"year": {"lte": 1999}}, [1]),
    ({"year": {"exists": True}}, [0, 1, 2, 3]),  # null counts as absent
    ({"year": {"exists": False}}, [4, 5]),
    ({"tags": "b"}, [0, 1]),  # any element of a list
    ({"meta.src": "pdf"}, [1]),
    ({"ok": True}, [0]),  # booleans never equal integers
    ({"ok": 1}, [2]),
    ({"lang": "en", "year": {"gte": 2005}}, [2]),  # several keys = and
    ({"or": [{"lang": "fr"}, {"tags": "a"}]}, [0, 1]),
    ({"not": {"lang": "en"}}, [1, 3, 4]),
    ({"$and": [{"lang": "en"}, {"not": {"tags": "a"}}]}, [2, 5]),
])
def test_semantics(spec: dict, expected: list[int]) -> None:
    assert matches(spec) == expected


@pytest.mark.parametrize("spec,fragment", [
    ({"lang": {"like": "e%"}}, "unknown operator 'like'"),
    ({"year": {"gt": "2000"}}, "range bounds must be numbers"),
    ({"lang": {"in": "en"}}, "expected a list"),
    ({"and": []}, "non-empty list"),
    ({"lang": None}, "expected a string, number or boolean"),
    ({"x": {"exists": "yes"}}, "expected true or false"),
    ({"meta": {"src": "web"}}, "for nested fields write 'a.b'"),
])
def test_errors_name_the_path(spec: dict, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as e:
        parse_filter(spec)
    assert fragment in e.value.message and e.value.param == "filter"


def test_empty_filter_is_no_filter() -> None:
    assert parse_filter(None) is None and parse_filter({}) is None


def _ctx(payloads: list, indexed: dict[str, str]) -> FilterContext:
    idx = {}
    for field, kind in indexed.items():
        idx[field] = make_payload_index(field, kind)
        for s, p in enumerate(payloads):
            idx[field].add(s, p)
    return FilterContext(payloads, np.ones(len(payloads), dtype=bool), idx)


values = st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(0, 5), st.booleans(), st.none(),
                   st.lists(st.sampled_from(["a", "b", 1, 2]), max_size=3))
payload_st = st.one_of(st.none(), st.dictionaries(st.sampled_from(["k", "n"]), values, max_size=2))
leaf = st.one_of(
    st.builds(lambda f, v: {f: v}, st.sampled_from(["k", "n"]), st.sampled_from(["a", "b", 1, 2, True])),
    st.builds(lambda f, v: {f: {"in": v}}, st.sampled_from(["k", "n"]), st.lists(st.sampled_from(["a", 1, 3]),
                                                                                 max_size=2)),
    st.builds(lambda f, lo, hi: {f: {"gte": lo, "lt": hi}}, st.sampled_from(["k", "n"]), st.integers(0, 3),
              st.integers(1, 6)),
    st.builds(lambda f, b: {f: {"exists": b}}, st.sampled_from(["k", "n"]), st.booleans()),
    st.builds(lambda f, v: {f: {"ne": v}}, st.sampled_from(["k", "n"]), st.sampled_from(["a", 2])),
)
filters = st.recursive(leaf, lambda c: st.one_of(st.builds(lambda xs: {"and": xs}, st.lists(c, min_size=1, max_size=3)),
                                                 st.builds(lambda xs: {"or": xs}, st.lists(c, min_size=1, max_size=3)),
                                                 st.builds(lambda x: {"not": x}, c)), max_leaves=6)


@settings(max_examples=80, deadline=None)
@given(st.lists(payload_st, min_size=1, max_size=25), filters)
def test_indexed_evaluation_equals_scan(payloads: list, spec: dict) -> None:
    flt = parse_filter(spec)
    expected = np.array([flt.matches(p) for p in payloads])
    for indexed in ({}, {"k": "keyword"}, {"k": "keyword", "n": "numeric"}, {"n": "keyword"}):
        got = flt.mask(_ctx(payloads, indexed))
        assert got.tolist() == expected.tolist(), (spec, indexed)


def test_dead_slots_never_match() -> None:
    ctx = _ctx(PAYLOADS, {"lang": "keyword"})
    ctx.alive[0] = False
    assert np.flatnonzero(parse_filter({"lang": "en"}).mask(ctx)).tolist() == [2, 5]
    assert np.flatnonzero(parse_filter({"not": {"lang": "en"}}).mask(ctx)).tolist() == [1, 3, 4]
