"""What an experiment is: variants with weights, the randomization unit, targeting, metrics, MDE, alpha and power.

Frozen dataclasses validated in ``__post_init__``; ``to_dict`` / ``from_dict`` give the JSON the store, the HTTP API
and ``aisd exp create --spec`` share. The first variant is the control. Lifecycle: draft -> running -> stopped.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

STATUSES = ("draft", "running", "stopped")
UNITS = ("user", "session", "request")
METRIC_KINDS = ("mean", "proportion", "ratio", "quantile")
# Event columns a metric may read. ``count`` counts events; ``error`` is 1 for an event that carries an error.
METRIC_COLUMNS = ("value", "count", "latency_ms", "cost_usd", "tokens_in", "tokens_out", "error")
CORRECTIONS = ("bh", "holm", "none")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def _check_name(value: str, what: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"{what} {value!r} must be 1-64 characters of letters, digits, '_', '.', '-' "
                         "starting with a letter or digit")


@dataclass(frozen=True)
class Variant:
    """One arm. ``weight`` is relative (weights are normalised over the experiment's variants)."""

    name: str
    weight: float = 1.0
    description: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # e.g. {"model": "...", "prompt": "..."} for the gateway

    def __post_init__(self) -> None:
        _check_name(self.name, "variant name")
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"variant {self.name!r}: weight must be a finite number > 0, got {self.weight!r}")


@dataclass(frozen=True)
class MetricSpec:
    """How to turn logged events into one number per unit (or per event, for quantiles).

    mean: per-unit sum of ``column`` over events named ``event`` (units without events count 0).
    proportion: share of units with at least one such event (with ``column`` > 0 unless it is ``count``).
    ratio: sum over units of the numerator / sum of the denominator (``denominator`` event), delta-method variance.
    quantile: the ``quantile`` of ``column`` over all such events of exposed units, order-statistic interval.
    """

    name: str
    kind: str = "mean"
    event: str = ""
    column: str = "value"
    denominator: str | None = None
    denominator_column: str = "count"
    quantile: float | None = None
    higher_is_better: bool = True
    margin: float = 0.0  # guardrails: relative non-inferiority margin (0.02 = may be 2% worse)
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "metric name")
        if self.kind not in METRIC_KINDS:
            raise ValueError(f"metric {self.name!r}: kind must be one of {', '.join(METRIC_KINDS)}, got {self.kind!r}")
        if not self.event:
            object.__setattr__(self, "event", self.name)
        for col in (self.column, self.denominator_column):
            if col not in METRIC_COLUMNS:
                raise ValueError(f"metric {self.name!r}: column must be one of {', '.join(METRIC_COLUMNS)}, "
                                 f"got {col!r}")
        if self.kind == "ratio" and not self.denominator:
            raise ValueError(f"metric {self.name!r}: a ratio needs a denominator event")
        if self.kind == "quantile":
            if self.quantile is None or not 0 < self.quantile < 1:
                raise ValueError(f"metric {self.name!r}: a quantile metric needs quantile in (0, 1)")
        if self.margin < 0:
            raise ValueError(f"metric {self.name!r}: margin must be >= 0")

    @classmethod
    def parse(cls, text: str) -> MetricSpec:
        """Parse the CLI form ``name=kind(event[.column][/den_event[.column]][, q])[;lower][;margin=0.05]``.

        Examples: ``conversion=proportion(purchase)``, ``revenue=mean(purchase.value)``,
        ``ctr=ratio(click/pageview)``, ``latency_p99=quantile(request.latency_ms, 0.99);lower;margin=0.1``.
        """
        head, *opts = [p.strip() for p in text.split(";")]
        m = re.match(r"^([^=\s]+)\s*=\s*(\w+)\s*\(\s*([^,)]+?)\s*(?:,\s*([0-9.]+)\s*)?\)$", head)
        if not m:
            raise ValueError(f"cannot parse metric {text!r}; expected name=kind(event[.column][/den][, q]), "
                             "e.g. conversion=proportion(purchase)")
        name, kind, target, q = m.groups()
        kwargs: dict[str, Any] = {"name": name, "kind": kind}
        num, _, den = target.partition("/")
        ev, _, col = num.partition(".")
        kwargs["event"] = ev
        if col:
            kwargs["column"] = col
        elif kind in ("ratio", "proportion"):
            kwargs["column"] = "count"  # clicks per session / share of units with the event
        if den:
            dev, _, dcol = den.partition(".")
            kwargs["denominator"] = dev
            if dcol:
                kwargs["denominator_column"] = dcol
        if q:
            kwargs["quantile"] = float(q)
        for opt in opts:
            if opt in ("lower", "lower_is_better"):
                kwargs["higher_is_better"] = False
            elif opt.startswith("margin="):
                kwargs["margin"] = float(opt.split("=", 1)[1])
            elif opt:
                raise ValueError(f"unknown metric option {opt!r}; expected 'lower' or 'margin=<fraction>'")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_variant(v: Any) -> Variant:
    if isinstance(v, Variant):
        return v
    if isinstance(v, str):
        return Variant(v)
    if isinstance(v, dict):
        return Variant(**v)
    raise ValueError(f"a variant must be a name, a mapping or a Variant, got {type(v).__name__}")


def _as_metric(m: Any) -> MetricSpec:
    if isinstance(m, MetricSpec):
        return m
    if isinstance(m, str):
        return MetricSpec.parse(m)
    if isinstance(m, dict):
        return MetricSpec(**m)
    raise ValueError(f"a metric must be a MetricSpec, a mapping or a 'name=kind(event)' string, got {m!r}")


@dataclass(frozen=True)
class Experiment:
    """A hypothesis tested by randomising units between variants; the first variant is the control."""

    name: str
    hypothesis: str = ""
    variants: tuple[Variant, ...] = (Variant("control"), Variant("treatment"))
    unit: str = "user"
    targeting: dict[str, Any] = field(default_factory=dict)  # attribute -> value or list of allowed values
    traffic: float = 1.0  # share of eligible units that enter the experiment
    layer: str | None = None  # experiments in one layer get disjoint slices of it: mutually exclusive
    layer_range: tuple[float, float] | None = None  # this experiment's slice [lo, hi) of the layer
    salt: str = "aisd"
    primary_metrics: tuple[MetricSpec, ...] = ()
    secondary_metrics: tuple[MetricSpec, ...] = ()
    guardrail_metrics: tuple[MetricSpec, ...] = ()
    mde: float = 0.05  # relative minimum detectable effect on the primary metric
    alpha: float = 0.05
    power: float = 0.8
    correction: str = "bh"  # across primary and secondary metrics x treatment variants
    cuped: bool = True
    pre_period_days: float = 14.0
    sequential: bool = True
    status: str = "draft"
    created_at: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "experiment name")
        object.__setattr__(self, "variants", tuple(_as_variant(v) for v in self.variants))
        for attr in ("primary_metrics", "secondary_metrics", "guardrail_metrics"):
            object.__setattr__(self, attr, tuple(_as_metric(m) for m in getattr(self, attr)))
        if len(self.variants) < 2:
            raise ValueError("an experiment needs at least 2 variants (the first is the control)")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        metric_names = [m.name for m in self.metrics]
        if len(set(metric_names)) != len(metric_names):
            raise ValueError(f"metric names must be unique across roles, got {metric_names}")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {self.unit!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {self.correction!r}")
        if not 0 < self.traffic <= 1:
            raise ValueError(f"traffic must be in (0, 1], got {self.traffic}")
        for attr, lo, hi in (("alpha", 0, 1), ("power", 0, 1)):
            if not lo < getattr(self, attr) < hi:
                raise ValueError(f"{attr} must be in ({lo}, {hi}), got {getattr(self, attr)}")
        if self.mde <= 0:
            raise ValueError(f"mde (relative minimum detectable effect) must be > 0, got {self.mde}")
        if self.pre_period_days < 0:
            raise ValueError("pre_period_days must be >= 0")
        if not isinstance(self.targeting, dict):
            raise ValueError("targeting must be a mapping of attribute -> value or list of values")
        if self.layer is not None:
            _check_name(self.layer, "layer name")
        if self.layer_range is not None:
            lo, hi = (float(x) for x in self.layer_range)
            if not 0 <= lo < hi <= 1:
                raise ValueError(f"layer_range must satisfy 0 <= lo < hi <= 1, got {self.layer_range}")
            if self.layer is None:
                raise ValueError("layer_range needs a layer")
            object.__setattr__(self, "layer_range", (lo, hi))

    @property
    def control(self) -> Variant:
        return self.variants[0]

    @property
    def treatments(self) -> tuple[Variant, ...]:
        return self.variants[1:]

    @property
    def weights(self) -> tuple[float, ...]:
        total = sum(v.weight for v in self.variants)
        return tuple(v.weight / total for v in self.variants)

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        return self.primary_metrics + self.secondary_metrics + self.guardrail_metrics

    def role(self, metric: str) -> str:
        for role in ("primary", "secondary", "guardrail"):
            if any(m.name == metric for m in getattr(self, f"{role}_metrics")):
                return role
        raise KeyError(metric)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def with_(self, **changes: Any) -> Experiment:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["variants"] = [asdict(v) for v in self.variants]
        for attr in ("primary_metrics", "secondary_metrics", "guardrail_metrics"):
            d[attr] = [m.to_dict() for m in d[attr]]
        d["layer_range"] = list(self.layer_range) if self.layer_range else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown experiment field(s) {unknown}; allowed: {', '.join(sorted(known))}")
        d = dict(data)
        if "variants" in d:
            d["variants"] = tuple(d["variants"])
        if d.get("layer_range") is not None:
            d["layer_range"] = tuple(d["layer_range"])
        return cls(**d)
