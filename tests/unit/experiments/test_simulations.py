"""Monte-Carlo checks of the statistics engine, vectorised with numpy so each runs in about a second.

2,000 A/A tests keep the false-positive rate at alpha; daily peeking with the mSPRT keeps it <= alpha while naive
peeking at the fixed-horizon p-value does not; the power analysis's sample size achieves its power; CUPED shrinks the
variance by about 1 - rho^2.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from aisd.experiments import sequential, stats

SIMS = 2000


def _welch_p(a_sum: np.ndarray, a_sq: np.ndarray, b_sum: np.ndarray, b_sq: np.ndarray, n: int) -> np.ndarray:
    """Vectorised Welch p-values over many experiments; cross-checked against stats.welch_ttest below."""
    ma, mb = a_sum / n, b_sum / n
    va, vb = (a_sq - a_sum * ma) / (n - 1) / n, (b_sq - b_sum * mb) / (n - 1) / n
    dof = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (n - 1))
    return 2 * sps.t.sf(np.abs(mb - ma) / np.sqrt(va + vb), dof)


def test_aa_false_positive_rate_is_alpha() -> None:
    rng = np.random.default_rng(1)
    n = 200
    a, b = rng.lognormal(0, 1, (SIMS, n)), rng.lognormal(0, 1, (SIMS, n))  # skewed, like revenue
    p = _welch_p(a.sum(1), (a * a).sum(1), b.sum(1), (b * b).sum(1), n)
    for i in range(0, SIMS, 400):  # the vectorised form is the library's function
        r = stats.welch_ttest(n, a[i].sum(), (a[i] ** 2).sum(), n, b[i].sum(), (b[i] ** 2).sum())
        assert r.p_value == pytest.approx(p[i], rel=1e-9)
    fpr = float((p < 0.05).mean())
    assert 0.035 <= fpr <= 0.065, fpr


def test_aa_proportion_test_false_positive_rate() -> None:
    rng = np.random.default_rng(2)
    sa, sb = rng.binomial(2000, 0.1, SIMS), rng.binomial(2000, 0.1, SIMS)
    p = np.array([stats.proportion_test(x, 2000, y, 2000).p_value for x, y in zip(sa, sb, strict=True)])
    assert 0.035 <= float((p < 0.05).mean()) <= 0.065


def test_peeking_ten_times_sequential_keeps_alpha_naive_does_not() -> None:
    rng = np.random.default_rng(3)
    looks, per_look = 10, 100
    a = rng.normal(0, 1, (SIMS, looks, per_look)).sum(2).cumsum(1)  # cumulative sums at each look
    b = rng.normal(0, 1, (SIMS, looks, per_look)).sum(2).cumsum(1)
    n = per_look * np.arange(1, looks + 1)
    effect = b / n - a / n
    var = 2.0 / n  # known unit variance per arm, so the variance of the difference of means is 2 / n
    naive_p = 2 * sps.norm.sf(np.abs(effect) / np.sqrt(var))
    naive = float((naive_p < 0.05).any(axis=1).mean())
    seq_p = sequential.always_valid_p_values(effect, np.broadcast_to(var, effect.shape), tau=0.1)
    seq = float((seq_p[:, -1] < 0.05).mean())
    assert naive > 0.1, naive  # ~0.19 in theory for 10 looks
    assert seq <= 0.05, seq
    # the running minimum equals the scalar look-by-look function
    prev = 1.0
    for k in range(looks):
        prev = sequential.msprt(effect[0, k], var[k], 0.1, previous_p=prev).p_value
    assert prev == pytest.approx(seq_p[0, -1], rel=1e-9)


def test_sequential_test_still_detects_a_real_effect() -> None:
    rng = np.random.default_rng(4)
    looks, per_look, delta = 10, 200, 0.15
    a = rng.normal(0, 1, (500, looks, per_look)).sum(2).cumsum(1)
    b = rng.normal(delta, 1, (500, looks, per_look)).sum(2).cumsum(1)
    n = per_look * np.arange(1, looks + 1)
    seq_p = sequential.always_valid_p_values(b / n - a / n, np.broadcast_to(2.0 / n, (500, looks)), tau=delta)
    assert float((seq_p[:, -1] < 0.05).mean()) > 0.7


@pytest.mark.parametrize("sigma,delta,target", [(1.0, 0.2, 0.8), (3.0, 0.5, 0.9)])
def test_sample_size_reaches_its_power_in_simulation(sigma: float, delta: float, target: float) -> None:
    rng = np.random.default_rng(5)
    n = int(np.ceil(stats.sample_size(sigma, delta, 0.05, target)))
    a = rng.normal(0, sigma, (SIMS, n))
    b = rng.normal(delta, sigma, (SIMS, n))
    p = _welch_p(a.sum(1), (a * a).sum(1), b.sum(1), (b * b).sum(1), n)
    achieved = float((p < 0.05).mean())
    assert abs(achieved - target) <= 0.03, (n, achieved)


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_cuped_shrinks_variance_by_one_minus_rho_squared(rho: float) -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(0, 1, 200_000)
    y = rho * x + np.sqrt(1 - rho**2) * rng.normal(0, 1, 200_000)
    ratio = np.var(stats.cuped_adjust(y, x)) / np.var(y)
    assert ratio == pytest.approx(1 - rho**2, abs=0.01)


def test_cuped_keeps_the_ab_estimate_unbiased_and_tighter() -> None:
    """The analysis path: theta pooled over arms from sums, per-arm adjusted moments, Welch on the result."""
    rng = np.random.default_rng(7)
    sims, n, delta = 1000, 500, 0.1
    xa, xb = rng.normal(0, 1, (sims, n)), rng.normal(0, 1, (sims, n))
    ya = 0.8 * xa + 0.6 * rng.normal(0, 1, (sims, n))
    yb = 0.8 * xb + 0.6 * rng.normal(0, 1, (sims, n)) + delta
    raw = yb.mean(1) - ya.mean(1)
    est, covered = np.empty(sims), 0
    for i in range(sims):
        sa = (n, ya[i].sum(), (ya[i] ** 2).sum(), xa[i].sum(), (xa[i] ** 2).sum(), (xa[i] * ya[i]).sum())
        sb = (n, yb[i].sum(), (yb[i] ** 2).sum(), xb[i].sum(), (xb[i] ** 2).sum(), (xb[i] * yb[i]).sum())
        pooled = tuple(u + v for u, v in zip(sa, sb, strict=True))
        theta = stats.pooled_theta(*pooled)
        mx = pooled[3] / pooled[0]
        r = stats.welch_from_moments(stats.cuped_moments(*sa, theta, mx), stats.cuped_moments(*sb, theta, mx))
        est[i] = r.effect
        covered += r.ci_low <= delta <= r.ci_high
    assert est.mean() == pytest.approx(delta, abs=0.005)
    assert np.var(est) / np.var(raw) == pytest.approx(1 - 0.64, abs=0.06)  # rho^2 = 0.64 / (0.64 + 0.36)
    assert covered / sims == pytest.approx(0.95, abs=0.02)


def test_srm_false_alarm_rate_is_about_the_threshold() -> None:
    rng = np.random.default_rng(8)
    counts = rng.multinomial(10_000, [0.5, 0.5], 20_000)
    p = sps.chi2.sf(((counts - 5000) ** 2 / 5000).sum(1), 1)
    assert stats.srm_test(counts[0], [1, 1]).p_value == pytest.approx(p[0], rel=1e-9)
    assert float((p < 0.001).mean()) < 0.003


def test_ratio_quantile_and_relative_intervals_have_nominal_error_rates() -> None:
    """A/A false-positive rates of the delta-method ratio and order-statistic quantile tests, and the coverage of the
    delta-method relative interval under a real effect."""
    rng = np.random.default_rng(9)
    sims, n = 1000, 1000
    ratio_p, quant_p, covered = [], [], 0
    for _ in range(sims):
        den_a, den_b = rng.poisson(3, n) + 1.0, rng.poisson(3, n) + 1.0
        num_a, num_b = rng.binomial(den_a.astype(int), 0.3) * 1.0, rng.binomial(den_b.astype(int), 0.3) * 1.0
        ra = (num_a.sum() / den_a.sum(), stats.ratio_delta_var(num_a, den_a))
        rb = (num_b.sum() / den_b.sum(), stats.ratio_delta_var(num_b, den_b))
        ratio_p.append(stats.ratio_test(ra, rb).p_value)
        xa, xb = np.sort(rng.lognormal(0, 1, n)), np.sort(rng.lognormal(0, 1, n))
        lo, hi = stats.order_statistic_ranks(n, 0.9)
        mid = round(0.9 * (n - 1))
        quant_p.append(stats.quantile_test(xa[mid], xa[lo], xa[hi], xb[mid], xb[lo], xb[hi], n, n).p_value)
        ya, yb = rng.exponential(1.0, n), rng.exponential(1.1, n)
        r = stats.welch_ttest(n, ya.sum(), (ya * ya).sum(), n, yb.sum(), (yb * yb).sum(), relative=True)
        covered += r.ci_low <= 0.1 <= r.ci_high
    assert 0.03 <= float((np.array(ratio_p) < 0.05).mean()) <= 0.07
    assert float((np.array(quant_p) < 0.05).mean()) <= 0.07  # order-statistic bounds are slightly conservative
    assert covered / sims == pytest.approx(0.95, abs=0.02)
