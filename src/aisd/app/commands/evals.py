"""CLI: aisd eval retrieval - run a grid of retrieval configurations over a BEIR folder (or SQuAD 2.0 JSON); aisd
eval generation - the SQuAD 2.0 generation metrics, the same command as ``aisd rag eval``.

Example: ``aisd eval retrieval --data ../shared/data/scifact --split train --configs bm25,dense,hybrid-rrf
--json out.json``. Composition (rag retrievers + evals runner) happens here because evals never imports rag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(no_args_is_help=True)

CONFIG_KINDS = ("bm25", "dense", "hybrid-rrf", "hybrid-alpha")


def _split_csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def make_factories(dataset: Any, kinds: Sequence[str], *, embedder: Any, llm_factory: Callable[[], Any] | None,
                   rerank: str | None = None, transform: str | None = None, chunk_size: int | None = None,
                   chunk_overlap: int = 32, chunker: str = "recursive", alpha: float = 0.5,
                   rerank_candidates: int = 50, vector_store: Any = None) -> dict[str, Callable[[], Any]]:
    """One runner factory per configuration name: build the retriever, index the corpus (whole documents, or
    chunks of ``chunk_size`` tokens), return ``search(query, k) -> doc ids``."""
    from aisd.evals.runner import dedupe
    from aisd.rag.documents import Chunk, Document
    from aisd.rag.rerank import build_reranker
    from aisd.rag.retrieval import build_retriever

    for kind in kinds:
        if kind not in CONFIG_KINDS:
            from aisd.core.errors import InvalidRequestError

            raise InvalidRequestError(f"unknown config {kind!r}; choose from {', '.join(CONFIG_KINDS)}",
                                      param="configs")
    if chunk_size:
        from aisd.rag.chunking import build_chunker

        try:
            chunk_fn = build_chunker(chunker, embedder=embedder, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
        except ValueError as e:
            from aisd.core.errors import InvalidRequestError

            raise InvalidRequestError(str(e), param="chunk_size") from e
        docs = [Document(id=d.id, text=d.full_text, source=dataset.name, title=d.title)
                for d in dataset.corpus.values()]
        chunks: list[Any] = [c for d in docs for c in chunk_fn.split(d)]
    else:
        chunks = [Chunk(id=d.id, doc_id=d.id, text=d.full_text, start=0, end=len(d.full_text),
                        metadata={"title": d.title}) for d in dataset.corpus.values()]

    llm_cache: list[Any] = []

    def llm() -> Any:
        if not llm_cache:
            if llm_factory is None:
                from aisd.core.errors import ServiceUnavailableError

                raise ServiceUnavailableError("this configuration needs an LLM and none is available")
            llm_cache.append(llm_factory())
        return llm_cache[0]

    def factory(kind: str) -> Callable[[], Any]:
        def build() -> Callable[[str, int], list[str]]:
            reranker = build_reranker(rerank, llm=llm() if rerank == "llm" else None, embedder=embedder)
            retriever = build_retriever(kind, embedder=embedder, home=None, vector_store=vector_store,
                                        collection=f"eval-{dataset.name}-{kind}", alpha=alpha, reranker=reranker,
                                        rerank_candidates=rerank_candidates)
            retriever.add(chunks)
            if transform:
                from aisd.rag.query import build_query_transform, search_with_transform

                needs_llm = transform not in ("prf", "none")
                qt = build_query_transform(transform, llm=llm() if needs_llm else None, retriever=retriever)

                def search(q: str, k: int) -> list[str]:
                    return dedupe(r.chunk.doc_id for r in search_with_transform(retriever, qt, q, k))
                return search

            def plain(q: str, k: int) -> list[str]:
                return dedupe(r.chunk.doc_id for r in retriever.search(q, k))
            return plain
        return build

    suffix = (f"+{rerank.split(':')[0]}" if rerank else "") + (f"+{transform}" if transform else "") + \
             (f"@{chunk_size}" if chunk_size else "")
    return {f"{kind}{suffix}": factory(kind) for kind in kinds}


@app.command("retrieval")
def retrieval(
    data: Path = typer.Option(..., "--data", help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) "
                                                  "or a SQuAD 2.0 JSON file."),
    split: str = typer.Option("test", "--split", help="Qrels split (qrels/<split>.tsv)."),
    configs: str = typer.Option("bm25,dense,hybrid-rrf,hybrid-alpha", "--configs",
                                help="Comma-separated: bm25, dense, hybrid-rrf, hybrid-alpha."),
    rerank: str = typer.Option(None, "--rerank", help="maxsim | llm | cross-encoder:PATH | remote:URL#MODEL."),
    transform: str = typer.Option(None, "--transform", help="prf | hyde | multi-query | rewrite | expansion."),
    chunk_size: int = typer.Option(None, "--chunk-size", help="Index chunks of N tokens instead of whole documents."),
    chunk_overlap: int = typer.Option(None, "--chunk-overlap",
                                      help="Overlap in tokens between chunks (default: chunk size / 8)."),
    chunker: str = typer.Option("recursive", "--chunker", help="Chunker used with --chunk-size."),
    k: int = typer.Option(10, "--k", help="Cut-off for nDCG, recall, MRR and precision (recall@100 is always given)."),
    limit: int = typer.Option(None, "--limit", help="Evaluate only the first N queries."),
    alpha: float = typer.Option(0.5, "--alpha", help="hybrid-alpha weight of the dense score."),
    rerank_candidates: int = typer.Option(50, "--rerank-candidates", help="First-stage hits given to the reranker."),
    cache: Path = typer.Option(None, "--cache", help="Embedding cache file (default: $AISD_HOME/embed/)."),
    json_out: Path = typer.Option(None, "--json", help="Write the results as JSON here."),
) -> None:
    """Retrieval quality (nDCG, recall, MRR, precision, MAP) and per-query latency for each configuration."""
    from rich.console import Console
    from rich.table import Table

    from aisd.app.settings import Settings
    from aisd.app.wiring import Services
    from aisd.core.errors import InvalidRequestError
    from aisd.core.progress import use_rich_progress
    from aisd.evals.beir import load_dataset
    from aisd.evals.report import columns_for, write_json
    from aisd.evals.runner import run_grid

    kinds = _split_csv(configs)
    if not kinds:
        raise InvalidRequestError("--configs is empty", param="configs")
    if k < 1:
        raise InvalidRequestError("--k must be >= 1", param="k")
    services = Services(Settings())
    console = Console()
    if not console.is_terminal:  # piped / captured output: do not squeeze the metric columns to 80 characters
        console = Console(width=160)
    needs_dense = any(kd != "bm25" for kd in kinds) or rerank == "maxsim" or bool(chunk_size)
    embedder = None
    if needs_dense:
        if cache is not None:
            from aisd.embed import CachedEmbedder, build_embedder

            embedder = CachedEmbedder(build_embedder(services.settings.embed.model_copy(update={"cache": False})),
                                      cache)
        else:
            embedder = services.embedder
    dataset = load_dataset(data, split).subset(limit)
    console.print(f"[bold]{dataset.name}[/] split={dataset.split}: {len(dataset.corpus)} documents, "
                  f"{len(dataset.queries)} queries")
    factories = make_factories(dataset, kinds, embedder=embedder, llm_factory=lambda: services.llm_client,
                               rerank=rerank, transform=transform, chunk_size=chunk_size, chunker=chunker,
                               chunk_overlap=chunk_overlap if chunk_overlap is not None else (chunk_size or 0) // 8,
                               alpha=alpha, rerank_candidates=rerank_candidates)
    ks = sorted({k, 100})
    with use_rich_progress():
        results = run_grid(factories, dataset, k_values=ks)
    table = Table(title=f"retrieval: {dataset.name} ({dataset.split}, {results[0].num_queries} queries)")
    cols = columns_for(results, k)
    table.add_column("config")
    for c in cols:
        table.add_column(c, justify="right")
    for r in results:
        row = r.row()
        table.add_row(r.config, *[f"{row[c]:.2f}" if c.startswith("latency") else f"{row[c]:.4f}" for c in cols])
    console.print(table)
    stats = getattr(embedder, "stats", None)
    if stats is not None:
        s = stats()
        console.print(f"embedding cache: {s.hits} hits, {s.misses} misses (hit rate {s.hit_rate:.1%})")
    if json_out is not None:
        write_json(json_out, results, dataset=dataset.name, split=dataset.split, k=k,
                   documents=len(dataset.corpus), queries=len(dataset.queries), rerank=rerank, transform=transform,
                   chunk_size=chunk_size, embedder=getattr(embedder, "model_name", None))
        console.print(f"wrote {json_out}")
    services.close()


def _register_generation() -> None:
    """``aisd eval generation`` is ``aisd rag eval`` (one implementation, found under both groups)."""
    from aisd.app.commands.rag import eval_

    app.command("generation")(eval_)


_register_generation()
