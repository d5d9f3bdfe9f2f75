"""Ingestion: documents -> chunks -> retriever, idempotent and deduplicated by content hash.

State lives in SQLite (``<rag home>/ingest.sqlite``; in memory when there is no home): one row per document id with
its content hash, the scope that loaded it (a file or folder path, with its glob), and the ids of its chunks.
Re-ingesting a scope compares against that state:
- unchanged document (same id, same hash): skipped, nothing is re-embedded;
- changed document: its old chunks are deleted from the retriever and the new ones added ("updated");
- a document of that scope that is no longer there: its chunks are deleted ("deleted");
- a new document whose content hash equals an indexed document's: recorded as a duplicate, not indexed twice.
  When the original goes away, its duplicates' rows are dropped so the next ingest of their scope indexes them.
The retriever is written first and the state last, so a crash mid-way leaves documents unrecorded and the next run
re-adds them (``Retriever.add`` replaces by chunk id), never recorded-but-missing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aisd.core.progress import progress
from aisd.core.sqlite import enable_wal, retry_busy
from aisd.rag.documents import Chunk, Document


class _Indexer(Protocol):
    def add(self, chunks: Sequence[Chunk]) -> None: ...
    def delete(self, chunk_ids: Sequence[str]) -> None: ...
    def save(self) -> None: ...


class _Splitter(Protocol):
    name: str

    def split(self, doc: Document) -> list[Chunk]: ...


@dataclass(frozen=True)
class IngestReport:
    """What one ingest call did. ``documents`` is the number of documents seen."""

    added: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0  # unchanged since the last ingest
    duplicates: int = 0  # same content as another indexed document
    chunks_added: int = 0
    chunks_deleted: int = 0
    documents: int = 0
    failed: tuple[tuple[str, str], ...] = ()  # (file, reason) of unreadable files
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "updated": self.updated, "deleted": self.deleted, "skipped": self.skipped,
                "duplicates": self.duplicates, "chunks_added": self.chunks_added,
                "chunks_deleted": self.chunks_deleted, "documents": self.documents,
                "failed": [{"file": f, "reason": r} for f, r in self.failed], "elapsed_s": round(self.elapsed_s, 3)}


@dataclass(frozen=True)
class DocumentRecord:
    """One ingested document as stored in the ingest state."""

    doc_id: str
    content_hash: str
    scope: str | None
    source: str
    title: str
    chunk_ids: tuple[str, ...]
    duplicate_of: str | None
    ingested_at: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.doc_id, "content_hash": self.content_hash, "scope": self.scope, "source": self.source,
                "title": self.title, "n_chunks": len(self.chunk_ids), "duplicate_of": self.duplicate_of,
                "ingested_at": self.ingested_at, "metadata": self.metadata}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    scope TEXT,
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    chunk_ids TEXT NOT NULL,
    duplicate_of TEXT,
    ingested_at REAL NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_hash ON documents(content_hash);
CREATE INDEX IF NOT EXISTS documents_scope ON documents(scope);
"""


class IngestState:
    """The SQLite table of ingested documents (thread-safe; WAL so readers never block the writer)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, timeout=30)
        self._lock = threading.RLock()
        with self._lock:
            if path is not None:
                enable_wal(self._db)
            retry_busy(self._db, _SCHEMA, script=True)

    @staticmethod
    def _record(row: tuple[Any, ...]) -> DocumentRecord:
        return DocumentRecord(doc_id=row[0], content_hash=row[1], scope=row[2], source=row[3], title=row[4],
                              chunk_ids=tuple(json.loads(row[5])), duplicate_of=row[6], ingested_at=row[7],
                              metadata=json.loads(row[8]))

    _COLS = "doc_id, content_hash, scope, source, title, chunk_ids, duplicate_of, ingested_at, metadata"

    def get(self, doc_id: str) -> DocumentRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._COLS} FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return self._record(row) if row else None

    def by_hash(self, content_hash: str) -> DocumentRecord | None:
        """An indexed (non-duplicate) document with this content."""
        with self._lock:
            row = self._db.execute(f"SELECT {self._COLS} FROM documents WHERE content_hash = ? AND duplicate_of IS "
                                   "NULL LIMIT 1", (content_hash,)).fetchone()
        return self._record(row) if row else None

    def in_scope(self, scope: str) -> list[DocumentRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {self._COLS} FROM documents WHERE scope = ?", (scope,)).fetchall()
        return [self._record(r) for r in rows]

    def list(self, limit: int = 100, offset: int = 0, source_prefix: str | None = None) -> list[DocumentRecord]:
        sql = f"SELECT {self._COLS} FROM documents"
        args: list[Any] = []
        if source_prefix:
            sql += " WHERE source LIKE ? ESCAPE '\\'"
            args.append(source_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        sql += " ORDER BY doc_id LIMIT ? OFFSET ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit, offset)).fetchall()
        return [self._record(r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0])

    def chunk_count(self) -> int:
        with self._lock:
            rows = self._db.execute("SELECT chunk_ids FROM documents").fetchall()
        return sum(len(json.loads(r[0])) for r in rows)

    def write(self, upserts: Iterable[DocumentRecord], deletes: Iterable[str]) -> None:
        """Apply one ingest's changes in a single transaction."""
        with self._lock, self._db:
            self._db.executemany("DELETE FROM documents WHERE doc_id = ?", [(d,) for d in deletes])
            self._db.executemany(
                f"INSERT OR REPLACE INTO documents ({self._COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.doc_id, r.content_hash, r.scope, r.source, r.title, json.dumps(list(r.chunk_ids)),
                  r.duplicate_of, r.ingested_at, json.dumps(r.metadata, default=str)) for r in upserts])

    def duplicates_of(self, doc_ids: Sequence[str]) -> list[str]:
        if not doc_ids:
            return []
        with self._lock:
            marks = ",".join("?" * len(doc_ids))
            rows = self._db.execute(f"SELECT doc_id FROM documents WHERE duplicate_of IN ({marks})",
                                    list(doc_ids)).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Ingestor:
    """Chunks documents and keeps a retriever in sync with them (see the module docstring for the rules)."""

    def __init__(self, retriever: _Indexer, chunker: _Splitter, state: IngestState, *, batch_size: int = 256) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.retriever = retriever
        self.chunker = chunker
        self.state = state
        self.batch_size = batch_size
        self._lock = threading.Lock()  # one ingest at a time per pipeline

    def ingest(self, documents: Sequence[Document], *, scope: str | None = None, delete_missing: bool = True,
               failed: Sequence[tuple[str, str]] = ()) -> IngestReport:
        """Bring the index in line with ``documents``. With a ``scope`` and ``delete_missing``, documents previously
        ingested under that scope and absent now are deleted."""
        t0 = time.perf_counter()
        with self._lock:
            return self._ingest(documents, scope, delete_missing, tuple(failed), t0)

    def _ingest(self, documents: Sequence[Document], scope: str | None, delete_missing: bool,
                failed: tuple[tuple[str, str], ...], t0: float) -> IngestReport:
        seen: dict[str, Document] = {}
        for doc in documents:  # a later document with the same id wins (the same file listed twice)
            seen[doc.id] = doc
        counts = dict(added=0, updated=0, deleted=0, skipped=0, duplicates=0, chunks_added=0, chunks_deleted=0)
        stale_chunks: list[str] = []
        delete_rows: list[str] = []
        to_index: list[tuple[Document, str]] = []  # (document, "added" | "updated")
        duplicate_rows: list[DocumentRecord] = []
        hashes_now: dict[str, str] = {}  # content hash -> doc id indexed in this run
        now = time.time()

        # documents of this scope that disappeared
        if scope is not None and delete_missing:
            for rec in self.state.in_scope(scope):
                if rec.doc_id not in seen:
                    stale_chunks.extend(rec.chunk_ids)
                    delete_rows.append(rec.doc_id)
                    counts["deleted"] += 1
        for doc in progress(list(seen.values()), desc="comparing"):
            h = doc.content_hash
            old = self.state.get(doc.id)
            if old is not None and old.content_hash == h and old.doc_id not in delete_rows:
                counts["skipped"] += 1
                continue
            original = hashes_now.get(h)
            if original is None:
                rec = self.state.by_hash(h)
                if rec is not None and rec.doc_id != doc.id and rec.doc_id not in delete_rows:
                    original = rec.doc_id
            if original is not None and original != doc.id:
                if old is not None:  # it had its own chunks before: they go, the original covers the content
                    stale_chunks.extend(old.chunk_ids)
                duplicate_rows.append(self._record(doc, scope, (), original, now))
                counts["duplicates"] += 1
                continue
            if old is not None:
                stale_chunks.extend(old.chunk_ids)
            to_index.append((doc, "updated" if old is not None else "added"))
            hashes_now[h] = doc.id
        # rows that pointed at a deleted original: drop them so their scope's next ingest indexes them
        changed = [doc.id for doc, kind in to_index if kind == "updated"]
        orphaned = [d for d in self.state.duplicates_of(delete_rows + changed) if d not in seen]

        if stale_chunks:
            self.retriever.delete(stale_chunks)
            counts["chunks_deleted"] = len(stale_chunks)
        records: list[DocumentRecord] = []
        pending: list[Chunk] = []
        for doc, kind in progress(to_index, desc="chunking + indexing"):
            chunks = self.chunker.split(doc)
            records.append(self._record(doc, scope, tuple(c.id for c in chunks), None, now))
            counts[kind] += 1
            pending.extend(chunks)
            if len(pending) >= self.batch_size:
                self.retriever.add(pending)
                counts["chunks_added"] += len(pending)
                pending = []
        if pending:
            self.retriever.add(pending)
            counts["chunks_added"] += len(pending)
        if stale_chunks or records:
            self.retriever.save()
        self.state.write(records + duplicate_rows, delete_rows + orphaned)
        return IngestReport(**counts, documents=len(seen), failed=failed, elapsed_s=time.perf_counter() - t0)

    @staticmethod
    def _record(doc: Document, scope: str | None, chunk_ids: tuple[str, ...], duplicate_of: str | None,
                now: float) -> DocumentRecord:
        meta = {k: v for k, v in doc.metadata.items() if isinstance(v, str | int | float | bool)}
        if doc.pages:
            meta["num_pages"] = len(doc.pages)
        return DocumentRecord(doc_id=doc.id, content_hash=doc.content_hash, scope=scope, source=doc.source,
                              title=doc.title, chunk_ids=chunk_ids, duplicate_of=duplicate_of, ingested_at=now,
                              metadata=meta)

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Remove documents (and their chunks) by id; returns how many existed."""
        with self._lock:
            records = [r for r in (self.state.get(d) for d in doc_ids) if r is not None]
            chunk_ids = [c for r in records for c in r.chunk_ids]
            if chunk_ids:
                self.retriever.delete(chunk_ids)
                self.retriever.save()
            ids = [r.doc_id for r in records]
            self.state.write([], ids + self.state.duplicates_of(ids))
            return len(records)
