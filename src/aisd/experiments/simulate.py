"""Synthetic traffic for an experiment: exposures and events with a known true effect, for demos and checks.

Units arrive uniformly over ``days``; each is assigned with the real ``assign`` hash; per unit it generates a
pre-period activity level (CUPED's covariate), sessions, clicks, a purchase with revenue, and LLM requests with
latency, cost and errors - the same event schema the model gateway writes. ``effect`` multiplies the treatment's
conversion rate (and so revenue per unit) and clicks by (1 + effect), so an analysis should recover it;
``latency_effect`` does the same to the treatment's request latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from aisd.core.progress import progress
from aisd.experiments.assignment import assign_many
from aisd.experiments.model import Experiment, MetricSpec

DEMO_METRICS = {
    "primary_metrics": (MetricSpec("conversion", "proportion", "purchase", "count"),),
    "secondary_metrics": (MetricSpec("revenue", "mean", "purchase", "value"),
                          MetricSpec("clicks_per_session", "ratio", "click", "count", denominator="session")),
    "guardrail_metrics": (MetricSpec("latency_p95", "quantile", "request", "latency_ms", quantile=0.95,
                                     higher_is_better=False, margin=0.05),
                          MetricSpec("error_rate", "proportion", "request", "error", higher_is_better=False,
                                     margin=0.1)),
}


@dataclass(frozen=True)
class SimulationResult:
    units: int
    exposures: int
    events: int


def simulate(store: object, name: str, users: int = 10_000, days: int = 14, effect: float = 0.05,
             baseline: float = 0.1, seed: int = 0, start: datetime | None = None, batch_units: int = 50_000,
             latency_effect: float = 0.0) -> SimulationResult:
    """Generate and log traffic for running experiment ``name`` in ``store`` (an ExperimentStore)."""
    exp: Experiment = store.get(name)  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    # Default: exposures over the ``days`` before yesterday's midnight, so every event (up to a day after its
    # exposure) is already in the past and an analysis as of now sees all of them, whatever the time of day.
    start = start or datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=days + 1)
    t0 = np.datetime64(start, "us")
    span_us = int(days * 86400e6)
    n_exposed = n_events = 0
    batches = range(0, users, batch_units)
    for lo in progress(batches, total=len(batches), desc=f"simulating {name}"):
        ids = [f"u{seed}-{i}" for i in range(lo, min(lo + batch_units, users))]
        arm = assign_many(exp, ids)
        keep = arm >= 0
        ids_arr, arm = np.asarray(ids, dtype=object)[keep], arm[keep]
        exposed = t0 + rng.integers(0, span_us, len(ids_arr)).astype("timedelta64[us]")
        variants = np.asarray([v.name for v in exp.variants], dtype=object)[arm]
        store.log_exposures(name, pd.DataFrame({"unit_id": ids_arr, "variant": variants,  # type: ignore[attr-defined]
                                                "ts": exposed}))
        n_exposed += len(ids_arr)
        batch = _events(rng, exp, ids_arr, arm, variants, exposed, effect, baseline, latency_effect)
        if len(batch):
            store.log_events(batch)  # type: ignore[attr-defined]
            n_events += len(batch)
    return SimulationResult(users, n_exposed, n_events)


def _events(rng: np.random.Generator, exp: Experiment, ids: np.ndarray, arm: np.ndarray, variants: np.ndarray,
            exposed: np.ndarray, effect: float, baseline: float, latency_effect: float) -> pd.DataFrame:
    """One batch of units' events: pre-period purchases, post-period purchase, sessions, clicks, LLM requests."""
    n = len(ids)
    day_us = 86_400_000_000
    lift = np.where(arm > 0, 1.0 + effect, 1.0)
    activity = rng.gamma(2.0, 1.0, n)  # a unit's propensity, shared by pre and post periods (CUPED's signal)
    frames: list[pd.DataFrame] = []

    def emit(counts: np.ndarray, event: str, start: np.ndarray, span_us: int, **cols: object) -> None:
        idx = np.repeat(np.arange(n), counts)
        if len(idx) == 0:
            return
        frame: dict[str, object] = {"ts": start[idx] + rng.integers(0, span_us, len(idx)).astype("timedelta64[us]"),
                                    "unit_id": ids[idx], "name": event}
        for key, col in cols.items():
            frame[key] = col(idx) if callable(col) else col
        frames.append(pd.DataFrame(frame))

    pre_us = max(int(exp.pre_period_days * day_us), 1)
    emit(rng.poisson(activity * 1.5), "purchase", exposed - np.timedelta64(pre_us, "us"), pre_us,
         value=lambda i: rng.gamma(2.0, 10.0, len(i)))
    p_buy = np.clip(baseline * activity / 2.0 * lift, 0, 1)
    emit((rng.random(n) < p_buy).astype(int), "purchase", exposed, day_us,
         value=lambda i: rng.gamma(2.0, 10.0, len(i)))
    sessions = rng.poisson(1 + activity)
    emit(sessions, "session", exposed, day_us)
    emit(rng.poisson(sessions * 2.0 * lift), "click", exposed, day_us)
    slow = np.where(arm > 0, 1 + latency_effect, 1.0)
    emit(rng.poisson(2, n), "request", exposed, 3_600_000_000,
         latency_ms=lambda i: rng.lognormal(np.log(200.0), 0.5, len(i)) * slow[i],
         cost_usd=lambda i: rng.uniform(1e-4, 1e-3, len(i)),
         error=lambda i: np.where(rng.random(len(i)) < 0.01, "timeout", None),
         model=lambda i: variants[i], experiment=exp.name, variant=lambda i: variants[i])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
