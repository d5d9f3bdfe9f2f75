"""``FeatureStore(repo_path)``: the one object users touch, with Feast's method names.

The repository folder holds definition files (*.py) and, under ``.aisd/``, the registry (registry.db), the SQLite
online store (online.db), pushed offline rows and DuckDB's spill directory. Nothing is opened until first use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aisd.core.clock import Clock, SystemClock
from aisd.core.errors import InvalidRequestError, NotFoundError
from aisd.features.dtypes import to_epoch
from aisd.features.materialize import ChunkInfo, MaterializeResult, materialize_view
from aisd.features.model import Entity, FeatureService, FeatureView, OnDemandFeatureView, PushSource
from aisd.features.offline import OfflineConfig, OfflineStore
from aisd.features.online import OnlineStore, create_online_store
from aisd.features.push import PushMode, PushResult
from aisd.features.push import push as push_rows
from aisd.features.registry import Registry
from aisd.features.repo import ApplyPlan, Definitions, load_repo, plan_apply
from aisd.features.retrieval import RetrievalJob, entity_input, view_requests
from aisd.features.serving import FeaturePlan, OnlineResponse, build_plan, parse_refs, read_online


@dataclass(frozen=True)
class FeatureStoreConfig:
    online_store: str = "sqlite"  # sqlite | redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "aisd"
    offline: OfflineConfig = OfflineConfig()
    materialize_chunk_rows: int = 200_000
    registry_refresh_seconds: float = 1.0  # how often a long-lived store checks for a newer apply

    def __post_init__(self) -> None:
        if self.online_store not in ("sqlite", "redis"):
            raise ValueError(f"online_store {self.online_store!r}; expected one of: sqlite, redis")
        if self.materialize_chunk_rows < 1:
            raise ValueError("materialize_chunk_rows must be >= 1")


class FeatureStore:
    def __init__(self, repo_path: str | Path = ".", config: FeatureStoreConfig | None = None, *,
                 online_store: OnlineStore | None = None, clock: Clock | None = None) -> None:
        self.repo_path = Path(repo_path)
        self.config = config or FeatureStoreConfig()
        self.clock = clock or SystemClock()
        self._online = online_store
        self._registry: Registry | None = None
        self._defs: Definitions | None = None
        self._defs_version = -1
        self._checked_at = 0.0
        self._plans: dict[Any, FeaturePlan] = {}
        self._known_keys: tuple[Any, set[str]] = (None, set())  # (definitions, join keys and request fields)
        self._lock = threading.RLock()
        self.offline = OfflineStore(self.repo_path, self.config.offline)

    # ---- plumbing -------------------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.repo_path / ".aisd"

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            with self._lock:
                if self._registry is None:
                    self._registry = Registry(self.data_dir / "registry.db")
        return self._registry

    @property
    def online_store(self) -> OnlineStore:
        if self._online is None:
            with self._lock:
                if self._online is None:
                    self._online = create_online_store(
                        self.config.online_store, path=self.data_dir / "online.db", redis_url=self.config.redis_url,
                        **({"prefix": self.config.redis_prefix} if self.config.online_store == "redis" else {}))
        return self._online

    def close(self) -> None:
        self.offline.close()
        if self._online is not None:
            self._online.close()
        if self._registry is not None:
            self._registry.close()

    def definitions(self) -> Definitions:
        """The applied definitions, rebuilt when another process applies (checked every refresh interval)."""
        now = time.monotonic()
        if self._defs is not None and now - self._checked_at < self.config.registry_refresh_seconds:
            return self._defs
        with self._lock:
            version = self.registry.version
            self._checked_at = now
            if self._defs is None or version != self._defs_version:
                self._defs = _load_definitions(self.registry)
                self._defs_version = version
                self._plans.clear()
        return self._defs

    # ---- definitions ----------------------------------------------------------------------------------------------
    def plan(self, objects: Iterable[Any], *, partial: bool = True, objects_to_delete: Iterable[Any] = (),
             force: bool = False) -> ApplyPlan:
        """What ``apply`` would change (the diff), after validating everything; writes nothing."""
        self._checked_at = 0.0
        return plan_apply(self.definitions(), list(objects), self.offline, partial=partial,
                          objects_to_delete=objects_to_delete, force=force)

    def apply(self, objects: Any, *, partial: bool = True, objects_to_delete: Iterable[Any] = (),
              force: bool = False) -> ApplyPlan:
        """Register definitions (one object or a list); invalid or conflicting ones raise and nothing is written."""
        objs = list(objects) if isinstance(objects, list | tuple | set) else [objects]
        plan = self.plan(objs, partial=partial, objects_to_delete=objects_to_delete, force=force)
        if plan.has_changes:
            for view in plan.drop_online:
                self.online_store.delete_view(view)
            self.registry.apply(plan.upserts, plan.deletes)
            self._checked_at = 0.0
        return plan

    def plan_repo(self, force: bool = False) -> ApplyPlan:
        return self.plan(load_repo(self.repo_path), partial=False, force=force)

    def apply_repo(self, force: bool = False) -> ApplyPlan:
        """``aisd features apply``: the repository's .py files become the registry (objects not in them are removed)."""
        return self.apply(load_repo(self.repo_path), partial=False, force=force)

    def list_entities(self) -> list[Entity]:
        return list(self.definitions().entities.values())

    def list_feature_views(self) -> list[FeatureView]:
        return list(self.definitions().views.values())

    def list_on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return list(self.definitions().odfvs.values())

    def list_feature_services(self) -> list[FeatureService]:
        return list(self.definitions().services.values())

    def list_push_sources(self) -> list[PushSource]:
        return list(self.definitions().push_sources.values())

    def get_feature_view(self, name: str) -> FeatureView:
        try:
            return self.definitions().views[name]
        except KeyError:
            raise NotFoundError(f"feature view {name!r} is not defined", param="name") from None

    def get_feature_service(self, name: str) -> FeatureService:
        try:
            return self.definitions().services[name]
        except KeyError:
            raise NotFoundError(f"feature service {name!r} is not defined; known: "
                                f"{sorted(self.definitions().services)}", param="feature_service") from None

    def _plan(self, features: Sequence[str] | FeatureService, full_feature_names: bool) -> FeaturePlan:
        defs = self.definitions()
        key = (features.name if isinstance(features, FeatureService) else tuple(features), full_feature_names)
        plan = self._plans.get(key)
        if plan is None:
            plan = build_plan(defs, parse_refs(features), full_feature_names)
            self._plans[key] = plan
        return plan

    # ---- serving --------------------------------------------------------------------------------------------------
    def get_online_features(self, features: Sequence[str] | FeatureService,
                            entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
                            full_feature_names: bool = False) -> OnlineResponse:
        """Latest values per entity row; values older than a view's ttl come back null with status EXPIRED."""
        defs = self.definitions()
        plan = self._plan(features, full_feature_names)
        cached_defs, known = self._known_keys
        if cached_defs is not defs:  # once per definitions version, not per call
            known = {e.join_key for e in defs.entities.values()}
            known |= {f.name for o in defs.odfvs.values() for rs in o.request_sources for f in rs.schema}
            self._known_keys = (defs, known)
        return read_online(plan, defs, self.online_store, entity_rows, self.clock.now().timestamp(), known)

    def get_historical_features(self, entity_df: Any, features: Sequence[str] | FeatureService,
                                full_feature_names: bool = False, *, exclude_late: bool = False,
                                timestamp_column: str | None = None) -> RetrievalJob:
        """Point-in-time correct features for each row of ``entity_df`` (a DataFrame, Arrow table or Parquet path).

        ``exclude_late=True`` ignores rows created after the entity row's time (late corrections).
        """
        plan = self._plan(features, full_feature_names)
        entity = entity_input(entity_df, self.offline, timestamp_column)
        clash = sorted(set(entity.columns) & {o for _, o in plan.outputs})
        if clash:
            raise InvalidRequestError(f"entity_df columns {clash} clash with feature names; use "
                                      "full_feature_names=True or rename them", param="entity_df")
        return RetrievalJob(self.offline, entity, plan, view_requests(self.offline, plan, entity), exclude_late)

    # ---- materialization ------------------------------------------------------------------------------------------
    def _online_views(self, names: Sequence[str] | None) -> list[FeatureView]:
        defs = self.definitions()
        if names is None:
            return [v for v in defs.views.values() if v.online]
        missing = [n for n in names if n not in defs.views]
        if missing:
            raise NotFoundError(f"feature views {missing} are not defined", param="feature_views")
        return [defs.views[n] for n in names]

    def materialize(self, start_date: datetime | float, end_date: datetime | float,
                    feature_views: Sequence[str] | None = None, *,
                    on_chunk: Callable[[ChunkInfo], None] | None = None) -> list[MaterializeResult]:
        """Load each view's latest values with event time in [start, end) into the online store, in checkpointed
        chunks; calling it again after a crash resumes where the killed run stopped."""
        start, end = to_epoch(start_date, "start_date"), to_epoch(end_date, "end_date")
        if end <= start:
            raise InvalidRequestError("end_date must be after start_date", param="end_date")
        return [r for v in self._online_views(feature_views)
                if (r := self._materialize_one(v, start, end, on_chunk)) is not None]

    def _materialize_one(self, view: FeatureView, start: float, end: float,
                         on_chunk: Callable[[ChunkInfo], None] | None) -> MaterializeResult | None:
        try:
            return materialize_view(self.offline, self.online_store, self.registry, view, start, end,
                                    chunk_rows=self.config.materialize_chunk_rows, on_chunk=on_chunk)
        except NotFoundError:
            if isinstance(view.source, PushSource):  # a push-fed view with no batch data yet: nothing to copy
                return None
            raise

    def materialize_incremental(self, end_date: datetime | float | None = None,
                                feature_views: Sequence[str] | None = None, *,
                                on_chunk: Callable[[ChunkInfo], None] | None = None) -> list[MaterializeResult]:
        """From where each view was last materialized (or end - ttl, or its first row) up to ``end_date`` (now)."""
        end = to_epoch(end_date if end_date is not None else self.clock.now(), "end_date")
        out = []
        for v in self._online_views(feature_views):
            start = self.registry.materialized_until(v.name)
            if start is None:
                try:
                    start = end - v.ttl_seconds if v.ttl_seconds else self.offline.time_range(v)[0]
                except NotFoundError:
                    if not isinstance(v.source, PushSource):
                        raise
                    continue
            if start is None or start >= end:
                continue
            result = self._materialize_one(v, start, end, on_chunk)
            if result is not None:
                out.append(result)
        return out

    # ---- push -----------------------------------------------------------------------------------------------------
    def push(self, push_source_name: str, df: Any, to: PushMode | str = PushMode.ONLINE) -> PushResult:
        """Write rows to every feature view fed by the push source; validated in full before anything is written."""
        defs = self.definitions()
        source = defs.push_sources.get(push_source_name)
        if source is None:
            raise NotFoundError(f"push source {push_source_name!r} is not defined; known: {sorted(defs.push_sources)}",
                                param="push_source_name")
        try:
            mode = PushMode(to)
        except ValueError:
            raise InvalidRequestError(f"to={to!r}; expected one of: online, offline, online_and_offline",
                                      param="to") from None
        views = [v for v in defs.views.values() if isinstance(v.source, PushSource) and v.source.name == source.name]
        if not views:
            raise NotFoundError(f"no feature view reads push source {push_source_name!r}", param="push_source_name")
        types = {e.join_key: defs.entities[e.name].value_type for v in views for e in v.entities}
        online = self.online_store if mode in (PushMode.ONLINE, PushMode.ONLINE_AND_OFFLINE) else None
        offline_dir = self.offline.push_dir if mode in (PushMode.OFFLINE, PushMode.ONLINE_AND_OFFLINE) else None
        return push_rows(source, views, types, df, online, offline_dir, self.clock.now().timestamp())


def _load_definitions(registry: Registry) -> Definitions:
    from aisd.features.model import source_from_spec

    d = Definitions()
    for o in registry.list("entity"):
        d.entities[o.name] = Entity.from_spec(o.spec)
    for o in registry.list("push_source"):
        d.push_sources[o.name] = source_from_spec(o.spec)  # type: ignore[assignment]
    for o in registry.list("feature_view"):
        d.views[o.name] = FeatureView.from_spec(o.spec, d.entities)
    for o in registry.list("on_demand_feature_view"):
        d.odfvs[o.name] = OnDemandFeatureView.from_spec(o.spec)
    for o in registry.list("feature_service"):
        d.services[o.name] = FeatureService.from_spec(o.spec)
    return d
