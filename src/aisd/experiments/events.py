"""Exposure and metric-event logging into DuckDB: schema, row validation, batched appends, Parquet export.

Exposures are deduplicated per (experiment, unit): the first logged variant wins and the earliest timestamp is kept.
Events are experiment-independent facts about a unit (a purchase, a click, an LLM request); analysis joins them to
exposures by unit id, counting only events after the unit's first exposure. The optional columns let the model
gateway log one event per request with the model / prompt variant it served, latency, cost, tokens and errors.

Validation is vectorised over a DataFrame so that a 1M-row batch costs about a second; each malformed row gets a
reason and the batch's valid rows are still written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

EVENT_COLUMNS: dict[str, str] = {  # name -> DuckDB type, in table order
    "ts": "TIMESTAMP",  # UTC
    "unit_id": "VARCHAR",
    "name": "VARCHAR",
    "value": "DOUBLE",
    "experiment": "VARCHAR",  # set by the gateway when it served a variant; NULL for plain product events
    "variant": "VARCHAR",
    "model": "VARCHAR",
    "prompt": "VARCHAR",
    "latency_ms": "DOUBLE",
    "cost_usd": "DOUBLE",
    "tokens_in": "BIGINT",
    "tokens_out": "BIGINT",
    "error": "VARCHAR",  # error type or message; NULL when the request succeeded
    "session_id": "VARCHAR",
    "request_id": "VARCHAR",
    "properties": "VARCHAR",  # JSON object
}
EXPOSURE_COLUMNS: dict[str, str] = {
    "experiment": "VARCHAR",
    "unit_id": "VARCHAR",
    "variant": "VARCHAR",
    "ts": "TIMESTAMP",
    "attributes": "VARCHAR",  # JSON object
}
_STRINGS = ("experiment", "variant", "model", "prompt", "error", "session_id", "request_id")
_NON_NEGATIVE = ("latency_ms", "cost_usd", "tokens_in", "tokens_out")
MAX_NAME = 128

SCHEMA_SQL = (
    "CREATE TABLE IF NOT EXISTS events (" + ", ".join(f"{k} {v}" for k, v in EVENT_COLUMNS.items()) + ")",
    "CREATE TABLE IF NOT EXISTS exposures (" + ", ".join(f"{k} {v}" for k, v in EXPOSURE_COLUMNS.items())
    + ", PRIMARY KEY (experiment, unit_id))",
)


@dataclass(frozen=True)
class Rejection:
    index: int  # position of the row in the submitted batch
    reason: str


@dataclass(frozen=True)
class BatchResult:
    accepted: int
    rejected: list[Rejection] = field(default_factory=list)
    duplicates: int = 0  # exposures of units already exposed (kept: the first one)

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": [{"index": r.index, "reason": r.reason} for r in self.rejected]}


def _now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC)).tz_convert(None)


def _parse_ts(col: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Timestamps from ISO-8601 strings, datetimes or epoch seconds -> naive UTC; returns (values, bad mask)."""
    out = pd.Series(pd.NaT, index=col.index, dtype="datetime64[us]")
    missing = col.isna().to_numpy()
    bad = np.zeros(len(col), dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(col.dtype):  # bulk frames: already timestamps
        tz = getattr(col.dtype, "tz", None)
        out = (col.dt.tz_convert(None) if tz is not None else col).astype("datetime64[us]")
        return out.where(~missing, _now()), bad
    numeric = pd.to_numeric(col, errors="coerce")
    is_num = numeric.notna().to_numpy() & ~col.map(lambda v: isinstance(v, str | bool)).to_numpy(dtype=bool)
    if is_num.any():
        secs = numeric[is_num]
        ok = np.isfinite(secs) & (secs.abs() < 1e11)
        out.loc[secs.index[ok]] = pd.to_datetime(secs[ok], unit="s").astype("datetime64[us]")
        bad[np.flatnonzero(is_num)[~ok.to_numpy()]] = True
    rest = ~is_num & ~missing
    if rest.any():
        parsed = pd.to_datetime(col[rest], errors="coerce", utc=True, format="mixed")
        bad[np.flatnonzero(rest)[parsed.isna().to_numpy()]] = True
        good = parsed.notna()
        out.loc[parsed.index[good]] = parsed[good].dt.tz_convert(None).astype("datetime64[us]")
    out[missing] = _now()
    return out, bad


def _split(reasons: list[tuple[np.ndarray, str]], index: pd.Index) -> tuple[np.ndarray, list[Rejection]]:
    """(rows to keep, rejections): each bad row gets the first failing check's reason; vectorised over rows."""
    code = np.full(len(index), -1, dtype=np.int64)
    for k, (mask, _) in enumerate(reasons):
        code[(code == -1) & np.asarray(mask, dtype=bool)] = k
    bad = np.flatnonzero(code >= 0)
    positions = index.to_numpy()
    return code == -1, [Rejection(int(positions[i]), reasons[code[i]][1]) for i in bad]


def _to_frame(rows: Iterable[Any], allowed: Sequence[str]) -> tuple[pd.DataFrame, list[Rejection]]:
    """Rows (mappings) -> DataFrame of the structurally valid ones (original index kept) and rejections."""
    good: list[dict[str, Any]] = []
    index: list[int] = []
    rejected: list[Rejection] = []
    allowed_set = set(allowed)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            rejected.append(Rejection(i, f"must be an object, got {type(row).__name__}"))
            continue
        unknown = sorted(set(row) - allowed_set)
        if unknown:
            rejected.append(Rejection(i, f"unknown field(s) {unknown}; allowed: {', '.join(allowed)}"))
            continue
        nan = next((k for k, v in row.items() if isinstance(v, float) and v != v), None)
        if nan is not None:  # an explicit NaN is bad data; an absent field is a default
            rejected.append(Rejection(i, f"{nan} must be a finite number"))
            continue
        good.append(dict(row))
        index.append(i)
    frame = pd.DataFrame(good, index=pd.Index(index, dtype=np.int64), columns=list(allowed))
    return frame, rejected


def _string_col(col: pd.Series, name: str, required: bool) -> tuple[pd.Series, list[tuple[np.ndarray, str]]]:
    missing = col.isna().to_numpy()
    limit = MAX_NAME if name == "name" else 1024
    typed = col.dtype != object and pd.api.types.is_string_dtype(col.dtype)
    if missing.all() or typed or pd.api.types.infer_dtype(col, skipna=True) == "string":
        # fast path for bulk frames: an all-null or typed string column needs no per-value type checks
        lengths = col.str.len().fillna(0).to_numpy() if not missing.all() else np.zeros(len(col))
        reasons = [(~missing & ((lengths == 0) | (lengths > limit)), f"{name} must be 1-{limit} characters")]
        if required:
            reasons.insert(0, (missing, f"{name} is required"))
        # typed string columns go to DuckDB as they are (much faster than object columns)
        return (col if typed else col.astype(object).where(~missing, None)), reasons
    is_str = col.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    is_int = col.map(lambda v: isinstance(v, int | np.integer) and not isinstance(v, bool)).to_numpy(dtype=bool)
    values = col.where(~is_int, col.astype(object).map(str))  # integer ids are accepted as their decimal text
    ok = is_str | is_int
    lengths = values.map(lambda v: len(v) if isinstance(v, str) else 0).to_numpy()
    reasons = [
        (~missing & ~ok, f"{name} must be a string"),
        (ok & ((lengths == 0) | (lengths > (MAX_NAME if name == "name" else 1024))),
         f"{name} must be 1-{MAX_NAME if name == 'name' else 1024} characters"),
    ]
    if required:
        reasons.insert(0, (missing, f"{name} is required"))
    return values, reasons


def _number_col(col: pd.Series, name: str, non_negative: bool) -> tuple[pd.Series, list[tuple[np.ndarray, str]]]:
    missing = col.isna().to_numpy()
    if col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) not in ("floating", "integer",
                                                                                   "mixed-integer-float", "empty"):
        is_bool = col.map(lambda v: isinstance(v, bool)).to_numpy(dtype=bool)
    else:
        is_bool = np.full(len(col), col.dtype == bool)
    numeric = pd.to_numeric(col.where(~is_bool), errors="coerce").astype("float64")
    finite = np.isfinite(numeric.to_numpy())
    reasons = [(~missing & (~finite | is_bool), f"{name} must be a finite number")]
    if non_negative:
        reasons.append((finite & (numeric.to_numpy() < 0), f"{name} must be >= 0"))
    return numeric, reasons


def validate_events(rows: Iterable[Any] | pd.DataFrame,
                    known_experiments: Mapping[str, Sequence[str]] | None = None) -> tuple[pd.DataFrame, list[Rejection]]:
    """Check a batch of events; returns (valid rows as a DataFrame in table column order, rejections by row index).

    Required: ``unit_id`` and ``name``. ``value`` defaults to 1, ``ts`` to now. ``experiment`` / ``variant``, when
    given, must name a known experiment and one of its variants (``known_experiments``: name -> variant names).
    """
    if isinstance(rows, pd.DataFrame):
        unknown = sorted(set(rows.columns) - set(EVENT_COLUMNS))
        if unknown:
            rej = [Rejection(i, f"unknown field(s) {unknown}") for i in range(len(rows))]
            return pd.DataFrame(columns=list(EVENT_COLUMNS)), rej
        frame = rows.reindex(columns=list(EVENT_COLUMNS)).reset_index(drop=True)
        rejected: list[Rejection] = []
    else:
        frame, rejected = _to_frame(rows, list(EVENT_COLUMNS))
    n = len(frame)
    if n == 0:
        return frame, rejected
    reasons: list[tuple[np.ndarray, str]] = []
    out = pd.DataFrame(index=frame.index)
    out["ts"], bad_ts = _parse_ts(frame["ts"])
    for name in ("unit_id", "name"):
        out[name], r = _string_col(frame[name], name, required=True)
        reasons += r
    value, r = _number_col(frame["value"], "value", non_negative=False)
    out["value"] = value.fillna(1.0)
    reasons += r
    for name in _STRINGS:
        out[name], r = _string_col(frame[name], name, required=False)
        reasons += r
    for name in _NON_NEGATIVE:
        out[name], r = _number_col(frame[name], name, non_negative=True)
        reasons += r
    for name in ("tokens_in", "tokens_out"):
        v = out[name].to_numpy()
        reasons.append((np.isfinite(v) & (np.mod(v, 1) != 0), f"{name} must be an integer"))
    props = frame["properties"]
    has_props = ~props.isna().to_numpy()
    if has_props.any():
        bad_props = has_props & ~props.map(lambda v: isinstance(v, Mapping)).to_numpy(dtype=bool)
        reasons.append((bad_props, "properties must be an object"))
        out["properties"] = props.map(lambda v: json.dumps(v, default=str) if isinstance(v, Mapping) else None)
    else:
        out["properties"] = pd.Series(None, index=frame.index, dtype=object)
    reasons.insert(0, (bad_ts, "ts must be an ISO-8601 time or epoch seconds"))
    if known_experiments is not None:
        exp = out["experiment"]
        has_exp = exp.notna().to_numpy()
        unknown_exp = has_exp & ~exp.isin(list(known_experiments)).to_numpy()
        reasons.append((unknown_exp, "unknown experiment"))
        var = out["variant"]
        bad_var = np.zeros(n, dtype=bool)
        for e in exp[has_exp & ~unknown_exp].unique():
            bad_var |= ((exp == e) & var.notna() & ~var.isin(list(known_experiments[e]))).to_numpy()
        reasons.append((bad_var, "variant is not one of the experiment's variants"))
        reasons.append((var.notna().to_numpy() & ~has_exp, "variant needs experiment"))
    keep, bad = _split(reasons, frame.index)
    rejected += bad
    rejected.sort(key=lambda r: r.index)
    valid = out[keep][list(EVENT_COLUMNS)]
    for name in ("tokens_in", "tokens_out"):
        valid[name] = valid[name].astype("Int64")
    return valid, rejected


def validate_exposures(rows: Iterable[Any] | pd.DataFrame, experiment: str,
                       variants: Sequence[str]) -> tuple[pd.DataFrame, list[Rejection]]:
    """Check exposures of one experiment: ``unit_id`` and ``variant`` (one of ``variants``) required, ``ts``
    optional (default now), ``attributes`` an optional object. Returns valid rows deduplicated inside the batch."""
    allowed = ["unit_id", "variant", "ts", "attributes", "experiment"]
    if isinstance(rows, pd.DataFrame):
        frame, rejected = rows.reindex(columns=allowed).reset_index(drop=True), []
    else:
        frame, rejected = _to_frame(rows, allowed)
    if len(frame) == 0:
        return pd.DataFrame(columns=list(EXPOSURE_COLUMNS)), rejected
    reasons: list[tuple[np.ndarray, str]] = []
    out = pd.DataFrame(index=frame.index)
    out["experiment"] = experiment
    out["unit_id"], r = _string_col(frame["unit_id"], "unit_id", required=True)
    reasons += r
    out["variant"], r = _string_col(frame["variant"], "variant", required=True)
    reasons += r
    reasons.append((out["variant"].notna().to_numpy() & ~out["variant"].isin(list(variants)).to_numpy(),
                    f"variant must be one of {', '.join(variants)}"))
    exp_col = frame["experiment"]
    reasons.append((exp_col.notna().to_numpy() & (exp_col != experiment).to_numpy(),
                    f"experiment must be {experiment!r} (or omitted)"))
    out["ts"], bad_ts = _parse_ts(frame["ts"])
    reasons.insert(0, (bad_ts, "ts must be an ISO-8601 time or epoch seconds"))
    attrs = frame["attributes"]
    reasons.append((~attrs.isna().to_numpy() & ~attrs.map(lambda v: isinstance(v, Mapping)).to_numpy(dtype=bool),
                    "attributes must be an object"))
    out["attributes"] = attrs.map(lambda v: json.dumps(v, default=str) if isinstance(v, Mapping) else None)
    keep, bad = _split(reasons, frame.index)
    rejected += bad
    rejected.sort(key=lambda r: r.index)
    valid = out[keep][list(EXPOSURE_COLUMNS)]
    return valid, rejected


def dedupe_exposures(valid: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Within one batch keep the first row per unit (its variant) with the unit's earliest timestamp."""
    if valid.empty:
        return valid, 0
    first = valid.drop_duplicates("unit_id", keep="first").set_index("unit_id")
    first["ts"] = valid.groupby("unit_id")["ts"].min()
    out = first.reset_index()[list(EXPOSURE_COLUMNS)]
    return out, len(valid) - len(out)
