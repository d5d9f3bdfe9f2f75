"""RAGPipeline end to end with the hashing embedder, real retrievers (in memory and persisted) and a fake LLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisd.app.settings import RagSettings
from aisd.core.errors import InvalidRequestError, UnsupportedError
from aisd.embed.fake import HashingEmbedder
from aisd.llm.fake import FakeLLMClient
from aisd.llm.schema import ChatCompletionRequest
from aisd.rag.documents import Document
from aisd.rag.loaders import load_pydoc_topics
from aisd.rag.pipeline import RagConfig, RAGPipeline

EMB = HashingEmbedder(dim=256)


def cite_first(request: ChatCompletionRequest) -> str:
    """Answers with the first source's first sentence and a [1] citation (what a good model does)."""
    prompt = request.messages[-1].text()
    if "Sources:" not in prompt:
        return "RETRIEVE"
    body = prompt.split("[1]", 1)[1].split("\n", 2)[1]
    return body.split(". ")[0].rstrip(".") + " [1]."


@pytest.fixture(scope="module")
def topics() -> list[Document]:
    return load_pydoc_topics(["assert", "break", "continue", "for", "while", "with", "yield", "class"])


@pytest.mark.parametrize("retriever", ["bm25", "dense", "hybrid-rrf", "hybrid-alpha"])
def test_ask_answers_from_the_right_document(retriever: str, topics: list[Document]) -> None:
    p = RAGPipeline.in_memory(embedder=EMB, llm=FakeLLMClient(cite_first), retriever=retriever, chunk_size=128,
                              answerability="none",
                              chunk_overlap=16, min_similarity=None)
    report = p.ingest(topics)
    assert report.added == len(topics) and p.retriever.count() == report.chunks_added
    ans = p.ask("What does the assert statement do? AssertionError")
    assert ans.sources[0].doc_id == "pydoc:assert"
    assert ans.citations and ans.citations[0].valid and ans.citations[0].doc_id == "pydoc:assert"
    assert ans.trace[0].name == "retrieve" and ans.trace[0].detail["retriever"] == p.retriever.name


def test_overrides_filter_and_errors(topics: list[Document]) -> None:
    llm = FakeLLMClient(cite_first)
    p = RAGPipeline.in_memory(embedder=EMB, llm=llm, retriever="bm25", chunk_size=128, chunk_overlap=16,
                              answerability="none",
                              min_similarity=None)
    p.ingest(topics)
    assert len(p.retrieve("loop statement", k=2)) == 2
    hits = p.retrieve("loop statement", k=5, filter={"topic": "while"})
    assert hits and {h.chunk.doc_id for h in hits} == {"pydoc:while"}
    ans = p.ask("What does break do?", k=1)
    assert len(ans.sources) == 1
    with pytest.raises(InvalidRequestError, match="unknown option"):
        p.ask("q", colour="blue")
    with pytest.raises(InvalidRequestError):
        p.ask("q", mode="psychic")
    with pytest.raises(InvalidRequestError, match="empty"):
        p.ask("  ")
    assert p.ask("What does break do?", query_transform="prf").sources
    assert p.ask("What does break do?", mode="agentic").trace[0].name == "route"


def test_gate_answers_not_in_sources_without_calling_the_llm(topics: list[Document]) -> None:
    llm = FakeLLMClient(cite_first)
    p = RAGPipeline.in_memory(embedder=EMB, llm=llm, retriever="dense", min_similarity=0.3,
                              answerability="none")
    p.ingest(topics)
    ans = p.ask("zebra giraffe savanna migration")
    assert ans.not_in_sources and not llm.requests


def test_streaming_matches_ask(topics: list[Document]) -> None:
    p = RAGPipeline.in_memory(embedder=EMB, llm=FakeLLMClient(cite_first), retriever="bm25",
                              answerability="none")
    p.ingest(topics)
    events = list(p.ask_stream("What does the yield expression do?"))
    assert [e.type for e in events][:2] == ["step", "sources"] and events[-1].type == "done"
    assert events[-1].answer.text == p.ask("What does the yield expression do?").text


def test_persisted_home_and_folder_reingest(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\nThe alpha protocol uses port 7000.", encoding="utf-8")
    (docs / "b.txt").write_text("Beta servers run in Lisbon.", encoding="utf-8")
    home = tmp_path / "rag"
    settings = RagSettings(retriever="hybrid-rrf", chunk_size=64, chunk_overlap=8, answerability="none")
    p = RAGPipeline.from_settings(settings, home=home, embedder=EMB, vector_store=None,
                                  llm=FakeLLMClient(cite_first))
    r = p.ingest(docs)
    assert (r.added, r.chunks_added) == (2, 2)
    p.close()
    # a new process: the index and the ingest state come back from disk
    p2 = RAGPipeline.from_settings(settings, home=home, embedder=EMB, vector_store=None,
                                   llm=FakeLLMClient(cite_first))
    assert p2.retriever.count() == 2 and p2.state.count() == 2
    assert p2.retrieve("Which port does alpha use?", k=1)[0].chunk.doc_id.endswith("a.md")
    (docs / "b.txt").unlink()
    r2 = p2.ingest(docs)
    assert (r2.skipped, r2.deleted) == (1, 1) and p2.retriever.count() == 1
    assert [d.title for d in p2.documents()] == ["Alpha"]
    assert p2.stats()["documents"] == 1


def test_config_validation_and_settings_mirror() -> None:
    for bad in ({"chunker": "magic"}, {"retriever": "psychic"}, {"mode": "x"}, {"query_transform": "y"},
                {"chunk_size": 16, "chunk_overlap": 16}, {"max_tokens": 0}):
        with pytest.raises(ValueError):
            RagConfig(**bad)  # type: ignore[arg-type]
    # every RagConfig field is a [rag] setting, so every stage is configurable from settings
    settings_fields = set(RagSettings.model_fields)
    assert set(RagConfig.__dataclass_fields__) <= settings_fields
    assert RagConfig.from_mapping(RagSettings().model_dump()) == RagConfig()
    with pytest.raises(InvalidRequestError, match="invalid \\[rag\\] settings"):
        RAGPipeline.from_settings({"chunker": "nope"}, home=None, embedder=EMB, vector_store=None, llm=None)


def test_no_llm_is_a_clear_error(topics: list[Document]) -> None:
    p = RAGPipeline.in_memory(embedder=EMB, llm=None, retriever="bm25")
    p.ingest(topics[:2])
    assert p.retrieve("assert")
    with pytest.raises(UnsupportedError, match="no LLM client"):
        p.ask("What does assert do?")


@pytest.mark.parametrize("chunker", ["fixed", "recursive", "sentence", "semantic", "sentence-window"])
def test_every_chunker_works_in_the_pipeline(chunker: str, topics: list[Document]) -> None:
    p = RAGPipeline.in_memory(embedder=EMB, llm=FakeLLMClient(cite_first), retriever="bm25", chunker=chunker,
                              answerability="none",
                              chunk_size=96, chunk_overlap=8)
    p.ingest(topics[:3])
    ans = p.ask("AssertionError assert statement")
    assert ans.sources and ans.sources[0].doc_id == "pydoc:assert"
    if chunker == "sentence-window":  # the model sees the window, not just the matched sentence
        hit = p.retrieve("AssertionError assert statement", k=1)[0]
        assert ans.sources[0].text == hit.chunk.window and len(hit.chunk.window) > len(hit.chunk.text)
