"""Routes: A/B testing (/v1/experiments/...): lifecycle, assignment, exposure and event logging, analysis, reports.

Handlers are plain ``def`` so FastAPI runs them in its thread pool: DuckDB calls block, and the store serialises its
one writer connection with a lock.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from aisd.app.wiring import Services
from aisd.core.errors import InvalidRequestError

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

MAX_BATCH = 100_000


class AssignRequest(BaseModel):
    unit_id: str = Field(min_length=1, max_length=1024)
    attributes: dict[str, Any] | None = None
    log_exposure: bool = True  # log the exposure when the unit is in the experiment (first one wins)


class ExposureBatch(BaseModel):
    exposures: list[Any]  # rows are validated one by one so that a bad row never sinks the batch


class EventBatch(BaseModel):
    events: list[Any]


class OfflineReportBody(BaseModel):
    name: str = Field(min_length=1)
    metrics: dict[str, dict[str, float]]
    n: int | None = None
    source: str = ""


class PowerRequest(BaseModel):
    sigma: float | None = Field(default=None, gt=0, description="per-unit standard deviation (mean metrics)")
    baseline_rate: float | None = Field(default=None, gt=0, lt=1, description="control rate (proportion metrics)")
    baseline_mean: float | None = Field(default=None, description="control mean, to turn a relative MDE absolute")
    delta: float | None = Field(default=None, description="absolute minimum detectable effect")
    mde: float | None = Field(default=None, gt=0, description="relative minimum detectable effect (0.05 = 5%)")
    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1)
    arms: int = Field(default=2, ge=2)
    daily_traffic: float | None = Field(default=None, gt=0, description="units entering per day, all arms")


def _store(request: Request) -> Any:
    services: Services = request.app.state.services
    return services.experiments


def _check_batch(rows: list[Any], param: str) -> None:
    if len(rows) > MAX_BATCH:
        raise InvalidRequestError(f"at most {MAX_BATCH} rows per request, got {len(rows)}; split the batch",
                                  param=param)


@router.post("", status_code=201)
def create_experiment(request: Request, spec: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """Create a draft experiment from its definition (name, hypothesis, variants, unit, metrics, mde ...)."""
    return _store(request).create(spec).to_dict()


@router.get("")
def list_experiments(request: Request, status: str | None = Query(default=None)) -> dict[str, Any]:
    return {"object": "list", "data": [e.to_dict() for e in _store(request).list(status)]}


@router.post("/power")
def power_plan(body: PowerRequest) -> dict[str, Any]:
    """Sample size per arm (and duration) for a mean (sigma) or proportion (baseline_rate) metric."""
    from aisd.experiments import stats

    if body.baseline_rate is not None:
        sigma = math.sqrt(body.baseline_rate * (1 - body.baseline_rate))
        base = body.baseline_rate
    elif body.sigma is not None:
        sigma, base = body.sigma, body.baseline_mean
    else:
        raise InvalidRequestError("give sigma (mean metric) or baseline_rate (proportion metric)", param="sigma")
    if body.delta is not None:
        delta = body.delta
    elif body.mde is not None and base:
        delta = body.mde * abs(base)
    else:
        raise InvalidRequestError("give delta, or mde with baseline_rate / baseline_mean", param="delta")
    n = stats.sample_size(sigma, delta, body.alpha, body.power)
    out: dict[str, Any] = {"n_per_arm": math.ceil(n), "n_total": math.ceil(n) * body.arms, "sigma": sigma,
                           "delta": delta, "alpha": body.alpha, "power": body.power}
    if body.daily_traffic:
        plan = stats.duration(n, body.daily_traffic, body.arms)
        out["days"] = plan.days
    return out


@router.post("/events")
def log_events(request: Request, body: EventBatch) -> dict[str, Any]:
    """Append metric events (product events or gateway request records); bad rows come back with reasons."""
    _check_batch(body.events, "events")
    return _store(request).log_events(body.events).to_dict()


@router.get("/{name}")
def get_experiment(request: Request, name: str) -> dict[str, Any]:
    return _store(request).get(name).to_dict()


@router.patch("/{name}")
def update_experiment(request: Request, name: str, changes: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """Edit a draft's definition."""
    return _store(request).update(name, **changes).to_dict()


@router.delete("/{name}")
def delete_experiment(request: Request, name: str) -> dict[str, Any]:
    _store(request).delete(name)
    return {"id": name, "object": "experiment", "deleted": True}


@router.post("/{name}/start")
def start_experiment(request: Request, name: str) -> dict[str, Any]:
    return _store(request).start(name).to_dict()


@router.post("/{name}/stop")
def stop_experiment(request: Request, name: str) -> dict[str, Any]:
    return _store(request).stop(name).to_dict()


@router.post("/{name}/assign")
def assign_unit(request: Request, name: str, body: AssignRequest) -> dict[str, Any]:
    """The unit's variant (null when it is outside the experiment); logs the exposure unless told not to."""
    a = _store(request).assign(name, body.unit_id, body.attributes, log_exposure=body.log_exposure)
    return {"experiment": a.experiment, "unit_id": a.unit_id, "variant": a.variant, "bucket": a.bucket,
            "in_experiment": a.in_experiment, "reason": a.reason}


@router.post("/{name}/exposures")
def log_exposures(request: Request, name: str, body: ExposureBatch) -> dict[str, Any]:
    """Append exposures (deduplicated per unit: the first wins); bad rows come back with reasons."""
    _check_batch(body.exposures, "exposures")
    return _store(request).log_exposures(name, body.exposures).to_dict()


@router.get("/{name}/analysis")
def analysis(request: Request, name: str, ignore_srm: bool = Query(default=False),
             timeseries: bool = Query(default=True),
             as_of: datetime | None = Query(default=None, description="analyse data up to this time (ISO-8601)"),
             ) -> dict[str, Any]:
    """The full analysis as JSON (results are withheld on a sample ratio mismatch unless ``ignore_srm``)."""
    return _store(request).analyze(name, ignore_srm=ignore_srm, timeseries=timeseries, as_of=as_of).to_dict()


@router.post("/{name}/analyze")
def analyze(request: Request, name: str, ignore_srm: bool = Query(default=False)) -> dict[str, Any]:
    return _store(request).analyze(name, ignore_srm=ignore_srm).to_dict()


@router.get("/{name}/report", response_class=HTMLResponse)
def html_report(request: Request, name: str, ignore_srm: bool = Query(default=False)) -> HTMLResponse:
    """The analysis as a standalone HTML page with the forest and cumulative-effect plots."""
    from aisd.experiments.report import render_html

    return HTMLResponse(render_html(_store(request).analyze(name, ignore_srm=ignore_srm)))


@router.post("/{name}/reports", status_code=201)
def attach_report(request: Request, name: str, body: OfflineReportBody) -> dict[str, Any]:
    """Attach an offline evaluation (accuracy, F1, BLEU ... per variant)."""
    from aisd.experiments.offline import OfflineReport

    report = OfflineReport(body.name, body.metrics, body.n, body.source)
    return _store(request).attach_report(name, report).to_dict()


@router.get("/{name}/reports")
def list_reports(request: Request, name: str) -> dict[str, Any]:
    return {"object": "list", "data": [r.to_dict() for r in _store(request).reports(name)]}


def health(services: Services) -> dict[str, Any]:
    loaded = "experiments" in services.__dict__
    return {"experiments": {"store_open": loaded}}
