"""Chunkers: split a Document into Chunks sized in tokens of the embedder's tokenizer, each keeping exact character
offsets into its document (``chunk.text == doc.text[chunk.start:chunk.end]``).

Five strategies, chosen by name through ``CHUNKERS`` / ``build_chunker``:
- ``fixed``: windows of ``chunk_size`` tokens, stepping ``chunk_size - chunk_overlap`` tokens.
- ``recursive``: split on a separator hierarchy (blank line, line, sentence end, space, then tokens) and merge
  neighbouring pieces up to ``chunk_size`` tokens with up to ``chunk_overlap`` tokens carried over (the scheme of
  LangChain's RecursiveCharacterTextSplitter, counted in embedder tokens instead of characters).
- ``sentence``: whole sentences packed up to ``chunk_size`` tokens, overlapping by whole sentences.
- ``semantic``: sentences grouped until the embedding similarity of adjacent sentences drops below the
  ``breakpoint_percentile``-th percentile of all adjacent similarities (Kamradt's "semantic chunking", as in
  LlamaIndex's SemanticSplitterNodeParser), groups capped at ``chunk_size`` tokens.
- ``sentence-window``: one chunk per sentence (what is embedded and matched) whose ``window`` holds the
  ``window`` sentences either side (what generation reads; LlamaIndex's SentenceWindowNodeParser).

Token counts come from ``Embedder.token_spans`` over the whole document once; counting any span is then a binary
search over token start offsets, so every chunker is O(n log n) in document length.
"""

from __future__ import annotations

import bisect
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from aisd.core.registry import Registry
from aisd.embed.base import Embedder, TokenSpan
from aisd.rag.documents import Chunk, Document

DEFAULT_SEPARATORS: tuple[str, ...] = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")


@dataclass(frozen=True)
class ChunkerConfig:
    chunk_size: int = 256  # tokens of the embedder's tokenizer
    chunk_overlap: int = 32  # tokens (fixed, recursive) or the token budget of carried-over sentences (sentence)
    separators: tuple[str, ...] = DEFAULT_SEPARATORS
    breakpoint_percentile: float = 10.0  # semantic: split where similarity < this percentile of similarities
    window: int = 2  # sentence-window: sentences either side
    buffer: int = 1  # semantic: sentences compared on each side of a candidate break
    min_chunk_chars: int = 1  # drop whitespace-only / tiny chunks

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 token, got {self.chunk_size}")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ValueError(f"chunk_overlap must be in [0, chunk_size={self.chunk_size}), got {self.chunk_overlap}")
        if not 0.0 <= self.breakpoint_percentile <= 100.0:
            raise ValueError(f"breakpoint_percentile must be in [0, 100], got {self.breakpoint_percentile}")
        if self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")
        if self.buffer < 1:
            raise ValueError(f"buffer must be >= 1, got {self.buffer}")
        if not self.separators:
            raise ValueError("separators must not be empty")


class Chunker(Protocol):
    name: str

    def split(self, doc: Document) -> list[Chunk]: ...


# ---- shared helpers -------------------------------------------------------------------------------------------------

class TokenIndex:
    """Token spans of one text with O(log n) token counts for any character range."""

    def __init__(self, spans: Sequence[TokenSpan]) -> None:
        self.spans = list(spans)
        self.starts = [s.start for s in self.spans]

    def count(self, start: int, end: int) -> int:
        """Tokens whose first character lies in [start, end)."""
        return bisect.bisect_left(self.starts, end) - bisect.bisect_left(self.starts, start)

    def first_token_at_or_after(self, offset: int) -> int:
        return bisect.bisect_left(self.starts, offset)


# An abbreviation-aware sentence boundary: end punctuation (optionally closing quotes/brackets) then whitespace,
# unless the word before the period is a common abbreviation or a single capital (initials).
_SENT_END = re.compile(r"""([.!?]+["')\]]*)(\s+)""")
_ABBREV = {"e.g", "i.e", "etc", "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "cf", "fig", "no", "al",
           "approx", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
           "oct", "nov", "dec", "u.s", "u.k", "ph.d", "eq", "sec", "vol", "pp", "ch"}


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of text[start:end], trimmed of surrounding whitespace; blank lines
    and line-initial list markers also end a sentence."""
    end = len(text) if end is None else end
    out: list[tuple[int, int]] = []
    # paragraphs first: a blank line always ends a sentence (headings, list items, code blocks)
    for para in re.finditer(r"(?:(?!\n\s*\n).)+", text[start:end], re.DOTALL):
        p_start, p_end = start + para.start(), start + para.end()
        cursor = p_start
        for m in _SENT_END.finditer(text, p_start, p_end):
            before = text[cursor:m.start(1)]
            word = re.split(r"\s", before)[-1].lower().rstrip(".") if before else ""
            if m.group(1).startswith(".") and (word in _ABBREV or (len(word) == 1 and word.isalpha())):
                continue
            nxt = text[m.end():m.end() + 1]
            if nxt and nxt.islower():  # "... 3.5 mm. and" style false boundary
                continue
            out.append((cursor, m.end(1)))
            cursor = m.end()
        out.append((cursor, p_end))
    return [(a + len(text[a:b]) - len(text[a:b].lstrip()), b - (len(text[a:b]) - len(text[a:b].rstrip())))
            for a, b in out if text[a:b].strip()]


def _make_chunk(doc: Document, index: int, start: int, end: int, chunker: str, n_tokens: int,
                window: tuple[int, int] | None = None) -> Chunk:
    meta: dict[str, object] = {**doc.metadata, "source": doc.source, "title": doc.title, "chunker": chunker,
                               "chunk_index": index, "n_tokens": n_tokens}
    page = doc.page_at(start)
    if page is not None:
        meta["page"] = page
    window_text = None
    if window is not None:
        meta["window_start"], meta["window_end"] = window
        window_text = doc.text[window[0]:window[1]]
    return Chunk(id=f"{doc.id}::{index}", doc_id=doc.id, text=doc.text[start:end], start=start, end=end,
                 metadata=meta, window=window_text)


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _windows_by_tokens(tokens: TokenIndex, start: int, end: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Cut [start, end) into windows of ``size`` tokens stepping ``size - overlap`` (character offsets)."""
    first = tokens.first_token_at_or_after(start)
    last = tokens.first_token_at_or_after(end)  # exclusive
    spans = tokens.spans
    if last <= first:
        return [(start, end)] if start < end else []
    out = []
    step = size - overlap
    i = first
    while i < last:
        j = min(i + size, last)
        out.append((spans[i].start, spans[j - 1].end))
        if j == last:
            break
        i += step
    return out


def _pack(units: list[tuple[int, int]], tokens: TokenIndex, size: int, overlap: int) -> list[tuple[int, int]]:
    """Greedily merge consecutive (start, end) units up to ``size`` tokens; each new chunk starts with the trailing
    units of the previous one whose tokens fit in ``overlap``."""
    chunks: list[tuple[int, int]] = []
    current: list[tuple[int, int]] = []
    cur_tokens = 0
    for unit in units:
        n = tokens.count(*unit)
        if current and cur_tokens + n > size:
            chunks.append((current[0][0], current[-1][1]))
            carried: list[tuple[int, int]] = []
            carried_tokens = 0
            for prev in reversed(current):
                t = tokens.count(*prev)
                if carried_tokens + t > overlap or carried_tokens + t + n > size:
                    break
                carried.insert(0, prev)
                carried_tokens += t
            current, cur_tokens = carried, carried_tokens
        current.append(unit)
        cur_tokens += n
    if current:
        chunks.append((current[0][0], current[-1][1]))
    return chunks


class _BaseChunker(ABC):
    name = "base"

    def __init__(self, embedder: Embedder, config: ChunkerConfig | None = None) -> None:
        self.embedder = embedder
        self.config = config or ChunkerConfig()

    def _finish(self, doc: Document, spans: list[tuple[int, int]], tokens: TokenIndex) -> list[Chunk]:
        chunks = []
        for start, end in spans:
            start, end = _trim(doc.text, start, end)
            if end - start < self.config.min_chunk_chars:
                continue
            chunks.append(_make_chunk(doc, len(chunks), start, end, self.name, tokens.count(start, end)))
        return chunks

    def split(self, doc: Document) -> list[Chunk]:
        if not doc.text.strip():
            return []
        tokens = TokenIndex(self.embedder.token_spans(doc.text))
        return self._finish(doc, self._spans(doc.text, tokens), tokens)

    def split_many(self, docs: Sequence[Document]) -> list[Chunk]:
        return [c for d in docs for c in self.split(d)]

    @abstractmethod
    def _spans(self, text: str, tokens: TokenIndex) -> list[tuple[int, int]]:
        ...


CHUNKERS: Registry[_BaseChunker] = Registry("chunker")


@CHUNKERS.register("fixed")
class FixedSizeChunker(_BaseChunker):
    name = "fixed"

    def _spans(self, text: str, tokens: TokenIndex) -> list[tuple[int, int]]:
        return _windows_by_tokens(tokens, 0, len(text), self.config.chunk_size, self.config.chunk_overlap)


@CHUNKERS.register("recursive")
class RecursiveChunker(_BaseChunker):
    name = "recursive"

    def _split_units(self, text: str, start: int, end: int, seps: tuple[str, ...],
                     tokens: TokenIndex) -> list[tuple[int, int]]:
        """Pieces of [start, end) no longer than chunk_size tokens, using the coarsest separator that applies."""
        size = self.config.chunk_size
        if tokens.count(start, end) <= size:
            return [(start, end)]
        for i, sep in enumerate(seps):
            if text.find(sep, start, end) == -1:
                continue
            pieces: list[tuple[int, int]] = []
            cursor = start
            while True:
                k = text.find(sep, cursor, end)
                if k == -1:
                    pieces.append((cursor, end))
                    break
                pieces.append((cursor, k + len(sep)))  # the separator stays with the left piece
                cursor = k + len(sep)
            out: list[tuple[int, int]] = []
            for a, b in pieces:
                if a >= b:
                    continue
                if tokens.count(a, b) > size:
                    out.extend(self._split_units(text, a, b, seps[i + 1:], tokens))
                else:
                    out.append((a, b))
            return out
        return _windows_by_tokens(tokens, start, end, size, 0)  # no separator left: cut on tokens

    def _spans(self, text: str, tokens: TokenIndex) -> list[tuple[int, int]]:
        units = self._split_units(text, 0, len(text), self.config.separators, tokens)
        return _pack(units, tokens, self.config.chunk_size, self.config.chunk_overlap)


@CHUNKERS.register("sentence")
class SentenceChunker(_BaseChunker):
    name = "sentence"

    def _sentence_units(self, text: str, tokens: TokenIndex) -> list[tuple[int, int]]:
        units = []
        for a, b in sentence_spans(text):
            if tokens.count(a, b) > self.config.chunk_size:  # a run-on "sentence" (a table, code): cut on tokens
                units.extend(_windows_by_tokens(tokens, a, b, self.config.chunk_size, 0))
            else:
                units.append((a, b))
        return units

    def _spans(self, text: str, tokens: TokenIndex) -> list[tuple[int, int]]:
        return _pack(self._sentence_units(text, tokens), tokens, self.config.chunk_size, self.config.chunk_overlap)


def similarity_breakpoints(similarities: np.ndarray, percentile: float) -> list[int]:
    """Indices i where the split goes between sentence i and i + 1: similarity below the given percentile of all
    adjacent similarities (Kamradt 2024, "5 levels of text splitting"; LlamaIndex SemanticSplitterNodeParser)."""
    if similarities.size == 0:
        return []
    threshold = float(np.percentile(similarities, percentile))
    return [i for i, s in enumerate(similarities) if s < threshold]


@CHUNKERS.register("semantic")
class SemanticChunker(SentenceChunker):
    name = "semantic"

    def _spans(self, text: str, tokens: TokenIndex) -> list[tuple[int, int]]:
        units = self._sentence_units(text, tokens)
        if len(units) < 3:
            return _pack(units, tokens, self.config.chunk_size, 0)
        # gap i lies between sentence i and i + 1: compare the ``buffer`` sentences before it with the ``buffer``
        # after it (buffer 1 = adjacent sentences; more smooths short sentences, as in TextTiling, Hearst 1997)
        b, n = self.config.buffer, len(units)
        left = [text[units[max(0, i - b + 1)][0]:units[i][1]] for i in range(n - 1)]
        right = [text[units[i + 1][0]:units[min(n - 1, i + b)][1]] for i in range(n - 1)]
        vectors = self.embedder.embed(left + right)  # (2 (n - 1), dim) unit rows
        sims = np.einsum("ij,ij->i", vectors[: n - 1], vectors[n - 1:])  # (n - 1,) cosine across each gap
        breaks = set(similarity_breakpoints(sims, self.config.breakpoint_percentile))
        groups: list[list[tuple[int, int]]] = [[]]
        for i, unit in enumerate(units):
            groups[-1].append(unit)
            if i in breaks:
                groups.append([])
        spans: list[tuple[int, int]] = []
        for group in groups:
            if group:  # a topic longer than chunk_size is packed by sentences without overlap
                spans.extend(_pack(group, tokens, self.config.chunk_size, 0))
        return spans


@CHUNKERS.register("sentence-window")
class SentenceWindowChunker(SentenceChunker):
    name = "sentence-window"

    def split(self, doc: Document) -> list[Chunk]:
        if not doc.text.strip():
            return []
        tokens = TokenIndex(self.embedder.token_spans(doc.text))
        units = self._sentence_units(doc.text, tokens)
        w = self.config.window
        chunks = []
        for i, (a, b) in enumerate(units):
            if b - a < self.config.min_chunk_chars:
                continue
            window = (units[max(0, i - w)][0], units[min(len(units) - 1, i + w)][1])
            chunks.append(_make_chunk(doc, len(chunks), a, b, self.name, tokens.count(a, b), window=window))
        return chunks


def build_chunker(name: str, *, embedder: Embedder, chunk_size: int = 256, chunk_overlap: int = 32,
                  **options: object) -> _BaseChunker:
    """A chunker by name (``CHUNKERS.names()``: fixed, recursive, semantic, sentence, sentence-window)."""
    config = ChunkerConfig(chunk_size=chunk_size, chunk_overlap=chunk_overlap, **options)  # type: ignore[arg-type]
    return CHUNKERS.create(name, embedder, config)
