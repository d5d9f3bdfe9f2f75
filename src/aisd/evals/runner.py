"""A grid runner for retrieval evaluation: named configurations, each built once, then every query searched and
timed, then scored with aisd.evals.retrieval_metrics.

The runner knows nothing about how a configuration retrieves (evals never imports rag): a factory builds the system
(indexing the corpus - timed as ``build_s``) and returns a search function ``(query, k) -> doc ids best first``.
Chunk-level systems map chunks to documents before returning (``dedupe`` keeps each document at its best rank).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from aisd.core.progress import progress
from aisd.evals.beir import BeirDataset
from aisd.evals.retrieval_metrics import evaluate

SearchFn = Callable[[str, int], Sequence[str]]
Factory = Callable[[], SearchFn]


@dataclass(frozen=True)
class ConfigResult:
    """One configuration's scores: mean metrics, per-query latency percentiles (ms), indexing time (s)."""

    config: str
    metrics: dict[str, float]
    latency_ms_p50: float
    latency_ms_p99: float
    latency_ms_mean: float
    build_s: float
    num_queries: int
    per_query: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)

    def row(self) -> dict[str, float | str | int]:
        """The flat record written to JSON: config, metrics, latency, build time, query count."""
        return {"config": self.config, **{k: round(v, 6) for k, v in self.metrics.items()},
                "latency_ms_p50": round(self.latency_ms_p50, 3), "latency_ms_p99": round(self.latency_ms_p99, 3),
                "latency_ms_mean": round(self.latency_ms_mean, 3), "build_s": round(self.build_s, 3),
                "num_queries": self.num_queries}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation (numpy's default, Hyndman & Fan 1996 type 7)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else 0.0


def dedupe(ids: Iterable[str]) -> list[str]:
    """Keep each id at its first (best) position: chunk hits -> document ranking (max-pooling over chunks)."""
    seen: set[str] = set()
    out = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def run_config(name: str, factory: Factory, dataset: BeirDataset, *, k_values: Sequence[int] = (10, 100),
               depth: int | None = None) -> ConfigResult:
    """Build one configuration, search every query at ``depth`` (default: the largest k), score it."""
    depth = depth or max(k_values)
    t0 = time.perf_counter()
    search = factory()
    build_s = time.perf_counter() - t0
    run: dict[str, list[str]] = {}
    latencies: list[float] = []
    for qid, text in progress(list(dataset.queries.items()), desc=f"{name}: {len(dataset.queries)} queries"):
        t = time.perf_counter()
        ids = list(search(text, depth))
        latencies.append((time.perf_counter() - t) * 1000.0)
        run[qid] = dedupe(ids)[:depth]
    result = evaluate(run, dataset.qrels, k_values)
    return ConfigResult(name, result.mean, percentile(latencies, 50), percentile(latencies, 99),
                        float(np.mean(latencies)) if latencies else 0.0, build_s, result.num_queries,
                        result.per_query)


def run_grid(configs: Mapping[str, Factory], dataset: BeirDataset, *, k_values: Sequence[int] = (10, 100),
             depth: int | None = None, on_result: Callable[[ConfigResult], None] | None = None) -> list[ConfigResult]:
    """Every configuration in order; ``on_result`` sees each result as soon as it is ready."""
    if not configs:
        raise ValueError("no configurations to run")
    results = []
    for name, factory in configs.items():
        r = run_config(name, factory, dataset, k_values=k_values, depth=depth)
        results.append(r)
        if on_result is not None:
            on_result(r)
    return results
