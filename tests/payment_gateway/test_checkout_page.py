"""A person pays on the sandbox's hosted checkout page in a real (headless) browser."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from payment_gateway.app import create_app
from shared.auth import AuthSettings, mint_service_token
from shared.settings import ServiceSettings
from tests import support
from tests.payment_gateway.conftest import gateway_settings, payment_body, truncate
from tests.payment_gateway.test_payments_api import wait_for_status


async def thanks(request: object) -> HTMLResponse:
    return HTMLResponse("<h1 id='thanks'>Thank you, enjoy the film</h1>")


@pytest.fixture
async def servers(service_settings: ServiceSettings) -> AsyncIterator[tuple[str, str]]:
    port, cinema_port = support.free_port(), support.free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(gateway_settings(service_settings, public_url=url, sandbox_webhook_url=None))
    cinema = Starlette(routes=[Route("/paid", thanks), Route("/cancelled", thanks)])
    async with (
        support.served(app, port) as gateway_url,
        support.served(cinema, cinema_port) as site,
    ):
        await truncate(app)
        yield gateway_url, site


class TestHostedPage:
    async def test_a_person_pays_with_4242_and_lands_on_the_success_page(
        self, servers: tuple[str, str]
    ) -> None:
        gateway_url, site = servers
        token = mint_service_token(AuthSettings(), "billing_api")
        async with httpx.AsyncClient(
            base_url=gateway_url, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            created = (
                await client.post(
                    "/internal/v1/payments",
                    json=payment_body(
                        amount=49900,
                        success_url=f"{site}/paid",
                        cancel_url=f"{site}/cancelled",
                        locale="ru",
                    ),
                )
            ).json()

            support.ARTIFACTS.mkdir(exist_ok=True)
            async with support.browser_page() as page:
                await page.goto(created["checkout_url"])
                assert await page.inner_text(".amount") == "499,00\u00a0₽"
                assert await page.inner_text("#pay") == "Оплатить 499,00\u00a0₽"
                await page.fill("#card_number", "4242 4242 4242 4242")
                await page.fill("#expiry", "12 / 34")
                await page.fill("#cvc", "123")
                await page.screenshot(path=support.ARTIFACTS / "sandbox-checkout-filled.png")
                await page.click("#pay")
                await page.wait_for_url(f"{site}/paid")
                assert await page.inner_text("#thanks") == "Thank you, enjoy the film"
                await page.screenshot(path=support.ARTIFACTS / "sandbox-checkout-paid.png")

            await wait_for_status(client, created["payment_id"], "succeeded")

    async def test_a_declined_card_shows_the_reason_on_the_page(
        self, servers: tuple[str, str]
    ) -> None:
        gateway_url, site = servers
        token = mint_service_token(AuthSettings(), "billing_api")
        async with httpx.AsyncClient(
            base_url=gateway_url, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            created = (
                await client.post(
                    "/internal/v1/payments",
                    json=payment_body(
                        success_url=f"{site}/paid", cancel_url=f"{site}/cancelled", locale="en"
                    ),
                )
            ).json()
        async with support.browser_page() as page:
            await page.goto(created["checkout_url"])
            await page.fill("#card_number", "4000000000000002")
            await page.fill("#expiry", "12 / 34")
            await page.fill("#cvc", "123")
            await page.click("#pay")
            await page.wait_for_selector("#status")
            assert "declined" in (await page.inner_text("#status")).lower()
            await page.screenshot(path=support.ARTIFACTS / "sandbox-checkout-declined.png")

    async def test_a_setup_checkout_says_nothing_is_charged_and_saves_the_card(
        self, servers: tuple[str, str]
    ) -> None:
        gateway_url, site = servers
        token = mint_service_token(AuthSettings(), "billing_api")
        async with httpx.AsyncClient(
            base_url=gateway_url, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            created = (
                await client.post(
                    "/internal/v1/payments",
                    json=payment_body(
                        amount=0,
                        success_url=f"{site}/paid",
                        cancel_url=f"{site}/cancelled",
                        locale="en",
                    ),
                )
            ).json()

            async with support.browser_page() as page:
                await page.goto(created["checkout_url"])
                assert await page.inner_text(".amount") == "Save card — nothing is charged today"
                assert await page.inner_text("#pay") == "Save card"
                assert "RUB" not in await page.inner_text("main")
                await page.fill("#card_number", "4242 4242 4242 4242")
                await page.fill("#expiry", "12 / 34")
                await page.fill("#cvc", "123")
                await page.screenshot(path=support.ARTIFACTS / "sandbox-setup-filled.png")
                await page.click("#pay")
                await page.wait_for_url(f"{site}/paid")

            final = await wait_for_status(client, created["payment_id"], "succeeded")
            assert final["amount"] == 0
            assert str(final["payment_method_ref"]).startswith("pm_sb_")
