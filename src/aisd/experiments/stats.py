"""The statistics engine: small pure functions over sufficient statistics (n, sum, sum of squares, cross products).

Every function cites its source in one line. Nothing here touches storage; ``analyze.py`` feeds these functions the
per-variant sums that DuckDB computes, so a 10M-event analysis costs one SQL aggregation plus microseconds of maths.
Conventions: ``a`` is the control, ``b`` the treatment; an effect is ``b - a`` (absolute) or ``b / a - 1`` (relative).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats as sps

from aisd.core.errors import InvalidRequestError
from aisd.experiments.power import (  # noqa: F401
    ALTERNATIVES,
    DurationPlan,
    achieved_power,
    duration,
    mde,
    power,
    sample_size,
    sample_size_closed_form,
)


@dataclass(frozen=True)
class TestResult:
    """A two-sample comparison: effect (b - a, or b/a - 1 when ``relative``) with its interval and p-value."""

    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    statistic: float
    se: float
    mean_a: float
    mean_b: float
    n_a: float
    n_b: float
    relative: bool
    alpha: float
    dof: float = math.inf  # Satterthwaite degrees of freedom for t tests; inf for z tests

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha


@dataclass(frozen=True)
class Moments:
    """Mean and unbiased variance of one sample, derived from its sufficient statistics."""

    n: float
    mean: float
    var: float


@dataclass(frozen=True)
class SRMResult:
    statistic: float
    p_value: float
    dof: int
    observed: tuple[float, ...]
    expected: tuple[float, ...]
    threshold: float

    @property
    def mismatch(self) -> bool:
        """True when the split is so unlikely under the configured weights that results must be withheld."""
        return self.p_value < self.threshold


@dataclass(frozen=True)
class NonInferiorityResult:
    """One-sided test that the treatment is not worse than the control by more than ``margin``."""

    margin: float
    bound: float  # the one-sided confidence bound on the effect that is compared with the margin
    p_value: float
    passed: bool


# ---------------------------------------------------------------------------- distribution helpers (fast paths)
def _sf(x: float, dof: float) -> float:
    """Upper tail of N(0,1) (erfc, exact to double precision) or Student t with ``dof`` degrees of freedom."""
    if math.isinf(dof):
        return 0.5 * math.erfc(x / math.sqrt(2.0))
    return float(sps.t.sf(x, dof))


@lru_cache(maxsize=4096)
def _ppf(q: float, dof: float) -> float:
    """Quantile of N(0,1) or Student t, cached: analyses ask for the same few alphas again and again."""
    return float(sps.norm.ppf(q)) if math.isinf(dof) else float(sps.t.ppf(q, dof))


# --------------------------------------------------------------------------------------------- moments and t tests
def moments(n: float, total: float, sumsq: float) -> Moments:
    """Mean and unbiased variance from (n, sum, sum of squares): var = (sumsq - sum^2/n) / (n - 1)."""
    if n < 2:
        raise InvalidRequestError(f"need at least 2 observations per group, got n={n}", param="n")
    mean = total / n
    var = max((sumsq - total * mean) / (n - 1), 0.0)
    return Moments(float(n), float(mean), float(var))


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise InvalidRequestError(f"alpha must be in (0, 1), got {alpha}", param="alpha")


def _relative_se(mean_a: float, var_mean_a: float, mean_b: float, var_mean_b: float) -> float:
    """SE of mean_b/mean_a - 1 for independent groups by the delta method (Deng et al. 2018, KDD, eq. 4)."""
    if mean_a == 0:
        raise InvalidRequestError("relative effect undefined: the control mean is 0", param="relative")
    return math.sqrt(var_mean_b / mean_a**2 + mean_b**2 * var_mean_a / mean_a**4)


def welch_from_moments(a: Moments, b: Moments, relative: bool = False, alpha: float = 0.05) -> TestResult:
    """Welch's unequal-variance t test with Welch-Satterthwaite df (Welch 1947, Biometrika 34:28)."""
    _check_alpha(alpha)
    va, vb = a.var / a.n, b.var / b.n  # variances of the two means
    se_abs = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1)) if se_abs > 0 else math.inf
    if relative:
        effect = b.mean / a.mean - 1.0 if a.mean != 0 else math.nan
        se = _relative_se(a.mean, va, b.mean, vb)
    else:
        effect, se = b.mean - a.mean, se_abs
    return _t_result(effect, se, dof, a, b, relative, alpha)


def _t_result(effect: float, se: float, dof: float, a: Moments, b: Moments, relative: bool,
              alpha: float) -> TestResult:
    if se == 0:
        stat = 0.0 if effect == 0 else math.copysign(math.inf, effect)
        return TestResult(effect, effect, effect, 1.0 if effect == 0 else 0.0, stat, 0.0, a.mean, b.mean, a.n, b.n,
                          relative, alpha, dof)
    stat = effect / se
    p = 2.0 * _sf(abs(stat), dof)
    half = _ppf(1.0 - alpha / 2.0, dof) * se
    return TestResult(float(effect), float(effect - half), float(effect + half), p, float(stat), float(se), a.mean,
                      b.mean, a.n, b.n, relative, alpha, float(dof))


def welch_ttest(n_a: float, sum_a: float, sumsq_a: float, n_b: float, sum_b: float, sumsq_b: float,
                relative: bool = False, alpha: float = 0.05) -> TestResult:
    """Welch t test of mean_b - mean_a from sufficient statistics (Welch 1947; relative effect by delta method)."""
    return welch_from_moments(moments(n_a, sum_a, sumsq_a), moments(n_b, sum_b, sumsq_b), relative, alpha)


def z_from_moments(a: Moments, b: Moments, relative: bool = False, alpha: float = 0.05) -> TestResult:
    """Large-sample z test on two means whose variances are already variances of one unit (CLT)."""
    _check_alpha(alpha)
    va, vb = a.var / a.n, b.var / b.n
    if relative:
        effect = b.mean / a.mean - 1.0 if a.mean != 0 else math.nan
        se = _relative_se(a.mean, va, b.mean, vb)
    else:
        effect, se = b.mean - a.mean, math.sqrt(va + vb)
    return _t_result(effect, se, math.inf, a, b, relative, alpha)


# ---------------------------------------------------------------------------------------------------- proportions
def proportion_test(successes_a: float, n_a: float, successes_b: float, n_b: float, relative: bool = False,
                    alpha: float = 0.05) -> TestResult:
    """Two-proportion z test, pooled SE for the p-value (statsmodels proportions_ztest), Wald SE for the interval."""
    _check_alpha(alpha)
    if n_a <= 0 or n_b <= 0:
        raise InvalidRequestError("both groups need at least one unit", param="n_a" if n_a <= 0 else "n_b")
    for name, s, n in (("successes_a", successes_a, n_a), ("successes_b", successes_b, n_b)):
        if not 0 <= s <= n:
            raise InvalidRequestError(f"{name} must be in [0, n], got {s} of {n}", param=name)
    pa, pb = successes_a / n_a, successes_b / n_b
    a = Moments(float(n_a), pa, pa * (1 - pa))
    b = Moments(float(n_b), pb, pb * (1 - pb))
    va, vb = a.var / n_a, b.var / n_b
    if relative:
        effect = pb / pa - 1.0 if pa != 0 else math.nan
        se = _relative_se(pa, va, pb, vb)
        return _t_result(effect, se, math.inf, a, b, True, alpha)
    effect = pb - pa
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    se_wald = math.sqrt(va + vb)
    z = effect / se_pooled if se_pooled > 0 else 0.0
    p = 2.0 * _sf(abs(z), math.inf) if se_pooled > 0 else 1.0
    half = _ppf(1.0 - alpha / 2.0, math.inf) * se_wald
    return TestResult(float(effect), effect - half, effect + half, p, float(z), se_wald, pa, pb, float(n_a),
                      float(n_b), False, alpha)


# ------------------------------------------------------------------------------------------ ratio metrics (delta)
def ratio_delta_var_from_sums(n: float, sum_num: float, sum_den: float, sumsq_num: float, sumsq_den: float,
                              sum_numden: float) -> tuple[float, float]:
    """(ratio, variance) of mean(num)/mean(den) by the delta method (Deng, Knoblich, Lu 2018, KDD, eq. 3)."""
    if n < 2:
        raise InvalidRequestError(f"need at least 2 units for a ratio metric, got n={n}", param="n")
    mu_n, mu_d = sum_num / n, sum_den / n
    if mu_d == 0:
        raise InvalidRequestError("ratio metric undefined: the denominator's mean is 0", param="den")
    var_n = (sumsq_num - sum_num * mu_n) / (n - 1)
    var_d = (sumsq_den - sum_den * mu_d) / (n - 1)
    cov = (sum_numden - sum_num * mu_d) / (n - 1)
    r = mu_n / mu_d
    var = (var_n - 2 * r * cov + r * r * var_d) / (n * mu_d**2)
    return float(r), float(max(var, 0.0))


def ratio_delta_var(num: Sequence[float] | np.ndarray, den: Sequence[float] | np.ndarray) -> float:
    """Delta-method variance of mean(num)/mean(den) over per-unit pairs (Deng, Knoblich, Lu 2018, KDD, eq. 3)."""
    x, y = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise InvalidRequestError("num and den must be 1-D arrays of the same length", param="den")
    return ratio_delta_var_from_sums(len(x), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum())[1]


def ratio_test(a: tuple[float, float], b: tuple[float, float], relative: bool = False,
               alpha: float = 0.05) -> TestResult:
    """z test on two ratio metrics given (ratio, delta-method variance) per arm; units are independent across arms."""
    ma, mb = Moments(1.0, a[0], a[1]), Moments(1.0, b[0], b[1])  # n=1: ``var`` already is the estimator's variance
    return z_from_moments(ma, mb, relative, alpha)


# ---------------------------------------------------------------------------------------------------------- CUPED
def cuped_theta(y: Sequence[float] | np.ndarray, x: Sequence[float] | np.ndarray) -> float:
    """theta = cov(y, x) / var(x), the variance-minimising coefficient (Deng, Xu, Kohavi, Walker 2013, WSDM, eq. 4)."""
    yy, xx = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    vx = float(np.var(xx, ddof=1))
    return 0.0 if vx == 0 else float(np.cov(yy, xx, ddof=1)[0, 1] / vx)


def cuped_adjust(y: Sequence[float] | np.ndarray, x: Sequence[float] | np.ndarray,
                 theta: float | None = None) -> np.ndarray:
    """CUPED: y - theta (x - mean x); same mean, variance times 1 - rho^2 (Deng et al. 2013, WSDM, eq. 3)."""
    yy, xx = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    if yy.shape != xx.shape:
        raise InvalidRequestError(f"y and x need the same shape, got {yy.shape} and {xx.shape}", param="x")
    t = cuped_theta(yy, xx) if theta is None else theta
    return yy - t * (xx - xx.mean())


def cuped_moments(n: float, sum_y: float, sumsq_y: float, sum_x: float, sumsq_x: float, sum_xy: float,
                  theta: float, mean_x_all: float) -> Moments:
    """Moments of y - theta (x - mean_x_all) from sums, for a theta pooled over arms (Deng et al. 2013, sec. 3.3)."""
    my = moments(n, sum_y, sumsq_y)
    mx = moments(n, sum_x, sumsq_x)
    cov = (sum_xy - sum_x * my.mean) / (n - 1)
    var = max(my.var + theta * theta * mx.var - 2 * theta * cov, 0.0)
    return Moments(float(n), my.mean - theta * (mx.mean - mean_x_all), var)


def pooled_theta(n: float, sum_y: float, sumsq_y: float, sum_x: float, sumsq_x: float, sum_xy: float) -> float:
    """CUPED theta from pooled sums over all arms: cov(y, x) / var(x) (Deng et al. 2013, eq. 4)."""
    mx = sum_x / n
    var_x = (sumsq_x - sum_x * mx) / (n - 1)
    cov = (sum_xy - sum_y * mx) / (n - 1)
    return 0.0 if var_x <= 0 else float(cov / var_x)


# ------------------------------------------------------------------------------------------------- SRM, multiplicity
def srm_test(observed_counts: Sequence[float], expected_weights: Sequence[float],
             threshold: float = 0.001) -> SRMResult:
    """Sample-ratio-mismatch check: Pearson chi-square goodness of fit (Fabijan et al. 2019, KDD; scipy chisquare)."""
    obs = np.asarray(observed_counts, dtype=np.float64)
    w = np.asarray(expected_weights, dtype=np.float64)
    if obs.shape != w.shape or obs.ndim != 1 or len(obs) < 2:
        raise InvalidRequestError("observed_counts and expected_weights need the same length >= 2",
                                  param="expected_weights")
    if (w <= 0).any() or (obs < 0).any():
        raise InvalidRequestError("weights must be > 0 and counts >= 0", param="expected_weights")
    total = obs.sum()
    exp = w / w.sum() * total
    if total == 0:
        return SRMResult(0.0, 1.0, len(obs) - 1, tuple(obs), tuple(exp), threshold)
    stat = float(((obs - exp) ** 2 / exp).sum())
    p = float(sps.chi2.sf(stat, len(obs) - 1))
    return SRMResult(stat, p, len(obs) - 1, tuple(float(o) for o in obs), tuple(float(e) for e in exp), threshold)


def bh_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values (Benjamini & Hochberg 1995, JRSS-B 57:289)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]  # min over j >= i of p_(j) m / j
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (Holm 1979, Scand. J. Statist. 6:65)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * (m - np.arange(m))
    adj = np.maximum.accumulate(np.minimum(ranked, 1.0))
    out = np.empty(m)
    out[order] = adj
    return out


# ----------------------------------------------------------------------------------------------- non-inferiority
def noninferiority(effect: float, se: float, margin: float, higher_is_better: bool = True, alpha: float = 0.05,
                   dof: float = math.inf) -> NonInferiorityResult:
    """One-sided non-inferiority test H0: effect <= -margin (or >= margin if lower is better) (Wellek 2010, ch. 2)."""
    _check_alpha(alpha)
    if margin < 0:
        raise InvalidRequestError(f"margin must be >= 0, got {margin}", param="margin")
    crit = _ppf(1 - alpha, dof)
    if higher_is_better:
        bound = effect - crit * se
        stat = (effect + margin) / se if se > 0 else math.inf
        passed = bound > -margin
    else:
        bound = effect + crit * se
        stat = (margin - effect) / se if se > 0 else math.inf
        passed = bound < margin
    return NonInferiorityResult(margin, float(bound), _sf(stat, dof), bool(passed))


# ------------------------------------------------------------------------------------------------ quantile metrics
def order_statistic_ranks(n: int, q: float, alpha: float = 0.05) -> tuple[int, int]:
    """0-based ranks bracketing the q-quantile with ~1-alpha coverage, normal approx to Binomial(n, q) (Conover 1999)."""
    if not 0 < q < 1:
        raise InvalidRequestError(f"quantile must be in (0, 1), got {q}", param="quantile")
    z = float(sps.norm.ppf(1 - alpha / 2))
    half = z * math.sqrt(n * q * (1 - q))
    lo = max(int(math.floor(n * q - half)) - 1, 0)
    hi = min(int(math.ceil(n * q + half)), n - 1)
    return lo, hi


def quantile_test(est_a: float, lo_a: float, hi_a: float, est_b: float, lo_b: float, hi_b: float, n_a: float,
                  n_b: float, relative: bool = False, alpha: float = 0.05, ci_alpha: float = 0.05) -> TestResult:
    """Difference of two quantiles; each SE read off its order-statistic interval (Schultzberg & Ankargren 2022)."""
    z = float(sps.norm.ppf(1 - ci_alpha / 2))
    se_a, se_b = (hi_a - lo_a) / (2 * z), (hi_b - lo_b) / (2 * z)
    a, b = Moments(float(n_a), est_a, se_a**2 * n_a), Moments(float(n_b), est_b, se_b**2 * n_b)
    return z_from_moments(a, b, relative, alpha)
