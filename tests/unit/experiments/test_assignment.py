"""Assignment: golden values (stable across versions), determinism across processes, uniformity, traffic, layers,
targeting."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from scipy import stats as sps

from aisd.experiments import Experiment, Variant, assign, assignment, bucket
from aisd.experiments.assignment import BUCKETS, assign_many, variant_ranges

GOLDEN = [("user-1", 2031, "control"), ("user-2", 8360, "treatment"), ("user-3", 1531, "control"),
          ("42", 5226, "treatment"), ("alice@example.com", 8478, "treatment")]
GOLDEN3 = [("u1", 7732, "c"), ("u2", 1050, "a"), ("u3", 4776, "b"), ("u4", 5455, "c"), ("u5", 1345, "a"),
           ("u6", 4531, "b")]


def _three() -> Experiment:
    return Experiment("ranker", variants=[{"name": "a", "weight": 1}, {"name": "b", "weight": 1},
                                          {"name": "c", "weight": 2}], salt="s1")


@pytest.mark.parametrize("unit,expected_bucket,variant", GOLDEN)
def test_golden_assignments_never_change(unit: str, expected_bucket: int, variant: str) -> None:
    assert bucket("aisd", "checkout-button", unit) == expected_bucket
    assert assign(Experiment("checkout-button"), unit) == variant


@pytest.mark.parametrize("unit,expected_bucket,variant", GOLDEN3)
def test_golden_assignments_weighted_three_arms(unit: str, expected_bucket: int, variant: str) -> None:
    assert bucket("s1", "ranker", unit) == expected_bucket
    assert assign(_three(), unit) == variant


def test_bucket_is_the_documented_sha256() -> None:
    digest = hashlib.sha256(b"aisd:exp:user-9").digest()
    assert bucket("aisd", "exp", "user-9") == int.from_bytes(digest[:8], "big") % 10_000


def test_same_answer_in_another_process_with_another_hash_seed() -> None:
    code = ("from aisd.experiments import Experiment, assign; "
            "print(','.join(assign(Experiment('checkout-button'), f'u{i}') for i in range(50)))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout.strip() for seed in ("1",)}
    here = ",".join(assign(Experiment("checkout-button"), f"u{i}") for i in range(50))
    assert outs == {here}


def test_integer_and_string_ids_agree_and_dict_specs_work() -> None:
    exp = Experiment("x")
    assert assign(exp, 42) == assign(exp, "42") == assign({"name": "x"}, "42") == assign("x", "42")


def test_buckets_are_uniform_chi_square_over_100k_ids() -> None:
    ids = [f"user-{i}" for i in range(100_000)]
    b = np.fromiter((bucket("aisd", "uniformity", u) for u in ids), dtype=np.int64, count=len(ids))
    counts = np.bincount(b // 100, minlength=100)  # 100 bins of 100 buckets each
    assert sps.chisquare(counts).pvalue > 0.001
    exp = _three()
    arms = np.bincount(assign_many(exp, ids), minlength=3)
    assert sps.chisquare(arms, np.array([0.25, 0.25, 0.5]) * len(ids)).pvalue > 0.001
    assert Counter(assign(exp, u) for u in ids[:2000]) == Counter(
        {k: int(v) for k, v in zip("abc", np.bincount(assign_many(exp, ids[:2000]), minlength=3), strict=True)})


def test_traffic_allocation_and_ramp_up_keeps_units_in_their_variant() -> None:
    ids = [f"u{i}" for i in range(20_000)]
    low = Experiment("ramp", traffic=0.2)
    high = low.with_(traffic=0.6)
    a_low = [assign(low, u) for u in ids]
    a_high = [assign(high, u) for u in ids]
    share = sum(v is not None for v in a_low) / len(ids)
    assert share == pytest.approx(0.2, abs=0.01)
    assert sum(v is not None for v in a_high) / len(ids) == pytest.approx(0.6, abs=0.015)
    assert all(h == lo for lo, h in zip(a_low, a_high, strict=True) if lo is not None)  # ramping never switches
    assert assignment(low, "u0").reason in ("assigned", "traffic")


def test_variant_ranges_cover_weights() -> None:
    assert variant_ranges(_three()) == [("a", 0, 2500), ("b", 2500, 5000), ("c", 5000, 10000)]
    half = variant_ranges(_three().with_(traffic=0.5))
    assert [(lo, hi - lo) for _, lo, hi in half] == [(0, 1250), (2500, 1250), (5000, 2500)]
    assert BUCKETS == 10_000


def test_layers_are_mutually_exclusive() -> None:
    e1 = Experiment("layer-a", layer="search", layer_range=(0.0, 0.5))
    e2 = Experiment("layer-b", layer="search", layer_range=(0.5, 1.0))
    ids = [f"u{i}" for i in range(10_000)]
    in1 = [assign(e1, u) is not None for u in ids]
    in2 = [assign(e2, u) is not None for u in ids]
    assert not any(a and b for a, b in zip(in1, in2, strict=True))
    assert all(a or b for a, b in zip(in1, in2, strict=True))  # the two halves cover the layer
    assert sum(in1) / len(ids) == pytest.approx(0.5, abs=0.02)
    # inside a layer slice, the variant split is still balanced and independent of the slice
    v = Counter(assign(e1, u) for u, ok in zip(ids, in1, strict=True) if ok)
    assert v["control"] / sum(v.values()) == pytest.approx(0.5, abs=0.03)
    arms = assign_many(e1, ids)
    assert [a >= 0 for a in arms] == in1


def test_targeting() -> None:
    exp = Experiment("t", targeting={"country": ["US", "CA"], "plan": "pro"})
    assert assign(exp, "u1") is None
    assert assign(exp, "u1", {"country": "FR", "plan": "pro"}) is None
    assert assign(exp, "u1", {"country": "US", "plan": "pro"}) in ("control", "treatment")
    assert assignment(exp, "u1", {"country": "US"}).reason == "targeting"


def test_variant_validation() -> None:
    with pytest.raises(ValueError, match="weight"):
        Variant("a", weight=0)
    with pytest.raises(ValueError, match="unique"):
        Experiment("x", variants=("a", "a"))
    with pytest.raises(ValueError, match="at least 2"):
        Experiment("x", variants=("a",))
