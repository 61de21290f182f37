from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from shared.app import create_service_app
from shared.errors import Conflict
from shared.settings import ServiceSettings
from tests import support

router = APIRouter()


class Body(BaseModel):
    months: int


class SeatTaken(Conflict):
    default_detail = "that seat is taken"


@router.post("/things")
async def create_thing(body: Body) -> dict[str, int]:
    return {"months": body.months}


@router.get("/conflict")
async def conflict() -> None:
    raise SeatTaken


@router.get("/crash")
async def crash() -> None:
    raise RuntimeError("bug")


def build(settings: ServiceSettings) -> FastAPI:
    return create_service_app(
        service="billing_api",
        schema="billing",
        title="t",
        description="d",
        settings=settings,
        routers=[router],
    )


@pytest.fixture
async def client(service_settings: ServiceSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = build(service_settings)
    async with app.router.lifespan_context(app):
        await app.state.resources.broker.wait_connected()
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


class TestHealth:
    async def test_live_answers_ok(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live")
        assert (response.status_code, response.json()) == (200, {"status": "ok"})

    async def test_ready_when_database_and_broker_answer(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/ready")
        assert response.status_code == 200
        assert response.json() == {"status": "ready", "checks": {"database": True, "broker": True}}

    async def test_not_ready_when_the_broker_is_unreachable(self, database_url: str) -> None:
        settings = ServiceSettings(
            database_url=database_url, amqp_url="amqp://guest:guest@127.0.0.1:1/"
        )
        app = build(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["checks"] == {"database": True, "broker": False}

    async def test_not_ready_when_the_database_is_unreachable(self, broker_prefix: str) -> None:
        settings = ServiceSettings(
            database_url="postgresql+asyncpg://postgres@127.0.0.1:1/cinema",
            amqp_url=support.AMQP_URL,
            broker_prefix=broker_prefix,
        )
        app = build(settings)
        async with app.router.lifespan_context(app):
            await app.state.resources.broker.wait_connected()
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["checks"] == {"database": False, "broker": True}


class TestErrors:
    async def test_domain_error_renders_its_name_and_detail(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/conflict")
        assert response.status_code == 409
        assert response.json() == {"error": "SeatTaken", "detail": "that seat is taken"}

    async def test_validation_error_has_the_same_shape(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/things", json={"months": "many"})
        assert response.status_code == 422
        body = response.json()
        assert body["error"] == "ValidationError"
        assert "months" in body["detail"]
        assert body["errors"][0]["loc"] == ["body", "months"]

    async def test_unknown_route_is_a_404_in_the_same_shape(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/nope")
        assert response.status_code == 404
        assert response.json() == {"error": "NotFound", "detail": "Not Found"}

    async def test_a_bug_is_a_500_without_internals(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/crash")
        assert response.status_code == 500
        assert response.json() == {"error": "InternalError", "detail": "internal error"}


class TestRequestId:
    async def test_incoming_request_id_is_echoed(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"

    async def test_missing_request_id_is_generated(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/health/live")
        second = await client.get("/health/live")
        assert len(first.headers["x-request-id"]) == 32
        assert first.headers["x-request-id"] != second.headers["x-request-id"]


class TestDocs:
    async def test_metrics_count_requests_by_route(self, client: httpx.AsyncClient) -> None:
        await client.post("/things", json={"months": 2})
        metrics = (await client.get("/metrics")).text
        assert 'http_requests_total{method="POST",route="/things",status="200"}' in metrics

    async def test_openapi_and_docs_are_served(self, client: httpx.AsyncClient) -> None:
        spec = (await client.get("/openapi.json")).json()
        assert "/things" in spec["paths"]
        assert "/health/ready" in spec["paths"]
        assert (await client.get("/docs")).status_code == 200
