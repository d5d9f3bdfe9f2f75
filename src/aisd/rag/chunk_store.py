"""Chunks by id: the in-memory store every retriever shares, persisted as gzip JSON lines, plus the chunk <-> dict
(de)serialisation the aisd.vector payloads use too."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aisd.core.errors import CorruptDataError
from aisd.core.files import atomic_write
from aisd.rag.documents import Chunk
from aisd.rag.filters import filter_predicate


def chunk_to_dict(c: Chunk) -> dict[str, Any]:
    return {"id": c.id, "doc_id": c.doc_id, "text": c.text, "start": c.start, "end": c.end,
            "metadata": c.metadata, "window": c.window}


def chunk_from_dict(d: dict[str, Any]) -> Chunk:
    return Chunk(id=d["id"], doc_id=d["doc_id"], text=d["text"], start=int(d["start"]), end=int(d["end"]),
                 metadata=dict(d.get("metadata") or {}), window=d.get("window"))


class ChunkStore:
    """Chunks by id, in memory; persisted as gzip JSON lines at ``path`` on ``save()`` (loaded if present)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._chunks: dict[str, Chunk] = {}
        self._lock = threading.RLock()
        if path is not None and path.exists():
            try:
                for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines():
                    if line:
                        c = chunk_from_dict(json.loads(line))
                        self._chunks[c.id] = c
            except (OSError, EOFError, ValueError, KeyError, gzip.BadGzipFile) as e:
                raise CorruptDataError(f"chunk store {path} cannot be read: {e}") from e

    def put(self, chunks: Iterable[Chunk]) -> None:
        with self._lock:
            for c in chunks:
                self._chunks[c.id] = c

    def delete(self, ids: Iterable[str]) -> None:
        with self._lock:
            for i in ids:
                self._chunks.pop(i, None)

    def get(self, chunk_id: str) -> Chunk:
        return self._chunks[chunk_id]

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._chunks

    def __len__(self) -> int:
        return len(self._chunks)

    def ids_matching(self, flt: dict | None) -> set[str]:
        pred = filter_predicate(flt)
        with self._lock:
            return {i for i, c in self._chunks.items() if pred(c.metadata)}

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            body = "\n".join(json.dumps(chunk_to_dict(c), ensure_ascii=False, default=str)
                             for c in self._chunks.values())
        atomic_write(self.path, gzip.compress(body.encode("utf-8"), compresslevel=5))
