"""Reconciliation: payments whose outcome never arrived are asked of the gateway; the ones it
cannot settle back off and are parked, and never hold back the others."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from prometheus_client import REGISTRY

from billing_api.gateway import GatewayClient
from billing_api.lifecycle import service as lifecycle
from shared import clock
from shared.auth import AuthSettings
from tests.billing_api.conftest import Suite
from tests.billing_api.test_lifecycle import run_jobs


async def payments_the_gateway_refuses(suite: Suite, count: int, at: datetime) -> set[str]:
    """Pending card payments, created two days before ``at``, that the gateway answers with a
    422 when asked about (billing and the gateway disagree about them); the rest go through."""
    refused: set[str] = set()
    for index in range(count):
        payment_id = str(uuid4())
        refused.add(payment_id)
        await suite.execute(
            "INSERT INTO billing.payment (id, user_id, purpose, method, status, amount,"
            " currency, base_amount, discount_amount, quote, months, description,"
            " refunded_amount, checkout_url, created_at, updated_at)"
            " VALUES (:id, :user, 'top_up', 'card', 'pending', 10000, 'RUB', 10000, 0, '{}', 1,"
            " 'Wallet top-up', 0, 'http://gateway.test/sandbox/checkout/gone', :at, :at)",
            id=payment_id,
            user=uuid4(),
            at=at - timedelta(days=2, minutes=index),
        )

    async def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.path.rsplit("/", 1)[-1] in refused:
            return httpx.Response(
                422, json={"error": "UnprocessableEntity", "detail": "currency not supported"}
            )
        answer = await suite.gateway_http.send(request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    billing = suite.billing.state
    billing.gateway = GatewayClient(
        httpx.AsyncClient(transport=httpx.MockTransport(gateway)),
        billing.gateway.base_url,
        AuthSettings(),
    )
    return refused


async def subscription_whose_webhook_is_lost(suite: Suite) -> tuple[Any, dict[str, Any]]:
    """A checkout paid at the provider whose webhooks never reach the gateway (for the test)."""
    suite.gateway.state.sandbox_sender.http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(503))
    )
    user = suite.as_user()
    plan = await suite.plan("basic")
    created = (await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})).json()
    paid = await suite.pay(created["latest_payment"]["checkout_url"])
    assert paid.status_code == 200, paid.text
    return user, created


async def a_paid_movie_payment_whose_purchase_is_gone(suite: Suite, at: datetime) -> list[str]:
    """A pending card payment for a movie that points at no purchase (a row that breaks an
    invariant, so settling it fails every time), created two days before ``at``, which the
    gateway says was paid; the rest go through to the real gateway. Returns the list of asks
    about that payment, growing as the gateway is asked."""
    payment_id = str(uuid4())
    await suite.execute(
        "INSERT INTO billing.payment (id, user_id, purpose, method, status, amount,"
        " currency, base_amount, discount_amount, quote, months, description,"
        " refunded_amount, checkout_url, created_at, updated_at)"
        " VALUES (:id, :user, 'purchase', 'card', 'pending', 19900, 'RUB', 19900, 0, '{}', 1,"
        " 'Movie purchase', 0, 'http://gateway.test/sandbox/checkout/broken', :at, :at)",
        id=payment_id,
        user=uuid4(),
        at=at - timedelta(days=2),
    )
    asks: list[str] = []

    async def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.path.rsplit("/", 1)[-1] == payment_id:
            asks.append(payment_id)
            return httpx.Response(
                200,
                json={
                    "payment_id": payment_id,
                    "status": "succeeded",
                    "provider": "sandbox",
                    "checkout_url": None,
                    "expires_at": None,
                    "payment_method_ref": None,
                    "failure_code": None,
                    "failure_message": None,
                },
            )
        answer = await suite.gateway_http.send(request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    billing = suite.billing.state
    billing.gateway = GatewayClient(
        httpx.AsyncClient(transport=httpx.MockTransport(gateway)),
        billing.gateway.base_url,
        AuthSettings(),
    )
    return asks


def parked(reason: str) -> float:
    return REGISTRY.get_sample_value("billing_reconcile_parked_total", {"reason": reason}) or 0.0


def unsettled(reason: str) -> float:
    return REGISTRY.get_sample_value("billing_reconcile_unsettled_total", {"reason": reason}) or 0.0


class TestReconciliation:
    async def test_payments_the_gateway_refuses_never_starve_a_lost_webhook(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(lifecycle, "BATCH", 3)  # 200 in production, as many refused here
        user, created = await subscription_whose_webhook_is_lost(suite)
        at = clock.now() + timedelta(minutes=16)
        await payments_the_gateway_refuses(suite, 5, at)

        await run_jobs(suite, at)
        await run_jobs(suite, at + timedelta(seconds=30))

        assert (await user.subscription(created["id"]))["status"] == "active"

    async def test_a_payment_the_gateway_keeps_refusing_is_asked_less_often_then_parked(
        self, suite: Suite
    ) -> None:
        at = clock.now()
        await payments_the_gateway_refuses(suite, 1, at)
        refused_before, parked_before = unsettled("refused"), parked("refused")

        await run_jobs(suite, at)
        await run_jobs(suite, at + timedelta(minutes=4))
        assert unsettled("refused") - refused_before == 1, "not asked again within 5 minutes"
        await run_jobs(suite, at + timedelta(minutes=5))
        assert unsettled("refused") - refused_before == 2

        moment = at + timedelta(minutes=5)
        for _ in range(lifecycle.RECONCILE_MAX_ATTEMPTS + 5):
            moment += lifecycle.RECONCILE_MAX_PAUSE
            await run_jobs(suite, moment)

        assert unsettled("refused") - refused_before == lifecycle.RECONCILE_MAX_ATTEMPTS
        assert parked("refused") - parked_before == 1

    async def test_a_payment_that_fails_to_settle_holds_back_no_other_and_is_asked_again_later(
        self, suite: Suite
    ) -> None:
        user, created = await subscription_whose_webhook_is_lost(suite)
        at = clock.now() + timedelta(minutes=16)
        asks = await a_paid_movie_payment_whose_purchase_is_gone(suite, at)  # the longest due
        errors_before = unsettled("error")

        jobs_done = await run_jobs(suite, at)

        assert jobs_done["reconcile_pending_payments"] == 1
        assert (await user.subscription(created["id"]))["status"] == "active"
        assert len(asks) == 1 and unsettled("error") - errors_before == 1
        await run_jobs(suite, at + timedelta(minutes=4))
        assert len(asks) == 1, "not asked again within 5 minutes"
        await run_jobs(suite, at + timedelta(minutes=5))
        assert len(asks) == 2 and unsettled("error") - errors_before == 2
        status = await suite.scalar("SELECT status FROM payment WHERE id = :id", id=asks[0])
        assert status == "pending"
