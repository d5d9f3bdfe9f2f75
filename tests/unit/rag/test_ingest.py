"""Ingestion: idempotent re-ingest (added / updated / deleted / skipped), content-hash dedup, SQLite state."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from aisd.embed.fake import HashingEmbedder
from aisd.rag.chunking import build_chunker
from aisd.rag.documents import Chunk, Document, RetrievedChunk
from aisd.rag.ingest import Ingestor, IngestState
from aisd.rag.loaders import load_path


class RecordingIndex:
    """A Retriever stand-in that records what reached it (the ingest contract is about these calls)."""

    name = "recording"

    def __init__(self) -> None:
        self.chunks: dict[str, Chunk] = {}
        self.added = 0
        self.deleted = 0
        self.saves = 0

    def add(self, chunks: Sequence[Chunk]) -> None:
        self.added += len(chunks)
        self.chunks.update({c.id: c for c in chunks})

    def delete(self, chunk_ids: Sequence[str]) -> None:
        self.deleted += len(chunk_ids)
        for c in chunk_ids:
            self.chunks.pop(c, None)

    def search(self, query: str, k: int = 10, filter: dict | None = None) -> list[RetrievedChunk]:
        return []

    def count(self) -> int:
        return len(self.chunks)

    def save(self) -> None:
        self.saves += 1


def _ingestor(tmp_path: Path | None = None) -> tuple[Ingestor, RecordingIndex]:
    index = RecordingIndex()
    chunker = build_chunker("recursive", embedder=HashingEmbedder(), chunk_size=16, chunk_overlap=0)
    state = IngestState(tmp_path / "ingest.sqlite" if tmp_path else None)
    return Ingestor(index, chunker, state, batch_size=3), index


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def _ingest_folder(ing: Ingestor, folder: Path, glob: str | None = None):  # noqa: ANN202
    loaded = load_path(folder, glob)
    return ing.ingest(loaded.documents, scope=loaded.scope)


LONG = " ".join(f"word{i}" for i in range(40))  # 40 tokens -> 3 chunks of <= 16


def test_reingest_folder_is_idempotent(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    _write(docs, {"a.txt": "alpha " + LONG, "b.txt": "beta text", "c.md": "# C\ngamma"})
    ing, index = _ingestor(tmp_path)
    r1 = _ingest_folder(ing, docs)
    assert (r1.added, r1.updated, r1.deleted, r1.skipped) == (3, 0, 0, 0)
    assert r1.chunks_added == index.count() == 5
    r2 = _ingest_folder(ing, docs)
    assert (r2.added, r2.updated, r2.deleted, r2.skipped, r2.chunks_added) == (0, 0, 0, 3, 0)
    assert index.added == 5 and index.deleted == 0  # nothing re-embedded

    (docs / "a.txt").write_text("alpha changed", encoding="utf-8")  # 3 chunks -> 1
    (docs / "b.txt").unlink()
    _write(docs, {"d.txt": "delta"})
    r3 = _ingest_folder(ing, docs)
    assert (r3.added, r3.updated, r3.deleted, r3.skipped) == (1, 1, 1, 1)
    assert r3.chunks_deleted == 4 and r3.chunks_added == 2
    texts = sorted(c.text for c in index.chunks.values())
    assert texts == ["# C\ngamma", "alpha changed", "delta"]
    assert ing.state.count() == 3


def test_state_survives_a_new_process(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    _write(docs, {"a.txt": "alpha", "b.txt": "beta"})
    ing, _ = _ingestor(tmp_path)
    _ingest_folder(ing, docs)
    ing.state.close()
    ing2, index2 = _ingestor(tmp_path)  # same SQLite file, fresh objects
    r = _ingest_folder(ing2, docs)
    assert r.skipped == 2 and index2.added == 0
    assert {rec.doc_id for rec in ing2.state.list()} == {str((docs / n).resolve()) for n in ("a.txt", "b.txt")}


def test_scopes_do_not_delete_each_other(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    _write(one, {"a.txt": "from one"})
    _write(two, {"b.txt": "from two"})
    ing, index = _ingestor()
    _ingest_folder(ing, one)
    _ingest_folder(ing, two)
    (one / "a.txt").unlink()
    _write(one, {"c.txt": "new in one"})
    r = _ingest_folder(ing, one)
    assert r.deleted == 1 and r.added == 1
    assert sorted(c.text for c in index.chunks.values()) == ["from two", "new in one"]


def test_content_hash_dedup_and_promotion(tmp_path: Path) -> None:
    ing, index = _ingestor()
    same = "identical content in two places"
    r = ing.ingest([Document("x", same, "s1"), Document("y", same, "s2"), Document("z", "other", "s3")])
    assert (r.added, r.duplicates) == (2, 1)
    assert index.count() == 2
    assert ing.state.get("y").duplicate_of == "x"
    # the original goes away: the duplicate's row is dropped, so ingesting it again indexes it
    assert ing.delete(["x"]) == 1
    assert ing.state.get("y") is None
    r2 = ing.ingest([Document("y", same, "s2")])
    assert r2.added == 1 and sorted(c.text for c in index.chunks.values()) == [same, "other"]


def test_duplicate_that_changes_gets_indexed() -> None:
    ing, index = _ingestor()
    ing.ingest([Document("x", "same text", "s"), Document("y", "same text", "s")])
    r = ing.ingest([Document("y", "now different", "s")])
    assert r.updated == 1 and "now different" in [c.text for c in index.chunks.values()]


def test_explicit_documents_are_never_deleted_by_absence() -> None:
    ing, index = _ingestor()
    ing.ingest([Document("a", "one", "s"), Document("b", "two", "s")])
    r = ing.ingest([Document("a", "one", "s")])
    assert (r.skipped, r.deleted) == (1, 0) and index.count() == 2


def test_crash_between_index_and_state_recovers() -> None:
    """The index is written before the state: if the state write never happens, the next run re-adds."""
    ing, index = _ingestor()

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")

    original = ing.state.write
    ing.state.write = boom  # type: ignore[method-assign]
    with pytest.raises(OSError):
        ing.ingest([Document("a", "one", "s")])
    ing.state.write = original  # type: ignore[method-assign]
    r = ing.ingest([Document("a", "one", "s")])
    assert r.added == 1 and index.count() == 1  # replaced by chunk id, not duplicated


def test_report_and_records_serialise() -> None:
    ing, _ = _ingestor()
    r = ing.ingest([Document("a", "alpha " + LONG, "src", title="A", metadata={"lang": "en", "obj": object()})])
    d = r.to_dict()
    assert d["added"] == 1 and d["chunks_added"] == 3 and isinstance(d["elapsed_s"], float)
    rec = ing.state.get("a")
    assert rec.to_dict()["n_chunks"] == 3 and rec.metadata == {"lang": "en"} and rec.title == "A"
