"""What cited generation returns: numbered sources, checked citations, token usage, the trace of named steps, the
final ``Answer`` and the streaming ``AnswerEvent``s (all JSON-serialisable through ``to_dict``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Source:
    """A numbered source as shown to the model (``text`` is what it saw, possibly cut to fit the window)."""

    number: int
    chunk_id: str
    doc_id: str
    title: str
    source: str
    text: str
    score: float
    start: int
    end: int
    page: int | None = None
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "chunk_id": self.chunk_id, "doc_id": self.doc_id, "title": self.title,
                "source": self.source, "page": self.page, "start": self.start, "end": self.end,
                "score": self.score, "text": self.text, "truncated": self.truncated}


@dataclass(frozen=True)
class Citation:
    number: int
    valid: bool  # the number names a source that was in the prompt
    chunk_id: str | None = None
    doc_id: str | None = None
    inferred: bool = False  # added by post-hoc attribution, not written by the model

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "valid": self.valid, "chunk_id": self.chunk_id, "doc_id": self.doc_id,
                "inferred": self.inferred}


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.llm_calls + other.llm_calls)

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens, "llm_calls": self.llm_calls}


@dataclass(frozen=True)
class TraceStep:
    """One named step of answering (transform, retrieve, rerank, gate, route, judge, generate ...)."""

    name: str
    detail: dict[str, Any] = field(default_factory=dict)
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "detail": self.detail, "elapsed_ms": round(self.elapsed_ms, 2)}


@dataclass(frozen=True)
class Answer:
    text: str
    citations: list[Citation]
    sources: list[Source]
    not_in_sources: bool
    usage: Usage = field(default_factory=Usage)
    trace: list[TraceStep] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)
    raw_text: str = ""  # the model's text before invalid citations were removed / attributions added

    @property
    def cited_sources(self) -> list[Source]:
        numbers = {c.number for c in self.citations if c.valid}
        return [s for s in self.sources if s.number in numbers]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "not_in_sources": self.not_in_sources,
                "citations": [c.to_dict() for c in self.citations], "invalid_citations": self.invalid_citations,
                "sources": [s.to_dict() for s in self.sources], "usage": self.usage.to_dict(),
                "trace": [t.to_dict() for t in self.trace]}


@dataclass(frozen=True)
class AnswerEvent:
    """A streaming event: ``sources`` (once, first), ``delta`` (text pieces), ``done`` (the final Answer)."""

    type: str
    text: str = ""
    sources: list[Source] | None = None
    answer: Answer | None = None
    step: TraceStep | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.type == "delta":
            return {"type": "delta", "text": self.text}
        if self.type == "sources":
            return {"type": "sources", "sources": [s.to_dict() for s in self.sources or []]}
        if self.type == "step" and self.step is not None:
            return {"type": "step", "step": self.step.to_dict()}
        return {"type": self.type, "answer": self.answer.to_dict() if self.answer else None}
