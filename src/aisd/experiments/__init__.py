"""A/B testing: experiments, deterministic assignment, exposure and event logging, metrics, power analysis and a
statistics engine (Welch t, delta method, CUPED, SRM, BH / Holm, mSPRT sequential tests, Bayesian read-out).

Public API: ``from aisd.experiments import stats, assign``; ``ExperimentStore(path)`` for durable experiments,
logging and analysis. Importing this package never loads torch, FastAPI or Typer; scipy and DuckDB load on first use
of ``stats`` / the store, so a process that only assigns stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from aisd.experiments.assignment import Assignment, assign, assignment, bucket
from aisd.experiments.model import Experiment, MetricSpec, Variant

__all__ = ["Assignment", "Experiment", "ExperimentStore", "MetricSpec", "OfflineReport", "Variant", "analyze",
           "assign", "assignment", "bayes", "bucket", "metrics", "offline", "report", "sequential", "simulate",
           "stats"]

_SUBMODULES = {"stats", "bayes", "sequential", "metrics", "events", "analyze", "report", "offline", "simulate",
               "store"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"aisd.experiments.{name}")
    if name == "ExperimentStore":
        from aisd.experiments.store import ExperimentStore

        return ExperimentStore
    if name == "OfflineReport":
        from aisd.experiments.offline import OfflineReport

        return OfflineReport
    raise AttributeError(f"module 'aisd.experiments' has no attribute {name!r}")
