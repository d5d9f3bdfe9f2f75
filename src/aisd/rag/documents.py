"""The records RAG passes between stages: Document (a loaded source), Chunk (a piece of one, with offsets),
RetrievedChunk (a chunk with a score from a retriever or reranker)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from aisd.core.hashing import sha256_hex


@dataclass(frozen=True)
class Document:
    """A loaded source document. ``id`` is stable for a source (its path or BEIR id); ``content_hash`` changes
    whenever the text does, which is what makes re-ingestion idempotent."""

    id: str
    text: str
    source: str  # a path, URL or data set name
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # (page number, start char) for each page of a paged source (PDF), in order; empty when not paged
    pages: tuple[tuple[int, int], ...] = ()

    @property
    def content_hash(self) -> str:
        return sha256_hex(self.title + "\x00" + self.text)

    def page_at(self, offset: int) -> int | None:
        """The page that holds character ``offset``, or None for unpaged documents."""
        page = None
        for number, start in self.pages:
            if start > offset:
                break
            page = number
        return page


@dataclass(frozen=True)
class Chunk:
    """A span of a document: ``text == document.text[start:end]`` (for sentence-window chunks, ``text`` is the
    indexed sentence and ``window`` the surrounding text returned to the LLM)."""

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)  # source, title, page, chunker ... (filterable)
    window: str | None = None

    @property
    def context_text(self) -> str:
        """What generation sees: the window when there is one, else the chunk text."""
        return self.window if self.window is not None else self.text


@dataclass(frozen=True)
class RetrievedChunk:
    """A chunk and the score a retriever or reranker gave it (higher is better); ``scores`` keeps per-stage
    scores (e.g. {"bm25": 7.1, "dense": 0.62, "rrf": 0.032}) for explanations and evaluation."""

    chunk: Chunk
    score: float
    scores: dict[str, float] = field(default_factory=dict)

    def with_score(self, stage: str, score: float) -> RetrievedChunk:
        return replace(self, score=score, scores={**self.scores, stage: score})
