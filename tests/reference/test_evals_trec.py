"""Retrieval metrics equal pytrec_eval's (trec_eval's definitions) to 1e-6 per query, with graded qrels, ties in
run scores, queries with fewer than k retrieved and relevant documents never retrieved."""

from __future__ import annotations

import random

import pytest

pytrec_eval = pytest.importorskip("pytrec_eval")

from aisd.evals.retrieval_metrics import evaluate, rank_run, reciprocal_rank  # noqa: E402

MEASURES = {"ndcg_cut.10", "ndcg_cut.5", "recall.10", "recall.100", "P.10", "P.5", "map", "map_cut.10",
            "recip_rank"}


def _data(seed: int, n_queries: int = 40, n_docs: int = 300):
    rng = random.Random(seed)
    qrels, run = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        judged = rng.sample(range(n_docs), rng.randint(1, 12))
        qrels[qid] = {f"d{d}": rng.choice([0, 1, 1, 2, 3]) for d in judged}
        if not any(g > 0 for g in qrels[qid].values()):
            qrels[qid][f"d{judged[0]}"] = 1
        n_ret = rng.choice([3, 8, 50, 150])
        # scores rounded to 1 decimal: many ties, resolved as trec_eval does (doc id descending)
        run[qid] = {f"d{d}": round(rng.random(), 1) for d in rng.sample(range(n_docs), n_ret)}
        for d in judged[: rng.randint(0, len(judged))]:
            run[qid][f"d{d}"] = round(rng.random() + 0.5, 1)  # make some relevant documents retrieved
    return qrels, run


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_pytrec_eval(seed: int) -> None:
    qrels, run = _data(seed)
    ref = pytrec_eval.RelevanceEvaluator(qrels, MEASURES).evaluate(run)
    ranked = {q: rank_run(s) for q, s in run.items()}
    ours = evaluate(ranked, qrels, ks=(5, 10, 100))
    for q, m in ref.items():
        mine = ours.per_query[q]
        assert mine["ndcg@10"] == pytest.approx(m["ndcg_cut_10"], abs=1e-6)
        assert mine["ndcg@5"] == pytest.approx(m["ndcg_cut_5"], abs=1e-6)
        assert mine["recall@10"] == pytest.approx(m["recall_10"], abs=1e-6)
        assert mine["recall@100"] == pytest.approx(m["recall_100"], abs=1e-6)
        assert mine["precision@10"] == pytest.approx(m["P_10"], abs=1e-6)
        assert mine["precision@5"] == pytest.approx(m["P_5"], abs=1e-6)
        assert mine["map"] == pytest.approx(m["map"], abs=1e-6)
        assert mine["map@10"] == pytest.approx(m["map_cut_10"], abs=1e-6)
        assert reciprocal_rank(ranked[q], qrels[q]) == pytest.approx(m["recip_rank"], abs=1e-6)
    # means over the same queries agree too
    for ours_name, ref_name in (("ndcg@10", "ndcg_cut_10"), ("recall@100", "recall_100"), ("map", "map")):
        ref_mean = sum(m[ref_name] for m in ref.values()) / len(ref)
        assert ours.mean[ours_name] == pytest.approx(ref_mean, abs=1e-6)


def test_mrr_at_10_equals_recip_rank_of_cut_run() -> None:
    qrels, run = _data(5)
    cut = {q: dict(sorted(s.items(), key=lambda t: (t[1], t[0]), reverse=True)[:10]) for q, s in run.items()}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
    ours = evaluate({q: rank_run(s) for q, s in run.items()}, qrels, ks=(10,))
    for q, m in ref.items():
        assert ours.per_query[q]["mrr@10"] == pytest.approx(m["recip_rank"], abs=1e-6)
