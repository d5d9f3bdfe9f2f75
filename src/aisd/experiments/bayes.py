"""Optional Bayesian read-out: chance to win and expected loss under a normal approximation with a flat prior.

With a flat prior the posterior of the effect is N(effect, se^2) (the same likelihood the frequentist test uses), so
chance to win is Phi(effect / se) and the expected loss of shipping is E[max(-delta, 0)] (Stucchio 2015, "Bayesian
A/B testing at VWO"; GrowthBook's Bayesian engine uses the same quantities).
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy import stats as sps


@dataclass(frozen=True)
class BayesResult:
    chance_to_win: float  # P(effect > 0 | data), or P(effect < 0) when lower is better
    expected_loss: float  # E[max(-effect, 0)]: what shipping the treatment costs if it is in fact worse
    expected_loss_control: float  # E[max(effect, 0)]: what keeping the control costs


def normal_expected_loss(mean: float, sd: float) -> float:
    """E[max(-X, 0)] for X ~ N(mean, sd^2) = sd phi(mean/sd) - mean Phi(-mean/sd) (standard normal partial moment)."""
    if sd <= 0:
        return max(-mean, 0.0)
    z = mean / sd
    return float(sd * sps.norm.pdf(z) - mean * sps.norm.cdf(-z))


def chance_to_win(effect: float, se: float, higher_is_better: bool = True) -> BayesResult:
    """Posterior chance that the treatment beats the control and the expected losses (Stucchio 2015)."""
    sign = 1.0 if higher_is_better else -1.0
    m = sign * effect
    if se <= 0:
        p = 1.0 if m > 0 else (0.0 if m < 0 else 0.5)
    else:
        p = float(sps.norm.cdf(m / se))
    return BayesResult(p, normal_expected_loss(m, se), normal_expected_loss(-m, se))
