"""Feature definitions, with Feast's names: Entity, Field, FileSource, PushSource, RequestSource, FeatureView,
OnDemandFeatureView (and the ``on_demand_feature_view`` decorator) and FeatureService.

Every definition is a frozen dataclass validated in ``__post_init__`` and round-trips through a JSON spec
(``to_spec`` / ``from_spec``) so the registry can store it. An on-demand view's function is stored as its source
text (like Feast's ``udf_string``), so it must be self-contained: it may use ``pd``, ``np`` and ``math``.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aisd.core.errors import CorruptDataError
from aisd.features.dtypes import DType, parse_dtype
from aisd.features.fields import Field
from aisd.features.fields import check_name as _check_name
from aisd.features.fields import freeze as _freeze
from aisd.features.sources import FileSource, PushSource, RequestSource, source_from_spec


@dataclass(frozen=True)
class Entity:
    """What features are about (a driver, a user); ``join_keys`` names its key column (one, as in Feast)."""

    name: str
    join_keys: Sequence[str] = ()
    value_type: DType | None = None  # None: taken from the views' schema or the source data at apply time
    description: str = ""

    def __post_init__(self) -> None:
        _check_name("entity", self.name)
        keys = tuple(self.join_keys) or (self.name,)
        if len(keys) != 1:
            raise ValueError(f"entity {self.name!r}: exactly one join key is supported, got {list(keys)}; "
                             "use one entity per key column for composite keys")
        _check_name("join key", keys[0])
        _freeze(self, "join_keys", keys)

    @property
    def join_key(self) -> str:
        return self.join_keys[0]

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "join_keys": list(self.join_keys), "description": self.description,
                "value_type": str(self.value_type) if self.value_type else None}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Entity:
        vt = spec.get("value_type")
        return cls(spec["name"], spec["join_keys"], parse_dtype(vt) if vt else None, spec.get("description", ""))


@dataclass(frozen=True)
class FeatureViewProjection:
    """A subset of a view's features (``view[["a", "b"]]``), used in feature services and on-demand sources."""

    view_name: str
    features: tuple[str, ...]


@dataclass(frozen=True)
class FeatureView:
    """Features of one or more entities read from a source; ``ttl`` bounds how old a value may be when served."""

    name: str
    entities: Sequence[Entity]
    schema: Sequence[Field]
    source: FileSource | PushSource
    ttl: timedelta | None = None  # None or 0: values never expire
    online: bool = True
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name("feature view", self.name)
        _freeze(self, "entities", tuple(self.entities))
        _freeze(self, "schema", tuple(self.schema))
        _freeze(self, "tags", dict(self.tags))
        if not self.entities or not all(isinstance(e, Entity) for e in self.entities):
            raise ValueError(f"feature view {self.name!r}: entities must be a non-empty list of Entity")
        if not isinstance(self.source, FileSource | PushSource):
            raise ValueError(f"feature view {self.name!r}: source must be a FileSource or PushSource")
        if self.ttl is not None and (not isinstance(self.ttl, timedelta) or self.ttl < timedelta(0)):
            raise ValueError(f"feature view {self.name!r}: ttl must be a non-negative timedelta or None")
        names = [f.name for f in self.schema]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"feature view {self.name!r}: duplicate fields {dup}")
        if not self.features:
            raise ValueError(f"feature view {self.name!r}: schema has no features besides the join keys")

    @property
    def join_keys(self) -> list[str]:
        return [e.join_key for e in self.entities]

    @property
    def features(self) -> list[Field]:
        keys = set(self.join_keys)
        return [f for f in self.schema if f.name not in keys]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def ttl_seconds(self) -> float | None:
        return self.ttl.total_seconds() if self.ttl else None

    @property
    def batch_source(self) -> FileSource:
        return self.source.batch_source if isinstance(self.source, PushSource) else self.source

    def __getitem__(self, features: Sequence[str]) -> FeatureViewProjection:
        unknown = [f for f in features if f not in self.feature_names]
        if unknown:
            raise ValueError(f"feature view {self.name!r} has no features {unknown}")
        return FeatureViewProjection(self.name, tuple(features))

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "entities": [e.name for e in self.entities],
                "schema": [f.to_spec() for f in self.schema], "source": self.source.to_spec(),
                "ttl_seconds": self.ttl_seconds, "online": self.online, "description": self.description,
                "tags": dict(self.tags)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], entities: Mapping[str, Entity]) -> FeatureView:
        ttl = spec.get("ttl_seconds")
        return cls(spec["name"], [entities[n] for n in spec["entities"]], [Field.from_spec(f) for f in spec["schema"]],
                   source_from_spec(spec["source"]), timedelta(seconds=ttl) if ttl else None,  # type: ignore[arg-type]
                   spec.get("online", True), spec.get("description", ""), spec.get("tags", {}))


OdfvSource = FeatureView | FeatureViewProjection | RequestSource


def _udf_source(fn: Callable[..., Any]) -> str:
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as e:
        raise ValueError(f"on-demand view function {getattr(fn, '__name__', fn)!r}: its source is not available "
                         "(define it with def in a .py file)") from e
    lines = src.splitlines()
    while lines and not lines[0].lstrip().startswith("def "):  # drop decorators, which may span lines
        lines.pop(0)
    return "\n".join(lines) + "\n"


def compile_udf(name: str, source: str) -> Callable[..., Any]:
    """Rebuild an on-demand view's function from its stored source text."""
    import math

    import numpy as np
    import pandas as pd

    namespace: dict[str, Any] = {"pd": pd, "pandas": pd, "np": np, "numpy": np, "math": math}
    try:
        exec(compile(source, f"<on_demand_feature_view {name}>", "exec"), namespace)  # noqa: S102 - the repo's code
    except Exception as e:  # noqa: BLE001
        raise CorruptDataError(f"on-demand view {name!r}: stored function does not compile: {e}") from e
    fns = [v for k, v in namespace.items() if callable(v) and getattr(v, "__code__", None)
           and v.__code__.co_filename.startswith("<on_demand")]
    if len(fns) != 1:
        raise CorruptDataError(f"on-demand view {name!r}: stored source must define exactly one function")
    return fns[0]


@dataclass(frozen=True)
class OnDemandFeatureView:
    """Features computed at request time by ``udf(pandas.DataFrame) -> pandas.DataFrame`` from other views'
    features (columns named by feature) and request data."""

    name: str
    sources: Sequence[OdfvSource]
    schema: Sequence[Field]
    udf: Callable[[Any], Any]
    udf_source: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        _check_name("on-demand feature view", self.name)
        _freeze(self, "sources", tuple(self.sources))
        _freeze(self, "schema", tuple(self.schema))
        if not self.sources or not all(isinstance(s, FeatureView | FeatureViewProjection | RequestSource)
                                       for s in self.sources):
            raise ValueError(f"on-demand view {self.name!r}: sources must be FeatureViews, projections or "
                             "RequestSources")
        if not self.schema:
            raise ValueError(f"on-demand view {self.name!r}: schema must list the output features")
        if not callable(self.udf):
            raise ValueError(f"on-demand view {self.name!r}: udf must be callable")
        if not self.udf_source:
            _freeze(self, "udf_source", _udf_source(self.udf))

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.schema]

    @property
    def request_sources(self) -> list[RequestSource]:
        return [s for s in self.sources if isinstance(s, RequestSource)]

    def input_refs(self) -> list[tuple[str, str]]:
        """(view, feature) pairs this view reads."""
        out: list[tuple[str, str]] = []
        for s in self.sources:
            if isinstance(s, FeatureView):
                out += [(s.name, f) for f in s.feature_names]
            elif isinstance(s, FeatureViewProjection):
                out += [(s.view_name, f) for f in s.features]
        return out

    def __getitem__(self, features: Sequence[str]) -> FeatureViewProjection:
        unknown = [f for f in features if f not in self.feature_names]
        if unknown:
            raise ValueError(f"on-demand view {self.name!r} has no features {unknown}")
        return FeatureViewProjection(self.name, tuple(features))

    def to_spec(self) -> dict[str, Any]:
        sources: list[dict[str, Any]] = []
        for s in self.sources:
            if isinstance(s, FeatureView):
                sources.append({"type": "view", "name": s.name, "features": s.feature_names})
            elif isinstance(s, FeatureViewProjection):
                sources.append({"type": "view", "name": s.view_name, "features": list(s.features)})
            else:
                sources.append(s.to_spec())
        return {"name": self.name, "sources": sources, "schema": [f.to_spec() for f in self.schema],
                "udf_source": self.udf_source, "description": self.description}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> OnDemandFeatureView:
        sources: list[OdfvSource] = []
        for s in spec["sources"]:
            if s["type"] == "view":
                sources.append(FeatureViewProjection(s["name"], tuple(s["features"])))
            else:
                sources.append(source_from_spec(s))  # type: ignore[arg-type]
        return cls(spec["name"], sources, [Field.from_spec(f) for f in spec["schema"]],
                   compile_udf(spec["name"], spec["udf_source"]), spec["udf_source"], spec.get("description", ""))


def on_demand_feature_view(*, sources: Sequence[OdfvSource], schema: Sequence[Field], name: str = "",
                           description: str = "", mode: str = "pandas") -> Callable[[Callable[..., Any]],
                                                                                   OnDemandFeatureView]:
    """Decorator (Feast's spelling): ``@on_demand_feature_view(sources=[...], schema=[...])`` over a function
    taking and returning a pandas DataFrame."""
    if mode != "pandas":
        raise ValueError(f"mode {mode!r} is not supported; expected one of: pandas")

    def wrap(fn: Callable[..., Any]) -> OnDemandFeatureView:
        return OnDemandFeatureView(name or fn.__name__, sources, schema, fn, _udf_source(fn), description)

    return wrap


@dataclass(frozen=True)
class FeatureService:
    """A named group of features (what one model consumes)."""

    name: str
    features: Sequence[FeatureView | OnDemandFeatureView | FeatureViewProjection]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name("feature service", self.name)
        _freeze(self, "features", tuple(self.features))
        if not self.features:
            raise ValueError(f"feature service {self.name!r}: features must not be empty")

    def projections(self) -> list[FeatureViewProjection]:
        out = []
        for f in self.features:
            if isinstance(f, FeatureViewProjection):
                out.append(f)
            elif isinstance(f, FeatureView | OnDemandFeatureView):
                out.append(FeatureViewProjection(f.name, tuple(f.feature_names)))
            else:
                raise ValueError(f"feature service {self.name!r}: {f!r} is not a view or projection")
        return out

    def feature_refs(self) -> list[str]:
        return [f"{p.view_name}:{name}" for p in self.projections() for name in p.features]

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "features": [{"view": p.view_name, "features": list(p.features)} for p in self.projections()]}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureService:
        return cls(spec["name"], [FeatureViewProjection(p["view"], tuple(p["features"])) for p in spec["features"]],
                   spec.get("description", ""))


Definition = Entity | FeatureView | OnDemandFeatureView | FeatureService | PushSource
