"""Feature store: definitions (Feast's names), a SQLite registry, an offline store (Parquet/CSV + DuckDB) with
point-in-time joins, online stores (SQLite, Redis), checkpointed materialization, push and online serving.

    from aisd.features import Entity, Field, FileSource, FeatureView, FeatureStore, Float32, Int64
    store = FeatureStore("my_repo")
    store.apply([driver, driver_stats])
    train = store.get_historical_features(entity_df, ["driver_stats:conv_rate"]).to_df()
    store.materialize_incremental(end_date=datetime.now(UTC))
    store.get_online_features(["driver_stats:conv_rate"], [{"driver_id": 1001}]).to_dict()
"""

from __future__ import annotations

from aisd.features.dtypes import Array, Bool, Bytes, DType, Float32, Float64, Int32, Int64, String, UnixTimestamp
from aisd.features.materialize import ChunkInfo, MaterializeResult
from aisd.features.model import (
                                  Entity,
                                  FeatureService,
                                  FeatureView,
                                  FeatureViewProjection,
                                  Field,
                                  FileSource,
                                  OnDemandFeatureView,
                                  PushSource,
                                  RequestSource,
                                  on_demand_feature_view,
)
from aisd.features.offline import OfflineConfig
from aisd.features.push import PushMode, PushResult
from aisd.features.repo import ApplyPlan, load_repo
from aisd.features.retrieval import RetrievalJob
from aisd.features.serving import EXPIRED, NOT_FOUND, NULL_VALUE, PRESENT, OnlineResponse
from aisd.features.store import FeatureStore, FeatureStoreConfig

__all__ = [
    "EXPIRED", "NOT_FOUND", "NULL_VALUE", "PRESENT", "ApplyPlan", "Array", "Bool", "Bytes", "ChunkInfo", "DType",
    "Entity", "FeatureService", "FeatureStore", "FeatureStoreConfig", "FeatureView", "FeatureViewProjection", "Field",
    "FileSource", "Float32", "Float64", "Int32", "Int64", "MaterializeResult", "OfflineConfig", "OnDemandFeatureView",
    "OnlineResponse", "PushMode", "PushResult", "PushSource", "RequestSource", "RetrievalJob", "String",
    "UnixTimestamp", "load_repo", "on_demand_feature_view",
]
