"""Point-in-time joins: for every entity row, each view's newest feature row with event time <= the row's time and
within the view's ttl; created time breaks ties between rows with the same event time.

The query is DuckDB ``ASOF LEFT JOIN`` per view (a sort-merge on (keys, time) that never materialises the
cross product; DuckDB docs, "ASOF joins"), after keeping one row per (keys, event time) - the newest created. A ttl
is a filter on the matched row: if the newest row before t is older than t - ttl, every earlier row is too.
``exclude_late=True`` hides corrections created after the row's time (what a model could not have seen then): the
two inequalities (event <= t and created <= t) are one on greatest(event, created), so it is an ASOF join too, on
that visibility time, over a running best row (``visible_best_sql``).
Semantics follow Feast's offline stores: ``event_timestamp >= t - ttl`` inclusive (feast/infra/offline_stores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aisd.features.model import FeatureView
from aisd.features.offline import lit, q


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


def newest_created_sql(source_sql: str, keys: Sequence[str], feats: Sequence[str]) -> str:  # keys quoted, feats raw
    """One row per (keys, event time), the newest created, as a hash aggregate: ``arg_max`` of the feature values
    packed in one struct (so a row's values stay together), then unpacked. A ``row_number()`` window does the same
    with a sort per view; the aggregate measured ~20% faster end to end on the PIT benchmark. NULL created times
    rank lowest (arg_max skips NULL keys, which would otherwise lose a group whose created times are all NULL)."""
    pack = "{" + ", ".join(f"{lit(f)}: {q(f)}" for f in feats) + "}"
    group = ", ".join([*keys, "__ts"])
    return (f"SELECT {group}, unnest(__m) FROM (SELECT {group}, arg_max({pack}, "
            f"coalesce(__created, -9223372036854775807)) AS __m FROM {source_sql} GROUP BY {group})")


def visible_best_sql(source_sql: str, keys: Sequence[str], feats: Sequence[str]) -> str:  # keys quoted, feats raw
    """For ``exclude_late``: per row, its visibility time and the best row visible by then.

    A row is visible at t iff event <= t and created <= t, i.e. greatest(event, created) <= t (a NULL created time
    counts as created at the event time). In visibility order, the rows visible at t are a prefix, so the answer at t
    is a running ``arg_max`` by (event, created) over that prefix - a window with a RANGE frame, so rows that become
    visible at the same instant share one answer - and one ASOF join on the visibility time finds the prefix. This
    replaced a range join that materialised every (entity row, visible row) pair and ranked them per entity row.
    """
    pack = "{" + ", ".join(["'__aisd_best_ts': __ts", *(f"{lit(f)}: {q(f)}" for f in feats)]) + "}"
    part = ", ".join(keys)
    vis = "greatest(__ts, __created)"
    return (f"SELECT {part}, __vis, unnest(__m) FROM (SELECT {part}, {vis} AS __vis, arg_max({pack}, "
            f"{{'t': __ts, 'c': coalesce(__created, -9223372036854775807)}}) OVER (PARTITION BY {part} ORDER BY {vis} "
            f"RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __m FROM {source_sql} WHERE __ts IS NOT NULL)")


def build_pit_sql(entity_from: str, entity_columns: Sequence[str], timestamp_column: str, row_column: str,
                  views: Sequence[ViewRequest], exclude_late: bool = False) -> str:
    """SQL returning the entity columns (in order, rows in ``row_column`` order) then every requested feature.

    ``entity_from`` is a FROM-able expression holding ``entity_columns`` and a unique ``row_column``.
    Each view is joined on a narrow copy of the entity rows (row id, keys, time) and the per-view results are
    hash-joined back on the row id: chaining ASOF joins on the full rows would re-sort ever wider rows per view.
    """
    row = q(row_column)
    key_cols = sorted({k for vr in views for k in vr.view.join_keys})
    ctes = [f"__entity AS (SELECT *, epoch_us({q(timestamp_column)}) AS __entity_ts FROM {entity_from})",
            f"__keys AS (SELECT {row}, {', '.join(q(k) for k in key_cols)}{',' if key_cols else ''} __entity_ts "
            f"FROM __entity)"]
    joins, selects = [], [f"e.{q(c)}" for c in entity_columns]
    for i, vr in enumerate(views):
        v, alias = vr.view, f"j{i}"
        keys = [q(k) for k in v.join_keys]
        feats = [q(f) for f in vr.features]
        ttl = _ttl_us(v)
        late = exclude_late and bool(v.batch_source.created_timestamp_column)
        outs = [q(o) for o in vr.output_names]
        if not late:
            # One row per (keys, event time): the newest created (without a created column, ties are arbitrary, as
            # in Feast). ASOF then matches the newest event time <= t; a match older than t - ttl means nothing
            # fresh exists, so it becomes null. (Packing (event, created) into one HUGEINT for the ASOF key was
            # measured 1.5x slower than a dedupe.)
            if v.batch_source.created_timestamp_column:
                ctes.append(f"__v{i} AS ({newest_created_sql(vr.source_sql, keys, vr.features)})")
            else:
                ctes.append(f"__v{i} AS (SELECT * FROM {vr.source_sql})")
            on = " AND ".join([f"e.{k} = s.{k}" for k in keys] + ["e.__entity_ts >= s.__ts"])
            fresh = f"s.__ts >= e.__entity_ts - {ttl}" if ttl else None
            values = [f"CASE WHEN {fresh} THEN s.{f} END" if fresh else f"s.{f}" for f in feats]
            ctes.append(f"__j{i} AS (SELECT e.{row} AS __row, "
                        f"{', '.join(f'{x} AS {o}' for x, o in zip(values, outs, strict=True))} "
                        f"FROM __keys e ASOF LEFT JOIN __v{i} s ON {on})")
        else:
            ctes.append(f"__v{i} AS ({visible_best_sql(vr.source_sql, keys, vr.features)})")
            on = " AND ".join([f"e.{k} = s.{k}" for k in keys] + ["e.__entity_ts >= s.__vis"])
            fresh = f"s.__aisd_best_ts >= e.__entity_ts - {ttl}" if ttl else None
            values = [f"CASE WHEN {fresh} THEN s.{f} END" if fresh else f"s.{f}" for f in feats]
            ctes.append(f"__j{i} AS (SELECT e.{row} AS __row, "
                        f"{', '.join(f'{x} AS {o}' for x, o in zip(values, outs, strict=True))} "
                        f"FROM __keys e ASOF LEFT JOIN __v{i} s ON {on})")
        joins.append(f"LEFT JOIN __j{i} {alias} ON e.{row} = {alias}.__row")
        selects += [f"{alias}.{o}" for o in outs]
    return (f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM __entity e {' '.join(joins)} "
            f"ORDER BY e.{row}")


@dataclass(frozen=True)
class ViewRows:
    """For the in-memory engine: SQL of one view's candidate rows and the roles of its columns."""

    sql: str  # join keys, ``on``, ``fresh``, ``tie`` (if any), the features; rows with a NULL ``on`` dropped
    on: str  # matched ``<= t``
    fresh: str  # the ttl applies to it
    tie: str | None  # among equal (keys, on), the largest wins (created time; NULL ranked lowest)


def view_rows_sql(vr: ViewRequest, exclude_late: bool) -> ViewRows:
    keys = [q(k) for k in vr.view.join_keys]
    if exclude_late and vr.view.batch_source.created_timestamp_column:
        rows = ViewRows(visible_best_sql(vr.source_sql, keys, vr.features), "__vis", "__aisd_best_ts", None)
    elif vr.view.batch_source.created_timestamp_column:  # raw rows: the created-time tie-break happens in the sort
        rows = ViewRows(f"SELECT * REPLACE (coalesce(__created, -9223372036854775807) AS __created) "
                        f"FROM {vr.source_sql}", "__ts", "__ts", "__created")
    else:
        rows = ViewRows(f"SELECT * EXCLUDE (__created) FROM {vr.source_sql}", "__ts", "__ts", None)
    return ViewRows(f"SELECT * FROM ({rows.sql}) WHERE {rows.on} IS NOT NULL", rows.on, rows.fresh, rows.tie)
