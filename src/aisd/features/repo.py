"""Feature repositories: load definitions from a folder of .py files, validate them, diff against the registry.

``load_repo(path)`` imports every .py file (hidden folders and ``__pycache__`` skipped; the folder is on sys.path
while loading so files can import each other) and collects the definitions found in module globals.
``plan_apply`` checks names, references, sources (files exist, columns exist, declared dtypes match the data) and
changes that would strand online data (a join key or a feature's dtype changing), then returns the diff and the
registry writes; nothing is written until the caller applies the plan.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisd.core.errors import ConflictError, InvalidRequestError, NotFoundError
from aisd.features.dtypes import SCALARS, DType
from aisd.features.model import (
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    OnDemandFeatureView,
    PushSource,
)
from aisd.features.offline import OfflineStore

Definition = Entity | FeatureView | OnDemandFeatureView | FeatureService | PushSource
_KIND = {Entity: "entity", FeatureView: "feature_view", OnDemandFeatureView: "on_demand_feature_view",
         FeatureService: "feature_service", PushSource: "push_source"}


def kind_of(obj: Any) -> str:
    for cls, kind in _KIND.items():
        if isinstance(obj, cls):
            return kind
    raise InvalidRequestError(f"{obj!r} is not a feature definition; expected one of: Entity, FeatureView, "
                              "OnDemandFeatureView, FeatureService, PushSource", param="objects")


@dataclass
class Definitions:
    """A consistent set of definitions, by kind and name."""

    entities: dict[str, Entity] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    odfvs: dict[str, OnDemandFeatureView] = field(default_factory=dict)
    services: dict[str, FeatureService] = field(default_factory=dict)
    push_sources: dict[str, PushSource] = field(default_factory=dict)

    def by_kind(self) -> dict[str, dict[str, Any]]:
        return {"entity": self.entities, "feature_view": self.views, "on_demand_feature_view": self.odfvs,
                "feature_service": self.services, "push_source": self.push_sources}

    def specs(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(k, n): o.to_spec() for k, objs in self.by_kind().items() for n, o in objs.items()}


@dataclass(frozen=True)
class DiffItem:
    kind: str
    name: str
    action: str  # create | update | delete | unchanged
    changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApplyPlan:
    items: tuple[DiffItem, ...]
    definitions: Definitions
    upserts: tuple[tuple[str, str, dict[str, Any]], ...]
    deletes: tuple[tuple[str, str], ...]
    drop_online: tuple[str, ...]  # views whose online rows must go (deleted, or keys/dtypes changed)

    @property
    def has_changes(self) -> bool:
        return any(i.action != "unchanged" for i in self.items)

    def to_text(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-", "unchanged": " "}
        lines = []
        for i in self.items:
            lines.append(f"{sign[i.action]} {i.kind} {i.name}" + (f" ({i.action})" if i.action != "unchanged" else ""))
            lines += [f"    {c}" for c in i.changes]
        return "\n".join(lines) if lines else "(no definitions)"


def load_repo(path: str | Path) -> list[Definition]:
    """Every definition found in the .py files under ``path``, each object once."""
    root = Path(path)
    if not root.is_dir():
        raise NotFoundError(f"feature repository {root} does not exist (create one with `aisd features init`)")
    found: dict[int, Definition] = {}
    sys.path.insert(0, str(root))
    try:
        for file in sorted(root.rglob("*.py")):
            rel = file.relative_to(root).parts
            if any(p.startswith(".") or p == "__pycache__" for p in rel):
                continue
            name = "aisd_feature_repo_" + "_".join(p.removesuffix(".py") for p in rel)
            spec = importlib.util.spec_from_file_location(name, file)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception as e:  # noqa: BLE001 - report which file is broken
                raise InvalidRequestError(f"{file}: {type(e).__name__}: {e}", param=str(file)) from e
            for obj in vars(module).values():
                if isinstance(obj, tuple(_KIND)):
                    found[id(obj)] = obj
    finally:
        sys.path.remove(str(root))
    return list(found.values())


def _sql_to_dtype(sql: str) -> DType:
    for name, spelled in SCALARS.items():
        if sql.upper() == spelled:
            return DType(name)
    if sql.upper() in ("INTEGER", "SMALLINT", "TINYINT"):
        return DType("int64")
    if sql.upper().startswith("TIMESTAMP"):
        return DType("unix_timestamp")
    raise InvalidRequestError(f"cannot use a column of type {sql} as an entity key", param="join_keys")


def _collect(objects: Iterable[Any]) -> Definitions:
    """Group objects by kind, pulling in entities and push sources that views reference; same name twice with
    different content is a conflict."""
    out = Definitions()
    pending = list(objects)
    for obj in list(pending):
        if isinstance(obj, FeatureView):
            pending += list(obj.entities)
            if isinstance(obj.source, PushSource):
                pending.append(obj.source)
    for obj in pending:
        kind = kind_of(obj)
        table = out.by_kind()[kind]
        if obj.name in table and table[obj.name].to_spec() != obj.to_spec():
            raise ConflictError(f"{kind} {obj.name!r} is defined twice with different content")
        table[obj.name] = obj
    both = set(out.views) & set(out.odfvs)
    if both:
        raise ConflictError(f"names used by both a feature view and an on-demand view: {sorted(both)}")
    return out


def _check_source(view: FeatureView, offline: OfflineStore, entities: dict[str, Entity]) -> None:
    src = view.batch_source
    try:
        cols = offline.describe(src)
    except NotFoundError:
        if isinstance(view.source, PushSource):
            return  # a push-fed view may start empty
        raise InvalidRequestError(f"feature view {view.name!r}: source file {src.path} not found",
                                  param=view.name) from None
    where = f"feature view {view.name!r} (source {src.path})"
    need = [src.timestamp_field] + ([src.created_timestamp_column] if src.created_timestamp_column else [])
    for c in need:
        if c not in cols:
            raise InvalidRequestError(f"{where}: timestamp column {c!r} not found; columns: {sorted(cols)}",
                                      param=f"{view.name}.{c}")
        if not (cols[c].startswith("TIMESTAMP") or cols[c] == "DATE"):
            raise InvalidRequestError(f"{where}: column {c!r} is {cols[c]}, expected a timestamp", param=c)
    declared = {f.name: f.dtype for f in view.schema}
    for k in view.join_keys:
        if k not in cols:
            raise InvalidRequestError(f"{where}: join key {k!r} not found; columns: {sorted(cols)}",
                                      param=f"{view.name}.{k}")
    for f in view.features:
        if f.name not in cols:
            raise InvalidRequestError(f"{where}: feature {f.name!r} not found; columns: {sorted(cols)}",
                                      param=f"{view.name}.{f.name}")
        if not f.dtype.accepts_sql(cols[f.name]):
            raise InvalidRequestError(f"{where}: feature {f.name!r} is declared {f.dtype} but the column is "
                                      f"{cols[f.name]}", param=f"{view.name}.{f.name}")
    for e in view.entities:  # settle each entity's key type once, from the declaration, the schema or the data
        current = entities[e.name]
        dtype = current.value_type or declared.get(e.join_key) or _sql_to_dtype(cols[e.join_key])
        if not dtype.accepts_sql(cols[e.join_key]):
            raise InvalidRequestError(f"{where}: join key {e.join_key!r} is {cols[e.join_key]}, entity "
                                      f"{e.name!r} expects {dtype}", param=f"{view.name}.{e.join_key}")
        if current.value_type is None:
            entities[e.name] = Entity(e.name, e.join_keys, dtype, e.description)


def _check_refs(defs: Definitions) -> None:
    def check_projection(owner: str, p: FeatureViewProjection) -> None:
        target = defs.views.get(p.view_name) or defs.odfvs.get(p.view_name)
        if target is None:
            raise NotFoundError(f"{owner}: feature view {p.view_name!r} is not defined")
        missing = [f for f in p.features if f not in target.feature_names]
        if missing:
            raise NotFoundError(f"{owner}: feature view {p.view_name!r} has no features {missing}")

    for o in defs.odfvs.values():
        for s in o.sources:
            if isinstance(s, FeatureView):
                check_projection(f"on-demand view {o.name!r}", FeatureViewProjection(s.name, tuple(s.feature_names)))
            elif isinstance(s, FeatureViewProjection):
                if s.view_name in defs.odfvs:
                    raise InvalidRequestError(f"on-demand view {o.name!r}: sources must be feature views, not "
                                              f"on-demand view {s.view_name!r}", param=o.name)
                check_projection(f"on-demand view {o.name!r}", s)
    for s in defs.services.values():
        for p in s.projections():
            check_projection(f"feature service {s.name!r}", p)


def plan_apply(current: Definitions, objects: Iterable[Any], offline: OfflineStore, *, partial: bool = True,
               objects_to_delete: Iterable[Any] = (), force: bool = False) -> ApplyPlan:
    """Validate ``objects`` against the data and ``current``; return the diff and the writes (nothing is written).

    ``partial=False`` (what ``aisd features apply`` does for a repository) deletes registered objects that are not
    in ``objects``.
    """
    incoming = _collect(objects)
    merged = Definitions(**{k: dict(v) for k, v in vars(current).items()}) if partial else Definitions()
    deletes: list[tuple[str, str]] = []
    for obj in objects_to_delete:
        kind = kind_of(obj)
        merged.by_kind()[kind].pop(obj.name, None)
    for kind, table in incoming.by_kind().items():
        merged.by_kind()[kind].update(table)
    for e in incoming.entities.values():
        if e.value_type is None and e.name in current.entities:  # keep the type settled at an earlier apply
            merged.entities[e.name] = Entity(e.name, e.join_keys, current.entities[e.name].value_type, e.description)
    for view in merged.views.values():
        if view.name in incoming.views:
            _check_source(view, offline, merged.entities)
    _check_refs(merged)

    drop: list[str] = []
    items: list[DiffItem] = []
    old_specs, new_specs = current.specs(), merged.specs()
    for key in sorted(set(old_specs) | set(new_specs)):
        kind, name = key
        old, new = old_specs.get(key), new_specs.get(key)
        if old is None:
            items.append(DiffItem(kind, name, "create"))
        elif new is None:
            deletes.append(key)
            items.append(DiffItem(kind, name, "delete"))
            if kind == "feature_view":
                drop.append(name)
        elif old == new:
            items.append(DiffItem(kind, name, "unchanged"))
        else:
            changes = tuple(f"{f}: {old.get(f)!r} -> {new.get(f)!r}" for f in sorted(set(old) | set(new))
                            if old.get(f) != new.get(f))
            items.append(DiffItem(kind, name, "update", changes))
            if kind == "feature_view" and _strands_online(current.views[name], merged.views[name]):
                if not force:
                    raise ConflictError(f"feature view {name!r}: join keys or feature types change, so its online "
                                        "data would no longer match; apply with force to drop its online data")
                drop.append(name)
    upserts = tuple((k, n, s) for (k, n), s in sorted(new_specs.items()) if old_specs.get((k, n)) != s)
    return ApplyPlan(tuple(items), merged, upserts, tuple(deletes), tuple(drop))


def _strands_online(old: FeatureView, new: FeatureView) -> bool:
    if old.join_keys != new.join_keys:
        return True
    old_types = {f.name: f.dtype for f in old.features}
    return any(f.name in old_types and old_types[f.name] != f.dtype for f in new.features)
