"""Data sources of feature views (Feast's names): FileSource (Parquet / CSV), PushSource (streaming updates backed by
a batch source) and RequestSource (values that arrive with an online request), with their registry specs."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aisd.core.errors import CorruptDataError
from aisd.features.fields import Field
from aisd.features.fields import check_name as _check_name
from aisd.features.fields import freeze as _freeze


@dataclass(frozen=True)
class FileSource:
    """Parquet or CSV file(s) (a path, a folder or a glob) with an event-time column."""

    path: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_column: str = ""
    name: str = ""
    file_format: str = ""  # parquet | csv; "" infers from the path

    def __post_init__(self) -> None:
        _freeze(self, "path", str(self.path))
        fmt = self.file_format or ("csv" if self.path.lower().endswith((".csv", ".csv.gz")) else "parquet")
        if fmt not in ("parquet", "csv"):
            raise ValueError(f"file_format {self.file_format!r} is not supported; expected one of: parquet, csv")
        _freeze(self, "file_format", fmt)
        _freeze(self, "name", self.name or re.sub(r"\W", "_", self.path.rsplit("/", 1)[-1].split(".")[0]))
        if not self.timestamp_field:
            raise ValueError("FileSource.timestamp_field is required (the event-time column)")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "file", "path": self.path, "timestamp_field": self.timestamp_field, "name": self.name,
                "created_timestamp_column": self.created_timestamp_column, "file_format": self.file_format}


@dataclass(frozen=True)
class PushSource:
    """A named entry point for streaming updates (``FeatureStore.push``), backed by a batch source for history."""

    name: str
    batch_source: FileSource

    def __post_init__(self) -> None:
        _check_name("push source", self.name)
        if not isinstance(self.batch_source, FileSource):
            raise ValueError(f"push source {self.name!r}: batch_source must be a FileSource")

    @property
    def timestamp_field(self) -> str:
        return self.batch_source.timestamp_field

    def to_spec(self) -> dict[str, Any]:
        return {"type": "push", "name": self.name, "batch_source": self.batch_source.to_spec()}


@dataclass(frozen=True)
class RequestSource:
    """Values that arrive with the request (not stored), for on-demand views."""

    name: str
    schema: Sequence[Field]

    def __post_init__(self) -> None:
        _check_name("request source", self.name)
        _freeze(self, "schema", tuple(self.schema))
        if not self.schema:
            raise ValueError(f"request source {self.name!r}: schema must list at least one Field")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "request", "name": self.name, "schema": [f.to_spec() for f in self.schema]}


def source_from_spec(spec: Mapping[str, Any]) -> FileSource | PushSource | RequestSource:
    kind = spec["type"]
    if kind == "file":
        return FileSource(spec["path"], spec["timestamp_field"], spec.get("created_timestamp_column", ""),
                          spec.get("name", ""), spec.get("file_format", ""))
    if kind == "push":
        return PushSource(spec["name"], source_from_spec(spec["batch_source"]))  # type: ignore[arg-type]
    if kind == "request":
        return RequestSource(spec["name"], [Field.from_spec(f) for f in spec["schema"]])
    raise CorruptDataError(f"unknown source type {kind!r} in the registry")
