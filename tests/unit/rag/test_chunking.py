"""Chunkers: token sizes, exact offsets, overlap, separator hierarchy, sentences, semantic breaks, windows."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aisd.core.errors import InvalidRequestError
from aisd.embed.base import TokenSpan
from aisd.embed.fake import HashingEmbedder
from aisd.rag.chunking import (
    CHUNKERS,
    ChunkerConfig,
    TokenIndex,
    build_chunker,
    sentence_spans,
    similarity_breakpoints,
)
from aisd.rag.documents import Document
from aisd.rag.loaders import load_pydoc_topics

EMB = HashingEmbedder(dim=64)


def _doc(text: str, **kw: object) -> Document:
    return Document(id="d", text=text, source="s", title="T", **kw)  # type: ignore[arg-type]


def _words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_registry_names_and_unknown() -> None:
    assert CHUNKERS.names() == ["fixed", "recursive", "semantic", "sentence", "sentence-window"]
    with pytest.raises(InvalidRequestError, match="expected one of"):
        build_chunker("nope", embedder=EMB)
    with pytest.raises(ValueError, match="chunk_overlap"):
        ChunkerConfig(chunk_size=10, chunk_overlap=10)


def test_fixed_windows_are_exact_token_windows_with_overlap() -> None:
    text = _words(100)
    chunks = build_chunker("fixed", embedder=EMB, chunk_size=30, chunk_overlap=10).split(_doc(text))
    spans = EMB.token_spans(text)
    # windows start at tokens 0, 20, 40, 60, 80 (step 20); the last ends at the last token
    starts = [spans.index(next(s for s in spans if s.start == c.start)) for c in chunks]
    assert starts == [0, 20, 40, 60, 80]
    assert [c.metadata["n_tokens"] for c in chunks] == [30, 30, 30, 30, 20]
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert set(a.text.split()[-10:]) == set(b.text.split()[:10])  # exactly 10 tokens of overlap
    assert chunks[-1].end == len(text)


def test_every_chunker_keeps_exact_offsets_and_metadata() -> None:
    doc = load_pydoc_topics(["class"])[0]
    for name in CHUNKERS.names():
        chunks = build_chunker(name, embedder=EMB, chunk_size=48, chunk_overlap=8).split(doc)
        assert chunks, name
        for i, c in enumerate(chunks):
            assert c.text == doc.text[c.start:c.end], name
            assert c.metadata["chunk_index"] == i and c.metadata["chunker"] == name
            assert c.metadata["title"] == doc.title and c.metadata["source"] == doc.source
            assert c.id == f"{doc.id}::{i}" and c.doc_id == doc.id
            if name != "sentence-window":
                assert c.metadata["n_tokens"] <= 48, (name, c.metadata["n_tokens"])
            assert c.metadata["n_tokens"] == EMB.count_tokens(c.text)
        # together the chunks cover every token of the document
        covered = set()
        for c in chunks:
            covered.update(s for s in EMB.token_spans(doc.text) if c.start <= s.start < c.end)
        assert len(covered) == EMB.count_tokens(doc.text), name


def test_recursive_prefers_paragraphs_then_lines() -> None:
    paras = [_words(20).replace("w", f"p{i}x") for i in range(4)]
    text = "\n\n".join(paras)
    chunks = build_chunker("recursive", embedder=EMB, chunk_size=45, chunk_overlap=0).split(_doc(text))
    # two paragraphs (40 tokens) fit in 45; a third would not: cuts fall on the blank lines
    assert [c.text for c in chunks] == ["\n\n".join(paras[:2]), "\n\n".join(paras[2:])]
    long_para = "\n".join(_words(15) for _ in range(6))  # one paragraph of six 15-token lines
    chunks = build_chunker("recursive", embedder=EMB, chunk_size=32, chunk_overlap=0).split(_doc(long_para))
    assert all(c.text.count("\n") == 1 for c in chunks)  # two whole lines each: split on "\n", not mid-line


def test_recursive_overlap_carries_whole_pieces() -> None:
    text = " ".join(f"Sentence number {i} ends here." for i in range(20))
    chunks = build_chunker("recursive", embedder=EMB, chunk_size=20, chunk_overlap=6).split(_doc(text))
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.end > b.start, "consecutive chunks overlap"
        assert b.text.startswith("Sentence number")  # the carried piece is a whole sentence


def test_sentence_splitter_handles_abbreviations_and_paragraphs() -> None:
    text = "Dr. Smith met Mr. Jones at 3 p.m. today. It rained, e.g. heavily! Really? Yes.\n\nNew paragraph"
    got = [text[a:b] for a, b in sentence_spans(text)]
    assert got == ["Dr. Smith met Mr. Jones at 3 p.m. today.", "It rained, e.g. heavily!", "Really?", "Yes.",
                   "New paragraph"]


def test_sentence_chunker_packs_whole_sentences() -> None:
    sents = [f"Fact {i} is about topic {i}." for i in range(12)]  # 6 tokens each
    text = " ".join(sents)
    chunks = build_chunker("sentence", embedder=EMB, chunk_size=20, chunk_overlap=6).split(_doc(text))
    for c in chunks:
        assert c.text.startswith("Fact") and c.text.endswith(".")
        assert c.metadata["n_tokens"] <= 20
    assert chunks[1].text.startswith(sents[2])  # 3 sentences per chunk, the last one carried over


def test_similarity_breakpoints_percentile() -> None:
    sims = np.array([0.9, 0.8, 0.1, 0.85, 0.05, 0.9])
    assert similarity_breakpoints(sims, 34.0) == [2, 4]
    assert similarity_breakpoints(np.array([]), 10.0) == []


def test_semantic_chunker_splits_at_topic_change() -> None:
    cats = [f"Cats purr and cats nap and cats hunt mice number {i}." for i in range(4)]
    rockets = [f"Rockets burn fuel and rockets reach orbit stage {i}." for i in range(4)]
    text = " ".join(cats + rockets)
    chunker = build_chunker("semantic", embedder=HashingEmbedder(dim=512), chunk_size=200, chunk_overlap=0,
                            breakpoint_percentile=10.0)
    chunks = chunker.split(_doc(text))
    assert [c.text for c in chunks] == [" ".join(cats), " ".join(rockets)]


def test_sentence_window_chunker() -> None:
    sents = [f"S{i} alpha beta." for i in range(6)]
    text = " ".join(sents)
    chunks = build_chunker("sentence-window", embedder=EMB, chunk_size=64, chunk_overlap=0, window=1).split(_doc(text))
    assert [c.text for c in chunks] == sents
    assert chunks[0].window == " ".join(sents[:2])
    assert chunks[3].window == " ".join(sents[2:5]) and chunks[3].context_text == chunks[3].window
    assert chunks[3].metadata["window_start"] == text.index("S2")


def test_pages_propagate_to_chunks() -> None:
    text = _words(30) + "\n\n" + _words(30)
    doc = _doc(text, pages=((1, 0), (2, len(_words(30)) + 2)))
    chunks = build_chunker("fixed", embedder=EMB, chunk_size=30, chunk_overlap=0).split(doc)
    assert [c.metadata["page"] for c in chunks] == [1, 2]


def test_empty_document_has_no_chunks() -> None:
    for name in CHUNKERS.names():
        assert build_chunker(name, embedder=EMB).split(_doc("   \n ")) == []


class _SubwordEmbedder(HashingEmbedder):
    """Tokens of at most 3 characters (like word pieces), to check chunkers use the embedder's own tokenizer."""

    def token_spans(self, text: str) -> list[TokenSpan]:
        return [TokenSpan(m.start() + i, min(m.start() + i + 3, m.end()))
                for m in re.finditer(r"\w+", text) for i in range(0, len(m.group()), 3)]

    def count_tokens(self, text: str) -> int:
        return len(self.token_spans(text))


def test_sizes_are_in_the_embedders_tokens() -> None:
    emb = _SubwordEmbedder()
    text = " ".join(["international"] * 40)  # 5 sub-tokens per word
    chunks = build_chunker("recursive", embedder=emb, chunk_size=50, chunk_overlap=0).split(_doc(text))
    assert all(emb.count_tokens(c.text) <= 50 for c in chunks)
    assert len(chunks[0].text.split()) == 10  # 10 words = 50 tokens, not 50 words


def test_token_index_counts() -> None:
    idx = TokenIndex([TokenSpan(0, 2), TokenSpan(3, 5), TokenSpan(6, 9)])
    assert idx.count(0, 9) == 3 and idx.count(1, 6) == 1 and idx.count(3, 4) == 1


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("abc de.\n!?,")), min_size=0, max_size=400),
       size=st.integers(4, 40), overlap_frac=st.floats(0, 0.9))
def test_offsets_hold_for_any_text(text: str, size: int, overlap_frac: float) -> None:
    overlap = min(int(size * overlap_frac), size - 1)
    for name in ("fixed", "recursive", "sentence", "sentence-window"):
        for c in build_chunker(name, embedder=EMB, chunk_size=size, chunk_overlap=overlap).split(_doc(text)):
            assert c.text == text[c.start:c.end] and c.text.strip()
            if name in ("fixed", "recursive"):
                assert c.metadata["n_tokens"] <= size
