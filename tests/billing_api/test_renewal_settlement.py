"""Renewals settled a group per transaction: each charge's outcome applied once, whichever of
the run and the gateway's own event gets there first."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api import entitlements, locks
from billing_api.activation import handlers
from billing_api.gateway import GatewayPayment
from billing_api.lifecycle import renewal_claims, renewals
from billing_api.lifecycle import service as lifecycle
from billing_api.lifecycle.renewal_claims import RenewalCharge
from billing_api.models import Payment
from billing_api.periods import add_months
from shared import clock, db, events
from shared.money import Money
from tests.billing_api.conftest import Suite
from tests.billing_api.test_lifecycle import end_of, subscribed
from tests.billing_api.test_renewals import captured, context, period_ends, renewal_payments

PAYS = "4242424242424242"
DECLINES_LATER = "4000000000000341"  # saves fine, every off-session charge is declined


async def due_with_cards(suite: Suite, cards: list[str]) -> tuple[list[dict[str, Any]], datetime]:
    subscriptions = await asyncio.gather(
        *(subscribed(suite, suite.as_user(), card=card) for card in cards)
    )
    return list(subscriptions), max(end_of(s) for s in subscriptions) - timedelta(minutes=30)


async def renewal_attempts(suite: Suite, subscription_id: str) -> int:
    return int(
        await suite.scalar(
            "SELECT renewal_attempts FROM subscription WHERE id = :id", id=UUID(subscription_id)
        )
    )


def succeeded(charge: RenewalCharge) -> GatewayPayment:
    """The gateway's answer that the charge succeeded."""
    return GatewayPayment(
        payment_id=charge.payment_id,
        status="succeeded",
        provider="sandbox",
        checkout_url=None,
        expires_at=None,
        payment_method_ref=charge.payment_method_ref,
        failure_code=None,
        failure_message=None,
    )


def gateway_event(charge: RenewalCharge) -> events.Envelope[events.PaymentSucceeded]:
    """The gateway's own ``payment.succeeded`` for the same charge."""
    return events.wrap(
        events.PaymentSucceeded(
            payment_id=charge.payment_id,
            customer=events.Customer(id=charge.user_id, email=charge.email),
            amount=Money(amount=charge.amount, currency=charge.currency),
            provider="sandbox",
            payment_method_ref=charge.payment_method_ref,
        ),
        producer="payment_gateway",
    )


class TestMixedBatch:
    async def test_paid_and_declined_renewals_of_one_batch_are_each_applied_once(
        self, suite: Suite
    ) -> None:
        cards = [PAYS, DECLINES_LATER, PAYS, DECLINES_LATER, PAYS]
        subscriptions, at = await due_with_cards(suite, cards)
        captured_before = await captured(suite)

        with clock.frozen(at):
            ctx = context(suite, at)
            claimed = await renewal_claims.claim_renewals(ctx)
            answers = await renewals.charge_all(ctx, claimed)
            assert await renewals.settle(ctx, answers) == []
            # The same answers again (a retried run, a duplicate): nothing changes twice.
            assert await renewals.settle(ctx, answers) == []

        assert sorted(a.status for a in answers) == ["failed"] * 2 + ["succeeded"] * 3
        payments = await renewal_payments(suite)
        ends = await period_ends(suite)
        for subscription, card in zip(subscriptions, cards, strict=True):
            payment = payments[UUID(subscription["id"])]
            if card == PAYS:
                assert payment.status == "succeeded"
                assert ends[UUID(subscription["id"])] == add_months(end_of(subscription), 1)
                assert await renewal_attempts(suite, subscription["id"]) == 0
            else:
                assert payment.status == "failed"
                assert ends[UUID(subscription["id"])] == end_of(subscription)
                assert await renewal_attempts(suite, subscription["id"]) == 1
        assert await captured(suite) - captured_before == 3
        await asyncio.sleep(1)  # the gateway's own events for these charges arrive meanwhile
        assert await captured(suite) - captured_before == 3
        assert len(await suite.events("subscription.renewed")) == 3
        assert len(await suite.events("subscription.renewal_failed")) == 2
        for subscription in subscriptions[1::2]:
            assert await renewal_attempts(suite, subscription["id"]) == 1


class TestGatewayEventDuringSettlement:
    async def test_an_event_applied_while_the_group_waits_for_its_lock_is_not_applied_again(
        self, suite: Suite
    ) -> None:
        subscriptions, at = await due_with_cards(suite, [PAYS, PAYS, PAYS])
        captured_before = await captured(suite)
        sessions = suite.billing.state.session_factory
        with clock.frozen(at):
            ctx = context(suite, at)
            claimed = await renewal_claims.claim_renewals(ctx)
            raced = claimed[1]
            async with sessions() as session, session.begin():
                # The consumer holds the subscription and payment (billing's lock order)...
                payment = await locks.lock_payment(session, raced.payment_id)
                assert payment is not None
                settling = asyncio.create_task(
                    renewals.settle(ctx, [succeeded(charge) for charge in claimed])
                )
                await asyncio.sleep(0.5)
                assert not settling.done(), "the group waits for the subscription's lock"
                # ...and applies the event, then commits.
                async with entitlements.deferred_snapshots(session):
                    await handlers.on_payment_succeeded(session, gateway_event(raced))
            assert await settling == []
            # The event delivered again after the run: nothing either.
            async with sessions() as session, session.begin():
                await handlers.on_payment_succeeded(session, gateway_event(raced))

        assert await captured(suite) - captured_before == 3
        payments = await renewal_payments(suite)
        assert {p.status for p in payments.values()} == {"succeeded"}
        ends = await period_ends(suite)
        for subscription in subscriptions:
            assert ends[UUID(subscription["id"])] == add_months(end_of(subscription), 1)
        renewed = await suite.events("subscription.renewed")
        assert sorted(str(e.data.subscription_id) for e in renewed) == sorted(
            str(c.subscription_id) for c in claimed
        )
        snapshots = [
            e for e in await suite.events("entitlements.changed") if e.data.user_id == raced.user_id
        ]
        assert sorted(e.data.version for e in snapshots) == list(range(1, len(snapshots) + 1)), (
            "every snapshot of the user has its own version"
        )


class TestGatewayEventWhileAGroupSettles:
    async def test_an_event_waiting_for_the_group_is_a_no_op_once_the_group_commits(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        subscriptions, at = await due_with_cards(suite, [PAYS, PAYS, PAYS])
        captured_before = await captured(suite)
        sessions = suite.billing.state.session_factory
        settle_one = lifecycle.apply_gateway_result
        settled_all = asyncio.Event()
        release = asyncio.Event()

        async def pausing(session: AsyncSession, payment: Payment, *args: Any, **kw: Any) -> bool:
            done = await settle_one(session, payment, *args, **kw)
            if payment.id == max(charge.payment_id for charge in claimed):
                settled_all.set()  # the group holds every lock, nothing written yet
                await release.wait()
            return done

        monkeypatch.setattr(renewals, "apply_gateway_result", pausing)
        with clock.frozen(at):
            ctx = context(suite, at)
            claimed = await renewal_claims.claim_renewals(ctx)
            raced = claimed[1]
            settling = asyncio.create_task(
                renewals.settle(ctx, [succeeded(charge) for charge in claimed])
            )
            await settled_all.wait()

            async def on_event() -> None:
                async with (
                    sessions() as session,
                    session.begin(),
                    entitlements.deferred_snapshots(session),
                ):
                    await handlers.on_payment_succeeded(session, gateway_event(raced))

            event = asyncio.create_task(on_event())
            await asyncio.sleep(0.5)
            assert not event.done(), "the event waits for the subscription's lock"
            release.set()
            assert await settling == []
            await event

        assert await captured(suite) - captured_before == 3
        payments = await renewal_payments(suite)
        assert {p.status for p in payments.values()} == {"succeeded"}
        ends = await period_ends(suite)
        for subscription in subscriptions:
            assert ends[UUID(subscription["id"])] == add_months(end_of(subscription), 1)
        renewed = await suite.events("subscription.renewed")
        assert sorted(str(e.data.subscription_id) for e in renewed) == sorted(
            str(c.subscription_id) for c in claimed
        )


class TestChargeRefusedInABatch:
    async def test_a_charge_the_gateway_refuses_stays_pending_and_holds_back_no_other(
        self, suite: Suite
    ) -> None:
        subscriptions, at = await due_with_cards(suite, [PAYS, PAYS, PAYS])
        gateway = suite.billing.state.gateway
        with clock.frozen(at):
            ctx = context(suite, at)
            claimed = await renewal_claims.claim_renewals(ctx)
            refused = claimed[0]
            # Its id was already used at the gateway for a checkout (which waits for its payer,
            # so no event settles it meanwhile): the gateway refuses the charge.
            await gateway.create_checkout(
                payment_id=refused.payment_id,
                user_id=refused.user_id,
                email=refused.email,
                amount=refused.amount,
                currency=refused.currency,
                description=refused.description,
                save_payment_method=False,
                success_url="http://cinema.test/paid",
                cancel_url="http://cinema.test/cancelled",
                metadata={},
            )
            answers = await renewals.charge_all(ctx, claimed)
            assert await renewals.settle(ctx, answers) == []

        assert sorted(a.payment_id for a in answers) == sorted(c.payment_id for c in claimed[1:])
        payments = await renewal_payments(suite)
        statuses = {p.id: p.status for p in payments.values()}
        assert statuses.pop(refused.payment_id) == "pending"
        assert set(statuses.values()) == {"succeeded"}
        ends = await period_ends(suite)
        for subscription in subscriptions:
            renewed = ends[UUID(subscription["id"])] == add_months(end_of(subscription), 1)
            assert renewed is (UUID(subscription["id"]) != refused.subscription_id)


# --- what a group costs ---------------------------------------------------------------------

# Due subscriptions written straight in SQL (what a checkout that saved a card leaves behind),
# so a group of any size is cheap to set up; their answers are made up as the gateway's.
DUE_SQL = """
INSERT INTO subscription (id, user_id, email, locale, plan_id, status, months,
                          current_period_start, current_period_end, auto_renew,
                          cancel_at_period_end, payment_method_ref, renewal_attempts, trial)
SELECT gen_random_uuid(), gen_random_uuid(), 'user' || n || '@example.com', 'en', :plan_id,
       'active', 1, CAST(:end AS timestamptz) - interval '30 days', :end, true, false,
       'pm_' || n, 0, false
FROM generate_series(1, CAST(:count AS int)) AS n
"""


async def user_ids(suite: Suite) -> dict[UUID, UUID]:
    async with suite.billing.state.resources.engine.connect() as conn:
        rows = await conn.exec_driver_sql("SELECT id, user_id FROM subscription")
        return {row.id: row.user_id for row in rows}


def declined(charge: RenewalCharge) -> GatewayPayment:
    """The gateway's answer that the charge was declined."""
    return GatewayPayment(
        payment_id=charge.payment_id,
        status="failed",
        provider="sandbox",
        checkout_url=None,
        expires_at=None,
        payment_method_ref=charge.payment_method_ref,
        failure_code="card_declined",
        failure_message="Your card was declined.",
    )


@contextlib.asynccontextmanager
async def counted_sessions(
    suite: Suite,
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], list[str]]]:
    """Billing's sessions on an engine of their own, and every statement they send."""
    settings = suite.billing.state.settings
    engine = db.create_engine(settings.database_url, schema="billing", application_name="tests")
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
    factory = suite.billing.state.session_factory
    try:
        yield async_sessionmaker(**{**factory.kw, "bind": engine}), statements
    finally:
        await engine.dispose()


async def settle_counted(suite: Suite, count: int) -> list[str]:
    """Settle ``count`` due renewals as one group, every other one declined; the statements
    the settlement sent."""
    plan = await suite.plan("premium")
    at = clock.now().replace(microsecond=0)
    await suite.execute(
        DUE_SQL, plan_id=UUID(plan["id"]), end=at + timedelta(minutes=30), count=count
    )
    with clock.frozen(at):
        claimed = await renewal_claims.claim_renewals(context(suite, at))
        assert len(claimed) == count
        answers = [
            succeeded(charge) if n % 2 == 0 else declined(charge)
            for n, charge in enumerate(sorted(claimed, key=lambda c: c.payment_id))
        ]
        async with counted_sessions(suite) as (sessions, statements):
            ctx = dataclasses.replace(context(suite, at), sessions=sessions)
            assert await renewals.settle(ctx, answers) == []
    return statements


class TestGroupCost:
    async def test_a_group_costs_the_same_statements_whatever_its_size(self, suite: Suite) -> None:
        captured_before = await captured(suite)
        small = await settle_counted(suite, 4)
        large = await settle_counted(suite, renewals.SETTLE_GROUP)

        assert len(large) == len(small), "\n".join(large)
        assert len(large) <= 20, "\n".join(large)
        # What the renewals did, as their users see it: every other one renewed, once.
        payments = await renewal_payments(suite)
        assert sorted(p.status for p in payments.values()) == ["failed"] * 27 + ["succeeded"] * 27
        assert await captured(suite) - captured_before == 27
        assert len(await suite.events("subscription.renewed")) == 27
        assert len(await suite.events("subscription.renewal_failed")) == 27
        renewed = {p.subscription_id for p in payments.values() if p.status == "succeeded"}
        snapshots = {e.data.user_id for e in await suite.events("entitlements.changed")}
        ends = await period_ends(suite)
        users = await user_ids(suite)
        for subscription_id, end in ends.items():
            if subscription_id in renewed:
                assert end > clock.now() + timedelta(days=27)
                assert users[subscription_id] in snapshots
            else:
                assert end < clock.now() + timedelta(hours=1)
                assert await renewal_attempts(suite, str(subscription_id)) == 1
