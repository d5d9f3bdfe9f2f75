"""CLI: aisd rag ingest | ask | retrieve | documents | eval | calibrate.

``aisd rag ingest PATH [--glob '*.md']`` loads a file or folder into the RAG index under $AISD_HOME/rag (idempotent);
``aisd rag ask "QUESTION"`` prints the answer with [n] citations, then the numbered sources;
``aisd rag eval --data ../shared/data/squad2-dev [--limit N]`` scores generation on SQuAD 2.0;
``aisd rag calibrate QUESTIONS.jsonl [--answerability evidence]`` fits the answerability thresholds to your documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(no_args_is_help=True)


def _services() -> Any:
    from aisd.app.settings import Settings
    from aisd.app.wiring import Services

    return Services(Settings())


def _console() -> Any:
    from rich.console import Console

    return Console()


@app.command()
def ingest(path: Path = typer.Argument(..., help="A file (.txt .md .html .pdf .jsonl) or a folder."),
           glob: str | None = typer.Option(None, "--glob", help="Only files matching this pattern, e.g. '**/*.md'."),
           keep_missing: bool = typer.Option(False, "--keep-missing",
                                             help="Do not delete documents that disappeared from the folder."),
           as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Ingest documents: new ones are added, changed ones replaced, removed ones deleted, unchanged skipped."""
    from rich.table import Table

    from aisd.core.progress import use_rich_progress

    services = _services()
    try:
        with use_rich_progress():
            report = services.rag.ingest(path, glob=glob, delete_missing=not keep_missing)
    finally:
        services.close()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    table = Table(title=f"ingested {path}")
    for col in ("documents", "added", "updated", "deleted", "skipped", "duplicates", "chunks added",
                "chunks deleted", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(*map(str, (report.documents, report.added, report.updated, report.deleted, report.skipped,
                             report.duplicates, report.chunks_added, report.chunks_deleted,
                             f"{report.elapsed_s:.1f}")))
    console = _console()
    console.print(table)
    for file, reason in report.failed:
        console.print(f"[yellow]skipped {file}: {reason}[/yellow]")


def print_answer(answer: Any, console: Any = None, *, show_trace: bool = False) -> None:
    """The answer text with its [n] citations, then the numbered sources (cited ones marked)."""
    console = console or _console()
    console.print(answer.text, markup=False, highlight=False)
    cited = {c.number for c in answer.citations if c.valid}
    if answer.invalid_citations:
        console.print(f"[yellow]removed citations to missing sources: "
                      f"{', '.join(map(str, answer.invalid_citations))}[/yellow]")
    if answer.not_in_sources and answer.trace and answer.trace[-1].name in ("gate", "answerability"):
        console.print(f"[dim](why: {answer.trace[-1].detail.get('reason', '')})[/dim]")  # which check refused
    if answer.sources:
        console.print("\nSources:")
        for s in answer.sources:
            where = s.source + (f", page {s.page}" if s.page is not None else "") + f", chars {s.start}-{s.end}"
            mark = "*" if s.number in cited else " "
            console.print(f"{mark}[{s.number}] {s.title or s.doc_id} ({where}) score={s.score:.3f}", markup=False,
                          highlight=False)
    if show_trace:
        console.print("\nTrace:")
        for step in answer.trace:
            console.print(f"  {step.name:10s} {step.elapsed_ms:8.1f} ms  {json.dumps(step.detail, default=str)[:200]}",
                          markup=False, highlight=False)


@app.command()
def ask(question: str = typer.Argument(..., help="The question."),
        k: int | None = typer.Option(None, "--k", "-k", min=1, help="Chunks to retrieve (default: settings)."),
        mode: str | None = typer.Option(None, "--mode", help="simple | agentic"),
        query_transform: str | None = typer.Option(None, "--transform",
                                                   help="none | rewrite | expansion | prf | hyde | multi-query"),
        filter_json: str | None = typer.Option(None, "--filter", help='Metadata filter as JSON, e.g. \'{"title": "x"}\''),
        answerability: str | None = typer.Option(None, "--answerability",
                                                 help="Check before answering: none | similarity | sentence | "
                                                      "coverage | evidence | llm, a+b, name:threshold "
                                                      "(default: settings)."),
        stream: bool = typer.Option(False, "--stream", help="Print the answer as it is generated."),
        trace: bool = typer.Option(False, "--trace", help="Print every step with its timing."),
        as_json: bool = typer.Option(False, "--json", help="Print the whole answer as JSON.")) -> None:
    """Answer a question from the ingested documents, with numbered citations, then the numbered sources."""
    from aisd.core.errors import InvalidRequestError

    flt = None
    if filter_json:
        try:
            flt = json.loads(filter_json)
        except json.JSONDecodeError as e:
            raise InvalidRequestError(f"--filter is not valid JSON: {e}", param="filter") from e
    overrides = {k_: v for k_, v in (("k", k), ("mode", mode), ("query_transform", query_transform),
                                     ("answerability", answerability)) if v is not None}
    services = _services()
    console = _console()
    try:
        if stream and not as_json:
            answer = None
            for event in services.rag.ask_stream(question, filter=flt, **overrides):
                if event.type == "delta":
                    console.print(event.text, end="", markup=False, highlight=False)
                elif event.type == "done":
                    answer = event.answer
            console.print()
            if answer is not None:  # the checked text may differ (invalid citations removed, attributions added)
                console.rule("checked answer")
                print_answer(answer, console, show_trace=trace)
            return
        answer = services.rag.ask(question, filter=flt, **overrides)
    finally:
        services.close()
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), indent=2, default=str))
    else:
        print_answer(answer, console, show_trace=trace)


@app.command()
def retrieve(question: str = typer.Argument(...), k: int = typer.Option(5, "--k", "-k", min=1),
             query_transform: str | None = typer.Option(None, "--transform")) -> None:
    """Show the ranked chunks for a question (no LLM)."""
    from rich.table import Table

    services = _services()
    try:
        hits = services.rag.retrieve(question, k, None, query_transform)
    finally:
        services.close()
    table = Table(title=question)
    for col in ("#", "score", "document", "text"):
        table.add_column(col)
    for i, h in enumerate(hits, start=1):
        table.add_row(str(i), f"{h.score:.4f}", h.chunk.metadata.get("title") or h.chunk.doc_id,
                      " ".join(h.chunk.text.split())[:120])
    _console().print(table)


@app.command()
def documents(limit: int = typer.Option(50, "--limit", min=1), offset: int = typer.Option(0, "--offset", min=0),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """List ingested documents."""
    from rich.table import Table

    services = _services()
    try:
        records = services.rag.documents(limit, offset)
        total = services.rag.state.count()
    finally:
        services.close()
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records], indent=2, default=str))
        return
    table = Table(title=f"{total} documents")
    for col in ("id", "title", "chunks", "duplicate of"):
        table.add_column(col)
    for r in records:
        table.add_row(r.doc_id, r.title[:60], str(len(r.chunk_ids)), r.duplicate_of or "")
    _console().print(table)


@app.command("eval")
def eval_(data: Path = typer.Option(..., "--data", help="SQuAD 2.0 JSON file or a folder holding it."),
          limit: int = typer.Option(20, "--limit", min=1, help="Questions per run (half unanswerable)."),
          runs: int = typer.Option(3, "--runs", min=1, help="Runs (each samples its own questions)."),
          seed: int = typer.Option(0, "--seed"),
          articles: int | None = typer.Option(None, "--articles", min=1,
                                              help="Index only the first N articles (faster)."),
          judge: bool = typer.Option(False, "--judge/--no-judge", help="Also run the LLM-judged metrics."),
          retriever: str | None = typer.Option(None, "--retriever", help="bm25 | dense | hybrid-rrf | hybrid-alpha"),
          k: int | None = typer.Option(None, "--k", "-k", min=1),
          mode: str | None = typer.Option(None, "--mode", help="simple | agentic"),
          answerability: str | None = typer.Option(None, "--answerability",
                                                   help="none | similarity | sentence | coverage | evidence | "
                                                        "llm, a+b, name:threshold (default: settings)"),
          out: Path | None = typer.Option(None, "--json", help="Write the results as JSON to this file.")) -> None:
    """Generation metrics on SQuAD 2.0: EM/F1, not-in-sources accuracy, faithfulness, relevancy (mean +- spread)."""
    from rich.table import Table

    from aisd.app.rag_eval import SquadEvalConfig, run_squad_eval
    from aisd.core.progress import use_rich_progress
    from aisd.rag.pipeline import RAGPipeline

    services = _services()
    settings = services.settings.rag.model_dump()
    if retriever:
        settings["retriever"] = retriever
    cfg = SquadEvalConfig(limit=limit, runs=runs, seed=seed, judge=judge, articles=articles)
    ask_options = {key: v for key, v in (("k", k), ("mode", mode), ("answerability", answerability)) if v is not None}

    def factory() -> Any:  # a fresh in-memory index: the evaluation never touches the user's RAG home
        return RAGPipeline.from_settings({**settings, "collection": "squad-eval"}, home=None,
                                         embedder=services.embedder, vector_store=None, llm=services.llm_client)

    try:
        with use_rich_progress():
            result = run_squad_eval(data, factory, config=cfg, embedder=services.embedder,
                                    judge=services.llm_client if judge else None, ask_options=ask_options)
    finally:
        services.close()
    table = Table(title=f"SQuAD 2.0 RAG eval: {runs} run(s) x {limit} questions, corpus {result.corpus_documents} "
                        f"paragraphs, {result.seconds_per_question:.2f} s/question")
    for col in ("metric", "mean", "\u00b1 std", "per run", "n", "unparsed"):
        table.add_column(col)
    for m in result.metrics.values():
        table.add_row(m.name, "n/a" if m.mean is None else f"{m.mean:.3f}", f"{m.std:.3f}",
                      " ".join(f"{x:.2f}" for x in m.runs), str(m.n), str(m.unparsed))
    _console().print(table)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_dict(), indent=2, default=str))


@app.command()
def calibrate(questions: Path = typer.Argument(..., help="JSONL of {\"question\": str, \"answerable\": bool}, "
                                                          "or a SQuAD 2.0 JSON file."),
              answerability: str = typer.Option("evidence", "--answerability",
                                                help="Strategies to calibrate: one name or up to three joined "
                                                     "with +, e.g. coverage+sentence (thresholds ignored)."),
              max_false_refusal: float = typer.Option(0.2, "--max-false-refusal", min=0.0, max=0.99,
                                                      help="Largest share of answerable questions to refuse."),
              k: int | None = typer.Option(None, "--k", "-k", min=1, help="Chunks to retrieve (default: settings)."),
              limit: int | None = typer.Option(None, "--limit", min=1, help="Use only the first N questions."),
              as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Fit the answerability thresholds to the ingested documents and these labelled questions."""
    from rich.table import Table

    from aisd.core.progress import use_rich_progress
    from aisd.rag.calibrate import calibrate as run
    from aisd.rag.calibrate import checker_for, load_questions

    labelled = load_questions(questions)[:limit]
    services = _services()
    try:
        pipeline = services.rag
        checker = checker_for(pipeline, answerability)
        with use_rich_progress():
            report = run(lambda q: pipeline.retrieve(q, k), checker, labelled, max_false_refusal=max_false_refusal)
    finally:
        services.close()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    table = Table(title=f"answerability calibrated on {report.n_answerable} answerable + {report.n_unanswerable} "
                        f"unanswerable questions (false-refusal budget {report.max_false_refusal:.0%})")
    for col in ("strategy", "threshold", "AUC"):
        table.add_column(col)
    for c in report.strategies:
        table.add_row(c.name, f"{c.threshold:.4f}", "n/a" if c.auc is None else f"{c.auc:.3f}")
    console = _console()
    console.print(table)
    console.print(f"with {report.spec}: {report.refused_unanswerable:.0%} of the unanswerable questions get \"not in "
                  f"the sources\", {report.false_refusal:.0%} of the answerable ones are refused")
    console.print(f"use it: AISD_RAG__ANSWERABILITY='{report.spec}' (or answerability = \"{report.spec}\" under "
                  f"[rag] in aisd.toml, or --answerability on aisd rag ask)", markup=False)
