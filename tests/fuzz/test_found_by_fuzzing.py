"""What schema fuzzing found once, kept as plain regression tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from billing_api.app import create_app as billing_app
from billing_api.config import BillingSettings
from payment_gateway.app import create_app as gateway_app
from payment_gateway.config import GatewaySettings
from shared.auth import AuthSettings, mint_user_token
from shared.errors import install_error_handlers
from shared.settings import ServiceSettings


async def test_a_nul_character_in_the_input_is_a_422_not_a_500(database_url: str) -> None:
    """PostgreSQL refuses NUL in text; a search for "\\x00" used to answer 500."""
    engine = create_async_engine(database_url)
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/search")
    async def search(q: str) -> dict[str, bool]:
        async with engine.connect() as conn:
            found = await conn.scalar(sa.text("SELECT 'film' ILIKE :q"), {"q": f"%{q}%"})
        return {"found": bool(found)}

    transport = httpx.ASGITransport(app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            refused = await client.get("/search", params={"q": "a\x00b"})
            fine = await client.get("/search", params={"q": "il"})
    finally:
        await engine.dispose()
    assert refused.status_code == 422
    assert refused.json()["error"] == "InvalidText"
    assert fine.json() == {"found": True}


@pytest.fixture
async def billing(service_settings: ServiceSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The billing app over ASGI with a customer's token."""
    app = billing_app(BillingSettings(**service_settings.model_dump()))
    token = mint_user_token(AuthSettings(), uuid4(), email="dates@example.com")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url="http://billing.test",
            headers={"Authorization": f"Bearer {token}"},
        ) as client,
    ):
        yield client


class TestDates:
    @pytest.mark.parametrize("path", ["/api/v1/payments", "/api/v1/statement"])
    @pytest.mark.parametrize("bad", ["0.5", "1700000000", "yesterday", "2026-13-01"])
    async def test_from_and_to_that_are_not_dates_are_a_422(
        self, billing: httpx.AsyncClient, path: str, bad: str
    ) -> None:
        """``to=0.5`` was read as half a second after the Unix epoch and answered 200."""
        for name in ("from", "to"):
            response = await billing.get(path, params={name: bad})
            assert response.status_code == 422, (name, bad, response.text)
            assert response.json()["error"] == "ValidationError"

    @pytest.mark.parametrize("path", ["/api/v1/payments", "/api/v1/statement"])
    async def test_dates_and_date_times_in_iso_8601_are_taken(
        self, billing: httpx.AsyncClient, path: str
    ) -> None:
        for params in (
            {"from": "2026-01-01", "to": "2026-02-01"},
            {"from": "2026-01-01T00:00:00Z", "to": "2026-01-31T12:00:00+03:00"},
            {"from": "2026-01-01T10:00:00"},
        ):
            response = await billing.get(path, params=params)
            assert response.status_code == 200, (params, response.text)
            assert response.json() == {"items": [], "next_cursor": None}


class TestOpenCheckouts:
    @pytest.mark.parametrize(
        ("create_app", "settings", "path"),
        [
            (billing_app, BillingSettings, "/api/v1/subscriptions"),
            (billing_app, BillingSettings, "/api/v1/purchases"),
            (gateway_app, GatewaySettings, "/internal/v1/payments"),
        ],
    )
    def test_the_200_of_an_open_checkout_is_documented_with_its_body(
        self, create_app: Any, settings: Any, path: str
    ) -> None:
        """A second checkout answers 200 with the open one; only 201 was documented, so the
        answer was checked against the error shape."""
        responses = create_app(settings()).openapi()["paths"][path]["post"]["responses"]
        created = responses["201"]["content"]["application/json"]["schema"]
        assert responses["200"]["content"]["application/json"]["schema"] == created


class TestMethods:
    @pytest.mark.parametrize(
        ("method", "path", "allow"),
        [
            ("OPTIONS", "/api/v1/subscriptions", "GET, POST"),
            ("DELETE", "/api/v1/subscriptions", "GET, POST"),
            ("OPTIONS", "/api/v1/plans", "GET"),
            ("TRACE", f"/api/v1/payments/{uuid4()}", "GET"),
            ("PATCH", "/api/v1/admin/movies/bulk", "POST"),
            ("OPTIONS", f"/api/v1/admin/movies/{uuid4()}", "GET, PATCH"),
        ],
    )
    async def test_a_method_a_path_lacks_is_a_405_that_lists_every_method_of_the_path(
        self, billing: httpx.AsyncClient, method: str, path: str, allow: str
    ) -> None:
        """OPTIONS /api/v1/subscriptions answered ``Allow: POST`` (the first route tried), and
        PATCH /admin/movies/bulk read "bulk" as a movie id."""
        response = await billing.request(method, path)
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == allow
        assert response.json()["error"] == "MethodNotAllowed"


class TestInputTypes:
    @pytest.mark.parametrize("flag", ["true", 1])
    async def test_a_boolean_given_as_text_or_a_number_is_a_422(
        self, billing: httpx.AsyncClient, flag: object
    ) -> None:
        """``"true"`` and ``1`` were taken for true (the gateway's ``save_payment_method``)."""
        checkout = await billing.post(
            "/api/v1/subscriptions", json={"plan_id": str(uuid4()), "auto_renew": flag}
        )
        cancel = await billing.post(
            f"/api/v1/subscriptions/{uuid4()}/cancel", json={"at_period_end": flag}
        )
        for response in (checkout, cancel):
            assert response.status_code == 422, response.text
            assert response.json()["error"] == "ValidationError"

    async def test_an_offset_beyond_what_postgresql_counts_is_a_422_not_a_500(
        self, billing: httpx.AsyncClient
    ) -> None:
        token = mint_user_token(AuthSettings(), uuid4(), email="ops@example.com", roles=["admin"])
        admin = {"Authorization": f"Bearer {token}"}
        beyond = await billing.get("/api/v1/admin/users", params={"offset": 2**63}, headers=admin)
        assert beyond.status_code == 422, beyond.text
        last = await billing.get("/api/v1/admin/users", params={"offset": 2**63 - 1}, headers=admin)
        assert last.status_code == 200, last.text
