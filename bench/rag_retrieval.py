"""Retrieval quality and latency on real data: SciFact (train queries) and SQuAD 2.0 dev paragraphs.

Grid: bm25 (the baseline every ratio is against), dense (bundled all-MiniLM-L6-v2, exact search), hybrid-rrf (k=60),
hybrid-alpha (alpha sweep), then rerankers (MaxSim; LLM pointwise with the bundled SmolLM2 through the in-process
engine when it loads) on a query subsample, each beside its own first stage on the same queries.

    python bench/rag_retrieval.py            # full grid (embeddings cached in bench/.cache/embeddings.sqlite)
    python bench/rag_retrieval.py --quick    # 150 queries per data set, small rerank subsample

Writes bench/results/rag_retrieval.json. Targets (SciFact train): BM25 nDCG@10 >= 0.66, dense >= 0.64, best
hybrid >= 0.70.
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "bench" / ".cache" / "embeddings.sqlite"
OUT = ROOT / "bench" / "results" / "rag_retrieval.json"
TARGETS = {"bm25": 0.66, "dense": 0.64, "hybrid": 0.70}


def _grid(name: str, dataset: Any, embedder: Any, kinds: list[str], alphas: list[float], **kw: Any) -> list[Any]:
    from aisd.app.commands.evals import make_factories
    from aisd.evals.report import format_table
    from aisd.evals.runner import run_config

    results = []
    for kind in kinds:
        sweep = alphas if kind == "hybrid-alpha" else [0.5]
        for a in sweep:
            factories = make_factories(dataset, [kind], embedder=embedder, llm_factory=kw.get("llm_factory"),
                                       alpha=a, rerank=kw.get("rerank"), rerank_candidates=kw.get("cands", 50))
            (label, factory), = factories.items()
            if kind == "hybrid-alpha":
                label = label.replace("hybrid-alpha", f"hybrid-alpha{a:g}")
            r = run_config(label, factory, dataset, k_values=(10, 100))
            results.append(r)
            print(f"  {name}: {label:28s} nDCG@10={r.metrics['ndcg@10']:.4f} R@100={r.metrics['recall@100']:.4f} "
                  f"p50={r.latency_ms_p50:.1f}ms", flush=True)
    print(format_table(results, title=f"\n{name} ({dataset.split}, {results[0].num_queries} queries, "
                                      f"{len(dataset.corpus)} documents)"))
    return results


def _rows(results: list[Any], baseline: str = "bm25") -> list[dict[str, Any]]:
    base = next((r for r in results if r.config == baseline), results[0])
    rows = []
    for r in results:
        row = r.row()
        row["ndcg@10_vs_" + base.config] = round(r.metrics["ndcg@10"] / base.metrics["ndcg@10"], 4) \
            if base.metrics["ndcg@10"] else None
        row["latency_p50_vs_" + base.config] = round(r.latency_ms_p50 / base.latency_ms_p50, 2) \
            if base.latency_ms_p50 else None
        rows.append(row)
    return rows


def _save(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def _llm_factory() -> Any:
    try:
        from aisd.app.settings import EngineSettings
        from aisd.engine.client import LocalClient

        return LocalClient.from_settings(EngineSettings(max_num_seqs=8, kv_cache_memory_gb=0.5))
    except Exception as e:  # noqa: BLE001 - the engine is another system; report and skip the LLM reranker
        print(f"  LLM reranker skipped: the in-process engine is not available ({type(e).__name__}: {e})")
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="150 queries per data set and a small rerank subsample")
    ap.add_argument("--rerank-queries", type=int, default=None, help="queries for the reranker comparison")
    ap.add_argument("--rerank-candidates", type=int, default=20)
    ap.add_argument("--no-llm", action="store_true", help="skip the LLM reranker")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the embedder")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"no evaluation data at {DATA}; nothing to run")
        return 1

    from aisd.embed import CachedEmbedder
    from aisd.embed.sbert import SentenceTransformerEmbedder
    from aisd.evals.beir import load_beir, load_squad_as_beir
    from aisd.evals.report import format_table, machine_info
    from aisd.evals.runner import run_config

    limit = 150 if args.quick else None
    rerank_q = args.rerank_queries or (15 if args.quick else 30)
    embedder = CachedEmbedder(SentenceTransformerEmbedder(num_threads=args.threads), CACHE)
    report: dict[str, Any] = {"machine": {**machine_info(), "load_avg_1m": os.getloadavg()[0],
                                          "note": "2 shared cores, other jobs running: latencies are noisy"},
                              "embedder": "all-minilm-l6-v2 (exact inner-product search)", "quick": args.quick,
                              "datasets": {}}
    t0 = time.time()
    sets = {"scifact-train": load_beir(DATA / "scifact", "train").subset(limit),
            "squad2-dev": load_squad_as_beir(DATA / "squad2-dev" / "dev-v2.0.json").subset(limit)}
    kinds = ["bm25", "dense", "hybrid-rrf", "hybrid-alpha"]
    for name, ds in sets.items():
        results = _grid(name, ds, embedder, kinds, [0.3, 0.5, 0.7])
        report["datasets"][name] = {"documents": len(ds.corpus), "queries": len(ds.queries), "split": ds.split,
                                    "results": _rows(results)}
        _save(args.out, report)

    # rerankers: the same first stage with and without reranking, on the same query subsample
    llm = None if args.no_llm else _llm_factory()
    for name, full in sets.items():
        sub = full.subset(rerank_q)
        rr_results = []
        from aisd.app.commands.evals import make_factories

        for first in ("bm25", "hybrid-rrf"):
            for rerank in [None, "maxsim"] + (["llm"] if llm is not None else []):
                if rerank == "llm" and first != "hybrid-rrf":
                    continue
                facs = make_factories(sub, [first], embedder=embedder, llm_factory=(lambda: llm), rerank=rerank,
                                      rerank_candidates=args.rerank_candidates)
                (label, fac), = facs.items()
                r = run_config(label, fac, sub, k_values=(10, 100))
                rr_results.append(r)
                print(f"  {name} rerank: {label:24s} nDCG@10={r.metrics['ndcg@10']:.4f} "
                      f"MRR@10={r.metrics['mrr@10']:.4f} p50={r.latency_ms_p50:.0f}ms", flush=True)
        print(format_table(rr_results, title=f"\n{name}: rerankers on {len(sub.queries)} queries, "
                                             f"top {args.rerank_candidates} candidates"))
        report["datasets"][name]["rerank"] = {"queries": len(sub.queries), "candidates": args.rerank_candidates,
                                              "results": _rows(rr_results)}
        _save(args.out, report)  # keep what is done if a later (slow) stage is interrupted
    sci = {r["config"]: r["ndcg@10"] for r in report["datasets"]["scifact-train"]["results"]}
    best_hybrid = max(v for k, v in sci.items() if k.startswith("hybrid"))
    report["targets"] = {"scifact_bm25_ndcg@10": [sci.get("bm25"), TARGETS["bm25"]],
                         "scifact_dense_ndcg@10": [sci.get("dense"), TARGETS["dense"]],
                         "scifact_best_hybrid_ndcg@10": [best_hybrid, TARGETS["hybrid"]]}
    report["seconds"] = round(time.time() - t0, 1)
    report["python"] = platform.python_version()
    s = embedder.stats()
    report["embedding_cache"] = {"hits": s.hits, "misses": s.misses, "hit_rate": round(s.hit_rate, 4)}
    _save(args.out, report)
    print("\ntargets (SciFact train nDCG@10, measured vs target):")
    for k, (got, want) in report["targets"].items():
        print(f"  {k:32s} {got:.4f} vs {want:.2f}  {'OK' if got is not None and got >= want else 'MISS'}")
    print(f"wrote {args.out} in {report['seconds']} s; embedding cache hit rate {s.hit_rate:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
