"""One contract for every retriever kind, in memory and over aisd.vector: add is idempotent per chunk id, search is
best first and honours k and metadata filters, delete removes, count counts, save + reopen keeps everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisd.embed import HashingEmbedder
from aisd.rag.documents import Chunk
from aisd.rag.retrieval import KINDS, build_retriever

TEXTS = [
    ("python-lang", "Python is a popular programming language for data science.", "tech", 2019),
    ("python-snake", "The reticulated python is the longest snake species in Asia.", "nature", 2015),
    ("rust", "Rust is a systems programming language with memory safety.", "tech", 2021),
    ("bread", "Baking sourdough bread needs flour, water, salt and a starter.", "food", 2020),
    ("pasta", "Fresh pasta is made from flour and eggs, then boiled in salted water.", "food", 2018),
    ("eagle", "Eagles are birds of prey with keen eyesight.", "nature", 2017),
]


def _chunks(texts=TEXTS) -> list[Chunk]:
    return [Chunk(id=i, doc_id=i, text=t, start=0, end=len(t), metadata={"topic": topic, "year": year})
            for i, t, topic, year in texts]


BACKENDS = ["memory", "vector"]


def _make(kind: str, backend: str, home: Path | None, store=None):
    emb = HashingEmbedder(dim=256)
    if backend == "vector":
        return build_retriever(kind, embedder=emb, home=home, vector_store=store, collection="contract")
    return build_retriever(kind, embedder=emb, home=home)


@pytest.fixture()
def vector_store(tmp_path):
    vector = pytest.importorskip("aisd.vector")
    store = vector.VectorStore(tmp_path / "vs", fsync="never")
    yield store
    store.close()


@pytest.fixture(params=[(k, b) for k in KINDS for b in BACKENDS if not (k == "bm25" and b == "vector")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def retriever(request, tmp_path):
    kind, backend = request.param
    store = request.getfixturevalue("vector_store") if backend == "vector" else None
    r = _make(kind, backend, None, store)
    r.add(_chunks())
    return r


def test_search_best_first_and_k(retriever) -> None:
    hits = retriever.search("python programming language", k=3)
    assert 1 <= len(hits) <= 3
    assert hits[0].chunk.id == "python-lang"
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    assert all(h.scores for h in hits)
    assert retriever.count() == len(TEXTS)


def test_filters(retriever) -> None:
    hits = retriever.search("programming language flour", k=10, filter={"topic": "food"})
    assert hits and {h.chunk.metadata["topic"] for h in hits} == {"food"}
    ranged = retriever.search("python snake eagles birds", k=10, filter={"year": {"gte": 2016}})
    assert ranged and all(h.chunk.metadata["year"] >= 2016 for h in ranged)
    assert retriever.search("python", k=5, filter={"topic": "nowhere"}) == []


def test_idempotent_add_and_delete(retriever) -> None:
    retriever.add(_chunks())  # re-adding the same ids replaces, never duplicates
    assert retriever.count() == len(TEXTS)
    changed = [Chunk(id="bread", doc_id="bread", text="Volcanoes erupt molten lava and ash.", start=0, end=36,
                     metadata={"topic": "geo", "year": 2022})]
    retriever.add(changed)
    assert retriever.count() == len(TEXTS)
    top = retriever.search("volcano lava eruption", k=1)[0]
    assert top.chunk.id == "bread" and top.chunk.metadata["topic"] == "geo"
    assert all("sourdough" not in h.chunk.text for h in retriever.search("sourdough starter", k=10))
    retriever.delete(["python-lang", "unknown-id"])
    assert retriever.count() == len(TEXTS) - 1
    assert all(h.chunk.id != "python-lang" for h in retriever.search("python programming", k=10))
    assert retriever.search("python programming language", k=1)[0].chunk.id != "python-lang"


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_reopen(kind, tmp_path) -> None:
    home = tmp_path / "rag"
    r = _make(kind, "memory", home)
    r.add(_chunks())
    before = [(h.chunk.id, round(h.score, 6)) for h in r.search("flour water salt", k=4)]
    r.save()
    again = _make(kind, "memory", home)
    assert again.count() == len(TEXTS)
    assert [(h.chunk.id, round(h.score, 6)) for h in again.search("flour water salt", k=4)] == before
    assert again.search("flour", k=1)[0].chunk.metadata["topic"] == "food"


def test_dense_over_vector_store_is_durable(tmp_path) -> None:
    vector = pytest.importorskip("aisd.vector")
    store = vector.VectorStore(tmp_path / "vs", fsync="always")
    r = _make("dense", "vector", None, store)
    r.add(_chunks())
    before = [h.chunk.id for h in r.search("snake species", k=3)]
    store.close()
    store2 = vector.VectorStore(tmp_path / "vs")
    r2 = _make("dense", "vector", None, store2)
    assert r2.count() == len(TEXTS)
    hits = r2.search("snake species", k=3)
    assert [h.chunk.id for h in hits] == before and hits[0].chunk.text.startswith("The reticulated")
    store2.close()
