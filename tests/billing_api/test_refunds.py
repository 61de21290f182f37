from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from billing_api import demo
from billing_api.catalog.service import PlanSpec, save_plan
from billing_api.gateway import GatewayClient, GatewayRefund
from billing_api.models import Payment
from billing_api.refunds import handlers
from billing_api.refunds import service as refunds
from shared import clock, events
from shared.auth import AuthSettings
from shared.broker import Broker
from shared.consumer import Consumer
from shared.money import Money
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.shared.messaging import Probe

BASIC_PRICE = 29900

# --- factories -------------------------------------------------------------------------------


async def paid_subscription(
    suite: Suite, user: User, plan_code: str = "basic", *, method: str = "card"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An active subscription and the payment that paid for it."""
    plan = await suite.plan(plan_code)
    created = await user.post(
        "/api/v1/subscriptions", json={"plan_id": plan["id"], "payment_method": method}
    )
    assert created.status_code == 201, created.text
    subscription = created.json()
    if method == "card":
        paid = await suite.pay(subscription["latest_payment"]["checkout_url"])
        assert paid.json()["status"] == "succeeded"
    active = await user.wait_for_subscription(subscription["id"], "active")
    payment = await user.get(f"/api/v1/payments/{subscription['latest_payment']['id']}")
    return active, payment.json()


async def topped_up(suite: Suite, user: User, amount: int) -> dict[str, Any]:
    response = await user.post("/api/v1/wallet/top-ups", json={"amount": amount})
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()["payment"]
    await suite.pay(payment["checkout_url"])

    async def credited() -> bool:
        return await balance(user) == amount

    await support.eventually(credited, timeout=15)
    return payment


async def balance(user: User) -> int:
    balances = (await user.get("/api/v1/wallet")).json()["balances"]
    return int(next(b["amount"] for b in balances if b["currency"] == "RUB"))


async def thirty_day_plan(suite: Suite) -> dict[str, Any]:
    async with suite.billing.state.session_factory() as session, session.begin():
        await save_plan(
            session,
            PlanSpec(
                code="days-30",
                name="30 days",
                price_amount=BASIC_PRICE,
                currency="RUB",
                period_unit="day",
                period_days=30,
                max_months=1,
                all_movies=True,
                refund_policy="window_then_prorata",
            ),
        )
    return await suite.plan("days-30")


def at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


async def published(suite: Suite) -> list[events.EventPayload]:
    """Every payload billing published since the last call (snapshots, subscription events)."""
    await support.outbox_published(suite.billing.state.resources.engine)
    return [envelope.data for envelope in await suite.probe.drain()]


def latest_grants(payloads: list[events.EventPayload], user: User) -> tuple[events.Grant, ...]:
    snapshots = [
        p for p in payloads if isinstance(p, events.EntitlementsChanged) and p.user_id == user.id
    ]
    return max(snapshots, key=lambda snapshot: snapshot.version).grants


class AnswersPending(GatewayClient):
    """The real gateway, but the provider's answer comes later: billing is told ``pending``."""

    async def create_refund(
        self, refund_id: UUID, payment_id: UUID, amount: int, reason: str | None
    ) -> GatewayRefund:
        answer = await super().create_refund(refund_id, payment_id, amount, reason)
        return dataclasses.replace(answer, status="pending")


class NeverAsked(GatewayClient):
    """A gateway that accepts a refund and says nothing more (no event will come)."""

    async def create_refund(
        self, refund_id: UUID, payment_id: UUID, amount: int, reason: str | None
    ) -> GatewayRefund:
        return GatewayRefund(refund_id, payment_id, amount, "RUB", "pending", None, None, "paid")


@pytest.fixture
async def refund_events(suite: Suite, broker: Broker) -> AsyncIterator[Probe]:
    probe = await Probe.bind(broker, "refund.completed")
    yield probe
    await probe.close()


@pytest.fixture
async def refund_consumer(suite: Suite, broker: Broker) -> AsyncIterator[Consumer]:
    """billing's refund handlers consuming the gateway's refund.* events."""
    consumer = Consumer(
        "billing-refunds-test",
        broker,
        suite.billing.state.resources.session_factory,
        handlers.HANDLERS,
    )
    await consumer.start()
    yield consumer
    await consumer.stop()
    await support.delete_consumer_queues(broker, consumer.queues)


async def completed_refunds(suite: Suite, probe: Probe) -> list[events.RefundCompleted]:
    await support.outbox_published(suite.billing.state.resources.engine)
    return [e.data for e in await probe.drain() if isinstance(e.data, events.RefundCompleted)]


async def handle(suite: Suite, handler: Any, payload: events.EventPayload) -> None:
    async with suite.billing.state.session_factory() as session, session.begin():
        await handler(session, events.wrap(payload, producer="payment_gateway"))


# --- tests -----------------------------------------------------------------------------------


class TestRefundQuote:
    async def test_quote_within_the_window_shows_the_full_amount_and_the_rule(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        with clock.frozen(at(payment["paid_at"]) + timedelta(minutes=30)):
            response = await user.get(f"/api/v1/payments/{payment['id']}/refund-quote")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "payment_id": payment["id"],
            "refundable_amount": {"amount": BASIC_PRICE, "currency": "RUB"},
            "rule": "full refund within 60 minutes of payment",
        }

    async def test_quote_of_a_top_up_is_zero_with_the_reason(self, suite: Suite) -> None:
        user = suite.as_user()
        top_up = await topped_up(suite, user, 50000)
        quote = (await user.get(f"/api/v1/payments/{top_up['id']}/refund-quote")).json()
        assert quote["refundable_amount"] == {"amount": 0, "currency": "RUB"}
        assert quote["rule"] == "wallet top-ups are not refundable"

    async def test_another_users_payment_is_not_found(self, suite: Suite) -> None:
        owner, stranger = suite.as_user(), suite.as_user()
        _, payment = await paid_subscription(suite, owner)
        quote = await stranger.get(f"/api/v1/payments/{payment['id']}/refund-quote")
        refund = await stranger.post(f"/api/v1/payments/{payment['id']}/refund")
        assert quote.status_code == refund.status_code == 404
        assert refund.json()["error"] == "PaymentNotFound"
        assert await suite.scalar("SELECT count(*) FROM refund") == 0


class TestCardRefund:
    async def test_refund_30_minutes_after_payment_is_full_and_cancels_the_subscription(
        self, suite: Suite, refund_events: Probe
    ) -> None:
        user = suite.as_user()
        subscription, payment = await paid_subscription(suite, user)
        await published(suite)  # forget what the activation published
        with clock.frozen(at(payment["paid_at"]) + timedelta(minutes=30)):
            response = await user.post(
                f"/api/v1/payments/{payment['id']}/refund", json={"reason": "changed my mind"}
            )
        assert response.status_code == 201, response.text
        refund = response.json()
        assert refund["amount"] == {"amount": BASIC_PRICE, "currency": "RUB"}
        assert refund["status"] == "succeeded"
        assert refund["rule"] == "full refund within 60 minutes of payment"
        assert refund["reason"] == "changed my mind"

        after = (await user.get(f"/api/v1/payments/{payment['id']}")).json()
        assert after["status"] == "refunded"
        assert after["refunded"] == {"amount": BASIC_PRICE, "currency": "RUB"}
        canceled = await user.subscription(subscription["id"])
        assert canceled["status"] == "canceled"
        assert canceled["auto_renew"] is False
        payloads = await published(suite)
        assert latest_grants(payloads, user) == ()
        [notice] = [p for p in payloads if isinstance(p, events.SubscriptionCanceled)]
        assert notice.refund_amount == Money(amount=BASIC_PRICE, currency="RUB")
        [completed] = await completed_refunds(suite, refund_events)
        assert (completed.payment_id, completed.amount.amount) == (UUID(payment["id"]), BASIC_PRICE)

        [statement_refund] = [
            t
            for t in (await user.get("/api/v1/statement")).json()["items"]
            if t["kind"] == "refund"
        ]
        assert statement_refund["reference"] == refund["id"]
        assert {(line["account"], line["side"]) for line in statement_refund["lines"]} == {
            ("refunds", "debit"),
            ("provider_clearing:sandbox", "credit"),
        }

    async def test_refund_on_day_10_of_a_30_day_period_gives_back_the_20_unused_days(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        await thirty_day_plan(suite)
        subscription, payment = await paid_subscription(suite, user, "days-30")
        start = at(subscription["current_period_start"])
        assert at(subscription["current_period_end"]) - start == timedelta(days=30)
        expected = BASIC_PRICE * 20 // 30  # 19933: rounded down

        with clock.frozen(start + timedelta(days=9, hours=3)):  # day 10
            quote = (await user.get(f"/api/v1/payments/{payment['id']}/refund-quote")).json()
            response = await user.post(f"/api/v1/payments/{payment['id']}/refund")
        assert quote["refundable_amount"] == {"amount": expected, "currency": "RUB"}
        assert quote["rule"] == "unused 20 of 30 days"
        assert response.status_code == 201, response.text
        assert response.json()["amount"]["amount"] == expected
        assert response.json()["rule"] == "unused 20 of 30 days"
        after = (await user.get(f"/api/v1/payments/{payment['id']}")).json()
        assert (after["status"], after["refunded"]["amount"]) == ("partially_refunded", expected)
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"

    async def test_window_only_plan_after_its_window_is_not_refundable(self, suite: Suite) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user, "pass-30")
        with clock.frozen(at(payment["paid_at"]) + timedelta(hours=2)):
            quote = (await user.get(f"/api/v1/payments/{payment['id']}/refund-quote")).json()
            response = await user.post(f"/api/v1/payments/{payment['id']}/refund")
        assert quote["refundable_amount"]["amount"] == 0
        assert quote["rule"] == "refund window closed"
        assert response.status_code == 409
        assert response.json() == {
            "error": "PaymentNotRefundable",
            "detail": "nothing to refund: refund window closed",
        }

    async def test_two_concurrent_refund_requests_make_exactly_one_refund(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        path = f"/api/v1/payments/{payment['id']}/refund"
        responses = await asyncio.gather(user.post(path), user.post(path))
        assert sorted(r.status_code for r in responses) == [201, 409]
        assert await suite.scalar("SELECT count(*) FROM refund") == 1
        assert await suite.scalar("SELECT refunded_amount FROM payment") == BASIC_PRICE
        async with suite.gateway.state.resources.engine.connect() as conn:
            assert await conn.scalar(sa.text("SELECT count(*) FROM refund")) == 1

    async def test_refunds_of_a_payment_never_add_up_to_more_than_was_paid(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        payment_id = UUID(payment["id"])
        async with suite.billing.state.session_factory() as session, session.begin():
            row = await session.get(Payment, payment_id)
            assert row is not None
            first = await refunds.refund_payment(
                session,
                suite.billing.state.gateway,
                row,
                amount=10000,
                rule="partial refund by support",
                reason=None,
            )
            assert first.status == "succeeded"
            with pytest.raises(refunds.PaymentNotRefundable):
                await refunds.refund_payment(
                    session,
                    suite.billing.state.gateway,
                    row,
                    amount=BASIC_PRICE - 10000 + 1,
                    rule="too much",
                    reason=None,
                )

        rest = await user.post(f"/api/v1/payments/{payment_id}/refund")
        again = await user.post(f"/api/v1/payments/{payment_id}/refund")
        assert rest.status_code == 201, rest.text
        assert rest.json()["amount"]["amount"] == BASIC_PRICE - 10000
        assert again.status_code == 409
        assert await suite.scalar("SELECT sum(amount) FROM refund") == BASIC_PRICE
        with pytest.raises(IntegrityError, match="refunds_within_amount"):
            await suite.execute(
                "UPDATE payment SET refunded_amount = refunded_amount + 1 WHERE id = :id",
                id=payment_id,
            )

    async def test_refund_completed_is_published_once_when_the_gateway_event_also_arrives(
        self, suite: Suite, refund_events: Probe, refund_consumer: Consumer
    ) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        response = await user.post(f"/api/v1/payments/{payment['id']}/refund")
        assert response.json()["status"] == "succeeded"

        async def gateway_event_handled() -> bool:
            handled = await suite.scalar(
                "SELECT count(*) FROM inbox WHERE consumer = 'billing-refunds-test'"
            )
            return bool(handled >= 1)

        await support.eventually(gateway_event_handled, timeout=15)
        assert len(await completed_refunds(suite, refund_events)) == 1
        assert (
            await suite.scalar("SELECT count(*) FROM ledger_transaction WHERE kind='refund'") == 1
        )


class TestRefundEvents:
    async def test_pending_card_refund_is_finished_by_the_gateways_refund_event(
        self, suite: Suite, refund_events: Probe, refund_consumer: Consumer
    ) -> None:
        user = suite.as_user()
        subscription, payment = await paid_subscription(suite, user)
        suite.billing.state.gateway = AnswersPending(
            suite.gateway_http, "http://gateway.test", AuthSettings()
        )
        response = await user.post(f"/api/v1/payments/{payment['id']}/refund")
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "pending"

        async def refund_succeeded() -> bool:
            status = await suite.scalar(
                "SELECT status FROM refund WHERE id = :id", id=response.json()["id"]
            )
            return bool(status == "succeeded")

        await support.eventually(refund_succeeded, timeout=15)
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"
        assert (await user.get(f"/api/v1/payments/{payment['id']}")).json()["status"] == "refunded"
        assert len(await completed_refunds(suite, refund_events)) == 1
        assert latest_grants(await published(suite), user) == ()

    async def test_failed_refund_releases_the_amount_and_keeps_the_subscription(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription, payment = await paid_subscription(suite, user)
        suite.billing.state.gateway = NeverAsked(
            suite.gateway_http, "http://gateway.test", AuthSettings()
        )
        refund = (await user.post(f"/api/v1/payments/{payment['id']}/refund")).json()
        assert refund["status"] == "pending"
        assert await suite.scalar("SELECT refunded_amount FROM payment") == BASIC_PRICE
        assert (await user.get(f"/api/v1/payments/{payment['id']}/refund-quote")).json()[
            "refundable_amount"
        ]["amount"] == 0

        failed = events.RefundFailed(
            refund_id=UUID(refund["id"]),
            payment_id=UUID(payment["id"]),
            customer=events.Customer(id=user.id),
            amount=Money(amount=BASIC_PRICE, currency="RUB"),
            provider="sandbox",
            failure_message="card account closed",
        )
        await handle(suite, handlers.on_refund_failed, failed)
        await handle(suite, handlers.on_refund_failed, failed)  # twice changes nothing twice

        assert await suite.scalar("SELECT status FROM refund") == "failed"
        assert await suite.scalar("SELECT refunded_amount FROM payment") == 0
        assert (await user.subscription(subscription["id"]))["status"] == "active"
        quote = (await user.get(f"/api/v1/payments/{payment['id']}/refund-quote")).json()
        assert quote["refundable_amount"]["amount"] == BASIC_PRICE
        # a new attempt is a new refund with a new id (the gateway's idempotency key)
        retry = await user.post(f"/api/v1/payments/{payment['id']}/refund")
        assert retry.status_code == 201
        assert retry.json()["id"] != refund["id"]

    async def test_disputed_payment_revokes_access(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription, payment = await paid_subscription(suite, user)
        await published(suite)
        disputed = events.PaymentDisputed(
            payment_id=UUID(payment["id"]),
            customer=events.Customer(id=user.id),
            amount=Money(amount=BASIC_PRICE, currency="RUB"),
            provider="sandbox",
            reason="fraudulent",
        )
        await handle(suite, handlers.on_payment_disputed, disputed)

        after = (await user.get(f"/api/v1/payments/{payment['id']}")).json()
        assert after["status"] == "disputed"
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"
        assert latest_grants(await published(suite), user) == ()
        quote = (await user.get(f"/api/v1/payments/{payment['id']}/refund-quote")).json()
        assert quote["refundable_amount"]["amount"] == 0


class TestWalletRefund:
    async def test_wallet_paid_subscription_is_refunded_into_the_wallet(
        self, suite: Suite, refund_events: Probe
    ) -> None:
        user = suite.as_user()
        await topped_up(suite, user, 100000)
        subscription, payment = await paid_subscription(suite, user, method="wallet")
        assert await balance(user) == 100000 - BASIC_PRICE

        response = await user.post(f"/api/v1/payments/{payment['id']}/refund")
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "succeeded"
        assert await balance(user) == 100000
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"

        statement = (await user.get("/api/v1/statement")).json()["items"]
        assert statement[0]["kind"] == "refund"
        lines = statement[0]["lines"]
        assert sum(line["amount"]["amount"] for line in lines if line["side"] == "debit") == sum(
            line["amount"]["amount"] for line in lines if line["side"] == "credit"
        )
        assert {(line["account"], line["side"], line["amount"]["amount"]) for line in lines} == {
            ("refunds", "debit", BASIC_PRICE),
            (f"user_wallet:{user.id}", "credit", BASIC_PRICE),
        }
        assert len(await completed_refunds(suite, refund_events)) == 1

    async def test_top_up_is_not_refundable(self, suite: Suite) -> None:
        user = suite.as_user()
        top_up = await topped_up(suite, user, 50000)
        response = await user.post(f"/api/v1/payments/{top_up['id']}/refund")
        assert response.status_code == 409
        assert response.json() == {
            "error": "PaymentNotRefundable",
            "detail": "nothing to refund: wallet top-ups are not refundable",
        }
        assert await balance(user) == 50000


class TestPurchaseRefund:
    async def test_bought_movie_is_refundable_within_60_minutes_only(self, suite: Suite) -> None:
        user = suite.as_user()
        await topped_up(suite, user, 100000)
        bought = await user.post(
            "/api/v1/purchases",
            json={"movie_id": str(demo.movie_id("Paper Moons")), "payment_method": "wallet"},
        )
        assert bought.status_code == 201, bought.text
        purchase = bought.json()
        payment_id = purchase["latest_payment"]["id"]
        paid_at = at((await user.get(f"/api/v1/payments/{payment_id}")).json()["paid_at"])

        with clock.frozen(paid_at + timedelta(minutes=61)):
            late = await user.post(f"/api/v1/payments/{payment_id}/refund")
        assert late.status_code == 409
        await published(suite)
        with clock.frozen(paid_at + timedelta(minutes=59)):
            in_time = await user.post(f"/api/v1/payments/{payment_id}/refund")
        assert in_time.status_code == 201, in_time.text
        assert in_time.json()["amount"]["amount"] == 39900
        [after] = (await user.get("/api/v1/purchases")).json()["items"]
        assert after["status"] == "refunded"
        assert latest_grants(await published(suite), user) == ()
        assert await balance(user) == 100000


# --- a refund meeting a cancel or an upgrade of the same subscription ----------------------------


class HeldRefund(GatewayClient):
    """The real gateway, but the first refund waits at the gateway until released: the request
    that asked for it keeps its transaction, and every lock it took, open meanwhile."""

    def __init__(self, suite: Suite) -> None:
        super().__init__(suite.gateway_http, "http://gateway.test", AuthSettings())
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def create_refund(
        self, refund_id: UUID, payment_id: UUID, amount: int, reason: str | None
    ) -> GatewayRefund:
        if not self.reached.is_set():
            self.reached.set()
            await self.release.wait()
        return await super().create_refund(refund_id, payment_id, amount, reason)


async def waiting_for_locks(suite: Suite, count: int) -> None:
    """Until ``count`` transactions of this database wait for a lock another one holds."""

    async def waiting() -> bool:
        found = await suite.scalar(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(found >= count)

    await support.eventually(waiting, timeout=15)


async def refund_totals(suite: Suite) -> tuple[int, int, int]:
    """(refunds made, money refunded, ledger refund transactions) over the whole database."""
    made = await suite.scalar("SELECT count(*) FROM refund WHERE status = 'succeeded'")
    money = await suite.scalar("SELECT coalesce(sum(refunded_amount), 0) FROM payment")
    posted = await suite.scalar("SELECT count(*) FROM ledger_transaction WHERE kind = 'refund'")
    return int(made), int(money), int(posted)


class TestRefundMeetsCancel:
    async def test_cancel_now_while_a_refund_of_the_same_subscription_runs_is_refused_not_a_500(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription, payment = await paid_subscription(suite, user)
        gateway = HeldRefund(suite)
        suite.billing.state.gateway = gateway

        refund = asyncio.create_task(user.post(f"/api/v1/payments/{payment['id']}/refund"))
        await asyncio.wait_for(gateway.reached.wait(), 15)  # its transaction holds its locks
        cancel = asyncio.create_task(
            user.post(
                f"/api/v1/subscriptions/{subscription['id']}/cancel",
                json={"at_period_end": False},
            )
        )
        await waiting_for_locks(suite, 1)  # the cancel waits for the refund's transaction
        gateway.release.set()
        refunded, canceled = await refund, await cancel

        assert refunded.status_code == 201, refunded.text
        assert (canceled.status_code, canceled.json()["error"]) == (
            409,
            "SubscriptionNotCancelable",
        )
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"
        assert await refund_totals(suite) == (1, BASIC_PRICE, 1)


class TestUpgradeRefund:
    async def test_refunding_an_upgrade_in_its_window_gives_the_credit_back_to_the_wallet(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        premium = await suite.plan("premium")
        subscription, first = await paid_subscription(suite, user)
        upgrade = await upgraded(suite, user, subscription["id"], premium["id"])
        credit = 59900 - upgrade["amount"]["amount"]
        assert 0 < credit < BASIC_PRICE

        response = await user.post(f"/api/v1/payments/{upgrade['id']}/refund")
        assert response.status_code == 201, response.text
        assert response.json()["amount"]["amount"] == upgrade["amount"]["amount"]
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"
        assert await balance(user) == credit, "the credited part of the first payment"
        quote = (await user.get(f"/api/v1/payments/{first['id']}/refund-quote")).json()
        assert quote["refundable_amount"]["amount"] == 0, "its unused part is that credit"
        statement = (await user.get("/api/v1/statement")).json()["items"]
        [released] = [t for t in statement if t["kind"] == "plan_credit_released"]
        assert {
            (line["account"], line["side"], line["amount"]["amount"]) for line in released["lines"]
        } == {("refunds", "debit", credit), (f"user_wallet:{user.id}", "credit", credit)}

    async def test_cancel_now_inside_the_upgrades_window_refunds_it_and_gives_the_credit_back(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        premium = await suite.plan("premium")
        subscription, _ = await paid_subscription(suite, user)
        upgrade = await upgraded(suite, user, subscription["id"], premium["id"])
        credit = 59900 - upgrade["amount"]["amount"]

        canceled = await user.post(
            f"/api/v1/subscriptions/{subscription['id']}/cancel", json={"at_period_end": False}
        )
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "canceled"
        after = (await user.get(f"/api/v1/payments/{upgrade['id']}")).json()
        assert after["status"] == "refunded"
        assert await balance(user) == credit


async def upgraded(suite: Suite, user: User, subscription_id: str, plan_id: str) -> dict[str, Any]:
    """The paid upgrade payment of a subscription moved to ``plan_id`` by card."""
    answer = await user.post(
        f"/api/v1/subscriptions/{subscription_id}/change-plan", json={"plan_id": plan_id}
    )
    assert answer.status_code == 200, answer.text
    payment = answer.json()["payment"]
    await suite.pay(payment["checkout_url"])

    async def on_new_plan() -> bool:
        return bool((await user.subscription(subscription_id))["plan_id"] == plan_id)

    await support.eventually(on_new_plan, timeout=15)
    paid: dict[str, Any] = (await user.get(f"/api/v1/payments/{payment['id']}")).json()
    return paid
