"""Refunds billing decided on its own: the ``send_queued_refunds`` job tries each again after a
growing pause until it is sent, or parks it for staff; one that cannot be sent never holds back
the others, and one the provider fails is tried again as a new refund.

The refunds here are of a checkout attempt paid after another attempt had paid for the same
subscription (``PAID_FOR_NOTHING``); the jobs run the pass ``cinema billing run-jobs --now`` runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import orjson
import sqlalchemy as sa
from prometheus_client import REGISTRY

from billing_api.gateway import GatewayClient
from billing_api.refunds import handlers, retries
from shared import clock, events
from shared.auth import AuthSettings
from shared.money import Money
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_admin_api import admin
from tests.billing_api.test_admin_ui import admin_token, login
from tests.billing_api.test_late_checkout_payments import declined_then_paid_again, payment_status
from tests.billing_api.test_lifecycle import run_jobs
from tests.billing_api.test_provider_side import assert_balanced, statement
from tests.billing_api.test_refunds import BASIC_PRICE, NeverAsked, handle, paid_subscription

# --- helpers ---------------------------------------------------------------------------------


async def late_payment_refund_queued(suite: Suite, user: User) -> str:
    """A checkout attempt paid after another attempt had paid for the user's subscription;
    billing has queued its full refund. Returns that payment's id."""
    subscription, first_checkout = await declined_then_paid_again(suite, user)
    paid = await suite.pay(first_checkout)
    assert paid.status_code == 200, paid.text
    late_id: str = next(
        p["id"]
        for p in (await user.get("/api/v1/payments")).json()["items"]
        if p["purpose"] == "subscription" and p["id"] != subscription["latest_payment"]["id"]
    )
    await payment_status(user, late_id, "succeeded")

    async def queued() -> bool:
        return await refunds_of(suite, late_id) == [(BASIC_PRICE, "queued")]

    await support.eventually(queued, timeout=15)
    return late_id


async def refunds_of(suite: Suite, payment_id: str) -> list[tuple[int, str]]:
    """The payment's refunds in billing (amount, status), oldest first."""
    async with suite.billing.state.resources.engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT amount, status FROM refund WHERE payment_id = :p ORDER BY created_at, id"
            ),
            {"p": payment_id},
        )
        return [(row.amount, row.status) for row in rows]


async def pending_refund(suite: Suite, payment_id: str) -> UUID:
    found = await suite.scalar(
        "SELECT id FROM refund WHERE payment_id = :p AND status = 'pending'", p=payment_id
    )
    assert found is not None, await refunds_of(suite, payment_id)
    return UUID(str(found))


async def provider_failed(suite: Suite, user: User, payment_id: str) -> None:
    """The provider reports the payment's pending refund failed (``refund.failed``)."""
    await handle(
        suite,
        handlers.on_refund_failed,
        events.RefundFailed(
            refund_id=await pending_refund(suite, payment_id),
            payment_id=UUID(payment_id),
            customer=events.Customer(id=user.id),
            amount=Money(amount=BASIC_PRICE, currency="RUB"),
            provider="sandbox",
            failure_message="card account closed",
        ),
    )


async def money_back_at_the_gateway(suite: Suite, payment_id: str) -> tuple[int, int]:
    """(refunds that succeeded, their total) of a payment, as the gateway recorded them."""
    async with suite.gateway.state.resources.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT count(*), coalesce(sum(amount), 0) FROM gateway.refund"
                    " WHERE payment_id = :p AND status = 'succeeded'"
                ),
                {"p": payment_id},
            )
        ).one()
    return int(row[0]), int(row[1])


async def gateway_refund_event_applied(suite: Suite, payment_id: str) -> None:
    """Wait until billing's worker has consumed the gateway's ``refund.succeeded`` of a payment."""
    messages = await support.outbox_messages(
        suite.gateway.state.resources.engine, "refund.succeeded"
    )
    refunded = [UUID(m["id"]) for m in messages if m["data"]["payment_id"] == payment_id]
    assert refunded, "the gateway recorded no refund.succeeded for the payment"
    event_id = refunded[0]

    async def consumed() -> bool:
        found = await suite.scalar("SELECT count(*) FROM inbox WHERE event_id = :e", e=event_id)
        return bool(found)

    await support.eventually(consumed, timeout=15)


class Gateway:
    """The real gateway, except for refunds of ``refused`` payments (a 409, as when billing and
    the gateway disagree) and of ``garbled`` ones (a 200 whose body billing cannot read, so
    sending them fails unexpectedly). Counts the refunds asked, by payment."""

    def __init__(self, suite: Suite) -> None:
        self.refused: set[str] = set()
        self.garbled: set[str] = set()
        self.asked: dict[str, int] = {}

        async def send(request: httpx.Request) -> httpx.Response:
            if request.method == "POST" and request.url.path == "/internal/v1/refunds":
                body = orjson.loads(request.content)
                payment_id = body["payment_id"]
                self.asked[payment_id] = self.asked.get(payment_id, 0) + 1
                if payment_id in self.refused:
                    return httpx.Response(
                        409,
                        json={
                            "error": "RefundExceedsPayment",
                            "detail": "at most 0 RUB can still be refunded",
                        },
                    )
                if payment_id in self.garbled:
                    return httpx.Response(200, json={"refund_id": body["refund_id"]})
            answer = await suite.gateway_http.send(request)
            return httpx.Response(
                answer.status_code, headers=answer.headers, content=answer.content
            )

        self.suite = suite
        self.real = suite.billing.state.gateway
        suite.billing.state.gateway = GatewayClient(
            httpx.AsyncClient(transport=httpx.MockTransport(send)),
            self.real.base_url,
            AuthSettings(),
        )

    def restore(self) -> None:
        self.suite.billing.state.gateway = self.real


def retried(reason: str) -> float:
    return REGISTRY.get_sample_value("billing_refund_retries_total", {"reason": reason}) or 0.0


def parked(reason: str) -> float:
    return REGISTRY.get_sample_value("billing_refund_parked_total", {"reason": reason}) or 0.0


async def staff_see_parked_refund(suite: Suite, user: User) -> None:
    """The admin UI's refunds, searched by the user's id, show the refund ``parked``."""
    assert (await login(suite.http, "", admin_token())).status_code == 302
    page = await suite.http.get("/admin/refund/list", params={"search": str(user.id)})
    assert page.status_code == 200, page.text[:500]
    assert "parked" in page.text


# --- tests -----------------------------------------------------------------------------------


class TestSendingQueuedRefunds:
    async def test_refunds_the_gateway_refuses_or_that_fail_to_send_hold_back_no_later_refund(
        self, suite: Suite
    ) -> None:
        refused_user, garbled_user, user = suite.as_user(), suite.as_user(), suite.as_user()
        refused = await late_payment_refund_queued(suite, refused_user)
        garbled = await late_payment_refund_queued(suite, garbled_user)
        late = await late_payment_refund_queued(suite, user)  # queued last: the pass's last
        gateway = Gateway(suite)
        gateway.refused.add(refused)
        gateway.garbled.add(garbled)
        before = retried(retries.REFUSED), retried(retries.ERROR)
        at = clock.now()

        done = await run_jobs(suite, at)

        assert done["send_queued_refunds"] == 1
        refunded = await payment_status(user, late, "refunded")
        assert refunded["refunded"]["amount"] == BASIC_PRICE
        assert gateway.asked == {refused: 1, garbled: 1, late: 1}
        assert (retried(retries.REFUSED), retried(retries.ERROR)) == (before[0] + 1, before[1] + 1)
        for payment_id in (refused, garbled):
            assert await refunds_of(suite, payment_id) == [(BASIC_PRICE, "queued")]

        await run_jobs(suite, at + timedelta(seconds=30))
        assert gateway.asked == {refused: 1, garbled: 1, late: 1}, "not tried within a minute"
        await run_jobs(suite, at + retries.FIRST_RETRY)
        assert gateway.asked == {refused: 2, garbled: 2, late: 1}
        await run_jobs(suite, at + retries.FIRST_RETRY + timedelta(seconds=90))
        assert gateway.asked == {refused: 2, garbled: 2, late: 1}, "the next pause is longer"

    async def test_a_refund_the_gateway_keeps_refusing_is_parked_for_staff_who_refund_by_hand(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        late = await late_payment_refund_queued(suite, user)
        gateway = Gateway(suite)
        gateway.refused.add(late)
        parked_before = parked(retries.REFUSED)

        moment = clock.now()
        for _ in range(retries.MAX_ATTEMPTS + 3):
            await run_jobs(suite, moment)
            moment += retries.MAX_PAUSE

        assert gateway.asked == {late: retries.MAX_ATTEMPTS}
        assert parked(retries.REFUSED) - parked_before == 1
        assert await refunds_of(suite, late) == [(BASIC_PRICE, "parked")]
        payment = await payment_status(user, late, "succeeded")
        assert payment["refunded"]["amount"] == 0, "the parked refund's amount is freed"
        await staff_see_parked_refund(suite, user)

        gateway.restore()
        by_hand = await admin(
            suite, "POST", f"/api/v1/admin/payments/{late}/refund", json={"reason": "parked"}
        )
        assert by_hand.status_code == 201, by_hand.text
        refunded = await payment_status(user, late, "refunded")
        assert refunded["refunded"]["amount"] == BASIC_PRICE
        assert await money_back_at_the_gateway(suite, late) == (1, BASIC_PRICE)


class TestRefundsTheProviderFails:
    async def test_billing_s_own_refund_is_sent_again_and_the_money_goes_back_once(
        self, suite: Suite
    ) -> None:
        user, asker = suite.as_user(), suite.as_user()
        late = await late_payment_refund_queued(suite, user)
        _, asked_payment = await paid_subscription(suite, asker)
        real = suite.billing.state.gateway
        suite.billing.state.gateway = NeverAsked(
            suite.gateway_http, "http://gateway.test", AuthSettings()
        )
        asked = await asker.post(f"/api/v1/payments/{asked_payment['id']}/refund")
        assert asked.status_code == 201, asked.text
        at = clock.now()
        assert (await run_jobs(suite, at))["send_queued_refunds"] == 1
        with clock.frozen(at):
            await provider_failed(suite, user, late)
            await provider_failed(suite, asker, asked_payment["id"])
        suite.billing.state.gateway = real

        assert await refunds_of(suite, late) == [(BASIC_PRICE, "failed"), (BASIC_PRICE, "queued")]
        assert (await run_jobs(suite, at + timedelta(seconds=30)))["send_queued_refunds"] == 0
        assert (await run_jobs(suite, at + retries.FIRST_RETRY))["send_queued_refunds"] == 1

        refunded = await payment_status(user, late, "refunded")
        assert (
            refunded["refunded"] == refunded["amount"] == {"amount": BASIC_PRICE, "currency": "RUB"}
        )
        assert await refunds_of(suite, late) == [
            (BASIC_PRICE, "failed"),
            (BASIC_PRICE, "succeeded"),
        ]
        assert await money_back_at_the_gateway(suite, late) == (1, BASIC_PRICE)
        await gateway_refund_event_applied(suite, late)  # billing's worker saw it too
        assert await refunds_of(suite, late) == [
            (BASIC_PRICE, "failed"),
            (BASIC_PRICE, "succeeded"),
        ]
        transactions = await statement(user)
        assert_balanced(transactions)
        refunds_posted = [t for t in transactions if t["kind"] == "refund"]
        assert len(refunds_posted) == 1
        # The refund the user asked for and the provider failed stays failed: they may ask again.
        await run_jobs(suite, at + retries.MAX_PAUSE)
        assert await refunds_of(suite, asked_payment["id"]) == [(BASIC_PRICE, "failed")]
        after = (await asker.get(f"/api/v1/payments/{asked_payment['id']}")).json()
        assert (after["status"], after["refunded"]["amount"]) == ("succeeded", 0)

    async def test_billing_s_own_refund_the_provider_keeps_failing_is_parked(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        late = await late_payment_refund_queued(suite, user)
        suite.billing.state.gateway = NeverAsked(
            suite.gateway_http, "http://gateway.test", AuthSettings()
        )
        parked_before = parked(retries.FAILED)

        moment: datetime = clock.now()
        for _ in range(retries.MAX_ATTEMPTS):
            assert (await run_jobs(suite, moment))["send_queued_refunds"] == 1
            with clock.frozen(moment):
                await provider_failed(suite, user, late)
            moment += retries.MAX_PAUSE
        assert (await run_jobs(suite, moment))["send_queued_refunds"] == 0

        tried = await refunds_of(suite, late)
        assert tried == [(BASIC_PRICE, "failed")] * (retries.MAX_ATTEMPTS - 1) + [
            (BASIC_PRICE, "parked")
        ]
        assert parked(retries.FAILED) - parked_before == 1
        payment: dict[str, Any] = await payment_status(user, late, "succeeded")
        assert payment["refunded"]["amount"] == 0
        await staff_see_parked_refund(suite, user)
