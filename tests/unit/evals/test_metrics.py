"""Hand-computed values for each metric (the pytrec_eval cross-check is in tests/reference/test_evals_trec.py)."""

from __future__ import annotations

import math

import pytest

from aisd.evals.retrieval_metrics import (
    average_precision,
    evaluate,
    ndcg_at_k,
    precision_at_k,
    rank_run,
    recall_at_k,
    reciprocal_rank,
)

QREL = {"a": 2, "b": 1, "x": 0, "c": 1}
RANKED = ["z", "a", "x", "b", "y"]


def test_hand_computed() -> None:
    assert precision_at_k(RANKED, QREL, 2) == 0.5
    assert precision_at_k(RANKED, QREL, 10) == 0.2  # divides by k even when fewer were retrieved
    assert recall_at_k(RANKED, QREL, 4) == pytest.approx(2 / 3)
    assert reciprocal_rank(RANKED, QREL) == 0.5 and reciprocal_rank(RANKED, QREL, k=1) == 0.0
    assert average_precision(RANKED, QREL) == pytest.approx((1 / 2 + 2 / 4) / 3)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKED, QREL, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(RANKED, {"x": 0}, 10) == 0.0


def test_rank_run_ties_and_evaluate() -> None:
    assert rank_run({"d1": 1.0, "d3": 2.0, "d2": 1.0}) == ["d3", "d2", "d1"]
    res = evaluate({"q1": ["a"], "q9": ["a"]}, {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}, ks=(10,))
    assert set(res.per_query) == {"q1", "q2"}  # q3 has nothing relevant; q9 has no qrels
    assert res.mean["ndcg@10"] == 0.5  # q2 retrieved nothing: 0
    with pytest.raises(ValueError):
        evaluate({}, {}, ks=(0,))
