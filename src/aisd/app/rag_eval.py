"""SQuAD 2.0 end-to-end RAG evaluation: retrieval + generation metrics, mean +- run-to-run spread.

Lives in ``app`` because it composes ``rag`` (the pipeline) and ``evals`` (the metrics), which never import each
other. Used by ``aisd rag eval`` and ``bench/rag_generation.py``.

Protocol: every paragraph of the file is ingested once (one document per paragraph); each run samples ``limit``
questions with its own seed (half answerable, half unanswerable unless ``unanswerable_share`` says otherwise) and
asks the pipeline each. Retrieval is scored on answerable questions (is the question's paragraph among the top-k
sources: hit@k and MRR); generation with SQuAD EM / F1, not-in-sources accuracy on unanswerable questions, and the
judge-free (and optionally LLM-judged) faithfulness, answer relevancy and context relevancy. With temperature 0 the
spread between runs comes from the question samples; with temperature > 0 it includes sampling of the answers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisd.core.progress import progress
from aisd.evals.generation_metrics import (
    GenerationEvaluator,
    GenerationSample,
    MetricValue,
    RunScores,
    summarize_runs,
)
from aisd.rag.loaders import SquadData, SquadQuestion, load_squad


@dataclass(frozen=True)
class SquadEvalConfig:
    limit: int = 20  # questions per run
    runs: int = 3
    seed: int = 0
    unanswerable_share: float = 0.5
    judge: bool = False  # also run the LLM-judged metrics (one judge call per statement / context)
    articles: int | None = None  # keep the first N articles only (smaller corpus, faster ingest)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.runs < 1:
            raise ValueError(f"limit and runs must be >= 1, got limit={self.limit}, runs={self.runs}")
        if not 0.0 <= self.unanswerable_share <= 1.0:
            raise ValueError(f"unanswerable_share must be in [0, 1], got {self.unanswerable_share}")


@dataclass
class SquadEvalResult:
    metrics: dict[str, MetricValue]
    config: dict[str, Any]
    corpus_documents: int
    ingest_s: float
    seconds_per_question: float
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": {k: v.to_dict() for k, v in self.metrics.items()}, "config": self.config,
                "corpus_documents": self.corpus_documents, "ingest_s": round(self.ingest_s, 2),
                "seconds_per_question": round(self.seconds_per_question, 3), "examples": self.examples}


def sample_questions(data: SquadData, n: int, seed: int, unanswerable_share: float) -> list[SquadQuestion]:
    rng = random.Random(seed)
    answerable = [q for q in data.questions if q.answerable]
    unanswerable = [q for q in data.questions if not q.answerable]
    n_un = min(round(n * unanswerable_share), len(unanswerable))
    picked = rng.sample(unanswerable, n_un) + rng.sample(answerable, min(n - n_un, len(answerable)))
    rng.shuffle(picked)
    return picked


def subset(data: SquadData, articles: int | None) -> SquadData:
    if articles is None:
        return data
    keep_titles = list(dict.fromkeys(d.title for d in data.documents))[:articles]
    docs = [d for d in data.documents if d.title in keep_titles]
    ids = {d.id for d in docs}
    return SquadData(docs, [q for q in data.questions if q.doc_id in ids])


def run_squad_eval(data_path: str | Path, pipeline_factory: Callable[[], Any], *, config: SquadEvalConfig,
                   embedder: Any = None, judge: Any = None, ask_options: dict[str, Any] | None = None,
                   keep_examples: int = 5) -> SquadEvalResult:
    """Ingest the SQuAD paragraphs into a fresh pipeline and score ``config.runs`` samples of questions."""
    data = subset(load_squad(data_path), config.articles)
    pipeline = pipeline_factory()
    t0 = time.perf_counter()
    pipeline.ingest(data.documents)
    ingest_s = time.perf_counter() - t0
    evaluator = GenerationEvaluator(embedder=embedder, judge=judge if config.judge else None)
    runs: list[RunScores] = []
    examples: list[dict[str, Any]] = []
    asked = 0
    t_ask = 0.0
    for r in range(config.runs):
        questions = sample_questions(data, config.limit, config.seed + r, config.unanswerable_share)
        samples: list[GenerationSample] = []
        retrieval = RunScores()
        for q in progress(questions, desc=f"run {r + 1}/{config.runs}"):
            t1 = time.perf_counter()
            answer = pipeline.ask(q.question, **(ask_options or {}))
            t_ask += time.perf_counter() - t1
            asked += 1
            source_docs = [s.doc_id for s in answer.sources]
            retrieved_docs = _retrieved_docs(answer)
            if q.answerable:
                rank = retrieved_docs.index(q.doc_id) + 1 if q.doc_id in retrieved_docs else None
                retrieval.add("retrieval_hit@k", float(rank is not None))
                retrieval.add("retrieval_mrr@k", 1.0 / rank if rank else 0.0)
            samples.append(GenerationSample(question=q.question, answer=answer.text,
                                            contexts=tuple(s.text for s in answer.sources), gold_answers=q.answers,
                                            answerable=q.answerable, refused=answer.not_in_sources))
            if len(examples) < keep_examples:
                examples.append({"question": q.question, "gold": list(q.answers), "answerable": q.answerable,
                                 "answer": answer.text, "not_in_sources": answer.not_in_sources,
                                 "sources": source_docs, "gold_doc": q.doc_id})
        scores = evaluator.score_run(samples)
        for k, v in retrieval.values.items():
            scores.values[k] = v
        runs.append(scores)
    cfg = {"data": str(data_path), **config.__dict__, "ask_options": ask_options or {},
           "pipeline": pipeline.stats() if hasattr(pipeline, "stats") else {}}
    return SquadEvalResult(summarize_runs(runs), cfg, len(data.documents), ingest_s, t_ask / max(asked, 1), examples)


def _retrieved_docs(answer: Any) -> list[str]:
    """Doc ids in retrieval order from the answer's trace (falls back to the sources shown to the model)."""
    for step in answer.trace:
        if step.name in ("retrieve", "search") and step.detail.get("chunk_ids"):
            ids = [str(c).split("::")[0] for c in step.detail["chunk_ids"]]
            return list(dict.fromkeys(ids))
    return list(dict.fromkeys(s.doc_id for s in answer.sources))
