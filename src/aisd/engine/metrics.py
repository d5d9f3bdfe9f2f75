"""Prometheus metrics of the serving engine, with vLLM's names under an ``aisd:`` prefix.

Names follow vLLM's v1 metrics (docs/design/metrics.md in the vLLM repository): request-level histograms
(``time_to_first_token_seconds``, ``inter_token_latency_seconds``, ``e2e_request_latency_seconds``,
``request_queue_time_seconds``), scheduler gauges (``num_requests_running`` / ``waiting``, ``kv_cache_usage_perc``)
and counters (``prompt_tokens``, ``generation_tokens``, ``prefix_cache_queries`` / ``hits`` in tokens,
``num_preemptions``, ``request_success``), all labelled with ``model_name``, so dashboards built for vLLM work after
replacing the prefix. Metric families live in prometheus_client's default REGISTRY (served at ``/metrics``) and are
created once per process: any number of engines share them through their ``model_name`` label.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

PREFIX = "aisd:"

# Bucket edges as in vLLM's v1 loggers, extended at the low end for a CPU engine's fast steps.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
               10.0, 20.0, 40.0, 80.0)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                   60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)

_lock = threading.Lock()
_families: dict[str, Any] = {}


def _family(kind: type, name: str, doc: str, **kwargs: Any) -> Any:
    """One metric family per process (prometheus_client refuses to register a name twice)."""
    full = PREFIX + name
    with _lock:
        if full not in _families:
            _families[full] = kind(full, doc, registry=REGISTRY, **kwargs)
        return _families[full]


def _families_for_engine() -> dict[str, Any]:
    labels = ["model_name"]
    return {
        "ttft": _family(Histogram, "time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                        labelnames=labels, buckets=TTFT_BUCKETS),
        "itl": _family(Histogram, "inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                       labelnames=labels, buckets=ITL_BUCKETS),
        "e2e": _family(Histogram, "e2e_request_latency_seconds",
                       "Histogram of end to end request latency in seconds.", labelnames=labels,
                       buckets=LATENCY_BUCKETS),
        "queue": _family(Histogram, "request_queue_time_seconds",
                         "Histogram of time spent in the WAITING phase for a request.", labelnames=labels,
                         buckets=LATENCY_BUCKETS),
        "running": _family(Gauge, "num_requests_running", "Number of requests in model execution batches.",
                           labelnames=labels, multiprocess_mode="livesum"),
        "waiting": _family(Gauge, "num_requests_waiting", "Number of requests waiting to be processed.",
                           labelnames=labels, multiprocess_mode="livesum"),
        "kv": _family(Gauge, "kv_cache_usage_perc", "KV-cache usage: the fraction of blocks in use (0 to 1).",
                      labelnames=labels, multiprocess_mode="livemostrecent"),
        "pc_queries": _family(Counter, "prefix_cache_queries",
                              "Prefix cache queries, in number of queried prompt tokens.", labelnames=labels),
        "pc_hits": _family(Counter, "prefix_cache_hits", "Prefix cache hits, in number of cached prompt tokens.",
                           labelnames=labels),
        "prompt": _family(Counter, "prompt_tokens", "Number of prefill tokens processed.", labelnames=labels),
        "generation": _family(Counter, "generation_tokens", "Number of generation tokens processed.",
                              labelnames=labels),
        "preemptions": _family(Counter, "num_preemptions", "Cumulative number of preemptions (recompute).",
                               labelnames=labels),
        "success": _family(Counter, "request_success", "Count of finished requests by finish reason.",
                           labelnames=["model_name", "finished_reason"]),
    }


@dataclass(frozen=True)
class _Totals:
    """Cumulative engine counters from the last ``EngineStats`` seen, to turn totals into counter increments."""

    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    num_preemptions: int = 0


def counter_increment(new: int, old: int) -> int:
    """Increment of a cumulative total; a total that went down means the engine restarted, so count it afresh."""
    return new - old if new >= old else new


class EngineMetrics:
    """The metric children of one served model; the async engine calls these from its engine thread."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        fam = _families_for_engine()
        self._fam = fam
        self.ttft = fam["ttft"].labels(model_name=model_name)
        self.itl = fam["itl"].labels(model_name=model_name)
        self.e2e = fam["e2e"].labels(model_name=model_name)
        self.queue = fam["queue"].labels(model_name=model_name)
        self.running = fam["running"].labels(model_name=model_name)
        self.waiting = fam["waiting"].labels(model_name=model_name)
        self.kv = fam["kv"].labels(model_name=model_name)
        self._counters = {key: fam[key].labels(model_name=model_name)
                          for key in ("pc_queries", "pc_hits", "prompt", "generation", "preemptions")}
        self._totals = _Totals()

    def record_stats(self, stats: Any) -> None:
        """Set the gauges and advance the counters from an ``EngineStats`` snapshot (cumulative totals)."""
        self.running.set(stats.num_running)
        self.waiting.set(stats.num_waiting)
        self.kv.set(float(stats.kv_cache_usage))
        new = _Totals(int(stats.prefix_cache_queries), int(stats.prefix_cache_hits), int(stats.prompt_tokens_total),
                      int(stats.generation_tokens_total), int(stats.num_preemptions))
        old = self._totals
        for key, attr in (("pc_queries", "prefix_cache_queries"), ("pc_hits", "prefix_cache_hits"),
                          ("prompt", "prompt_tokens"), ("generation", "generation_tokens"),
                          ("preemptions", "num_preemptions")):
            inc = counter_increment(getattr(new, attr), getattr(old, attr))
            if inc:
                self._counters[key].inc(inc)
        self._totals = new

    def observe_first_token(self, seconds: float) -> None:
        self.ttft.observe(max(seconds, 0.0))

    def observe_inter_token(self, seconds: float) -> None:
        self.itl.observe(max(seconds, 0.0))

    def observe_finished(self, e2e_seconds: float, queue_seconds: float | None, finish_reason: str) -> None:
        self.e2e.observe(max(e2e_seconds, 0.0))
        if queue_seconds is not None:
            self.queue.observe(max(queue_seconds, 0.0))
        self._fam["success"].labels(model_name=self.model_name, finished_reason=finish_reason).inc()


METRIC_NAMES = tuple(PREFIX + n for n in (
    "time_to_first_token_seconds", "inter_token_latency_seconds", "e2e_request_latency_seconds",
    "request_queue_time_seconds", "num_requests_running", "num_requests_waiting", "kv_cache_usage_perc",
    "prefix_cache_queries", "prefix_cache_hits", "prompt_tokens", "generation_tokens", "num_preemptions",
    "request_success"))
