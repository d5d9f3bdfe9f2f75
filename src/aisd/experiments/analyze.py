"""Analysis of one experiment: SRM gate, every metric vs the control, multiplicity, sequential and Bayesian read-outs.

Order of work: (1) sample-ratio-mismatch check of exposures against the configured weights - a mismatch below the
threshold (default 0.001) withholds every result, because a broken split biases all of them (Fabijan et al. 2019);
(2) per metric and treatment: absolute and relative effects with intervals (Welch t; CUPED-adjusted when a pre-period
covariate exists; delta method for ratios; order statistics for quantiles); (3) Benjamini-Hochberg or Holm across
primary and secondary metrics x treatments; (4) mSPRT always-valid p-values and confidence sequences; guardrails as
one-sided non-inferiority tests; chance to win; (5) daily cumulative effect of the primary metric; (6) power status.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from aisd.core.errors import InvalidRequestError
from aisd.core.progress import progress
from aisd.experiments import bayes, sequential, stats
from aisd.experiments.metrics import DailyStats, UnitStats, daily_stats, exposures_by_day, quantile_stats, unit_stats
from aisd.experiments.model import Experiment, MetricSpec


@dataclass(frozen=True)
class MetricResult:
    metric: str
    role: str  # primary | secondary | guardrail
    kind: str
    variant: str  # the treatment compared with the control
    n_control: int
    n_treatment: int
    mean_control: float
    mean_treatment: float
    absolute: dict[str, float]  # effect, ci_low, ci_high, p_value, se, dof
    relative: dict[str, float] | None
    p_value: float  # the decision p-value (sequential when the experiment is sequential), before adjustment
    adjusted_p_value: float | None  # after BH / Holm (None for guardrails)
    significant: bool
    cuped_variance_reduction: float | None = None
    sequential: dict[str, float] | None = None
    chance_to_win: float | None = None
    expected_loss: float | None = None
    guardrail: dict[str, Any] | None = None
    note: str = ""


@dataclass(frozen=True)
class TimePoint:
    day: str
    variant: str
    n_control: int
    n_treatment: int
    effect: float  # relative effect of the primary metric, cumulative to this day
    ci_low: float
    ci_high: float
    seq_low: float | None
    seq_high: float | None
    seq_p_value: float | None


@dataclass(frozen=True)
class PowerStatus:
    metric: str
    mde_relative: float
    n_needed_per_arm: int
    n_smallest_arm: int
    achieved_power: float
    days_observed: int
    days_to_go: int | None


@dataclass
class AnalysisResult:
    experiment: dict[str, Any]
    as_of: str
    exposures: dict[str, int]
    srm: dict[str, Any]
    withheld: bool
    metrics: list[MetricResult] = field(default_factory=list)
    timeseries: list[TimePoint] = field(default_factory=list)
    power: PowerStatus | None = None
    reports: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))

    @property
    def name(self) -> str:
        return str(self.experiment["name"])


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN / inf become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _test_dict(r: stats.TestResult) -> dict[str, float]:
    return {"effect": r.effect, "ci_low": r.ci_low, "ci_high": r.ci_high, "p_value": r.p_value, "se": r.se,
            "dof": r.dof}


@dataclass(frozen=True)
class _Compared:
    absolute: stats.TestResult
    relative: stats.TestResult | None
    cuped_reduction: float | None


def _moments_pair(metric: MetricSpec, c: UnitStats, t: UnitStats, exp: Experiment,
                  pooled: UnitStats | None) -> tuple[stats.Moments, stats.Moments, float | None]:
    a = stats.moments(c.n, c.sum_y, c.sumsq_y)
    b = stats.moments(t.n, t.sum_y, t.sumsq_y)
    if not (exp.cuped and pooled is not None and exp.pre_period_days > 0):
        return a, b, None
    n = pooled.n
    var_x = (pooled.sumsq_x - pooled.sum_x**2 / n) / (n - 1) if n > 1 else 0.0
    if var_x <= 1e-12:
        return a, b, None
    theta = stats.pooled_theta(n, pooled.sum_y, pooled.sumsq_y, pooled.sum_x, pooled.sumsq_x, pooled.sum_xy)
    mx = pooled.sum_x / n
    ca = stats.cuped_moments(c.n, c.sum_y, c.sumsq_y, c.sum_x, c.sumsq_x, c.sum_xy, theta, mx)
    cb = stats.cuped_moments(t.n, t.sum_y, t.sumsq_y, t.sum_x, t.sumsq_x, t.sum_xy, theta, mx)
    before = a.var / a.n + b.var / b.n
    after = ca.var / ca.n + cb.var / cb.n
    return ca, cb, (1 - after / before) if before > 0 else None


def _compare(metric: MetricSpec, c: UnitStats, t: UnitStats, exp: Experiment, pooled: UnitStats | None) -> _Compared:
    if metric.kind == "proportion":
        pooled_ok = exp.cuped and pooled is not None
        if not pooled_ok:
            return _Compared(stats.proportion_test(c.sum_y, c.n, t.sum_y, t.n, alpha=exp.alpha),
                             _safe_rel(lambda: stats.proportion_test(c.sum_y, c.n, t.sum_y, t.n, True, exp.alpha)),
                             None)
    if metric.kind in ("mean", "proportion"):
        a, b, red = _moments_pair(metric, c, t, exp, pooled)
        if metric.kind == "proportion" and red is None:
            return _compare(metric, c, t, exp.with_(cuped=False), None)
        return _Compared(stats.welch_from_moments(a, b, False, exp.alpha),
                         _safe_rel(lambda: stats.welch_from_moments(a, b, True, exp.alpha)), red)
    # ratio: delta method per arm
    ra = stats.ratio_delta_var_from_sums(c.n, c.sum_y, c.sum_d, c.sumsq_y, c.sumsq_d, c.sum_yd)
    rb = stats.ratio_delta_var_from_sums(t.n, t.sum_y, t.sum_d, t.sumsq_y, t.sumsq_d, t.sum_yd)
    return _Compared(stats.ratio_test(ra, rb, False, exp.alpha),
                     _safe_rel(lambda: stats.ratio_test(ra, rb, True, exp.alpha)), None)


def _safe_rel(fn: Any) -> stats.TestResult | None:
    try:
        return fn()
    except InvalidRequestError:
        return None


def _tau(exp: Experiment, control_mean: float, se: float) -> float:
    """mSPRT mixture scale: the experiment's MDE in absolute units; falls back to 10 standard errors."""
    tau = exp.mde * abs(control_mean)
    return tau if tau > 0 else max(10 * se, 1e-12)


def analyze(store: Any, name: str, *, as_of: datetime | None = None, srm_threshold: float = 0.001,
            ignore_srm: bool = False, timeseries: bool = True) -> AnalysisResult:
    """Analyse experiment ``name`` from the store's exposures and events up to ``as_of`` (default: its stop time,
    or now)."""
    exp: Experiment = store.get(name)
    if as_of is None:
        as_of = datetime.fromisoformat(exp.stopped_at) if exp.stopped_at else datetime.now(UTC)
    end = as_of.astimezone(UTC).replace(tzinfo=None) if as_of.tzinfo else as_of
    counts = store.exposure_counts(name, end)
    obs = [counts[v.name] for v in exp.variants]
    srm = stats.srm_test(obs, exp.weights, threshold=srm_threshold)
    result = AnalysisResult(exp.to_dict(), end.isoformat(), counts,
                            {"p_value": srm.p_value, "statistic": srm.statistic, "threshold": srm_threshold,
                             "mismatch": srm.mismatch, "expected": list(srm.expected)},
                            withheld=srm.mismatch and not ignore_srm)
    result.reports = [r.to_dict() for r in store.reports(name)]
    if srm.mismatch:
        result.warnings.append(f"sample ratio mismatch: p = {srm.p_value:.2e} < {srm_threshold} for observed "
                               f"{dict(zip(counts, obs, strict=True))} vs weights {exp.weights}; results are "
                               + ("shown because ignore_srm was set" if ignore_srm else "withheld"))
    if result.withheld:
        return result
    if min(obs) < 2:
        result.warnings.append("fewer than 2 exposed units in some variant: nothing to analyse yet")
        return result
    with store.lock:
        running_p: dict[tuple[str, str], float] = {}
        if timeseries and exp.primary_metrics and exp.primary_metrics[0].kind != "quantile":
            running_p = _timeseries(store.con, exp, exp.primary_metrics[0], end, result)
        _analyze_metrics(store.con, exp, end, result, running_p)
        _power_status(store.con, exp, end, result)
    return result


def _analyze_metrics(con: Any, exp: Experiment, end: datetime, result: AnalysisResult,
                     running_p: dict[tuple[str, str], float]) -> None:
    control = exp.control.name
    rows: list[dict[str, Any]] = []
    for metric in progress(exp.metrics, desc=f"analysing {exp.name}"):
        role = exp.role(metric.name)
        if metric.kind == "quantile":
            qs = quantile_stats(con, exp, metric, end, exp.alpha)
            for t in exp.treatments:
                a, b = qs[control], qs[t.name]
                if a.n < 2 or b.n < 2:
                    result.warnings.append(f"{metric.name}: not enough events for a quantile in {t.name}")
                    continue
                absr = stats.quantile_test(a.estimate, a.lower, a.upper, b.estimate, b.lower, b.upper, a.n, b.n,
                                           False, exp.alpha)
                rel = _safe_rel(lambda a=a, b=b: stats.quantile_test(a.estimate, a.lower, a.upper, b.estimate,
                                                                     b.lower, b.upper, a.n, b.n, True, exp.alpha))
                rows.append({"metric": metric, "role": role, "variant": t.name, "cmp": _Compared(absr, rel, None),
                             "n": (a.n, b.n), "means": (a.estimate, b.estimate)})
            continue
        us = unit_stats(con, exp, metric, end, exp.pre_period_days if exp.cuped and metric.kind != "ratio" else 0)
        pooled = None
        if exp.cuped and metric.kind != "ratio":
            tot = [sum(getattr(s, f) for s in us.values()) for f in ("n", "sum_y", "sumsq_y", "sum_x", "sumsq_x",
                                                                     "sum_xy")]
            pooled = UnitStats(int(tot[0]), tot[1], tot[2], tot[3], tot[4], tot[5])
        for t in exp.treatments:
            c, tr = us[control], us[t.name]
            try:
                cmp = _compare(metric, c, tr, exp, pooled)
            except InvalidRequestError as e:
                result.warnings.append(f"{metric.name} ({t.name}): {e.message}")
                continue
            # raw means for display (CUPED moves the adjusted means by theta * (x-bar_arm - x-bar), not the effect)
            means = ((cmp.absolute.mean_a, cmp.absolute.mean_b) if metric.kind == "ratio"
                     else (c.sum_y / c.n, tr.sum_y / tr.n))
            rows.append({"metric": metric, "role": role, "variant": t.name, "cmp": cmp, "n": (c.n, tr.n),
                         "means": means})
    # decision p-values: always-valid mSPRT p when the experiment is sequential, else the fixed-horizon p
    for r in rows:
        absr: stats.TestResult = r["cmp"].absolute
        # the primary metric was also looked at daily: its always-valid p is the running minimum over the looks
        prev = running_p.get((r["metric"].name, r["variant"]), 1.0)
        seq = sequential.msprt(absr.effect, absr.se**2, _tau(exp, absr.mean_a, absr.se), exp.alpha, prev)
        r["seq"] = seq
        r["p"] = seq.p_value if exp.sequential else absr.p_value
    tested = [r for r in rows if r["role"] != "guardrail"]
    adjust = {"bh": stats.bh_adjust, "holm": stats.holm_adjust}.get(exp.correction)
    adj = adjust([r["p"] for r in tested]) if adjust and tested else [r["p"] for r in tested]
    for r, a in zip(tested, adj, strict=True):
        r["adj"] = float(a)
    for r in rows:
        result.metrics.append(_metric_result(exp, r))


def _metric_result(exp: Experiment, r: dict[str, Any]) -> MetricResult:
    metric: MetricSpec = r["metric"]
    cmp: _Compared = r["cmp"]
    seq: sequential.SequentialResult = r["seq"]
    rel = cmp.relative
    guard = None
    basis = rel if rel is not None else cmp.absolute
    if r["role"] == "guardrail":
        margin = metric.margin if rel is not None else metric.margin * abs(cmp.absolute.mean_a)
        ni = stats.noninferiority(basis.effect, basis.se, margin, metric.higher_is_better, exp.alpha, basis.dof)
        guard = {"margin": ni.margin, "bound": ni.bound, "p_value": ni.p_value, "passed": ni.passed,
                 "scale": "relative" if rel is not None else "absolute"}
    by = bayes.chance_to_win(basis.effect, basis.se, metric.higher_is_better)
    adj = r.get("adj")
    significant = guard["passed"] if guard else bool(adj is not None and adj < exp.alpha)
    note = ""
    if guard:
        note = "guardrail passed (not worse than the margin)" if guard["passed"] else "guardrail NOT passed"
    elif significant:
        better = (cmp.absolute.effect > 0) == metric.higher_is_better
        note = "significant " + ("improvement" if better else "regression")
    return MetricResult(
        metric=metric.name, role=r["role"], kind=metric.kind, variant=r["variant"], n_control=int(r["n"][0]),
        n_treatment=int(r["n"][1]), mean_control=float(r["means"][0]), mean_treatment=float(r["means"][1]),
        absolute=_test_dict(cmp.absolute), relative=_test_dict(rel) if rel is not None else None, p_value=r["p"],
        adjusted_p_value=adj, significant=significant, cuped_variance_reduction=cmp.cuped_reduction,
        sequential={"p_value": seq.p_value, "ci_low": seq.ci_low, "ci_high": seq.ci_high, "tau": seq.tau},
        chance_to_win=by.chance_to_win, expected_loss=by.expected_loss, guardrail=guard, note=note)


def _timeseries(con: Any, exp: Experiment, metric: MetricSpec, end: datetime,
                result: AnalysisResult) -> dict[tuple[str, str], float]:
    """Daily cumulative effect of ``metric``; returns the running-min mSPRT p-value per (metric, variant)."""
    days = daily_stats(con, exp, metric, end)
    by_day: dict[datetime, dict[str, DailyStats]] = {}
    for d in days:
        by_day.setdefault(d.day, {})[d.variant] = d
    prev_p: dict[tuple[str, str], float] = {}
    for day in sorted(by_day):
        c = by_day[day].get(exp.control.name)
        for t in exp.treatments:
            tr = by_day[day].get(t.name)
            if c is None or tr is None or c.stats.n < 2 or tr.stats.n < 2:
                continue
            try:
                cmp = _compare(metric, c.stats, tr.stats, exp.with_(cuped=False), None)
            except InvalidRequestError:
                continue
            if cmp.relative is None:
                continue
            absr = cmp.absolute
            key = (metric.name, t.name)
            seq = sequential.msprt(absr.effect, absr.se**2, _tau(exp, absr.mean_a, absr.se), exp.alpha,
                                   prev_p.get(key, 1.0))
            prev_p[key] = seq.p_value
            scale = abs(absr.mean_a) or 1.0  # sequential interval shown on the relative scale (approximation)
            result.timeseries.append(TimePoint(
                day.date().isoformat(), t.name, c.stats.n, tr.stats.n, cmp.relative.effect, cmp.relative.ci_low,
                cmp.relative.ci_high, seq.ci_low / scale, seq.ci_high / scale, seq.p_value))
    return prev_p


def _power_status(con: Any, exp: Experiment, end: datetime, result: AnalysisResult) -> None:
    prim = next((m for m in result.metrics if m.role == "primary"), None)
    if prim is None or prim.kind == "quantile":
        return
    se = prim.absolute["se"]
    n_min = min(prim.n_control, prim.n_treatment)
    sigma = se * math.sqrt(n_min / 2) if se and n_min else 0.0  # per-unit sd implied by the effect's SE
    delta = exp.mde * abs(prim.mean_control)
    if sigma <= 0 or delta <= 0:
        return
    needed = stats.sample_size(sigma, delta, exp.alpha, exp.power)
    achieved = stats.power(sigma, delta, n_min, exp.alpha)
    days = {d for d, _, _ in exposures_by_day(con, exp, end)}
    n_days = max(len(days), 1)
    per_day = n_min / n_days
    to_go = max(math.ceil((needed - n_min) / per_day), 0) if per_day > 0 else None
    result.power = PowerStatus(prim.metric, exp.mde, int(math.ceil(needed)), n_min, achieved, n_days, to_go)
