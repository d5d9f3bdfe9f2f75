"""Sequential testing with always-valid inference: the mixture SPRT (mSPRT) for a difference of means.

Peeking at a fixed-horizon p-value every day inflates the false-positive rate (10 looks at alpha=0.05 give ~0.19).
The mSPRT's p-value and confidence sequence stay valid at every look, at any stopping time, by construction
(Johari, Koomen, Pekelis, Walsh 2017, "Peeking at A/B tests", KDD; Robbins 1970 normal mixture).

The mixture is N(0, tau^2) over the effect. ``tau`` should be on the scale of effects you care about: aisd uses the
experiment's minimum detectable effect. Smaller tau tightens the boundary at large n and loosens it at small n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aisd.core.errors import InvalidRequestError


@dataclass(frozen=True)
class SequentialResult:
    """Always-valid inference at one look: p-value (running min over looks) and confidence-sequence interval."""

    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    likelihood_ratio: float
    tau: float
    alpha: float


def msprt_lambda(effect: float, var: float, tau: float, theta0: float = 0.0) -> float:
    """Normal-mixture likelihood ratio sqrt(V/(V+t^2)) exp(t^2 (d-d0)^2 / (2V(V+t^2))) (Johari et al. 2017, eq. 11)."""
    if var <= 0:
        return 1.0 if effect == theta0 else math.inf
    t2 = tau * tau
    log_l = 0.5 * math.log(var / (var + t2)) + t2 * (effect - theta0) ** 2 / (2 * var * (var + t2))
    return math.exp(min(log_l, 700.0))


def msprt_half_width(var: float, tau: float, alpha: float) -> float:
    """Half-width of the (1-alpha) confidence sequence from inverting lambda < 1/alpha (Johari et al. 2017, sec. 4)."""
    t2 = tau * tau
    return math.sqrt(var * (var + t2) / t2 * (2 * math.log(1 / alpha) + math.log((var + t2) / var)))


def msprt(effect: float, var: float, tau: float, alpha: float = 0.05, previous_p: float = 1.0) -> SequentialResult:
    """One look of the mSPRT: ``effect`` and ``var`` (its estimator's variance) from all data so far.

    ``previous_p`` is the always-valid p-value of the previous look; the p-value is its running minimum
    p_n = min(p_{n-1}, 1 / Lambda_n) (Johari et al. 2017, eq. 12).
    """
    if tau <= 0:
        raise InvalidRequestError(f"tau (mixture scale) must be > 0, got {tau}", param="tau")
    if not 0 < alpha < 1:
        raise InvalidRequestError(f"alpha must be in (0, 1), got {alpha}", param="alpha")
    lam = msprt_lambda(effect, var, tau)
    p = min(previous_p, 1.0 / lam if lam > 0 else 1.0, 1.0)
    half = msprt_half_width(var, tau, alpha) if var > 0 else 0.0
    return SequentialResult(float(effect), float(effect - half), float(effect + half), float(p), float(lam),
                            float(tau), alpha)


def always_valid_p_values(effects: Sequence[float] | np.ndarray, variances: Sequence[float] | np.ndarray,
                          tau: float) -> np.ndarray:
    """Running-min mSPRT p-values over a series of looks, vectorised over leading axes (looks on the last axis)."""
    d = np.asarray(effects, dtype=np.float64)
    v = np.asarray(variances, dtype=np.float64)
    t2 = tau * tau
    log_l = 0.5 * np.log(v / (v + t2)) + t2 * d * d / (2 * v * (v + t2))
    p = np.minimum(1.0, np.exp(-np.minimum(log_l, 700.0)))
    return np.minimum.accumulate(p, axis=-1)
