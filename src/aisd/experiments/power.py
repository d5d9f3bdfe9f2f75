"""Power analysis: power, sample size per arm, minimum detectable effect and duration from daily traffic.

The same two-sample normal model as statsmodels' NormalIndPower (checked against it to 1e-6), and the textbook
closed form n = 2 (z_{1-a/2} + z_{1-b})^2 sigma^2 / delta^2 beside it. Re-exported by ``aisd.experiments.stats``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize
from scipy import stats as sps

from aisd.core.errors import InvalidRequestError

ALTERNATIVES = ("two-sided", "larger", "smaller")


@dataclass(frozen=True)
class DurationPlan:
    n_per_arm: int
    n_total: int
    days: int
    daily_traffic: float


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise InvalidRequestError(f"alpha must be in (0, 1), got {alpha}", param="alpha")


def achieved_power(sigma: float, delta: float, n_per_arm: float, alpha: float = 0.05, ratio: float = 1.0,
                   alternative: str = "two-sided") -> float:
    """Power of a two-sample z test; the same formula as statsmodels NormalIndPower (Chow et al. 2008, sec. 3.2.1)."""
    _check_power_args(sigma, delta, alpha, alternative)
    nobs = 1.0 / (1.0 / n_per_arm + 1.0 / (n_per_arm * ratio))
    d = abs(delta) / sigma * math.sqrt(nobs)
    if alternative == "two-sided":
        crit = float(sps.norm.isf(alpha / 2))
        return float(sps.norm.sf(crit - d) + sps.norm.cdf(-crit - d))
    crit = float(sps.norm.isf(alpha))
    d = d if (alternative == "larger") == (delta >= 0) else -d
    return float(sps.norm.sf(crit - d))


def _check_power_args(sigma: float, delta: float, alpha: float, alternative: str) -> None:
    _check_alpha(alpha)
    if sigma <= 0:
        raise InvalidRequestError(f"sigma must be > 0, got {sigma}", param="sigma")
    if delta == 0:
        raise InvalidRequestError("delta (the minimum detectable effect) must be non-zero", param="delta")
    if alternative not in ALTERNATIVES:
        raise InvalidRequestError(f"alternative must be one of {', '.join(ALTERNATIVES)}, got {alternative!r}",
                                  param="alternative")


def sample_size_closed_form(sigma: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The textbook n = 2 (z_{1-a/2} + z_{1-b})^2 sigma^2 / delta^2 per arm (Kohavi, Tang, Xu 2020, ch. 17)."""
    _check_power_args(sigma, delta, alpha, "two-sided")
    return float(2 * (sps.norm.isf(alpha / 2) + sps.norm.ppf(power)) ** 2 * sigma**2 / delta**2)


def sample_size(sigma: float, delta: float, alpha: float = 0.05, power: float = 0.8, *, ratio: float = 1.0,
                alternative: str = "two-sided") -> float:
    """Units per arm (control) to detect delta: n = 2 (z_a/2 + z_b)^2 sigma^2 / delta^2, solved exactly as statsmodels
    NormalIndPower does (the closed form is the starting point; the far tail's tiny power is included)."""
    _check_power_args(sigma, delta, alpha, alternative)
    target = power
    if not 0 < target < 1:
        raise InvalidRequestError(f"power must be in (0, 1), got {target}", param="power")
    z_a = sps.norm.isf(alpha / 2 if alternative == "two-sided" else alpha)
    z_b = sps.norm.ppf(target)
    closed = (1 + 1 / ratio) * (z_a + z_b) ** 2 * sigma**2 / delta**2
    f = lambda n: achieved_power(sigma, delta, n, alpha, ratio, alternative) - target  # noqa: E731
    if f(closed) <= 0 or closed < 1e-9:
        return float(closed)
    lo = closed * 0.5
    while f(lo) > 0 and lo > 1e-12:
        lo *= 0.5
    return float(optimize.brentq(f, lo, closed, xtol=1e-12, rtol=1e-15, maxiter=500))


def mde(sigma: float, n_per_arm: float, alpha: float = 0.05, power: float = 0.8, *, ratio: float = 1.0) -> float:
    """Minimum detectable absolute effect for n units per arm, the inverse of ``sample_size`` (Chow et al. 2008)."""
    if n_per_arm <= 0:
        raise InvalidRequestError(f"n_per_arm must be > 0, got {n_per_arm}", param="n_per_arm")
    closed = (sps.norm.isf(alpha / 2) + sps.norm.ppf(power)) * sigma * math.sqrt(1 / n_per_arm + 1 / (n_per_arm * ratio))
    f = lambda d: achieved_power(sigma, d, n_per_arm, alpha, ratio) - power  # noqa: E731
    hi = closed
    if f(hi) <= 0:
        return float(closed)
    return float(optimize.brentq(f, hi * 0.5, hi, xtol=1e-14, rtol=1e-15))


power = achieved_power  # the public name; ``sample_size``'s ``power`` argument is the target


def duration(n_per_arm: float, daily_traffic: float, n_arms: int = 2, traffic_fraction: float = 1.0,
             min_days: int = 7) -> DurationPlan:
    """Days to reach n per arm at a daily unit count, rounded up to whole business cycles of ``min_days`` (weeks)."""
    if daily_traffic <= 0:
        raise InvalidRequestError(f"daily_traffic must be > 0, got {daily_traffic}", param="daily_traffic")
    n = int(math.ceil(n_per_arm))
    total = n * n_arms
    days = math.ceil(total / (daily_traffic * traffic_fraction))
    if min_days > 0:
        days = max(min_days, int(math.ceil(days / min_days)) * min_days)
    return DurationPlan(n, total, int(days), float(daily_traffic))
