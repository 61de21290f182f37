"""Money moved at the provider without billing asking: dashboard refunds and disputes.

Through the real gateway: the sandbox's dashboard (as staff in Stripe's, or the payer's bank)
refunds or disputes, its signed webhook reaches the gateway, and billing's consumer records
what the gateway reports. The Stripe path runs against the Stripe stand-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import sqlalchemy as sa
import stripe

from billing_api import demo
from billing_api.activation.handlers import make_consumer
from billing_api.app import create_app
from billing_api.config import BillingSettings
from billing_api.gateway import GatewayClient
from billing_api.refunds import handlers, provider_side
from shared import events
from shared.auth import AuthSettings, mint_service_token
from shared.broker import Broker
from shared.money import Money
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings
from tests import support
from tests.billing_api.conftest import Suite, User, truncate_billing
from tests.billing_api.test_refunds import (
    BASIC_PRICE,
    AnswersPending,
    NeverAsked,
    balance,
    handle,
    latest_grants,
    paid_subscription,
    published,
    topped_up,
    upgraded,
)
from tests.payment_gateway.conftest import gateway_settings
from tests.payment_gateway.conftest import truncate as truncate_gateway
from tests.payment_gateway.stripe_standin import StripeStandin, sign_webhook, webhook_body
from tests.shared.messaging import Probe

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

STRIPE_SECRET = "whsec_provider_side_test"

# --- helpers ---------------------------------------------------------------------------------


def service_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_service_token(AuthSettings(), 'support')}"}


async def dashboard(suite: Suite, payment_id: str, action: str, body: Any = None) -> Any:
    """Refund or dispute in the sandbox's dashboard; its webhook then reaches the gateway."""
    response = await suite.gateway_http.post(
        f"/sandbox/dashboard/payments/{payment_id}/{action}",
        json=body or {},
        headers=service_headers(),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def payment_of(user: User, payment_id: str) -> dict[str, Any]:
    result: dict[str, Any] = (await user.get(f"/api/v1/payments/{payment_id}")).json()
    return result


async def wait_for_payment(user: User, payment_id: str, status: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        seen.update(await payment_of(user, payment_id))
        return bool(seen["status"] == status)

    await support.eventually(reached, timeout=15)
    return seen


async def statement(user: User) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await user.get("/api/v1/statement")).json()["items"]
    return items


def lines_of(transaction: dict[str, Any]) -> set[tuple[str, str, int]]:
    return {
        (line["account"], line["side"], line["amount"]["amount"]) for line in transaction["lines"]
    }


def assert_balanced(transactions: list[dict[str, Any]]) -> None:
    for transaction in transactions:
        sides = {"debit": 0, "credit": 0}
        for line in transaction["lines"]:
            sides[line["side"]] += line["amount"]["amount"]
        assert sides["debit"] == sides["credit"], transaction


async def count(suite: Suite, sql: str, **params: Any) -> int:
    return int(await suite.scalar(sql, **params))


def refund_completed(payloads: list[events.EventPayload]) -> list[events.RefundCompleted]:
    return [p for p in payloads if isinstance(p, events.RefundCompleted)]


@pytest.fixture
async def notices(suite: Suite, broker: Broker) -> AsyncIterator[Probe]:
    probe = await Probe.bind(broker, "refund.completed")
    yield probe
    await probe.close()


async def drained(suite: Suite, probe: Probe) -> list[events.EventPayload]:
    await support.outbox_published(suite.billing.state.resources.engine)
    return [envelope.data for envelope in await probe.drain()]


# --- refunds made at the provider -------------------------------------------------------------


class TestRefundMadeAtTheProvider:
    async def test_dashboard_refund_refunds_the_payment_cancels_and_revokes_access(
        self, suite: Suite, notices: Probe
    ) -> None:
        user = suite.as_user()
        subscription, payment = await paid_subscription(suite, user)
        await published(suite)

        refund = await dashboard(suite, payment["id"], "refunds")
        assert refund["amount"] == BASIC_PRICE

        await wait_for_payment(user, payment["id"], "refunded")
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"
        assert latest_grants(await published(suite), user) == ()
        transactions = await statement(user)
        assert [t["kind"] for t in transactions] == ["refund", "payment_captured"]
        assert lines_of(transactions[0]) == {
            ("refunds", "debit", BASIC_PRICE),
            ("provider_clearing:sandbox", "credit", BASIC_PRICE),
        }
        assert_balanced(transactions)
        [notice] = refund_completed(await drained(suite, notices))
        assert (notice.user_id, notice.amount.amount) == (user.id, BASIC_PRICE)
        assert (
            await count(
                suite, "SELECT count(*) FROM refund WHERE provider_ref = :r", r=refund["id"]
            )
            == 1
        )

    async def test_redelivered_refund_records_nothing_twice(
        self, suite: Suite, notices: Probe
    ) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        made = await dashboard(suite, payment["id"], "refunds", {"amount": 10000})
        await wait_for_payment(user, payment["id"], "partially_refunded")
        refund_id = await suite.scalar("SELECT id FROM refund")
        await drained(suite, notices)

        again = events.RefundSucceeded(
            refund_id=refund_id,
            payment_id=UUID(payment["id"]),
            customer=events.Customer(id=user.id),
            amount=Money(amount=10000, currency="RUB"),
            provider="sandbox",
            provider_ref=made["id"],
        )
        await handle(suite, handlers.on_refund_succeeded, again)  # a new envelope, same refund
        # the same provider refund under another id (e.g. recorded again at the gateway)
        renamed = again.model_copy(update={"refund_id": uuid4()})
        await handle(suite, handlers.on_refund_succeeded, renamed)

        assert await count(suite, "SELECT count(*) FROM refund") == 1
        assert await count(suite, "SELECT refunded_amount FROM payment") == 10000
        assert [t["kind"] for t in await statement(user)] == ["refund", "payment_captured"]
        assert refund_completed(await drained(suite, notices)) == []
        assert (await payment_of(user, payment["id"]))["status"] == "partially_refunded"

    async def test_refund_of_ours_reported_under_another_id_is_the_same_refund(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        # the provider has not answered yet (no report of ours comes, so none overtakes this one)
        suite.billing.state.gateway = NeverAsked(
            suite.gateway_http, "http://gateway.test", AuthSettings()
        )
        ours = (await user.post(f"/api/v1/payments/{payment['id']}/refund")).json()
        assert ours["status"] == "pending"
        # the provider reports the full refund under an id billing never gave it: it cannot
        # have made a second one (that would exceed the payment), so it is ours
        reported = events.RefundSucceeded(
            refund_id=uuid4(),
            payment_id=UUID(payment["id"]),
            customer=events.Customer(id=user.id),
            amount=Money(amount=BASIC_PRICE, currency="RUB"),
            provider="sandbox",
            provider_ref="re_sb_reported",
        )
        await handle(suite, handlers.on_refund_succeeded, reported)
        await handle(suite, handlers.on_refund_succeeded, reported)  # and again: found by its ref

        assert await count(suite, "SELECT count(*) FROM refund") == 1
        assert await suite.scalar("SELECT status FROM refund") == "succeeded"
        assert await suite.scalar("SELECT provider_ref FROM refund") == "re_sb_reported"
        assert await count(suite, "SELECT refunded_amount FROM payment") == BASIC_PRICE
        assert (
            await count(suite, "SELECT count(*) FROM ledger_transaction WHERE kind = 'refund'") == 1
        )

    async def test_refund_of_ours_reported_again_under_another_id_after_it_succeeded_is_the_same(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        suite.billing.state.gateway = AnswersPending(
            suite.gateway_http, "http://gateway.test", AuthSettings()
        )
        ours = (await user.post(f"/api/v1/payments/{payment['id']}/refund")).json()
        assert ours["status"] == "pending"

        async def succeeded() -> bool:  # the gateway's report of ours, under our id
            status = await suite.scalar("SELECT status FROM refund WHERE id = :id", id=ours["id"])
            return bool(status == "succeeded")

        await support.eventually(succeeded, timeout=15)
        async with suite.gateway.state.resources.engine.connect() as conn:
            provider_ref = await conn.scalar(
                sa.text("SELECT provider_ref FROM refund WHERE id = :id"), {"id": ours["id"]}
            )
        assert provider_ref
        # the same provider refund reported again, under an id billing never gave it
        reported = events.RefundSucceeded(
            refund_id=uuid4(),
            payment_id=UUID(payment["id"]),
            customer=events.Customer(id=user.id),
            amount=Money(amount=BASIC_PRICE, currency="RUB"),
            provider="sandbox",
            provider_ref=provider_ref,
        )
        await handle(suite, handlers.on_refund_succeeded, reported)

        assert await count(suite, "SELECT count(*) FROM refund") == 1
        assert await suite.scalar("SELECT provider_ref FROM refund") == provider_ref
        assert await count(suite, "SELECT refunded_amount FROM payment") == BASIC_PRICE
        assert (
            await count(suite, "SELECT count(*) FROM ledger_transaction WHERE kind = 'refund'") == 1
        )

    async def test_refund_that_would_exceed_the_payment_is_not_recorded(self, suite: Suite) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        # ours stays pending: the provider has not answered
        suite.billing.state.gateway = NeverAsked(
            suite.gateway_http, "http://gateway.test", AuthSettings()
        )
        await user.post(f"/api/v1/payments/{payment['id']}/refund")
        other = events.RefundSucceeded(
            refund_id=uuid4(),
            payment_id=UUID(payment["id"]),
            customer=events.Customer(id=user.id),
            amount=Money(amount=100, currency="RUB"),
            provider="sandbox",
            provider_ref="re_sb_other",
        )
        with pytest.raises(provider_side.RefundBeyondPayment):  # retried by the consumer
            await handle(suite, handlers.on_refund_succeeded, other)
        assert await count(suite, "SELECT count(*) FROM refund") == 1
        assert await count(suite, "SELECT refunded_amount FROM payment") == BASIC_PRICE

    async def test_dashboard_refund_of_a_top_up_takes_it_out_of_the_wallet(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        top_up = await topped_up(suite, user, 50000)
        await dashboard(suite, top_up["id"], "refunds", {"amount": 20000})

        await wait_for_payment(user, top_up["id"], "partially_refunded")
        assert await balance(user) == 30000
        transactions = await statement(user)
        assert lines_of(transactions[0]) == {
            (f"user_wallet:{user.id}", "debit", 20000),
            ("provider_clearing:sandbox", "credit", 20000),
        }
        assert_balanced(transactions)

    async def test_a_credit_refunded_at_the_provider_is_not_given_back_again_with_its_upgrade(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        premium = await suite.plan("premium")
        subscription, first = await paid_subscription(suite, user)
        upgrade = await upgraded(suite, user, subscription["id"], premium["id"])
        assert 59900 - upgrade["amount"]["amount"] > 0, "part of the first payment was credited"

        await dashboard(suite, first["id"], "refunds")  # staff give the first payment back
        await wait_for_payment(user, first["id"], "refunded")
        refunded = await user.post(f"/api/v1/payments/{upgrade['id']}/refund")
        assert refunded.status_code == 201, refunded.text
        assert refunded.json()["amount"]["amount"] == upgrade["amount"]["amount"]

        assert await balance(user) == 0, "the credited money went back to the card already"
        assert [t["kind"] for t in await statement(user)].count("plan_credit_released") == 0


# --- disputes --------------------------------------------------------------------------------


class TestDispute:
    async def test_dispute_of_a_card_subscription_shows_disputed_and_revokes_access(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription, payment = await paid_subscription(suite, user)
        await published(suite)

        dispute = await dashboard(suite, payment["id"], "disputes", {"reason": "fraudulent"})
        assert dispute["amount"] == BASIC_PRICE

        await wait_for_payment(user, payment["id"], "disputed")
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"
        assert latest_grants(await published(suite), user) == ()
        transactions = await statement(user)
        assert transactions[0]["kind"] == "dispute"
        assert lines_of(transactions[0]) == {
            ("disputes", "debit", BASIC_PRICE),
            ("provider_clearing:sandbox", "credit", BASIC_PRICE),
        }
        assert_balanced(transactions)
        quote = (await user.get(f"/api/v1/payments/{payment['id']}/refund-quote")).json()
        assert quote["refundable_amount"]["amount"] == 0

    async def test_disputed_top_up_is_frozen_and_a_purchase_needing_it_is_409(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        top_up = await topped_up(suite, user, 50000)
        await dashboard(suite, top_up["id"], "disputes")

        await wait_for_payment(user, top_up["id"], "disputed")
        wallet = (await user.get("/api/v1/wallet")).json()
        assert wallet["balances"] == [{"amount": 0, "currency": "RUB"}]
        assert wallet["frozen"] == [{"amount": 50000, "currency": "RUB"}]
        assert wallet["owed"] == []
        plan = await suite.plan("basic")  # 29,900: the frozen 50,000 would have paid for it
        bought = await user.post(
            "/api/v1/subscriptions", json={"plan_id": plan["id"], "payment_method": "wallet"}
        )
        assert bought.status_code == 409, bought.text
        assert bought.json()["error"] == "InsufficientFunds"
        assert_balanced(await statement(user))

    async def test_disputed_top_up_already_spent_shows_what_is_owed(self, suite: Suite) -> None:
        user = suite.as_user()
        top_up = await topped_up(suite, user, 50000)
        await paid_subscription(suite, user, method="wallet")  # spends 29,900 of it
        await dashboard(suite, top_up["id"], "disputes")

        await wait_for_payment(user, top_up["id"], "disputed")
        wallet = (await user.get("/api/v1/wallet")).json()
        assert wallet["balances"] == [{"amount": 0, "currency": "RUB"}]
        assert wallet["owed"] == [{"amount": BASIC_PRICE, "currency": "RUB"}]
        # the next top-up pays off what is owed first
        second = await user.post("/api/v1/wallet/top-ups", json={"amount": 40000})
        await suite.pay(second.json()["payment"]["checkout_url"])

        async def credited() -> bool:
            return await balance(user) == 40000 - BASIC_PRICE

        await support.eventually(credited, timeout=15)
        assert (await user.get("/api/v1/wallet")).json()["owed"] == []

    async def test_redelivered_dispute_is_posted_once(self, suite: Suite) -> None:
        user = suite.as_user()
        top_up = await topped_up(suite, user, 50000)
        await dashboard(suite, top_up["id"], "disputes")
        await wait_for_payment(user, top_up["id"], "disputed")

        again = events.PaymentDisputed(
            payment_id=UUID(top_up["id"]),
            customer=events.Customer(id=user.id),
            amount=Money(amount=50000, currency="RUB"),
            provider="sandbox",
            disputed_amount=Money(amount=50000, currency="RUB"),
        )
        await handle(suite, handlers.on_payment_disputed, again)

        assert (
            await count(suite, "SELECT count(*) FROM ledger_transaction WHERE kind = 'dispute'")
            == 1
        )
        assert (await user.get("/api/v1/wallet")).json()["frozen"] == [
            {"amount": 50000, "currency": "RUB"}
        ]


# --- the same through Stripe ------------------------------------------------------------------


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeStandin]:
    monkeypatch.setattr(stripe, "enable_telemetry", False)
    with StripeStandin() as server:
        yield server


@pytest.fixture
async def stripe_suite(
    standin: StripeStandin, service_settings: ServiceSettings, broker: Broker
) -> AsyncIterator[Suite]:
    """billing and its consumer in front of the real gateway with Stripe (the stand-in)."""
    from payment_gateway.app import create_app as create_gateway
    from payment_gateway.providers.stripe_provider import StripeProvider

    provider = StripeProvider(
        standin.api_key, STRIPE_SECRET, api_base=standin.url, http_client=stripe.HTTPXClient()
    )
    gateway = create_gateway(
        gateway_settings(service_settings, provider="stripe", sandbox_enabled=False),
        stripe=provider,
    )
    billing = create_app(BillingSettings(**service_settings.model_dump()))
    async with (
        gateway.router.lifespan_context(gateway),
        billing.router.lifespan_context(billing),
    ):
        await gateway.state.resources.broker.wait_connected()
        await billing.state.resources.broker.wait_connected()
        await truncate_gateway(gateway)
        await truncate_billing(billing)
        to_gateway = httpx.AsyncClient(
            transport=httpx.ASGITransport(gateway), base_url="http://gateway.test"
        )
        billing.state.gateway = GatewayClient(to_gateway, "http://gateway.test", AuthSettings())
        async with billing.state.session_factory() as session, session.begin():
            await demo.load(session)
        probe = await Probe.bind_many(broker, ("entitlements.changed", "subscription.*"))
        resources = billing.state.resources
        consumer = make_consumer(broker, resources.session_factory)
        await consumer.start()
        relay = asyncio.create_task(
            OutboxRelay(resources.engine, resources.broker, schema="billing").run()
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(billing), base_url="http://billing.test"
        ) as http:
            yield Suite(billing, gateway, http, to_gateway, probe)
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        await consumer.stop()
        await support.delete_consumer_queues(broker, consumer.queues)
        await probe.close()
        await to_gateway.aclose()
    await provider.aclose()


async def stripe_webhook(
    gateway: httpx.AsyncClient, event_type: str, obj: Any, event_id: str
) -> None:
    body = webhook_body(event_type, obj, event_id=event_id)
    response = await gateway.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign_webhook(body, STRIPE_SECRET, int(time.time()))},
    )
    assert response.status_code == 200, response.text


async def paid_by_stripe(
    suite: Suite, standin: StripeStandin, user: User
) -> tuple[dict[str, Any], str]:
    """An active subscription paid in Stripe Checkout; answers it and its PaymentIntent."""
    plan = await suite.plan("basic")
    created = await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})
    assert created.status_code == 201, created.text
    subscription = created.json()
    [session] = standin.objects_of("checkout.session")
    intent_id = standin.complete_session(session["id"])
    await stripe_webhook(
        suite.gateway_http, "checkout.session.completed", standin.object(session["id"]), "evt_paid"
    )
    await user.wait_for_subscription(subscription["id"], "active")
    return subscription, intent_id


class TestThroughStripe:
    async def test_stripe_dashboard_refund_is_refunded_in_billing_once(
        self, stripe_suite: Suite, standin: StripeStandin
    ) -> None:
        suite = stripe_suite
        user = suite.as_user()
        subscription, intent_id = await paid_by_stripe(suite, standin, user)
        payment_id = subscription["latest_payment"]["id"]
        await published(suite)

        refund_ref = standin.refund_in_dashboard(intent_id)
        charge = standin.object(standin.object(intent_id)["latest_charge"])
        await stripe_webhook(suite.gateway_http, "charge.refunded", charge, "evt_refunded")

        await wait_for_payment(user, payment_id, "refunded")
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"
        assert latest_grants(await published(suite), user) == ()
        transactions = await statement(user)
        assert lines_of(transactions[0]) == {
            ("refunds", "debit", BASIC_PRICE),
            ("provider_clearing:stripe", "credit", BASIC_PRICE),
        }
        assert_balanced(transactions)

        # Stripe sends more events about the same refund, and may redeliver
        refund = standin.object(refund_ref)
        await stripe_webhook(suite.gateway_http, "refund.updated", refund, "evt_refund_updated")
        await stripe_webhook(suite.gateway_http, "charge.refunded", charge, "evt_refunded")
        await support.outbox_published(suite.gateway.state.resources.engine)
        await support.outbox_published(suite.billing.state.resources.engine)
        assert await count(suite, "SELECT count(*) FROM refund") == 1
        assert await suite.scalar("SELECT provider_ref FROM refund") == refund_ref
        assert len(await statement(user)) == 2

    async def test_stripe_dispute_marks_the_payment_disputed_and_revokes_access(
        self, stripe_suite: Suite, standin: StripeStandin
    ) -> None:
        suite = stripe_suite
        user = suite.as_user()
        subscription, intent_id = await paid_by_stripe(suite, standin, user)
        payment_id = subscription["latest_payment"]["id"]
        await published(suite)

        dispute_ref = standin.add_dispute(intent_id)
        dispute = standin.object(dispute_ref)
        await stripe_webhook(suite.gateway_http, "charge.dispute.created", dispute, "evt_dispute")

        await wait_for_payment(user, payment_id, "disputed")
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"
        assert latest_grants(await published(suite), user) == ()
        transactions = await statement(user)
        assert lines_of(transactions[0]) == {
            ("disputes", "debit", BASIC_PRICE),
            ("provider_clearing:stripe", "credit", BASIC_PRICE),
        }
