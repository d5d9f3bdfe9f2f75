"""The HTTP server: ``create_app(settings)`` assembles one APIRouter per system.

Every route module in ``ROUTE_MODULES`` exposes ``router``; it may also define ``async startup(services)``,
``async shutdown(services)`` and ``health(services) -> dict`` hooks, which the app calls in that order of modules.
Errors: any AisdError, request validation error or HTTPException becomes an OpenAI-shaped body
``{"error": {"message", "type", "param", "code"}}`` with the right status.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aisd import __version__
from aisd.app.settings import Settings
from aisd.app.wiring import Services
from aisd.core.errors import AisdError

log = logging.getLogger(__name__)

ROUTE_MODULES = ("openai", "embeddings", "vector", "rag", "features", "experiments", "planner")


def _route_modules() -> list[ModuleType]:
    return [importlib.import_module(f"aisd.app.routes.{name}") for name in ROUTE_MODULES]


def _error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _validation_param(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or Settings()
    services = services or Services(settings)
    modules = _route_modules()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for mod in modules:
            hook = getattr(mod, "startup", None)
            if hook is not None:
                await hook(services)
        try:
            yield
        finally:
            for mod in reversed(modules):
                hook = getattr(mod, "shutdown", None)
                if hook is not None:
                    try:
                        await hook(services)
                    except Exception:  # noqa: BLE001 - shut every system down
                        log.exception("shutdown of %s failed", mod.__name__)
            services.close()

    app = FastAPI(title="aisd", version=__version__, lifespan=lifespan,
                  description="The AI system-design stack: OpenAI-compatible engine, RAG, vector database, "
                              "feature store, experiments and capacity planning.")
    app.state.settings = settings
    app.state.services = services

    @app.exception_handler(AisdError)
    async def _aisd_error(request: Request, exc: AisdError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        param = _validation_param(tuple(first.get("loc", ())))
        message = "; ".join(f"{_validation_param(tuple(e.get('loc', ())))}: {e.get('msg')}" for e in errors)
        return JSONResponse(_error_body(message or "invalid request", "invalid_request_error", param),
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found_error", 405: "invalid_request_error", 429: "rate_limit_error"}.get(
            exc.status_code, "invalid_request_error" if exc.status_code < 500 else "internal_error")
        return JSONResponse(_error_body(str(exc.detail), kind), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, Any]:
        report: dict[str, Any] = {"status": "ok", "version": __version__, "loaded": services.loaded()}
        for mod in modules:
            hook = getattr(mod, "health", None)
            if hook is not None:
                report.update(hook(services))
        return report

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        return PlainTextResponse(generate_latest(REGISTRY).decode(), media_type=CONTENT_TYPE_LATEST)

    for mod in modules:
        app.include_router(mod.router)
    return app
