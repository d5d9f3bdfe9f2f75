"""BM25Index behaviour: ranking, incremental add/replace/delete, filters, persistence and corrupt files."""

from __future__ import annotations

import gzip

import pytest

from aisd.core.errors import CorruptDataError, InvalidRequestError, NotFoundError
from aisd.search.bm25 import BM25Config, BM25Index

DOCS = {
    "a": "Python is a programming language with dynamic typing.",
    "b": "The python is a large snake found in Africa and Asia.",
    "c": "Rust is a systems programming language focused on safety.",
    "d": "Cooking pasta requires boiling water and salt.",
}


def _index(**kw) -> BM25Index:
    idx = BM25Index(**kw)
    idx.add(list(DOCS), list(DOCS.values()))
    return idx


def test_ranking_and_no_zero_score_hits() -> None:
    idx = _index()
    hits = idx.search("programming language", k=10)
    assert {h.id for h in hits} == {"a", "c"}
    assert hits[0].score >= hits[1].score > 0
    assert idx.search("snake", 1)[0].id == "b"
    assert idx.search("quantum chromodynamics") == []
    assert idx.search("the a is") == []  # only stopwords


def test_replace_and_delete() -> None:
    idx = _index()
    idx.add(["d"], ["Snakes and pythons eat rodents."])  # replace
    assert len(idx) == 4
    assert idx.search("pasta") == []
    assert {h.id for h in idx.search("python")} == {"a", "b", "d"}
    assert idx.delete(["a", "zzz"]) == 1
    assert "a" not in idx and {h.id for h in idx.search("python")} == {"b", "d"}


def test_allowed_restricts_candidates() -> None:
    idx = _index()
    assert [h.id for h in idx.search("programming language", allowed={"c", "d"})] == ["c"]


def test_save_load_roundtrip(tmp_path) -> None:
    path = tmp_path / "x.bm25.json.gz"
    idx = _index(config=BM25Config(k1=1.2, b=0.6, method="atire"), path=path)
    idx.save()
    again = BM25Index.load(path)
    assert again.config == idx.config and again.tokenizer == idx.tokenizer
    assert again.search("python snake", 3) == idx.search("python snake", 3)
    again.delete(["b"])
    again.save()
    assert "b" not in BM25Index(path=path)
    assert not list(tmp_path.glob("*.tmp*"))


def test_errors(tmp_path) -> None:
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(CorruptDataError, match="bad.gz"):
        BM25Index(path=bad)
    wrong = tmp_path / "wrong.gz"
    wrong.write_bytes(gzip.compress(b'{"format": "other"}'))
    with pytest.raises(CorruptDataError, match="not an aisd-bm25"):
        BM25Index(path=wrong)
    with pytest.raises(NotFoundError):
        BM25Index.load(tmp_path / "missing.gz")
    with pytest.raises(InvalidRequestError):
        _index().search("x", k=0)
    with pytest.raises(InvalidRequestError, match="path"):
        _index().save()
    with pytest.raises(ValueError, match="lucene"):
        BM25Config(method="okapi2")
