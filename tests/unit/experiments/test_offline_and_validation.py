"""Offline metrics (accuracy, F1, BLEU) against hand-computed values, and the stats functions' input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aisd.core.errors import InvalidRequestError
from aisd.experiments import bayes, stats
from aisd.experiments.offline import OfflineReport, accuracy, bleu, f1


def test_accuracy_and_f1() -> None:
    pred, gold = [1, 0, 1, 1, 0, 0], [1, 0, 0, 1, 1, 0]
    assert accuracy(pred, gold) == pytest.approx(4 / 6)
    # binary: tp=2 fp=1 fn=1 -> F1 = 4/6; macro over {0, 1}: class 0 has tp=2 fp=1 fn=1 too
    assert f1(pred, gold, "binary") == pytest.approx(2 / 3)
    assert f1(pred, gold) == pytest.approx(2 / 3)
    assert f1(["a", "b", "c"], ["a", "b", "b"]) == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_bleu_hand_computed() -> None:
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    # hyp 4 tokens vs ref 6: p1 = 4/4, p2 = 3/3, p3 = 2/2, p4 = 1/1, BP = exp(1 - 6/4)
    assert bleu(["the cat sat on"], ["the cat sat on the mat"]) == pytest.approx(math.exp(1 - 6 / 4))
    # clipping: "the the the the" against "the cat": p1 = 1/4 and no bigram match -> 0
    assert bleu(["the the the the"], ["the cat"]) == 0.0
    # multiple references: the closest length is used for the brevity penalty
    assert bleu(["a b c d"], [["a b c d e f g h", "a b c d"]]) == pytest.approx(1.0)


def test_offline_report_validation() -> None:
    with pytest.raises(InvalidRequestError):
        OfflineReport("r", {"a": {"acc": float("nan")}})
    with pytest.raises(InvalidRequestError):
        OfflineReport("", {"a": {"acc": 1.0}})
    assert OfflineReport("r", {"a": {"acc": 1}}).to_dict()["metrics"] == {"a": {"acc": 1}}


def test_stats_reject_bad_input_naming_the_field() -> None:
    with pytest.raises(InvalidRequestError) as e:
        stats.welch_ttest(1, 1.0, 1.0, 10, 5.0, 5.0)
    assert e.value.param == "n"
    with pytest.raises(InvalidRequestError) as e:
        stats.proportion_test(11, 10, 1, 10)
    assert e.value.param == "successes_a"
    with pytest.raises(InvalidRequestError) as e:
        stats.sample_size(1.0, 0.0)
    assert e.value.param == "delta"
    with pytest.raises(InvalidRequestError) as e:
        stats.sample_size(1.0, 0.1, power=1.5)
    assert e.value.param == "power"
    with pytest.raises(InvalidRequestError) as e:
        stats.srm_test([1, 2], [1])
    assert e.value.param == "expected_weights"
    with pytest.raises(InvalidRequestError):
        stats.welch_ttest(10, 0.0, 10.0, 10, 1.0, 10.0, relative=True)  # control mean 0
    with pytest.raises(InvalidRequestError):
        stats.ratio_delta_var([1, 2], [1, 2, 3])


def test_degenerate_but_valid_inputs() -> None:
    r = stats.welch_ttest(5, 5.0, 5.0, 5, 5.0, 5.0)  # zero variance, equal means
    assert r.p_value == 1.0 and r.effect == 0.0
    r = stats.proportion_test(0, 100, 0, 100)
    assert r.p_value == 1.0
    assert stats.srm_test([0, 0], [1, 1]).p_value == 1.0
    assert len(stats.bh_adjust([])) == 0 and stats.holm_adjust([0.01]).tolist() == [0.01]


def test_relative_proportion_and_noninferiority() -> None:
    r = stats.proportion_test(100, 1000, 120, 1000, relative=True)
    assert r.effect == pytest.approx(0.2)
    ni = stats.noninferiority(effect=-0.01, se=0.01, margin=0.05)
    assert ni.passed and ni.bound == pytest.approx(-0.01 - 1.6448536 * 0.01, rel=1e-6)
    assert not stats.noninferiority(effect=-0.04, se=0.01, margin=0.05).passed
    lower = stats.noninferiority(effect=0.02, se=0.01, margin=0.05, higher_is_better=False)
    assert lower.passed and lower.p_value < 0.05


def test_quantile_ranks_cover_the_true_quantile() -> None:
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        x = np.sort(rng.exponential(1, 500))
        lo, hi = stats.order_statistic_ranks(500, 0.9)
        hits += x[lo] <= -math.log(0.1) <= x[hi]
    assert hits / 400 >= 0.93


def test_duration_rounds_up_to_whole_weeks() -> None:
    plan = stats.duration(10_000, daily_traffic=1000)
    assert plan.days == 21 and plan.n_total == 20_000
    assert stats.duration(100, 1000).days == 7


def test_bayes_symmetry() -> None:
    r = bayes.chance_to_win(0.0, 0.1)
    assert r.chance_to_win == pytest.approx(0.5) and r.expected_loss == pytest.approx(r.expected_loss_control)
    assert bayes.chance_to_win(0.1, 0.01, higher_is_better=False).chance_to_win < 1e-6
