"""``make demo`` part 2: RAG over CPython's own documentation topics with the bundled models.

Ingests ``pydoc_data.topics`` (the language-reference topics behind ``help('assert')``, shipped with every CPython)
into a demo index under ``$AISD_HOME/rag-demo`` and answers three questions with [n] citations using the bundled
SmolLM2-135M through ``Services(settings).llm_client`` and the bundled MiniLM embedder.

Kept to a few minutes on two cores: the corpus is the ``DEMO_TOPICS`` subset (34 statement and expression topics
the questions draw on, about a third of the 79 topics), chunked at 192 tokens; re-running skips unchanged topics.
``run(all_topics=True)`` ingests all 79.
"""

from __future__ import annotations

import os
import time
from typing import Any

QUESTIONS = (
    "What does the assert statement do?",
    "What is the difference between break and continue in a loop?",
    "What happens when a function executes a yield expression?",
)

DEMO_TOPICS = (
    "assert", "assignment", "augassign", "break", "continue", "for", "while", "if", "with", "try", "raise",
    "return", "yield", "pass", "del", "import", "global", "nonlocal", "function", "class", "lambda", "calls",
    "comparisons", "booleans", "else", "exceptions", "execmodel", "naming", "truth", "in", "context-managers",
    "async", "await", "typesseq",
)


def _available_topics(wanted: tuple[str, ...]) -> list[str]:
    from pydoc_data.topics import topics

    return [t for t in wanted if t in topics]  # topic names vary a little between CPython versions


def build_pipeline(services: Any) -> Any:
    """The demo's pipeline: the user's [rag] settings, its own collection and folder."""
    from aisd.rag.pipeline import RAGPipeline

    settings = services.settings
    # SmolLM2-135M follows a worked example and copies best from the source next to the question; 3 sources of
    # <= 192 tokens keep the prompt near 600 tokens (measured: see docs/rag.md)
    values = {**settings.rag.model_dump(), "collection": "pydoc-demo", "chunk_size": 192, "chunk_overlap": 24,
              "max_tokens": 96, "top_k": 3, "one_shot": True, "source_order": "best-last"}
    try:
        vector_store = services.vector_store
    except (ImportError, AttributeError):  # the vector database is optional here: exact in-memory index
        vector_store = None
    return RAGPipeline.from_settings(values, home=settings.path("rag-demo"), embedder=services.embedder,
                                     vector_store=vector_store, llm=services.llm_client)


def run(*, all_topics: bool = False, questions: tuple[str, ...] = QUESTIONS) -> list[Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from rich.console import Console

    from aisd.app.commands.rag import print_answer
    from aisd.app.settings import Settings
    from aisd.app.wiring import Services
    from aisd.core.progress import use_rich_progress
    from aisd.rag.loaders import load_pydoc_topics

    console = Console()
    services = Services(Settings())
    answers = []
    try:
        console.rule("RAG over CPython's pydoc topics")
        topics = None if all_topics else _available_topics(DEMO_TOPICS)
        docs = load_pydoc_topics(topics)
        console.print(f"corpus: {len(docs)} pydoc topics ({sum(len(d.text) for d in docs):,} characters); "
                      f"LLM: {services.llm_client.model_name}; embedder: {services.embedder.model_name}")
        pipeline = build_pipeline(services)
        t0 = time.perf_counter()
        with use_rich_progress():
            report = pipeline.ingest(docs)
        console.print(f"ingest: {report.added} added, {report.updated} updated, {report.skipped} unchanged, "
                      f"{report.duplicates} duplicates (same text as another topic), "
                      f"{report.chunks_added} chunks embedded in {time.perf_counter() - t0:.1f} s; "
                      f"index holds {pipeline.retriever.count()} chunks")
        for q in questions:
            console.rule(q)
            t1 = time.perf_counter()
            answer = pipeline.ask(q)
            print_answer(answer, console)
            console.print(f"[dim]{time.perf_counter() - t1:.1f} s, {answer.usage.prompt_tokens} prompt + "
                          f"{answer.usage.completion_tokens} completion tokens[/dim]")
            answers.append(answer)
        pipeline.close()
    finally:
        services.close()
    return answers


if __name__ == "__main__":
    run()
