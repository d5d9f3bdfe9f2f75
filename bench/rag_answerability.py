"""Benchmark: answerability strategies on SQuAD 2.0 ("not in the sources" for unanswerable questions).

Protocol. All paragraphs of ../shared/data/squad2-dev are indexed once (hybrid-rrf, MiniLM, one document per
paragraph). The articles are split in two: thresholds are calibrated on questions from the first half (calibration
articles) and measured on questions from the other half (test articles), so no test question, paragraph or article
tunes anything. Each split samples half answerable, half unanswerable questions. For every question the top-k chunks
are retrieved and each strategy scores them:

- similarity: cos(question, best chunk) (MiniLM) - the retrieval-score threshold;
- bm25: the best chunk's BM25 score (the lexical retrieval score);
- sentence: cos(question, best sentence of the top chunks);
- coverage: aisd.rag.answerability.coverage_score (judge-free content-word / entity / negation coverage);
- evidence: coverage + 2 x sentence (one judge-free score);
- llm: log P(Yes) - log P(No) of the bundled LLM asked whether the sources state the answer;
- a+b pairs: both must pass (thresholds picked jointly on the calibration split).

A strategy refuses when its score is below its threshold; the threshold is the highest one whose false-refusal rate
on the calibration split stays within the budget (--budget, default 0.2). Reported on the test split: accuracy on
unanswerable questions (refused share), false-refusal rate on answerable ones, AUC (threshold-free), each with a
bootstrap std over questions, and the lift over a random refuser with the same false-refusal rate (which would refuse
that same share of unanswerable questions: lift = unanswerable accuracy / false-refusal rate). With --generate N the
model's own refusals (no check, the generation prompt's "reply exactly ..." instruction) are measured on N test
questions as the baseline.

    flock /tmp/aisd-bench.lock .venv/bin/python bench/rag_answerability.py --quick
    flock /tmp/aisd-bench.lock .venv/bin/python bench/rag_answerability.py --cal 200 --test 200 --generate 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "squad2-dev"
RESULTS = ROOT / "bench" / "results"


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """aisd.rag.calibrate.auc (Mann-Whitney U / (n_pos n_neg)), NaN instead of None for the bootstrap."""
    from aisd.rag.calibrate import auc as auc_or_none

    value = auc_or_none(pos, neg)
    return float("nan") if value is None else value


def rates(scores: np.ndarray, answerable: np.ndarray, thr: float) -> tuple[float, float]:
    refused = scores < thr
    return float(refused[~answerable].mean()), float(refused[answerable].mean())


def joint_rates(s1: np.ndarray, s2: np.ndarray, answerable: np.ndarray, t1: float, t2: float) -> tuple[float, float]:
    refused = (s1 < t1) | (s2 < t2)
    return float(refused[~answerable].mean()), float(refused[answerable].mean())


def calibrate_joint(s1: np.ndarray, s2: np.ndarray, answerable: np.ndarray, budget: float) -> tuple[float, float]:
    """The library's joint calibration (``aisd.rag.calibrate.fit_thresholds``, the same grid ``aisd rag calibrate``
    uses): answerable-score quantiles in [0, budget] of both, the pair refusing the most unanswerable questions."""
    from aisd.rag.calibrate import fit_thresholds

    t1, t2 = fit_thresholds(np.stack([s1, s2], axis=1), answerable, budget)
    return t1, t2


def bootstrap(fn: Any, n: int, reps: int = 500, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    vals = [fn(rng.integers(0, n, n)) for _ in range(reps)]
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def single_result(cal_s: np.ndarray, test_s: np.ndarray, cal_ans: np.ndarray, test_ans: np.ndarray,
                  budget: float) -> dict[str, Any]:
    """Calibrate one strategy's threshold on the calibration split, measure it on the test split."""
    from aisd.rag.answerability import best_threshold

    thr = best_threshold(cal_s[cal_ans], budget)
    acc, frr = rates(test_s, test_ans, thr)
    n = len(test_s)
    return {"threshold": thr, "unanswerable_accuracy": acc, "false_refusal_rate": frr,
            "unanswerable_accuracy_std": bootstrap(lambda i: rates(test_s[i], test_ans[i], thr)[0], n),
            "false_refusal_rate_std": bootstrap(lambda i: rates(test_s[i], test_ans[i], thr)[1], n),
            "auc": auc(test_s[test_ans], test_s[~test_ans]),
            "auc_std": bootstrap(lambda i: auc(test_s[i][test_ans[i]], test_s[i][~test_ans[i]]), n),
            "cal_auc": auc(cal_s[cal_ans], cal_s[~cal_ans])}


def pair_result(c1: np.ndarray, l1: np.ndarray, c2: np.ndarray, l2: np.ndarray, cal_ans: np.ndarray,
                test_ans: np.ndarray, budget: float) -> dict[str, Any]:
    """Two strategies that must both pass: thresholds picked jointly on the calibration split."""
    t1, t2 = calibrate_joint(c1, l1, cal_ans, budget)
    acc, frr = joint_rates(c2, l2, test_ans, t1, t2)
    n = len(c2)
    return {"threshold": [t1, t2], "unanswerable_accuracy": acc, "false_refusal_rate": frr,
            "unanswerable_accuracy_std": bootstrap(lambda i: joint_rates(c2[i], l2[i], test_ans[i], t1, t2)[0], n),
            "false_refusal_rate_std": bootstrap(lambda i: joint_rates(c2[i], l2[i], test_ans[i], t1, t2)[1], n),
            "auc": None, "auc_std": None, "cal_auc": None}


def analyze(rows: dict[str, list[dict[str, Any]]], generated: list[dict[str, Any]], budget: float, title: str,
            console: Any) -> dict[str, Any]:
    """Calibrate every strategy (and pair) on rows["cal"], measure on rows["test"], print the table."""
    from rich.table import Table

    present = [s for s in ("similarity", "bm25", "sentence", "coverage", "evidence", "llm") if s in rows["cal"][0]]
    cal_ans = np.array([r["answerable"] for r in rows["cal"]])
    test_ans = np.array([r["answerable"] for r in rows["test"]])
    results: dict[str, Any] = {}
    for s in present:
        results[s] = single_result(np.array([r[s] for r in rows["cal"]]), np.array([r[s] for r in rows["test"]]),
                                   cal_ans, test_ans, budget)
    pairs = [(a, b) for a, b in (("similarity", "coverage"), ("sentence", "coverage"), ("evidence", "llm"))
             if a in present and b in present]
    for first, second in pairs:
        c1, c2 = (np.array([r[first] for r in rows[k]]) for k in ("cal", "test"))
        l1, l2 = (np.array([r[second] for r in rows[k]]) for k in ("cal", "test"))
        results[f"{first}+{second}"] = pair_result(c1, l1, c2, l2, cal_ans, test_ans, budget)
    if generated:
        g_ans = np.array([g["answerable"] for g in generated])
        g_ref = np.array([g["refused"] for g in generated])
        results["model-only (no check)"] = {
            "threshold": None, "unanswerable_accuracy": float(g_ref[~g_ans].mean()) if (~g_ans).any() else None,
            "false_refusal_rate": float(g_ref[g_ans].mean()) if g_ans.any() else None,
            "unanswerable_accuracy_std": None, "false_refusal_rate_std": None, "auc": None, "auc_std": None,
            "cal_auc": None, "n": len(generated)}
    table = Table(title=title)
    for col in ("strategy", "threshold", "unanswerable acc", "false refusal", "lift vs random", "AUC (test)",
                "AUC (cal)"):
        table.add_column(col, justify="left" if col == "strategy" else "right")

    def fmt(v: Any, sd: Any = None) -> str:
        if v is None:
            return "n/a"
        return f"{v:.3f}" + (f" \u00b1 {sd:.3f}" if sd is not None else "")

    for name, r in results.items():
        thr = r["threshold"]
        thr_s = "-" if thr is None else (", ".join(f"{t:.3f}" for t in thr) if isinstance(thr, list) else f"{thr:.3f}")
        acc, frr = r["unanswerable_accuracy"], r["false_refusal_rate"]
        lift = f"{acc / frr:.2f}x" if acc is not None and frr else "n/a"
        table.add_row(name, thr_s, fmt(acc, r["unanswerable_accuracy_std"]), fmt(frr, r["false_refusal_rate_std"]),
                      lift, fmt(r["auc"], r["auc_std"]), fmt(r["cal_auc"]))
    console.print(table)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="40 calibration + 40 test questions, no generation")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cal", type=int, default=200, help="calibration questions (half unanswerable)")
    ap.add_argument("--test", type=int, default=200, help="test questions (half unanswerable)")
    ap.add_argument("--budget", type=float, default=0.2, help="false-refusal budget on the calibration split")
    ap.add_argument("--k", type=int, default=3, help="top chunks the checks read")
    ap.add_argument("--retriever", default="hybrid-rrf")
    ap.add_argument("--no-llm", action="store_true", help="skip the LLM yes/no strategy")
    ap.add_argument("--generate", type=int, default=0, help="test questions also answered by the model (baseline)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--rescore", type=Path, default=None,
                    help="re-analyse the scores saved in this results JSON at --budget (no models, seconds)")
    args = ap.parse_args()
    if args.rescore is not None:
        from rich.console import Console

        saved = json.loads(args.rescore.read_text())
        title = f"{args.rescore.name} re-analysed: false-refusal budget {args.budget}"
        results = analyze(saved["rows"], saved.get("generated", []), args.budget, title, Console(width=150))
        out = args.out or args.rescore.with_name(f"{args.rescore.stem}_budget{args.budget}.json")
        out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "machine": saved["machine"],
                                   "results": results}, indent=2, default=str))
        print(f"wrote {out}")
        return
    if args.quick:
        args.cal, args.test = 40, 40
    args.out = args.out or RESULTS / ("rag_answerability_quick.json" if args.quick else "rag_answerability.json")
    if not args.data.exists():
        sys.exit(f"SQuAD data not found at {args.data}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    import torch
    from rich.console import Console

    from aisd.app.settings import Settings
    from aisd.app.wiring import Services
    from aisd.core.progress import progress, use_rich_progress
    from aisd.rag.answerability import (
        EVIDENCE_SENTENCE_WEIGHT,
        best_sentence_similarity,
        coverage_score,
        llm_answerability_score,
    )
    from aisd.rag.loaders import load_squad
    from aisd.rag.pipeline import RAGPipeline

    torch.set_num_threads(args.threads)
    console = Console(width=150)
    t_start = time.perf_counter()
    load0 = os.getloadavg()[0]
    data = load_squad(args.data)
    titles = list(dict.fromkeys(d.title for d in data.documents))
    cal_titles = set(titles[: len(titles) // 2])
    rng = random.Random(args.seed)

    def sample(in_cal: bool, n: int) -> list[Any]:
        pool = [q for q in data.questions if (q.doc_id.split("#")[0] in cal_titles) == in_cal]
        un = [q for q in pool if not q.answerable]
        an = [q for q in pool if q.answerable]
        picked = rng.sample(un, n // 2) + rng.sample(an, n - n // 2)
        rng.shuffle(picked)
        return picked

    splits = {"cal": sample(True, args.cal), "test": sample(False, args.test)}
    services = Services(Settings())
    embedder, llm = services.embedder, services.llm_client
    values = {**services.settings.rag.model_dump(), "retriever": args.retriever, "top_k": args.k,
              "chunk_size": 256, "chunk_overlap": 0, "answerability": "none"}
    pipeline = RAGPipeline.from_settings(values, home=None, embedder=embedder, vector_store=None, llm=llm)
    rows: dict[str, list[dict[str, Any]]] = {}
    t_llm = 0.0
    n_llm = 0
    try:
        with use_rich_progress():
            t0 = time.perf_counter()
            pipeline.ingest(data.documents)
            ingest_s = time.perf_counter() - t0
            for split, questions in splits.items():
                out = []
                for q in progress(questions, total=len(questions), desc=f"scoring {split}"):
                    hits = pipeline.retrieve(q.question, k=args.k)
                    texts = [h.chunk.context_text for h in hits]
                    vecs = embedder.embed([q.question, *[h.chunk.text for h in hits]])
                    row = {"id": q.id, "answerable": q.answerable, "gold_in_top": q.doc_id in {h.chunk.doc_id
                                                                                              for h in hits},
                           "similarity": float(max(vecs[1:] @ vecs[0])) if hits else -1.0,
                           "bm25": float(max((h.scores.get("bm25", 0.0) for h in hits), default=0.0)),
                           "coverage": coverage_score(q.question, texts).score,
                           "sentence": best_sentence_similarity(q.question, texts, embedder)[0]}
                    row["evidence"] = row["coverage"] + EVIDENCE_SENTENCE_WEIGHT * row["sentence"]
                    if not args.no_llm:
                        t1 = time.perf_counter()
                        row["llm"] = llm_answerability_score(llm, q.question, texts)
                        t_llm += time.perf_counter() - t1
                        n_llm += 1
                    out.append(row)
                rows[split] = out
            generated: list[dict[str, Any]] = []
            for q in progress(splits["test"][: args.generate], total=min(args.generate, len(splits["test"])),
                              desc="model's own refusals"):
                ans = pipeline.ask(q.question, max_tokens=48)
                generated.append({"answerable": q.answerable, "refused": ans.not_in_sources, "text": ans.text})
    finally:
        services.close()

    title = (f"SQuAD 2.0 answerability: calibrated on {len(rows['cal'])} questions (articles 1-{len(cal_titles)}), "
             f"tested on {len(rows['test'])} others (articles {len(cal_titles) + 1}-{len(titles)}); false-refusal "
             f"budget {args.budget}; top-{args.k} {args.retriever}")
    results = analyze(rows, generated, args.budget, title, console)
    recall = float(np.mean([r["gold_in_top"] for r in rows["test"] if r["answerable"]]))
    machine = {"cores": os.cpu_count(), "load_avg_start": round(load0, 1), "load_avg_end": round(os.getloadavg()[0], 1),
               "python": platform.python_version(), "llm": getattr(llm, "model_name", "?"),
               "embedder": getattr(embedder, "model_name", "?"), "corpus_paragraphs": len(data.documents),
               "ingest_s": round(ingest_s, 1), "llm_check_s_per_question": round(t_llm / max(n_llm, 1), 2),
               "test_gold_paragraph_in_top_k": round(recall, 3)}
    console.print(f"machine: {machine}; total {time.perf_counter() - t_start:.0f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine,
                                    "results": results, "rows": rows, "generated": generated}, indent=2,
                                   default=str))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
