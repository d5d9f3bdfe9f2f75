"""Point-in-time joins: for every entity row, each view's newest feature row with event time <= the row's time and
within the view's ttl; created time breaks ties between rows with the same event time.

The query is DuckDB ``ASOF LEFT JOIN`` per view (a sort-merge on (keys, time) that never materialises the
cross product; DuckDB docs, "ASOF joins"), after keeping one row per (keys, event time) - the newest created. A ttl
is a filter on the matched row: if the newest row before t is older than t - ttl, every earlier row is too.
``exclude_late=True`` hides corrections created after the row's time (what a model could not have seen then); that
needs two inequalities (event <= t and created <= t), which ASOF cannot express, so those views use a range join
(IEJoin) ranked per entity row - correct, and costlier on sources with many rows per key.
Semantics follow Feast's offline stores: ``event_timestamp >= t - ttl`` inclusive (feast/infra/offline_stores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aisd.features.model import FeatureView
from aisd.features.offline import q


@dataclass(frozen=True)
class ViewRequest:
    """One view taking part in a join: which features, under which output names."""

    view: FeatureView
    features: tuple[str, ...]
    output_names: tuple[str, ...]
    source_sql: str  # OfflineStore.view_sql(view, features)


def _ttl_us(view: FeatureView) -> int | None:
    secs = view.ttl_seconds
    return int(round(secs * 1_000_000)) if secs else None


def build_pit_sql(entity_from: str, entity_columns: Sequence[str], timestamp_column: str, row_column: str,
                  views: Sequence[ViewRequest], exclude_late: bool = False) -> str:
    """SQL returning the entity columns (in order, rows in ``row_column`` order) then every requested feature.

    ``entity_from`` is a FROM-able expression holding ``entity_columns`` and a unique ``row_column``.
    """
    ctes = [f"__entity AS (SELECT *, CAST({q(timestamp_column)} AS TIMESTAMP) AS __entity_ts FROM {entity_from})"]
    joins, selects = [], [f"e.{q(c)}" for c in entity_columns]
    for i, vr in enumerate(views):
        v, alias = vr.view, f"f{i}"
        keys = [q(k) for k in v.join_keys]
        feats = [q(f) for f in vr.features]
        ttl = _ttl_us(v)
        late = exclude_late and bool(v.batch_source.created_timestamp_column)
        if not late:
            # One row per (keys, event time): the newest created. ASOF then matches the newest event time <= t.
            ctes.append(f"__v{i} AS (SELECT * FROM {vr.source_sql} QUALIFY row_number() OVER "
                        f"(PARTITION BY {', '.join(keys)}, __ts ORDER BY __created DESC) = 1)")
            on = " AND ".join([f"e.{k} = {alias}.{k}" for k in keys] + [f"e.__entity_ts >= {alias}.__ts"])
            joins.append(f"ASOF LEFT JOIN __v{i} {alias} ON {on}")
            fresh = f"{alias}.__ts >= e.__entity_ts - to_microseconds({ttl})" if ttl else None
        else:
            # Range join: rows visible at t (event <= t, created <= t, within ttl), ranked newest first per row.
            cond = [f"e.{k} = s.{k}" for k in keys] + ["s.__ts <= e.__entity_ts", "s.__created <= e.__entity_ts"]
            if ttl:
                cond.append(f"s.__ts >= e.__entity_ts - to_microseconds({ttl})")
            ctes.append(f"__v{i} AS (SELECT e.{q(row_column)} AS __row, {', '.join('s.' + f for f in feats)} "
                        f"FROM __entity e JOIN {vr.source_sql} s ON {' AND '.join(cond)} "
                        f"QUALIFY row_number() OVER (PARTITION BY e.{q(row_column)} "
                        f"ORDER BY s.__ts DESC, s.__created DESC) = 1)")
            joins.append(f"LEFT JOIN __v{i} {alias} ON e.{q(row_column)} = {alias}.__row")
            fresh = None
        for f, out in zip(feats, vr.output_names, strict=True):
            value = f"CASE WHEN {fresh} THEN {alias}.{f} END" if fresh else f"{alias}.{f}"
            selects.append(f"{value} AS {q(out)}")
    return (f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM __entity e {' '.join(joins)} "
            f"ORDER BY e.{q(row_column)}")
