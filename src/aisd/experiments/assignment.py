"""Deterministic assignment: a documented salted hash of (experiment, unit id) to a bucket, then to a variant.

The algorithm (stable across processes, machines, Python and aisd versions; golden values are pinned in tests):

1. ``bucket(salt, key, unit_id) = int.from_bytes(SHA-256(f"{salt}:{key}:{unit_id}")[:8], "big") % 10000``.
2. Layer (optional): the unit is eligible iff ``bucket(salt, "layer:" + layer, unit_id) / 10000`` falls in the
   experiment's ``layer_range``; experiments in one layer own disjoint ranges, so a unit is in at most one of them.
3. Targeting (optional): every targeted attribute must equal the unit's value (or be in the allowed list).
4. Variant: with weights w_i (normalised) and traffic t, variant i owns the bucket range
   ``[10000 * W_i, 10000 * (W_i + t * w_i))`` with ``W_i`` the sum of the weights before i; other buckets are not in
   the experiment. Ramping traffic up only adds units: nobody switches variant (the same scheme as GrowthBook's
   coverage ranges).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from aisd.experiments.model import Experiment

BUCKETS = 10_000


@dataclass(frozen=True)
class Assignment:
    experiment: str
    unit_id: str
    variant: str | None  # None: the unit is not in the experiment (traffic, layer or targeting)
    bucket: int
    reason: str  # "assigned" | "traffic" | "layer" | "targeting" | "not_running"

    @property
    def in_experiment(self) -> bool:
        return self.variant is not None


def bucket(salt: str, key: str, unit_id: str) -> int:
    """Bucket in [0, 10000): the first 8 bytes of SHA-256("salt:key:unit_id") as a big-endian integer mod 10000."""
    digest = hashlib.sha256(f"{salt}:{key}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def variant_ranges(experiment: Experiment) -> list[tuple[str, int, int]]:
    """(variant, start, end) bucket ranges; each covers ``traffic`` of its weight share (module docstring, step 4)."""
    cached = experiment.__dict__.get("_variant_ranges")  # frozen definition: compute once per object
    if cached is not None:
        return cached
    out, start = [], 0.0
    for v, w in zip(experiment.variants, experiment.weights, strict=True):
        lo = round(start * BUCKETS)
        out.append((v.name, lo, lo + round(experiment.traffic * w * BUCKETS)))
        start += w
    object.__setattr__(experiment, "_variant_ranges", out)
    return out


def matches_targeting(targeting: Mapping[str, Any], attributes: Mapping[str, Any] | None) -> bool:
    """True when every targeted attribute equals the unit's value, or is in the list of allowed values."""
    if not targeting:
        return True
    attrs = attributes or {}
    for key, allowed in targeting.items():
        if key not in attrs:
            return False
        value = attrs[key]
        if isinstance(allowed, list | tuple | set | frozenset):
            if value not in allowed:
                return False
        elif value != allowed:
            return False
    return True


def assignment(experiment: Experiment, unit_id: str | int, attributes: Mapping[str, Any] | None = None) -> Assignment:
    """Full assignment with the bucket and the reason a unit is or is not in the experiment."""
    uid = str(unit_id)
    b = bucket(experiment.salt, experiment.name, uid)
    if experiment.layer is not None and experiment.layer_range is not None:
        lo, hi = experiment.layer_range
        lb = bucket(experiment.salt, f"layer:{experiment.layer}", uid) / BUCKETS
        if not lo <= lb < hi:
            return Assignment(experiment.name, uid, None, b, "layer")
    if not matches_targeting(experiment.targeting, attributes):
        return Assignment(experiment.name, uid, None, b, "targeting")
    for name, lo_b, hi_b in variant_ranges(experiment):
        if lo_b <= b < hi_b:
            return Assignment(experiment.name, uid, name, b, "assigned")
    return Assignment(experiment.name, uid, None, b, "traffic")


def assign(experiment: Experiment | Mapping[str, Any] | str, unit_id: str | int,
           attributes: Mapping[str, Any] | None = None) -> str | None:
    """The variant name for ``unit_id`` (None if the unit is outside the experiment's traffic, layer or targeting).

    ``experiment`` is an ``Experiment``, its dict form, or a bare name (the default control/treatment 50/50 split).
    Pure and deterministic: the same experiment definition and unit id give the same variant everywhere.
    """
    if isinstance(experiment, Experiment):
        exp = experiment
    elif isinstance(experiment, str):
        exp = Experiment(experiment)
    else:
        exp = Experiment.from_dict(dict(experiment))
    return assignment(exp, unit_id, attributes).variant


def assign_many(experiment: Experiment, unit_ids: list[str]) -> np.ndarray:
    """Variant index per unit (-1 when not in the experiment) for many ids, ignoring targeting; shares ``bucket``."""
    ranges = variant_ranges(experiment)
    salt, name = experiment.salt, experiment.name
    buckets = np.fromiter((bucket(salt, name, u) for u in unit_ids), dtype=np.int64, count=len(unit_ids))
    out = np.full(len(unit_ids), -1, dtype=np.int64)
    for i, (_, lo, hi) in enumerate(ranges):
        out[(buckets >= lo) & (buckets < hi)] = i
    if experiment.layer is not None and experiment.layer_range is not None:
        lo_f, hi_f = experiment.layer_range
        key = f"layer:{experiment.layer}"
        lb = np.fromiter((bucket(salt, key, u) for u in unit_ids), dtype=np.int64, count=len(unit_ids)) / BUCKETS
        out[(lb < lo_f) | (lb >= hi_f)] = -1
    return out
