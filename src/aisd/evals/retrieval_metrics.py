"""Retrieval metrics as pure functions over one ranked list, with trec_eval's definitions (Voorhees & Harman 2005)
so that values equal pytrec_eval's (tests/reference/test_evals_trec.py checks to 1e-6).

Conventions shared with trec_eval: a document is relevant when its qrel grade >= 1; nDCG's gain is the grade itself
(not 2^grade - 1) with discount log2(rank + 1), the ideal ranking built from every judged relevant document;
P@k divides by k even when fewer than k documents were retrieved; a run's scores are ranked by score descending,
ties by document id descending (``rank_run``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

Qrel = Mapping[str, int]  # doc id -> relevance grade for one query


def _rel(qrel: Qrel, doc: str) -> int:
    return qrel.get(doc, 0)


def num_relevant(qrel: Qrel) -> int:
    return sum(1 for g in qrel.values() if g >= 1)


def precision_at_k(ranked: Sequence[str], qrel: Qrel, k: int) -> float:
    """|relevant in top k| / k (trec_eval P_k)."""
    return sum(1 for d in ranked[:k] if _rel(qrel, d) >= 1) / k


def recall_at_k(ranked: Sequence[str], qrel: Qrel, k: int) -> float:
    """|relevant in top k| / |relevant| (trec_eval recall_k); 0 when the query has no relevant document."""
    n = num_relevant(qrel)
    return sum(1 for d in ranked[:k] if _rel(qrel, d) >= 1) / n if n else 0.0


def reciprocal_rank(ranked: Sequence[str], qrel: Qrel, k: int | None = None) -> float:
    """1 / rank of the first relevant document within the top k (MRR@k per query; trec_eval recip_rank on the cut
    list)."""
    for i, d in enumerate(ranked[:k] if k else ranked, start=1):
        if _rel(qrel, d) >= 1:
            return 1.0 / i
    return 0.0


def average_precision(ranked: Sequence[str], qrel: Qrel, k: int | None = None) -> float:
    """Mean of P@rank over the ranks of retrieved relevant documents, divided by all relevant (trec_eval map /
    map_cut_k)."""
    n = num_relevant(qrel)
    if not n:
        return 0.0
    hits, total = 0, 0.0
    for i, d in enumerate(ranked[:k] if k else ranked, start=1):
        if _rel(qrel, d) >= 1:
            hits += 1
            total += hits / i
    return total / n


def dcg(gains: Iterable[float]) -> float:
    """Discounted cumulative gain, sum of gain_i / log2(i + 1), i from 1 (Jarvelin & Kekalainen 2002)."""
    return sum(g / math.log2(i + 1) for i, g in enumerate(gains, start=1))


def ndcg_at_k(ranked: Sequence[str], qrel: Qrel, k: int) -> float:
    """DCG@k / ideal DCG@k with the grade as gain (trec_eval ndcg_cut_k); 0 when nothing is relevant."""
    ideal = dcg(sorted((g for g in qrel.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg(max(_rel(qrel, d), 0) for d in ranked[:k]) / ideal


def rank_run(scores: Mapping[str, float]) -> list[str]:
    """Doc ids of one query's run ordered as trec_eval does: score descending, then doc id descending."""
    return [d for d, _ in sorted(scores.items(), key=lambda t: (t[1], t[0]), reverse=True)]


METRICS = ("ndcg", "recall", "precision", "mrr", "map")


def query_metrics(ranked: Sequence[str], qrel: Qrel, ks: Sequence[int] = (10, 100)) -> dict[str, float]:
    """Every metric for one query: ndcg@k, recall@k, precision@k, mrr@k, map@k for each k, and map (uncut)."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"ndcg@{k}"] = ndcg_at_k(ranked, qrel, k)
        out[f"recall@{k}"] = recall_at_k(ranked, qrel, k)
        out[f"precision@{k}"] = precision_at_k(ranked, qrel, k)
        out[f"mrr@{k}"] = reciprocal_rank(ranked, qrel, k)
        out[f"map@{k}"] = average_precision(ranked, qrel, k)
    out["map"] = average_precision(ranked, qrel)
    return out


@dataclass(frozen=True)
class EvalResult:
    """Mean of each metric over the evaluated queries, and the per-query values."""

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def num_queries(self) -> int:
        return len(self.per_query)


def evaluate(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Qrel], ks: Sequence[int] = (10, 100)) -> EvalResult:
    """Score ranked lists (``run``: query id -> doc ids best first) against ``qrels``.

    Queries with at least one relevant document are evaluated; a query missing from ``run`` scores 0 (it retrieved
    nothing). Queries in ``run`` without qrels are ignored, as trec_eval does."""
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive cut-offs, got {list(ks)}")
    per_query = {q: query_metrics(run.get(q, []), qrel, ks) for q, qrel in qrels.items() if num_relevant(qrel)}
    names = next(iter(per_query.values())).keys() if per_query else []
    mean = {m: sum(v[m] for v in per_query.values()) / len(per_query) for m in names}
    return EvalResult(mean, per_query)
