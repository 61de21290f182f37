"""The FastAPI application every HTTP service is built on.

:func:`create_service_app` wires what all services share — error shape, request ids, metrics,
health, token verification, database and broker in the lifespan — and leaves the service only its
routers and the background work it runs beside the API.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from shared import observability, openapi, probes, tracing
from shared.auth import AuthSettings, TokenVerifier
from shared.errors import install_error_handlers
from shared.resources import Resources, connect_broker_forever, open_resources
from shared.settings import ServiceSettings

Startup = Callable[[FastAPI, Resources], Awaitable[None]]

health_router = APIRouter(tags=["operations"])


@health_router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@health_router.get("/health/ready", responses={503: {"description": "a dependency is down"}})
async def ready(request: Request) -> JSONResponse:
    """The database and the broker are reachable."""
    resources: Resources = request.app.state.resources
    checks = {"database": await _database_ok(resources), "broker": resources.broker.is_connected}
    ok = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "unavailable", "checks": checks},
        status_code=200 if ok else 503,
    )


async def metrics(request: Request) -> Response:
    """Prometheus metrics; the state probes (:mod:`shared.probes`) are read first."""
    resources: Resources | None = getattr(request.app.state, "resources", None)
    if resources is not None:
        await request.app.state.probes.refresh(resources)
    return await observability.metrics_endpoint(request)


async def _database_ok(resources: Resources) -> bool:
    try:
        async with asyncio.timeout(2.0), resources.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception:
        return False
    return True


def create_service_app(
    *,
    service: str,
    schema: str,
    title: str,
    description: str,
    settings: ServiceSettings,
    auth_settings: AuthSettings | None = None,
    routers: Sequence[APIRouter] = (),
    on_startup: Startup | None = None,
    middleware: Sequence[type[Any]] = (),
    consumer: str | None = None,
    metric_probes: Sequence[probes.Probe] = (),
    **fastapi_kwargs: Any,
) -> FastAPI:
    """Build a service's app; ``on_startup`` may start background tasks on ``resources.tasks``.

    ``middleware`` (pure ASGI classes) run inside the request-id and metrics middleware.
    ``/metrics`` reports the service's outbox backlog, the dead letters of ``consumer`` (the
    service's event consumer, wherever it runs) and whatever ``metric_probes`` read.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tracing.configure(service)
        async with open_resources(
            settings, service=service, schema=schema, wait_for_broker=False
        ) as resources:
            app.state.resources = resources
            app.state.session_factory = resources.session_factory
            resources.tasks.append(asyncio.create_task(connect_broker_forever(resources.broker)))
            if on_startup is not None:
                await on_startup(app, resources)
            yield
        tracing.flush()

    fastapi_kwargs.setdefault("generate_unique_id_function", openapi.operation_ids())
    app = FastAPI(title=title, description=description, lifespan=lifespan, **fastapi_kwargs)
    app.state.settings = settings
    dead_letters = [probes.dead_letters(consumer)] if consumer else []
    app.state.probes = probes.Probes([probes.outbox_backlog, *dead_letters, *metric_probes])
    app.state.token_verifier = TokenVerifier(auth_settings or AuthSettings())
    install_error_handlers(app)
    for inner in reversed(middleware):
        app.add_middleware(inner)
    app.add_middleware(observability.RequestContextMiddleware)
    tracing.instrument_app(app)  # outermost: the request id and its log lines are in the span
    app.include_router(health_router)
    app.add_route("/metrics", metrics, include_in_schema=False)
    for router in routers:
        app.include_router(router)
    openapi.document(app)
    return app
