"""The YooKassa provider on its own, against the stand-in: a retried request creates nothing
twice, and YooKassa refusing or not answering is a provider error, never a decline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
import pytest

from payment_gateway.config import YOOKASSA_NOTIFICATION_NETWORKS, parse_networks
from payment_gateway.providers.base import CheckoutRequest, Customer, ProviderError, RefundRequest
from payment_gateway.providers.yookassa_provider import YooKassaProvider
from tests import support
from tests.payment_gateway.yookassa_standin import SHOP_ID, YooKassaStandin


@pytest.fixture
def standin() -> Iterator[YooKassaStandin]:
    with YooKassaStandin() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def provider(http: httpx.AsyncClient, api_base: str, secret_key: str) -> YooKassaProvider:
    return YooKassaProvider(
        SHOP_ID,
        secret_key,
        api_base=api_base,
        http=http,
        allowed_networks=parse_networks(YOOKASSA_NOTIFICATION_NETWORKS),
    )


def checkout() -> CheckoutRequest:
    return CheckoutRequest(
        payment_id=uuid4(),
        customer=Customer(id=uuid4(), email="viewer@example.com"),
        amount=29900,
        currency="RUB",
        description="Premium, 1 month",
        success_url="http://cinema.test/paid",
        cancel_url="http://cinema.test/cancelled",
        save_payment_method=True,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )


async def test_a_retried_checkout_is_the_same_yookassa_payment(
    standin: YooKassaStandin, http: httpx.AsyncClient
) -> None:
    yookassa = provider(http, standin.api_base, standin.secret_key)
    request = checkout()

    first = await yookassa.create_checkout(request)
    again = await yookassa.create_checkout(request)

    assert (again.provider_ref, again.checkout_url) == (first.provider_ref, first.checkout_url)
    assert len({call.idempotence_key for call in standin.requests_to("POST", "/v3/payments")}) == 1


async def test_a_retried_refund_is_the_same_refund(
    standin: YooKassaStandin, http: httpx.AsyncClient
) -> None:
    yookassa = provider(http, standin.api_base, standin.secret_key)
    created = await yookassa.create_checkout(checkout())
    standin.pay(created.provider_ref)
    request = RefundRequest(
        refund_id=uuid4(),
        payment_id=uuid4(),
        payment_provider_ref=created.provider_ref,
        amount=10000,
        currency="RUB",
    )

    first = await yookassa.refund(request)
    again = await yookassa.refund(request)

    assert first.provider_ref == again.provider_ref
    assert len(standin.refunds_of(created.provider_ref)) == 1


async def test_wrong_credentials_are_a_provider_error(
    standin: YooKassaStandin, http: httpx.AsyncClient
) -> None:
    yookassa = provider(http, standin.api_base, "test_not_this_shops_key_0000000000000000")

    with pytest.raises(ProviderError, match="401"):
        await yookassa.create_checkout(checkout())


async def test_yookassa_not_answering_is_a_provider_error(http: httpx.AsyncClient) -> None:
    yookassa = provider(http, f"http://127.0.0.1:{support.free_port()}/v3", "test_key")

    with pytest.raises(ProviderError, match="ConnectError"):
        await yookassa.fetch_payment("2d5ab1f4-000f-5000-a000-1c2d3e4f5a6b")
