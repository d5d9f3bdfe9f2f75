"""Feature value types (Feast's ``feast.types`` names) and the checks that keep bad values out of the stores.

A ``DType`` knows how to coerce one Python value (``coerce``), which DuckDB column types can feed it
(``accepts_sql``) and its DuckDB spelling (``sql``). Coercion is strict: a string is never silently turned into an
int, a bool is not an int, a float with a fractional part is not an int - such values raise InvalidRequestError
naming the field, before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aisd.core.errors import InvalidRequestError

_INT_SQL = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_FLOAT_SQL = ("FLOAT", "DOUBLE", "REAL")


@dataclass(frozen=True)
class DType:
    """A feature or entity-key type: a scalar name, or ``array`` with an element type."""

    name: str
    element: DType | None = None

    def __post_init__(self) -> None:
        if self.name not in SCALARS and self.name != "array":
            raise ValueError(f"unknown dtype {self.name!r}; expected one of: {', '.join([*SCALARS, 'array'])}")
        if self.name == "array" and (self.element is None or self.element.name == "array"):
            raise ValueError("array dtype needs a scalar element type, e.g. Array(Float32)")

    def __str__(self) -> str:
        return f"array<{self.element}>" if self.element else self.name

    @property
    def sql(self) -> str:
        """DuckDB type name."""
        if self.element is not None:
            return f"{self.element.sql}[]"
        return SCALARS[self.name]

    def accepts_sql(self, sql_type: str) -> bool:
        """Whether a DuckDB column of ``sql_type`` can feed this dtype without losing meaning."""
        t = sql_type.upper()
        if self.element is not None:
            return t.endswith("[]") and self.element.accepts_sql(t[:-2])
        if self.name in ("int32", "int64"):
            return t in _INT_SQL
        if self.name in ("float32", "float64"):
            return t in _FLOAT_SQL or t in _INT_SQL or t.startswith("DECIMAL")
        if self.name == "string":
            return t == "VARCHAR"
        if self.name == "bool":
            return t == "BOOLEAN"
        if self.name == "bytes":
            return t == "BLOB"
        if self.name == "unix_timestamp":
            return t.startswith("TIMESTAMP") or t == "DATE"
        return False

    def coerce(self, value: Any, param: str) -> Any:
        """Return ``value`` as this type's JSON-friendly Python value; None stays None; else InvalidRequestError."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None  # pandas' missing value; JSON has no NaN
        if self.element is not None:
            if hasattr(value, "tolist"):
                value = value.tolist()
            if not isinstance(value, list | tuple):
                raise _mismatch(self, value, param)
            return [self.element.coerce(v, f"{param}[{i}]") for i, v in enumerate(value)]
        if hasattr(value, "item") and not isinstance(value, bytes | str):  # numpy scalar -> Python scalar
            value = value.item()
        return _COERCE[self.name](self, value, param)


def _mismatch(dtype: DType, value: Any, param: str) -> InvalidRequestError:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return InvalidRequestError(f"{param}: expected {dtype}, got {type(value).__name__} {shown}", param=param)


def _int(dtype: DType, v: Any, param: str) -> int:
    if isinstance(v, bool):
        raise _mismatch(dtype, v, param)
    if isinstance(v, int):
        out = v
    elif isinstance(v, float) and v.is_integer():
        out = int(v)  # pandas turns int columns with nulls into floats
    else:
        raise _mismatch(dtype, v, param)
    bits = 31 if dtype.name == "int32" else 63
    if not -(2**bits) <= out < 2**bits:
        raise InvalidRequestError(f"{param}: {out} does not fit in {dtype}", param=param)
    return out


def _float(dtype: DType, v: Any, param: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _mismatch(dtype, v, param)
    return float(v)


def _str(dtype: DType, v: Any, param: str) -> str:
    if not isinstance(v, str):
        raise _mismatch(dtype, v, param)
    return v


def _bool(dtype: DType, v: Any, param: str) -> bool:
    if not isinstance(v, bool):
        raise _mismatch(dtype, v, param)
    return v


def _bytes(dtype: DType, v: Any, param: str) -> str:
    if isinstance(v, bytes | bytearray):
        return bytes(v).hex()  # stored as hex so that every online store keeps plain JSON
    raise _mismatch(dtype, v, param)


def _ts(dtype: DType, v: Any, param: str) -> float:
    return to_epoch(v, param)


def to_epoch(v: Any, param: str) -> float:
    """Seconds since the Unix epoch (UTC) from a datetime (naive = UTC), a pandas Timestamp or a number."""
    if isinstance(v, bool):
        raise _mismatch(DType("unix_timestamp"), v, param)
    if isinstance(v, int | float):
        return float(v)
    if hasattr(v, "to_pydatetime"):
        v = v.to_pydatetime()
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        return v.timestamp()
    if isinstance(v, str):
        try:
            return to_epoch(datetime.fromisoformat(v.replace("Z", "+00:00")), param)
        except ValueError:
            pass
    raise _mismatch(DType("unix_timestamp"), v, param)


SCALARS = {"int32": "INTEGER", "int64": "BIGINT", "float32": "FLOAT", "float64": "DOUBLE", "string": "VARCHAR",
           "bool": "BOOLEAN", "bytes": "BLOB", "unix_timestamp": "TIMESTAMP"}
_COERCE = {"int32": _int, "int64": _int, "float32": _float, "float64": _float, "string": _str, "bool": _bool,
           "bytes": _bytes, "unix_timestamp": _ts}

Int32 = DType("int32")
Int64 = DType("int64")
Float32 = DType("float32")
Float64 = DType("float64")
String = DType("string")
Bool = DType("bool")
Bytes = DType("bytes")
UnixTimestamp = DType("unix_timestamp")


def Array(element: DType) -> DType:  # noqa: N802 - Feast's spelling
    """A list-valued feature, e.g. ``Array(Float32)`` for an embedding."""
    return DType("array", element)


def parse_dtype(text: str) -> DType:
    """Inverse of ``str(dtype)``: ``"int64"`` or ``"array<float32>"``."""
    text = text.strip().lower()
    if text.startswith("array<") and text.endswith(">"):
        return Array(parse_dtype(text[6:-1]))
    return DType(text)
