"""Benchmark: end-to-end RAG on SQuAD 2.0 with the bundled models (MiniLM embedder, SmolLM2-135M LLM).

For each configuration the SQuAD paragraphs of the selected articles are ingested into a fresh in-memory pipeline,
then ``--runs`` runs each ask ``--limit`` sampled questions (half unanswerable). Reported per configuration, as mean
+- run-to-run spread (sample std over runs): retrieval hit@k / MRR@k of the question's paragraph, SQuAD EM / F1,
not-in-sources accuracy (unanswerable) and false-refusal rate (answerable), the judge-free faithfulness / answer
relevancy / context relevancy and, with --judge, the LLM-judged ones (SmolLM2 judging itself: reported, not
trusted). Every figure is also given as a ratio against the baseline configuration (the first, BM25) measured in
the same run, with the machine's cores and load beside it.

    .venv/bin/python bench/rag_generation.py --quick          # ~10-20 minutes on a busy 2-core machine
    .venv/bin/python bench/rag_generation.py --limit 30 --runs 3 --judge
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "squad2-dev"
RESULTS = ROOT / "bench" / "results"

CONFIGS: dict[str, dict[str, Any]] = {
    "bm25": {"retriever": "bm25"},
    "dense": {"retriever": "dense"},
    "hybrid-rrf": {"retriever": "hybrid-rrf"},
    "hybrid-rrf+agentic": {"retriever": "hybrid-rrf", "mode": "agentic", "agent_max_iterations": 2},
    # the answerability check before generating (aisd.rag.answerability; thresholds from settings)
    "hybrid-rrf+coverage": {"retriever": "hybrid-rrf", "answerability": "coverage"},
    "hybrid-rrf+similarity": {"retriever": "hybrid-rrf", "answerability": "similarity"},
    "hybrid-rrf+similarity+coverage": {"retriever": "hybrid-rrf", "answerability": "similarity+coverage"},
    "hybrid-rrf+evidence": {"retriever": "hybrid-rrf", "answerability": "evidence"},
}
HEADLINE = ("retrieval_hit@k", "retrieval_mrr@k", "squad_em", "squad_f1", "not_in_sources_accuracy",
            "false_refusal_rate", "faithfulness", "answer_relevancy", "context_relevancy", "faithfulness_judge",
            "answer_relevancy_judge", "context_relevancy_judge")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 articles, 6 questions x 2 runs (bm25 vs hybrid-rrf)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, default=20, help="questions per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--articles", type=int, default=4, help="index the first N articles (all: 16)")
    ap.add_argument("--configs", default=None,
                    help=f"comma list of {', '.join(CONFIGS)} (default bm25,dense,hybrid-rrf; --quick: bm25,hybrid-rrf)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--answerability", default="none",
                    help="answerability check for configs that do not set one (default none: the model alone)")
    ap.add_argument("--judge", action="store_true", help="also the LLM-judged metrics (slow)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the embedder")
    ap.add_argument("--out", type=Path, default=RESULTS / "rag_generation.json")
    args = ap.parse_args()
    if args.quick:
        args.articles, args.limit, args.runs = 2, 6, 2
        args.configs = args.configs or "bm25,hybrid-rrf"
    args.configs = args.configs or "bm25,dense,hybrid-rrf"
    if not args.data.exists():
        sys.exit(f"SQuAD data not found at {args.data}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    from rich.console import Console
    from rich.table import Table

    from aisd.app.rag_eval import SquadEvalConfig, run_squad_eval
    from aisd.app.settings import Settings
    from aisd.app.wiring import Services
    from aisd.core.progress import use_rich_progress
    from aisd.rag.pipeline import RAGPipeline

    console = Console()
    services = Services(Settings())
    embedder, llm = services.embedder, services.llm_client
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.exit(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    cfg = SquadEvalConfig(limit=args.limit, runs=args.runs, articles=args.articles, judge=args.judge)
    base = {**services.settings.rag.model_dump(), "top_k": args.k, "max_tokens": args.max_tokens,
            "chunk_size": 256, "chunk_overlap": 0, "one_shot": True, "source_order": "best-last",
            "answerability": args.answerability}
    results: dict[str, Any] = {}
    t_start = time.perf_counter()
    load0 = os.getloadavg()[0]
    try:
        for name in names:
            values = {**base, **CONFIGS[name]}

            def factory(values: dict[str, Any] = values) -> Any:
                return RAGPipeline.from_settings(values, home=None, embedder=embedder, vector_store=None, llm=llm)

            t0 = time.perf_counter()
            with use_rich_progress():
                res = run_squad_eval(args.data, factory, config=cfg, embedder=embedder,
                                     judge=llm if args.judge else None, keep_examples=4)
            results[name] = {**res.to_dict(), "wall_s": round(time.perf_counter() - t0, 1)}
            console.print(f"{name}: {res.seconds_per_question:.1f} s/question, ingest {res.ingest_s:.1f} s")
    finally:
        services.close()

    baseline = names[0]
    table = Table(title=f"SQuAD 2.0 RAG ({args.articles} articles, {args.runs} runs x {args.limit} questions, "
                        f"k={args.k}); ratio = config / {baseline}")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    for metric in HEADLINE:
        row = [metric]
        present = False
        b = results[baseline]["metrics"].get(metric, {}).get("mean")
        for name in names:
            m = results[name]["metrics"].get(metric)
            if not m or m["mean"] is None:
                row.append("n/a")
                continue
            present = True
            cell = f"{m['mean']:.3f} \u00b1 {m['std']:.3f}"
            if name != baseline and b:
                cell += f" ({m['mean'] / b:.2f}x)"
            row.append(cell)
        if present:
            table.add_row(*row)
    table.add_row("s / question", *[f"{results[n]['seconds_per_question']:.1f}" for n in names])
    console.print(table)
    machine = {"cores": os.cpu_count(), "load_avg_start": round(load0, 1), "load_avg_end": round(os.getloadavg()[0], 1),
               "python": platform.python_version(), "llm": getattr(llm, "model_name", "?"),
               "embedder": getattr(embedder, "model_name", "?")}
    console.print(f"machine: {machine}; total {time.perf_counter() - t_start:.0f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine,
                                    "baseline": baseline, "results": results}, indent=2, default=str))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
