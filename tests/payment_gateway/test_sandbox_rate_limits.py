"""Card testing on the sandbox's pay page: past the limit per address, or per checkout session,
paying answers 429 with Retry-After and tries no card."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import sqlalchemy as sa

from payment_gateway.app import create_app
from payment_gateway.config import GatewaySettings
from payment_gateway.sandbox.models import SandboxSession
from shared.ratelimit import create_rate_limiter
from shared.settings import ServiceSettings
from tests.payment_gateway.conftest import BASE_URL, Gateway

DECLINED = "4000000000000002"


def limit(gateway: Gateway, **rates: Any) -> None:
    """The sandbox's limits as ``rates`` set them, counted in memory from zero."""
    settings = GatewaySettings(**rates)
    gateway.app.state.rate_limiter = create_rate_limiter(
        settings, settings.rate_limits, service="payment_gateway"
    )


def from_address(gateway: Gateway, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(gateway.app, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL)


def session_of(checkout_url: str) -> str:
    return checkout_url.split("?", 1)[0].rsplit("/", 1)[1]


async def card_tried(gateway: Gateway, payment_id: str) -> str | None:
    async with gateway.app.state.sandbox.sessions() as db:
        checkout = await db.scalar(
            sa.select(SandboxSession).where(SandboxSession.payment_id == UUID(payment_id))
        )
    assert checkout is not None
    last4: str | None = checkout.card_last4
    return last4


class TestPerSession:
    async def test_past_the_sessions_limit_paying_is_429_and_no_card_is_tried(
        self, gateway: Gateway
    ) -> None:
        limit(gateway, rate_limit_sandbox_pay_per_session="2/minute")
        created = (await gateway.create_payment()).json()
        pay = f"/sandbox/checkout/{session_of(created['checkout_url'])}/pay"

        async with (
            from_address(gateway, "198.51.100.1") as one,
            from_address(gateway, "198.51.100.2") as two,
        ):
            declined = [await one.post(pay, json={"card_number": DECLINED}) for _ in range(2)]
            refused = await two.post(pay, json={"card_number": "4242424242424242"})

        assert [answer.status_code for answer in declined] == [200, 200]
        assert refused.status_code == 429
        assert refused.json()["error"] == "TooManyRequests"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert await card_tried(gateway, created["payment_id"]) == "0002"

    async def test_the_page_form_counts_toward_the_same_limit(self, gateway: Gateway) -> None:
        limit(gateway, rate_limit_sandbox_pay_per_session="1/minute")
        created = (await gateway.create_payment()).json()
        page = f"/sandbox/checkout/{session_of(created['checkout_url'])}"

        first = await gateway.anonymous.post(page + "/pay", json={"card_number": DECLINED})
        refused = await gateway.anonymous.post(
            page, content="card_number=4242424242424242&expiry=12%2F40"
        )

        assert first.status_code == 200
        assert refused.status_code == 429


class TestPerAddress:
    async def test_one_address_trying_many_sessions_is_429_another_address_pays(
        self, gateway: Gateway
    ) -> None:
        limit(gateway, rate_limit_sandbox_pay_per_ip="2/minute")
        sessions = [
            session_of((await gateway.create_payment()).json()["checkout_url"]) for _ in range(4)
        ]
        async with (
            from_address(gateway, "203.0.113.5") as tester,
            from_address(gateway, "203.0.113.6") as person,
        ):
            tried = [
                await tester.post(f"/sandbox/checkout/{s}/pay", json={"card_number": DECLINED})
                for s in sessions[:3]
            ]
            paid = await person.post(
                f"/sandbox/checkout/{sessions[3]}/pay", json={"card_number": "4242424242424242"}
            )

        assert [answer.status_code for answer in tried] == [200, 200, 429]
        assert paid.status_code == 200
        assert paid.json()["status"] == "succeeded"


class TestDefaults:
    async def test_a_household_paying_several_checkouts_is_never_limited(
        self, gateway: Gateway
    ) -> None:
        answers = []
        for _ in range(6):
            created = (await gateway.create_payment()).json()
            answers.append(await gateway.pay(created["checkout_url"]))
        assert [answer.json()["status"] for answer in answers] == ["succeeded"] * 6

    def test_the_pay_operation_documents_429_with_retry_after(
        self, service_settings: ServiceSettings
    ) -> None:
        paths = create_app(GatewaySettings(**service_settings.model_dump())).openapi()["paths"]
        responses = paths["/sandbox/checkout/{session_id}/pay"]["post"]["responses"]
        assert "Retry-After" in responses["429"]["headers"]
