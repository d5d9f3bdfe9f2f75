"""The filtered-search planner: exact scan of the filtered subset, in-index filtering, or post-filtering.

Inputs are exact: payload indexes (or a scan) give the candidate mask, so selectivity = candidates / live points is
measured, not guessed. The choice follows the cost of each route (Qdrant's query planner makes the same three-way
choice from cardinality estimates; Weaviate and Milvus switch between pre- and post-filtering the same way):

* few candidates (<= ``exact_max_candidates``): brute force over just those vectors - exact and cheaper than a graph
  walk that has to skip almost every node (this is where HNSW's recall collapses under filters);
* high selectivity (>= ``post_filter_min_selectivity``): an ordinary ANN search for ``k / selectivity * overfetch``
  results, dropping non-matching ones (retried with a doubled fetch if too few survive);
* in between: in-index filtering with a FAISS ``IDSelectorBitmap``, widening ``ef_search`` / ``nprobe`` as
  selectivity falls so the walk still reaches k matches.
Any query that comes back with fewer than ``min(k, candidates)`` hits is re-run exactly, so results are never short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aisd.core.errors import InvalidRequestError

STRATEGIES = ("exact", "index", "in_index_filter", "post_filter", "empty")


@dataclass(frozen=True)
class PlannerConfig:
    exact_max_candidates: int = 20_000
    post_filter_min_selectivity: float = 0.3
    overfetch: float = 1.5

    def __post_init__(self) -> None:
        if self.exact_max_candidates < 0:
            raise ValueError("exact_max_candidates must be >= 0")
        if not 0.0 < self.post_filter_min_selectivity <= 1.0:
            raise ValueError("post_filter_min_selectivity must be in (0, 1]")
        if self.overfetch < 1.0:
            raise ValueError("overfetch must be >= 1")


@dataclass(frozen=True)
class QueryPlan:
    """How a search will run; ``Collection.explain`` returns it."""

    strategy: str
    selectivity: float  # candidates / live points (1.0 without a filter)
    candidates: int
    fetch_k: int  # results asked of the index (post_filter over-fetch, refine)
    index_params: dict[str, Any] = field(default_factory=dict)  # ef_search / nprobe actually used
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def widened_params(kind: str, base: dict[str, Any], selectivity: float, k: int) -> dict[str, Any]:
    """Search breadth for in-index filtering: a walk over a graph/lists where only a fraction s of points count needs
    ~1/s more visits to collect the same k matches; we widen by 1/sqrt(s) (bounded) which measured enough here."""
    boost = 1.0 / math.sqrt(max(selectivity, 1e-6))
    if kind == "hnsw":
        return {"ef_search": int(min(4096, max(base["ef_search"] * boost, 2 * k)))}
    if kind in ("ivf", "ivfpq"):
        return {"nprobe": int(min(base["nlist"], math.ceil(base["nprobe"] * boost)))}
    return {}


def choose_plan(*, kind: str, trained: bool, supports_selector: bool, k: int, n_live: int, candidates: int,
                filtered: bool, has_tombstones: bool, index_params: dict[str, Any], overrides: dict[str, Any],
                config: PlannerConfig) -> QueryPlan:
    """Pick the strategy for one search (the same plan serves every query of a batch)."""
    sel = candidates / n_live if n_live else 0.0
    forced = overrides.get("strategy")
    if forced is not None and forced not in STRATEGIES[:4]:
        raise InvalidRequestError(f"unknown strategy {forced!r}; expected one of: {', '.join(STRATEGIES[:4])}",
                                  param="params.strategy")
    base = {key: int(overrides.get(key, index_params[key])) for key in ("ef_search", "nprobe")
            if key in index_params}
    if "nlist" in index_params:
        base["nlist"] = int(index_params["nlist"])
    refine = int(overrides.get("refine", 1))
    if candidates == 0:
        return QueryPlan("empty", sel, 0, 0, {}, "no point matches the filter")
    if forced == "exact" or overrides.get("exact") or not trained:
        why = "exact search requested" if (forced or overrides.get("exact")) else \
            f"index {kind!r} is not trained yet (buffering with exact search)"
        return QueryPlan("exact", sel, candidates, k, {}, why)
    if forced is None and not filtered and not has_tombstones:
        return QueryPlan("index", 1.0, candidates, k * refine, _public(base), f"unfiltered {kind} search")
    if forced is None and filtered and candidates <= config.exact_max_candidates:
        return QueryPlan("exact", sel, candidates, k, {},
                         f"{candidates} candidates <= exact_max_candidates={config.exact_max_candidates}: "
                         f"brute force over the filtered subset")
    if forced == "index":
        return QueryPlan("index", sel, candidates, k * refine, _public(base), "index search requested")
    use_post = forced == "post_filter" or (forced is None and (sel >= config.post_filter_min_selectivity
                                                               or not supports_selector))
    if use_post:
        fetch = min(n_live, max(k, math.ceil(k * refine / max(sel, 1e-9) * config.overfetch)))
        # the surviving fraction of an ordinary result list is ~selectivity, so widen the search like in-index
        # filtering does, and let HNSW's beam hold at least the over-fetched list
        params = {**base, **widened_params(kind, base, sel, k * refine)}
        if kind == "hnsw":
            params["ef_search"] = max(params["ef_search"], fetch)
        return QueryPlan("post_filter", sel, candidates, fetch, _public(params),
                         f"selectivity {sel:.3g} >= {config.post_filter_min_selectivity}: search and drop "
                         f"non-matching, over-fetching {fetch}" if supports_selector else
                         f"index {kind!r} cannot filter inside (no IDSelector): post-filter with over-fetch {fetch}")
    if not supports_selector:
        raise InvalidRequestError(f"index {kind!r} does not support in-index filtering", param="params.strategy")
    params = {**base, **widened_params(kind, base, sel, k * refine)}
    return QueryPlan("in_index_filter", sel, candidates, k * refine, _public(params),
                     f"selectivity {sel:.3g}: filter inside the {kind} index with an IDSelector")


def _public(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "nlist"}
