"""aisd.vector: an embedded vector database on FAISS with payload filters, a WAL, snapshots and an index advisor.

    from aisd.vector import VectorStore
    store = VectorStore(path)                                   # opens or creates; recovers from the WAL
    col = store.create_collection("docs", dim=384, metric="cosine", index="auto")
    col.upsert(ids, vectors, payloads)                          # durable under the fsync policy when it returns
    hits = col.search(vector, k=10, filter={"lang": "en"})      # hits with .id .score .payload
    col.delete(ids); col.count(); store.close()

See docs/vector.md.
"""

from aisd.vector.advisor import Advice, advise, estimate_index_bytes, estimate_total_bytes
from aisd.vector.base import (
                              METRICS,
                              CollectionConfig,
                              CollectionInfo,
                              CompactionReport,
                              DeleteResult,
                              Hit,
                              HitArrays,
                              Point,
                              ScrollPage,
                              UpsertResult,
)
from aisd.vector.collection import Collection
from aisd.vector.filters import Filter, parse_filter
from aisd.vector.indexes import IndexSpec
from aisd.vector.planner import PlannerConfig, QueryPlan
from aisd.vector.store import VectorStore

INDEX_KINDS = ("auto", "flat", "hnsw", "ivf", "pq", "ivfpq", "sq8")

__all__ = ["Advice", "Collection", "CollectionConfig", "CollectionInfo", "CompactionReport", "DeleteResult", "Filter",
           "Hit", "HitArrays", "INDEX_KINDS", "IndexSpec", "METRICS", "PlannerConfig", "Point", "QueryPlan", "ScrollPage",
           "UpsertResult", "VectorStore", "advise", "estimate_index_bytes", "estimate_total_bytes", "parse_filter"]
