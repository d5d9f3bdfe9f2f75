"""Resolving feature references into a plan, and the online read path (values, statuses, event times, TTL).

A plan is computed once per (features, full_feature_names) and registry version and cached, so a hot online read
is: check entity keys, one online-store lookup per view, a TTL comparison per value. Internally every feature is
named ``view__feature``; outputs use the plain name unless ``full_feature_names`` (Feast's convention).
Statuses follow Feast's FieldStatus: PRESENT, NULL_VALUE (stored null), NOT_FOUND, EXPIRED (older than the view's
ttl at read time; the value comes back null).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from operator import itemgetter
from typing import Any

from aisd.core.errors import InvalidRequestError, NotFoundError
from aisd.features.dtypes import DType
from aisd.features.model import FeatureService, FeatureView, Field, OnDemandFeatureView
from aisd.features.online.base import OnlineStore, encode_key
from aisd.features.repo import Definitions

PRESENT, NULL_VALUE, NOT_FOUND, EXPIRED = "PRESENT", "NULL_VALUE", "NOT_FOUND", "EXPIRED"


@dataclass(frozen=True)
class ViewPart:
    view: FeatureView
    features: tuple[str, ...]  # every feature read from this view (requested + on-demand inputs)

    @cached_property
    def internal_names(self) -> tuple[str, ...]:
        return tuple(f"{self.view.name}__{f}" for f in self.features)

    @cached_property
    def getter(self) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
        """The features of one stored document as a tuple, in ``features`` order (one C call, not a loop)."""
        get = itemgetter(*self.features)
        return get if len(self.features) > 1 else (lambda d: (get(d),))


@dataclass(frozen=True)
class OdfvPart:
    odfv: OnDemandFeatureView
    features: tuple[str, ...]


@dataclass(frozen=True)
class FeaturePlan:
    views: tuple[ViewPart, ...]
    odfvs: tuple[OdfvPart, ...]
    outputs: tuple[tuple[str, str], ...]  # (internal view__feature, output name), in request order
    join_keys: tuple[tuple[str, DType], ...]
    request_fields: tuple[Field, ...]

    @cached_property
    def column_names(self) -> tuple[tuple[str, ...], ...]:
        """Per view part, the response column of each feature read: the output name when no on-demand view needs
        the internal ``view__feature`` names (then no renaming pass is needed), else the internal name."""
        if self.odfvs:
            return tuple(p.internal_names for p in self.views)
        final = dict(self.outputs)
        return tuple(tuple(final[i] for i in p.internal_names) for p in self.views)

    @cached_property
    def views_in_request_order(self) -> bool:
        """True when reading view by view already yields the columns in request order (refs grouped by view)."""
        return [i for p in self.views for i in p.internal_names] == [i for i, _ in self.outputs]


def parse_refs(features: Sequence[str] | FeatureService) -> list[tuple[str, str]]:
    if isinstance(features, FeatureService):
        return [(p.view_name, f) for p in features.projections() for f in p.features]
    if isinstance(features, str) or not features:
        raise InvalidRequestError("features must be a non-empty list of 'view:feature' references or a "
                                  "FeatureService", param="features")
    out = []
    for ref in features:
        view, sep, feat = str(ref).partition(":")
        if not sep or not view or not feat:
            raise InvalidRequestError(f"feature reference {ref!r} must look like 'view:feature'", param="features")
        out.append((view, feat))
    return out


def build_plan(defs: Definitions, refs: list[tuple[str, str]], full_feature_names: bool) -> FeaturePlan:
    wanted: dict[str, list[str]] = {}
    odfv_wanted: dict[str, list[str]] = {}
    outputs: list[tuple[str, str]] = []
    for view_name, feat in refs:
        target = defs.views.get(view_name) or defs.odfvs.get(view_name)
        if target is None:
            raise NotFoundError(f"feature view {view_name!r} is not defined; known: "
                                f"{sorted([*defs.views, *defs.odfvs])}", param="features")
        if feat not in target.feature_names:
            raise NotFoundError(f"feature view {view_name!r} has no feature {feat!r}; it has: {target.feature_names}",
                                param="features")
        bucket = odfv_wanted if view_name in defs.odfvs else wanted
        if feat not in bucket.setdefault(view_name, []):
            bucket[view_name].append(feat)
            outputs.append((f"{view_name}__{feat}", f"{view_name}__{feat}" if full_feature_names else feat))
    names = [o for _, o in outputs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidRequestError(f"features {dup} come from several views; pass full_feature_names=True",
                                  param="features")
    reads = {k: list(v) for k, v in wanted.items()}
    for name in odfv_wanted:
        for view_name, feat in defs.odfvs[name].input_refs():
            if feat not in reads.setdefault(view_name, []):
                reads[view_name].append(feat)
    views = tuple(ViewPart(defs.views[v], tuple(fs)) for v, fs in reads.items())
    keys: dict[str, DType] = {}
    for part in views:
        for e in part.view.entities:
            keys[e.join_key] = defs.entities[e.name].value_type or DType("string")
    req: dict[str, Field] = {}
    for name in odfv_wanted:
        for rs in defs.odfvs[name].request_sources:
            req.update({f.name: f for f in rs.schema})
    return FeaturePlan(views, tuple(OdfvPart(defs.odfvs[n], tuple(fs)) for n, fs in odfv_wanted.items()),
                       tuple(outputs), tuple(keys.items()), tuple(req.values()))


@dataclass
class OnlineResponse:
    """Feast's online response: entity columns, then each feature's values, statuses and event times."""

    entities: dict[str, list[Any]]
    values: dict[str, list[Any]]
    statuses: dict[str, list[str]]
    event_timestamps: dict[str, list[float | None]] = field(default_factory=dict)  # epoch seconds

    @property
    def feature_names(self) -> list[str]:
        return list(self.values)

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {**self.entities, **self.values}
        if include_event_timestamps:
            for name, ts in self.event_timestamps.items():
                out[f"{name}__ts"] = [_iso(t) for t in ts]
        return out

    def to_df(self, include_event_timestamps: bool = False) -> Any:
        import pandas as pd

        return pd.DataFrame(self.to_dict(include_event_timestamps))

    def to_feast_json(self) -> dict[str, Any]:
        """The feature server's JSON shape: metadata.feature_names, then one result per column."""
        n = len(next(iter(self.entities.values()))) if self.entities else 0
        results = [{"values": v, "statuses": [PRESENT] * n, "event_timestamps": [None] * n}
                   for v in self.entities.values()]
        iso: dict[int, list[str | None]] = {}  # features of one view share one list of times: format it once
        for f in self.values:
            ts = self.event_timestamps.get(f, [None] * n)
            if id(ts) not in iso:
                iso[id(ts)] = [_iso(t) for t in ts]
            results.append({"values": self.values[f], "statuses": self.statuses[f], "event_timestamps": iso[id(ts)]})
        return {"metadata": {"feature_names": [*self.entities, *self.values]}, "results": results}


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def to_columns(entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Rows (Feast's list of dicts) or columns (dict of lists) -> columns."""
    if isinstance(entity_rows, Mapping):
        cols = {k: list(v) if isinstance(v, list | tuple) else [v] for k, v in entity_rows.items()}
    else:
        rows = list(entity_rows)
        keys = list(dict.fromkeys(k for r in rows for k in r))
        for i, r in enumerate(rows):
            absent = [k for k in keys if k not in r]
            if absent:
                raise InvalidRequestError(f"entity_rows[{i}] lacks {absent}", param=f"entity_rows[{i}]")
        cols = {k: [r[k] for r in rows] for k in keys}
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise InvalidRequestError(f"entity columns have different lengths: {sorted(lengths)}", param="entities")
    if not cols or lengths == {0}:
        raise InvalidRequestError("entity_rows is empty", param="entities")
    return cols


def read_online(plan: FeaturePlan, defs: Definitions, online: OnlineStore, entity_rows: Any, now: float,
                known_keys: set[str]) -> OnlineResponse:
    cols = to_columns(entity_rows)
    n = len(next(iter(cols.values())))
    request_names = {f.name for f in plan.request_fields}
    unknown = sorted(set(cols) - known_keys - request_names)
    if unknown:
        raise NotFoundError(f"unknown entity keys {unknown}; known join keys: {sorted(known_keys)}",
                            param=unknown[0])
    entities: dict[str, list[Any]] = {}
    for key, dtype in plan.join_keys:
        if key not in cols:
            raise InvalidRequestError(f"entity key {key!r} is required by the requested features", param=key)
        vals = [dtype.coerce(v, f"{key}[{i}]") for i, v in enumerate(cols[key])]
        if any(v is None for v in vals):
            raise InvalidRequestError(f"entity key {key!r} has null values", param=key)
        entities[key] = vals
    request: dict[str, list[Any]] = {}
    for f in plan.request_fields:
        if f.name not in cols:
            raise InvalidRequestError(f"request data field {f.name!r} is required by an on-demand view",
                                      param=f.name)
        request[f.name] = [f.dtype.coerce(v, f"{f.name}[{i}]") for i, v in enumerate(cols[f.name])]
    values: dict[str, list[Any]] = {}
    statuses: dict[str, list[str]] = {}
    stamps: dict[str, list[float | None]] = {}
    for part, names in zip(plan.views, plan.column_names, strict=True):
        view = part.view
        jk = view.join_keys
        keys = [encode_key([entities[k][i] for k in jk]) for i in range(n)] if len(jk) > 1 else \
            [encode_key([v]) for v in entities[jk[0]]]
        records = online.read(view.name, keys)
        ttl = view.ttl_seconds
        oldest = now - ttl if ttl else None
        # Per record once: a tuple of the wanted values if present and fresh, else None. Then columns by zip(*rows).
        rows: list[tuple[Any, ...] | None] = []
        complete = True  # every row present, fresh and without nulls: the common case, statuses all PRESENT
        for r in records:
            if r is None or (oldest is not None and r.event_ts < oldest):
                rows.append(None)
                complete = False
                continue
            try:
                row = part.getter(r.values)
            except KeyError:  # a document written before the view gained a feature
                row = tuple(r.values.get(f) for f in part.features)
            if complete and None in row:
                complete = False
            rows.append(row)
        ts = [None if r is None else r.event_ts for r in records]
        if complete:
            for name, col in zip(names, zip(*rows, strict=True), strict=True):
                values[name] = list(col)
                statuses[name] = [PRESENT] * n
                stamps[name] = ts
            continue
        empty = (None,) * len(names)
        miss = [NOT_FOUND if r is None else EXPIRED for r in records]
        filled = [empty if row is None else row for row in rows]
        for name, col in zip(names, zip(*filled, strict=True), strict=True):
            values[name] = list(col)
            statuses[name] = [PRESENT if v is not None else (miss[i] if rows[i] is None else NULL_VALUE)
                              for i, v in enumerate(col)]
            stamps[name] = ts
    if not plan.odfvs:  # columns already carry their output names
        if not plan.views_in_request_order:
            order = [o for _, o in plan.outputs]
            values, statuses, stamps = ({o: d[o] for o in order} for d in (values, statuses, stamps))
        return OnlineResponse(entities, values, statuses, stamps)
    for part in plan.odfvs:
        out = run_odfv(part.odfv, values, request, n)
        for feat in part.features:
            name = f"{part.odfv.name}__{feat}"
            values[name] = out[feat]
            statuses[name] = [PRESENT if v is not None else NULL_VALUE for v in out[feat]]
            stamps[name] = [None] * n
    renamed = {o: values[i] for i, o in plan.outputs}
    return OnlineResponse(entities, renamed, {o: statuses[i] for i, o in plan.outputs},
                          {o: stamps[i] for i, o in plan.outputs})


def run_odfv(odfv: OnDemandFeatureView, values: Mapping[str, list[Any]], request: Mapping[str, list[Any]],
             n: int) -> dict[str, list[Any]]:
    """Call an on-demand view's function on a DataFrame of its inputs; check it returned every declared feature."""
    import pandas as pd

    data: dict[str, list[Any]] = {}
    for view_name, feat in odfv.input_refs():
        col = values[f"{view_name}__{feat}"]
        data[f"{view_name}__{feat}"] = col
        data.setdefault(feat, col)
    for rs in odfv.request_sources:
        for f in rs.schema:
            data[f.name] = list(request[f.name])
    frame = pd.DataFrame(data, index=range(n))
    try:
        result = odfv.udf(frame)
    except Exception as e:  # noqa: BLE001 - the user's function failed; say where
        raise InvalidRequestError(f"on-demand view {odfv.name!r} failed: {type(e).__name__}: {e}",
                                  param=odfv.name) from e
    missing = [f for f in odfv.feature_names if f not in getattr(result, "columns", [])]
    if missing:
        raise InvalidRequestError(f"on-demand view {odfv.name!r} did not return features {missing}",
                                  param=odfv.name)
    out = {}
    for f in odfv.schema:
        out[f.name] = [f.dtype.coerce(v, f"{odfv.name}.{f.name}[{i}]") for i, v in enumerate(result[f.name].tolist())]
    return out
