"""Names and typed fields shared by every definition: ``Field(name, dtype)`` and the name check."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aisd.features.dtypes import DType, parse_dtype

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{kind} name {name!r} is invalid: use letters, digits and '_', not starting with a digit")


def freeze(obj: Any, attr: str, value: Any) -> None:
    object.__setattr__(obj, attr, value)


@dataclass(frozen=True)
class Field:
    """One typed column: a feature, or a request-data field."""

    name: str
    dtype: DType
    description: str = ""

    def __post_init__(self) -> None:
        check_name("field", self.name)
        if not isinstance(self.dtype, DType):
            raise ValueError(f"field {self.name!r}: dtype must be a DType such as Int64 or Float32, got {self.dtype!r}")

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": str(self.dtype), "description": self.description}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Field:
        return cls(spec["name"], parse_dtype(spec["dtype"]), spec.get("description", ""))
