"""RRF (k = 60) and alpha fusion of min-max normalised scores, checked against hand-computed values."""

from __future__ import annotations

import pytest

from aisd.search.fusion import alpha_fusion, alpha_scores, min_max, reciprocal_rank_fusion, rrf_scores


def test_rrf_hand_computed() -> None:
    s = rrf_scores([["a", "b", "c"], ["b", "d"]])
    assert s["a"] == pytest.approx(1 / 61)
    assert s["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert s["d"] == pytest.approx(1 / 62)
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]])
    assert [f.id for f in fused] == ["b", "a", "d", "c"]
    assert rrf_scores([["x", "x"]])["x"] == pytest.approx(1 / 61)  # a repeat counts once
    assert rrf_scores([["a"], ["a"]], weights=[2.0, 1.0])["a"] == pytest.approx(3 / 61)


def test_min_max_and_alpha() -> None:
    assert min_max({"a": 2.0, "b": 4.0, "c": 3.0}) == {"a": 0.0, "b": 1.0, "c": 0.5}
    assert min_max({"a": 5.0}) == {"a": 1.0}
    vec = {"a": 0.9, "b": 0.5, "c": 0.1}
    lex = {"b": 10.0, "d": 2.0}
    s = alpha_scores(vec, lex, alpha=0.3)
    assert s["a"] == pytest.approx(0.3 * 1.0)
    assert s["b"] == pytest.approx(0.3 * 0.5 + 0.7 * 1.0)
    assert s["d"] == pytest.approx(0.0)
    assert [f.id for f in alpha_fusion(vec, lex, alpha=1.0)][:3] == ["a", "b", "c"]
    assert [f.id for f in alpha_fusion(vec, lex, alpha=0.0)][0] == "b"
    with pytest.raises(ValueError, match="alpha"):
        alpha_scores(vec, lex, alpha=1.5)
