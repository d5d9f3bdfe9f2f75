"""Metric computation in DuckDB: logged events -> per-variant sufficient statistics for the stats engine.

Every metric becomes one SQL aggregation over (exposures JOIN events): per unit, events after the unit's first
exposure (and before the analysis time) are aggregated; units without events count as 0; then per variant
n, sum, sum of squares and cross products come back (a handful of numbers, whatever the event count). The
pre-exposure window of the same metric gives CUPED's covariate. Quantile metrics return order statistics instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aisd.experiments.model import Experiment, MetricSpec
from aisd.experiments.stats import order_statistic_ranks


@dataclass(frozen=True)
class UnitStats:
    """Sufficient statistics of one variant: y = metric per unit, x = its pre-period value, d = ratio denominator."""

    n: int
    sum_y: float
    sumsq_y: float
    sum_x: float = 0.0
    sumsq_x: float = 0.0
    sum_xy: float = 0.0
    sum_d: float = 0.0
    sumsq_d: float = 0.0
    sum_yd: float = 0.0


@dataclass(frozen=True)
class QuantileStats:
    n: int
    estimate: float
    lower: float  # order-statistic interval of the quantile
    upper: float


@dataclass(frozen=True)
class DailyStats:
    day: datetime
    variant: str
    stats: UnitStats


def column_sql(column: str) -> str:
    """SQL for one event's contribution: a column, 1 per event (``count``), or 1 when it carries an error."""
    if column == "count":
        return "1.0"
    if column == "error":
        return "CAST(error IS NOT NULL AS DOUBLE)"
    return f"CAST({column} AS DOUBLE)"


def _agg(metric: MetricSpec) -> str:
    # proportion: did the unit have at least one qualifying event; otherwise sum over the unit's events
    return "max(CAST(v > 0 AS DOUBLE))" if metric.kind == "proportion" else "sum(v)"


def _base_ctes(metric: MetricSpec, event: str, column: str) -> str:
    return (
        "u AS (SELECT unit_id, variant, ts AS t0 FROM exposures WHERE experiment = $exp AND ts < $end), "
        f"e AS (SELECT unit_id, ts, {column_sql(column)} AS v FROM events WHERE name = '{_q(event)}' "
        "AND (experiment IS NULL OR experiment = $exp) AND ts < $end)"
    )


def _q(text: str) -> str:
    return text.replace("'", "''")


def unit_stats(con: Any, exp: Experiment, metric: MetricSpec, end: datetime,
               pre_period_days: float = 0.0) -> dict[str, UnitStats]:
    """Per-variant sufficient statistics of a mean, proportion or ratio metric (with CUPED covariate sums)."""
    agg = _agg(metric)
    pre = float(pre_period_days)
    den = ""
    den_join = ""
    d_expr = "0.0"
    if metric.kind == "ratio":
        den = (f", de AS (SELECT unit_id, ts, {column_sql(metric.denominator_column)} AS v FROM events "
               f"WHERE name = '{_q(metric.denominator or '')}' AND (experiment IS NULL OR experiment = $exp) "
               "AND ts < $end), "
               "da AS (SELECT u.unit_id, sum(v) AS d FROM u JOIN de ON de.unit_id = u.unit_id "
               "WHERE de.ts >= u.t0 GROUP BY u.unit_id)")
        den_join = " LEFT JOIN da ON da.unit_id = u.unit_id"
        d_expr = "coalesce(da.d, 0.0)"
    pre_filter = f"e.ts < u.t0 AND e.ts >= u.t0 - to_microseconds(CAST({pre * 86400e6} AS BIGINT))"
    x_expr = f"{agg} FILTER (WHERE {pre_filter})" if pre > 0 else "0.0"
    sql = (
        f"WITH {_base_ctes(metric, metric.event, metric.column)}{den}, "
        f"ya AS (SELECT u.unit_id, {agg} FILTER (WHERE e.ts >= u.t0) AS y, {x_expr} AS x "
        "FROM u JOIN e ON e.unit_id = u.unit_id GROUP BY u.unit_id), "
        f"per AS (SELECT u.variant, coalesce(ya.y, 0.0) AS y, coalesce(ya.x, 0.0) AS x, {d_expr} AS d "
        f"FROM u LEFT JOIN ya ON ya.unit_id = u.unit_id{den_join}) "
        "SELECT variant, count(*), sum(y), sum(y*y), sum(x), sum(x*x), sum(x*y), sum(d), sum(d*d), sum(y*d) "
        "FROM per GROUP BY variant"
    )
    rows = con.execute(sql, {"exp": exp.name, "end": end}).fetchall()
    found = {r[0]: UnitStats(int(r[1]), *(float(v or 0.0) for v in r[2:])) for r in rows}
    return {v.name: found.get(v.name, UnitStats(0, 0.0, 0.0)) for v in exp.variants}


def quantile_stats(con: Any, exp: Experiment, metric: MetricSpec, end: datetime,
                   alpha: float = 0.05) -> dict[str, QuantileStats]:
    """Per-variant quantile of the metric's column over exposed units' events, with order-statistic bounds."""
    base = (f"WITH {_base_ctes(metric, metric.event, metric.column)}, "
            "q AS (SELECT u.variant, e.v FROM u JOIN e ON e.unit_id = u.unit_id WHERE e.ts >= u.t0 AND e.v IS NOT NULL)")
    params = {"exp": exp.name, "end": end}
    counts = dict(con.execute(f"{base} SELECT variant, count(*) FROM q GROUP BY variant", params).fetchall())
    q = float(metric.quantile or 0.5)
    wanted = []
    for variant, n in counts.items():
        if n >= 2:
            lo, hi = order_statistic_ranks(int(n), q, alpha)
            mid = min(max(int(round(q * (n - 1))), 0), n - 1)  # nearest-rank estimate (type-3 style)
            wanted += [(variant, lo, "lower"), (variant, mid, "estimate"), (variant, hi, "upper")]
    out: dict[str, QuantileStats] = {}
    if wanted:
        values = ", ".join(f"('{_q(v)}', {r}, '{k}')" for v, r, k in wanted)
        rows = con.execute(
            f"{base}, r AS (SELECT * FROM (VALUES {values}) t(variant, rnk, kind)), "
            "ranked AS (SELECT variant, v, row_number() OVER (PARTITION BY variant ORDER BY v) - 1 AS rnk FROM q) "
            "SELECT r.variant, r.kind, ranked.v FROM r JOIN ranked ON ranked.variant = r.variant "
            "AND ranked.rnk = r.rnk", params).fetchall()
        got: dict[str, dict[str, float]] = {}
        for variant, kind, v in rows:
            got.setdefault(variant, {})[kind] = float(v)
        for variant, g in got.items():
            out[variant] = QuantileStats(int(counts[variant]), g["estimate"], g["lower"], g["upper"])
    for v in exp.variants:
        out.setdefault(v.name, QuantileStats(int(counts.get(v.name, 0)), float("nan"), float("nan"), float("nan")))
    return out


def daily_stats(con: Any, exp: Experiment, metric: MetricSpec, end: datetime) -> list[DailyStats]:
    """Cumulative per-variant statistics at the end of each day since the first exposure (for effect-over-time
    plots and the sequential test's daily looks). Mean, proportion and ratio metrics."""
    agg = _agg(metric)
    cum_agg = "max(s)" if metric.kind == "proportion" else "sum(s)"
    streams = [("e", metric.event, metric.column, agg, cum_agg)]
    if metric.kind == "ratio":
        streams.append(("de", metric.denominator or "", metric.denominator_column, "sum(v)", "sum(s)"))
    ctes = ["u AS (SELECT unit_id, variant, ts AS t0, date_trunc('day', ts) AS d0 FROM exposures "
            "WHERE experiment = $exp AND ts < $end)",
            "days AS (SELECT DISTINCT d0 AS d FROM u)",
            "uc AS (SELECT u.unit_id, u.variant, days.d FROM u JOIN days ON u.d0 <= days.d)"]
    selects = []
    for name, event, column, a, ca in streams:
        ctes.append(f"{name} AS (SELECT unit_id, ts, {column_sql(column)} AS v FROM events WHERE name = '{_q(event)}' "
                    "AND (experiment IS NULL OR experiment = $exp) AND ts < $end)")
        ctes.append(f"inc_{name} AS (SELECT u.unit_id, date_trunc('day', {name}.ts) AS day, {a} AS s FROM u "
                    f"JOIN {name} ON {name}.unit_id = u.unit_id WHERE {name}.ts >= u.t0 GROUP BY ALL)")
        ctes.append(f"cum_{name} AS (SELECT uc.unit_id, uc.d, {ca} AS s FROM uc JOIN inc_{name} i "
                    f"ON i.unit_id = uc.unit_id AND i.day <= uc.d GROUP BY ALL)")
        selects.append(f"coalesce(cum_{name}.s, 0.0)")
    y = selects[0]
    d = selects[1] if len(selects) > 1 else "0.0"
    joins = " ".join(f"LEFT JOIN cum_{n} ON cum_{n}.unit_id = uc.unit_id AND cum_{n}.d = uc.d" for n, *_ in streams)
    sql = (f"WITH {', '.join(ctes)}, per AS (SELECT uc.d, uc.variant, {y} AS y, {d} AS dd FROM uc {joins}) "
           "SELECT d, variant, count(*), sum(y), sum(y*y), sum(dd), sum(dd*dd), sum(y*dd) FROM per "
           "GROUP BY d, variant ORDER BY d, variant")
    rows = con.execute(sql, {"exp": exp.name, "end": end}).fetchall()
    return [DailyStats(r[0], r[1], UnitStats(int(r[2]), float(r[3]), float(r[4]), sum_d=float(r[5]),
                                             sumsq_d=float(r[6]), sum_yd=float(r[7]))) for r in rows]


def exposures_by_day(con: Any, exp: Experiment, end: datetime) -> list[tuple[datetime, str, int]]:
    return con.execute("SELECT date_trunc('day', ts) AS d, variant, count(*) FROM exposures WHERE experiment = $exp "
                       "AND ts < $end GROUP BY ALL ORDER BY d", {"exp": exp.name, "end": end}).fetchall()
