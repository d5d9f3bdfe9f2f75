"""Fusing ranked lists from several retrievers: reciprocal rank fusion and alpha-weighted score fusion.

- RRF (Cormack, Clarke & Buettcher 2009): score(d) = sum over lists of 1 / (k + rank(d)), rank from 1, k = 60.
  Uses ranks only, so it needs no score calibration between BM25 (unbounded) and cosine (in [-1, 1]).
- Convex / alpha fusion (Bruch, Gai & Ingber 2023, "An analysis of fusion functions for hybrid retrieval"):
  score(d) = alpha * norm(vector score) + (1 - alpha) * norm(BM25 score), each list min-max normalised to [0, 1];
  a document missing from one list gets 0 from it (the bottom of that list's range).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import NamedTuple, TypeVar

K = TypeVar("K", bound=Hashable)

RRF_K = 60


class Fused(NamedTuple):
    id: Hashable
    score: float


def rrf_scores(rankings: Sequence[Sequence[K]], k: int = RRF_K,
               weights: Sequence[float] | None = None) -> dict[K, float]:
    """Reciprocal rank fusion (Cormack et al. 2009): sum of w / (k + rank), rank from 1. A repeated id in one list
    counts at its best rank."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if weights is not None and len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    out: dict[K, float] = {}
    for li, ranking in enumerate(rankings):
        w = 1.0 if weights is None else weights[li]
        seen: set[K] = set()
        for rank, doc in enumerate(ranking, start=1):
            if doc in seen:
                continue
            seen.add(doc)
            out[doc] = out.get(doc, 0.0) + w / (k + rank)
    return out


def min_max(scores: Mapping[K, float]) -> dict[K, float]:
    """Scale scores to [0, 1] by (s - min) / (max - min); all-equal scores map to 1 (every one is the best)."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi == lo:
        return dict.fromkeys(scores, 1.0)
    span = hi - lo
    return {d: (s - lo) / span for d, s in scores.items()}


def alpha_scores(vector: Mapping[K, float], lexical: Mapping[K, float], alpha: float = 0.5) -> dict[K, float]:
    """alpha * minmax(vector) + (1 - alpha) * minmax(lexical) (Bruch et al. 2023); missing -> 0 on that side."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    v, lx = min_max(vector), min_max(lexical)
    return {d: alpha * v.get(d, 0.0) + (1.0 - alpha) * lx.get(d, 0.0) for d in {**v, **lx}}


def top(scores: Mapping[K, float], n: int | None = None) -> list[Fused]:
    """Best-first list of (id, score); ties keep the insertion order of ``scores`` (deterministic)."""
    order = sorted(enumerate(scores.items()), key=lambda t: (-t[1][1], t[0]))
    items = [Fused(d, s) for _, (d, s) in order]
    return items if n is None else items[:n]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[K]], k: int = RRF_K, n: int | None = None,
                           weights: Sequence[float] | None = None) -> list[Fused]:
    """RRF over ranked id lists, best first."""
    return top(rrf_scores(rankings, k, weights), n)


def alpha_fusion(vector: Mapping[K, float], lexical: Mapping[K, float], alpha: float = 0.5,
                 n: int | None = None) -> list[Fused]:
    """Alpha-weighted fusion of min-max normalised scores, best first."""
    return top(alpha_scores(vector, lexical, alpha), n)
