"""The sandbox's dashboard: refunds and disputes made at the provider reach the gateway by
signed webhook and come out as the gateway's events, with what billing needs to record them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from payment_gateway.sandbox.provider import SandboxProvider
from shared import events
from tests import support
from tests.payment_gateway.conftest import Gateway
from tests.payment_gateway.test_payments_api import wait_for_status
from tests.payment_gateway.test_refunds_api import paid_payment, refund


async def dashboard(
    gateway: Gateway, payment: str, action: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    return await gateway.client.post(
        f"/sandbox/dashboard/payments/{payment}/{action}", json=body or {}
    )


async def published(gateway: Gateway) -> list[events.EventPayload]:
    await gateway.deliver_webhooks()
    await support.outbox_published(gateway.app.state.resources.engine)
    return [envelope.data for envelope in await gateway.probe.drain()]


class TestDashboardRefund:
    async def test_refund_in_the_dashboard_is_reported_as_refund_succeeded(
        self, gateway: Gateway
    ) -> None:
        payment_id = await paid_payment(gateway)
        await published(gateway)

        response = await dashboard(gateway, payment_id, "refunds", {"amount": 10000})
        assert response.status_code == 201, response.text
        made = response.json()

        await wait_for_status(gateway.client, payment_id, "partially_refunded")
        [event] = await published(gateway)
        assert isinstance(event, events.RefundSucceeded)
        assert (str(event.payment_id), event.amount.amount) == (payment_id, 10000)
        assert event.provider_ref == made["id"]
        # an id of its own, the same however often the provider reports the refund
        assert event.refund_id == uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:{made['id']}")

    async def test_refund_of_more_than_is_left_is_409(self, gateway: Gateway) -> None:
        payment_id = await paid_payment(gateway)
        assert (await refund(gateway, payment_id, 20000)).status_code == 201

        response = await dashboard(gateway, payment_id, "refunds", {"amount": 10000})

        assert response.status_code == 409
        assert response.json()["error"] == "NothingLeftToRefund"

    async def test_unpaid_payment_cannot_be_refunded_in_the_dashboard(
        self, gateway: Gateway
    ) -> None:
        created = (await gateway.create_payment()).json()
        response = await dashboard(gateway, created["payment_id"], "refunds")
        assert response.status_code == 404

    async def test_dashboard_needs_a_service_token(self, gateway: Gateway) -> None:
        payment_id = await paid_payment(gateway)
        response = await gateway.anonymous.post(
            f"/sandbox/dashboard/payments/{payment_id}/refunds", json={}
        )
        assert response.status_code == 401


class TestDispute:
    async def test_dispute_is_reported_with_the_amount_held_back(self, gateway: Gateway) -> None:
        payment_id = await paid_payment(gateway)
        assert (await refund(gateway, payment_id, 9900)).status_code == 201
        await published(gateway)

        response = await dashboard(gateway, payment_id, "disputes", {"reason": "fraudulent"})
        assert response.status_code == 201, response.text
        dispute = response.json()
        assert dispute["amount"] == 20000

        await wait_for_status(gateway.client, payment_id, "disputed")
        [event] = await published(gateway)
        assert isinstance(event, events.PaymentDisputed)
        assert event.reason == "fraudulent"
        assert event.disputed_amount is not None
        assert event.disputed_amount.amount == 20000
        assert event.dispute_ref == dispute["id"]

    async def test_a_payment_is_disputed_once_and_then_not_refundable(
        self, gateway: Gateway
    ) -> None:
        payment_id = await paid_payment(gateway)
        assert (await dashboard(gateway, payment_id, "disputes")).status_code == 201

        again = await dashboard(gateway, payment_id, "disputes")
        refunded = await dashboard(gateway, payment_id, "refunds")

        assert (again.status_code, refunded.status_code) == (409, 409)
        assert again.json()["error"] == "AlreadyDisputed"


class DashboardHeld:
    """The sandbox, but a dashboard refund or dispute waits, its transaction (and the payment's
    lock it took) open, just before it records its webhook, until released."""

    def __init__(self, provider: SandboxProvider) -> None:
        self.enqueue = provider._enqueue
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(
        self, db: Any, event_type: str, object_id: str, payment_id: Any, **kwargs: Any
    ) -> None:
        extra = kwargs.get("extra") or {}
        made_in_dashboard = event_type == "charge.dispute.created" or (
            event_type == "refund.succeeded" and extra.get("refund_id") is None
        )
        if made_in_dashboard and not self.reached.is_set():
            self.reached.set()
            await self.release.wait()
        await self.enqueue(db, event_type, object_id, payment_id, **kwargs)


async def finished_or_waiting_for_a_lock(gateway: Gateway, task: asyncio.Task[Any]) -> None:
    """Until ``task`` is done or a transaction of this database waits for a row lock."""
    engine = gateway.app.state.resources.engine

    async def settled() -> bool:
        if task.done():
            return True
        async with engine.connect() as connection:
            waiting = await connection.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        return bool(waiting)

    await support.eventually(settled, timeout=15)


class TestDashboardMeetsTheApi:
    @pytest.mark.parametrize("action", ["refunds", "disputes"])
    async def test_a_refund_asked_while_the_dashboard_moves_the_money_never_exceeds_the_payment(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch, action: str
    ) -> None:
        payment_id = await paid_payment(gateway)
        held = DashboardHeld(gateway.app.state.sandbox)
        monkeypatch.setattr(gateway.app.state.sandbox, "_enqueue", held)

        in_dashboard = asyncio.create_task(dashboard(gateway, payment_id, action))
        await asyncio.wait_for(held.reached.wait(), 15)  # it has taken what is left: 29,900
        ours = asyncio.create_task(refund(gateway, payment_id, 29900))
        await finished_or_waiting_for_a_lock(gateway, ours)
        held.release.set()
        made, asked = await asyncio.gather(in_dashboard, ours)

        assert made.status_code == 201, made.text
        assert made.json()["amount"] == 29900
        assert asked.status_code == 201, asked.text
        assert asked.json()["status"] == "failed", "the dashboard took all of it first"
