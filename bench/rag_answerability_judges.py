"""Benchmark: other ways to use the LLM judge for "not in the sources", against the shipped yes/no logprob (``llm``).

Same SQuAD 2.0 protocol, questions and splits as bench/rag_answerability.py (seed 0: 300 calibration questions from
articles 1-8, 300 test questions from articles 9-16, half unanswerable; every paragraph indexed, top-3 hybrid-rrf
chunks shown to the judge). Scored per question, with the judge in process (AISD_ENGINE__MODEL):

- llm: the shipped strategy, log P(Yes) - log P(No) of "Do the sources state the answer?" (llm_answerability_score);
- probe-L: a linear probe on the judge's hidden state. During that same call the engine's ``layer_observer``
  keeps the residual stream at the last prompt token after every layer. For a few layers L, a logistic regression is
  trained on the calibration questions plus --extra more questions from articles 1-8 (an "internal state knows"
  probe, Azaria & Mitchell 2023). Its L2 strength is picked by cross-validation grouped by article. The threshold
  comes from out-of-fold scores, so nothing is fitted on test articles;
- extract: the judge is asked for a short answer copied from the sources, or the word "unanswerable"; the score is
  minus the first token's log P("unanswerable"), and "said" is whether it wrote the word (the model's own refusal);
- verify: answer-then-verify. A second call shows the judge its extracted answer and asks whether the sources state
  that it answers the question (log P(Yes) - log P(No)).

Each score gets its threshold on the calibration split at the false-refusal budget (0.2); results are reported on the
test split, like bench/rag_answerability.py.

    python bench/fetch_optional_model.py qwen2.5-coder-1.5b
    AISD_ENGINE__MODEL=bench/.cache/models/qwen2.5-coder-1.5b-q4_k_m.gguf AISD_ENGINE__DTYPE=bfloat16 \\
        python bench/rag_answerability_judges.py --out bench/results/rag_answerability_judges_qwen1.5b.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "squad2-dev"
RESULTS = ROOT / "bench" / "results"
EXTRACT_PROMPT = ("Sources:\n{sources}\n\nQuestion: {question}\nAnswer with a short phrase copied from the sources. "
                  "If the sources do not state the answer, reply exactly: unanswerable")
VERIFY_PROMPT = ("Sources:\n{sources}\n\nQuestion: {question}\nProposed answer: {answer}\nDo the sources state that "
                 "this is the answer to the question? Answer Yes or No.")
SYSTEM = "You answer questions using only the given sources."


def logistic_probe(x_train: np.ndarray, y: np.ndarray, groups: np.ndarray, x_test: np.ndarray) -> dict[str, Any]:
    """Standardised L2 logistic regression; C picked by article-grouped CV AUC; out-of-fold train scores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    from aisd.rag.calibrate import auc

    def fit(xa: np.ndarray, ya: np.ndarray, c: float) -> Any:
        scaler = StandardScaler().fit(xa)
        model = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(xa), ya)
        return lambda xb: model.decision_function(scaler.transform(xb))

    best: tuple[float, float, np.ndarray] | None = None
    for c in (0.0003, 0.001, 0.003, 0.01, 0.03):
        oof = np.zeros(len(y))
        for tr, va in GroupKFold(4).split(x_train, y, groups):
            oof[va] = fit(x_train[tr], y[tr], c)(x_train[va])
        score = auc(oof[y], oof[~y]) or 0.0
        if best is None or score > best[0]:
            best = (score, c, oof)
    assert best is not None
    cv_auc, c, oof = best
    return {"C": c, "cv_auc": cv_auc, "train_oof": oof, "test": fit(x_train, y, c)(x_test)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cal", type=int, default=300)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--extra", type=int, default=600, help="more articles 1-8 questions to train the probes on")
    ap.add_argument("--layers", default="12,16,20,24,last", help="1-based layers to probe")
    ap.add_argument("--budget", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "rag_answerability_judges.json")
    args = ap.parse_args()
    if not args.data.exists():
        sys.exit(f"SQuAD data not found at {args.data}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from engine_throughput import cpu_model  # bench/ is on sys.path when run as a script
    from rich.console import Console
    from rich.table import Table

    from aisd.app.settings import Settings
    from aisd.app.wiring import Services
    from aisd.core.progress import progress, use_rich_progress
    from aisd.llm.client import chat_request
    from aisd.rag.answerability import best_threshold, llm_answerability_score, numbered_sources
    from aisd.rag.calibrate import auc
    from aisd.rag.loaders import load_squad
    from aisd.rag.pipeline import RAGPipeline
    from aisd.rag.rerank import first_token_logprob, yes_no_score

    torch.set_num_threads(args.threads)
    console = Console(width=150)
    t_start, load0 = time.perf_counter(), os.getloadavg()[0]
    data = load_squad(args.data)
    titles = list(dict.fromkeys(d.title for d in data.documents))
    cal_titles = set(titles[: len(titles) // 2])
    article = {q.id: q.doc_id.split("#")[0] for q in data.questions}
    rng = random.Random(0)

    def sample(in_cal: bool, n: int, exclude: set[str] | None = None) -> list[Any]:  # bench/rag_answerability.py's
        pool = [q for q in data.questions if (article[q.id] in cal_titles) == in_cal and q.id not in (exclude or ())]
        un, an = [q for q in pool if not q.answerable], [q for q in pool if q.answerable]
        picked = rng.sample(un, n // 2) + rng.sample(an, n - n // 2)
        rng.shuffle(picked)
        return picked

    splits = {"cal": sample(True, args.cal), "test": sample(False, args.test)}
    splits["extra"] = sample(True, args.extra, {q.id for q in splits["cal"]})
    services = Services(Settings())
    if services.settings.rag.llm_url:
        sys.exit("the probes read the judge's hidden states: unset AISD_RAG__LLM_URL and set AISD_ENGINE__MODEL")
    llm = services.llm_client
    services.engine.start()
    model = services.engine.engine.model
    last: dict[int, torch.Tensor] = {}  # layer index -> [hidden] at the last position of the latest forward

    def observer(i: int, x: torch.Tensor) -> None:  # x [T, hidden]
        last[i] = x[-1].clone()

    values = {**services.settings.rag.model_dump(), "retriever": "hybrid-rrf", "top_k": 3, "chunk_size": 256,
              "chunk_overlap": 0, "answerability": "none"}
    pipeline = RAGPipeline.from_settings(values, home=None, embedder=services.embedder, vector_store=None, llm=llm)
    rows: dict[str, list[dict[str, Any]]] = {}
    states: dict[str, list[np.ndarray]] = {}
    timing = {"llm": 0.0, "extract+verify": 0.0}
    try:
        with use_rich_progress():
            pipeline.ingest(data.documents)
            for split, questions in splits.items():
                rows[split], states[split] = [], []
                for q in progress(questions, total=len(questions), desc=f"judging {split}"):
                    texts = [h.chunk.context_text for h in pipeline.retrieve(q.question, k=3)]
                    t0 = time.perf_counter()
                    model.layer_observer = observer
                    try:
                        row = {"id": q.id, "answerable": q.answerable,
                               "llm": llm_answerability_score(llm, q.question, texts)}
                    finally:
                        model.layer_observer = None
                    timing["llm"] += time.perf_counter() - t0
                    states[split].append(torch.stack([last[i] for i in sorted(last)]).numpy())
                    if split != "extra":
                        t0 = time.perf_counter()
                        src = numbered_sources(texts)
                        msgs = [{"role": "system", "content": SYSTEM},
                                {"role": "user", "content": EXTRACT_PROMPT.format(sources=src, question=q.question)}]
                        ext = llm.chat(chat_request(msgs, max_tokens=16, temperature=0.0, logprobs=True,
                                                    top_logprobs=20))
                        answer = ext.text.strip()
                        msgs[1]["content"] = VERIFY_PROMPT.format(sources=src, question=q.question, answer=answer)
                        ver = llm.chat(chat_request(msgs, max_tokens=1, temperature=0.0, logprobs=True,
                                                    top_logprobs=20))
                        row.update(answer=answer, said_unanswerable="unanswerable" in answer.lower(),
                                   extract=-(first_token_logprob(ext, "unanswerable") or 0.0),
                                   verify=yes_no_score(ver) or 0.0)
                        timing["extract+verify"] += time.perf_counter() - t0
                    rows[split].append(row)
    finally:
        services.close()

    y_cal = np.array([r["answerable"] for r in rows["cal"]])
    y_test = np.array([r["answerable"] for r in rows["test"]])
    n_layers = states["cal"][0].shape[0]
    results: dict[str, dict[str, Any]] = {}

    def operating_point(name: str, thr: float, test_scores: np.ndarray, **extra: Any) -> None:
        refused = test_scores < thr
        results[name] = {"threshold": thr, "unanswerable_accuracy": float(refused[~y_test].mean()),
                         "false_refusal_rate": float(refused[y_test].mean()),
                         "auc": auc(test_scores[y_test], test_scores[~y_test]), **extra}

    for name in ("llm", "extract", "verify"):
        cal_scores = np.array([r[name] for r in rows["cal"]])
        operating_point(name, best_threshold(cal_scores[y_cal], args.budget), np.array([r[name] for r in rows["test"]]))
    said = np.array([r["said_unanswerable"] for r in rows["test"]])
    results["said unanswerable (model's own refusal)"] = {
        "threshold": None, "unanswerable_accuracy": float(said[~y_test].mean()),
        "false_refusal_rate": float(said[y_test].mean()), "auc": None}
    train_rows = rows["cal"] + rows["extra"]
    y_train = np.array([r["answerable"] for r in train_rows])
    groups = np.array([article[r["id"]] for r in train_rows])
    x_train = np.stack(states["cal"] + states["extra"])  # [N, layers, hidden]
    x_test = np.stack(states["test"])
    for spec in args.layers.split(","):
        layer = n_layers if spec == "last" else int(spec)
        probe = logistic_probe(x_train[:, layer - 1], y_train, groups, x_test[:, layer - 1])
        operating_point(f"probe-{layer}", best_threshold(probe["train_oof"][y_train], args.budget),  # out-of-fold
                        probe["test"], C=probe["C"], cv_auc=probe["cv_auc"], train_questions=len(y_train))
    table = Table(title=f"SQuAD 2.0 answerability, judge {getattr(llm, 'model_name', '?')}: thresholds at "
                        f"false-refusal budget {args.budget} on articles 1-8, measured on {len(y_test)} test "
                        "questions (articles 9-16)")
    for col in ("score", "unanswerable acc", "false refusal", "AUC test", "note"):
        table.add_column(col, justify="left" if col in ("score", "note") else "right")
    for name, r in results.items():
        note = f"C={r['C']}, grouped-CV AUC {r['cv_auc']:.3f}, {r['train_questions']} train" if "C" in r else ""
        table.add_row(name, f"{r['unanswerable_accuracy']:.3f}", f"{r['false_refusal_rate']:.3f}",
                      "-" if r["auc"] is None else f"{r['auc']:.3f}", note)
    console.print(table)
    n_judged = sum(len(v) for v in rows.values())
    machine = {"cores": os.cpu_count(), "cpu": cpu_model(),
               "load_avg_start": round(load0, 1), "load_avg_end": round(os.getloadavg()[0], 1),
               "llm": getattr(llm, "model_name", "?"), "layers": n_layers,
               "llm_s_per_question": round(timing["llm"] / n_judged, 2),
               "extract_verify_s_per_question": round(timing["extract+verify"] / (len(rows["cal"]) + len(y_test)), 2),
               "total_s": round(time.perf_counter() - t_start)}
    console.print(f"machine: {machine}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine,
                                    "results": results, "rows": rows}, indent=2, default=str))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
