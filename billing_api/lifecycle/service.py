"""The subscription lifecycle over time: renewals, dunning, grace, expiry, reminders, and the
reconciliation of payments whose outcome never arrived.

Every job is a function of ``now`` that claims its rows with ``FOR UPDATE SKIP LOCKED``, so two
workers never process the same subscription, and running a job twice changes nothing twice.

A renewal charge is made in two steps so that no crash can charge twice: the renewal payment row
is committed first (its id is the gateway's idempotency key), then the gateway is asked to
charge it. A worker that dies in between leaves a pending payment that the next run charges with
the same id (or that reconciliation settles) instead of a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api import entitlements
from billing_api.activation import service as activation
from billing_api.config import BillingSettings
from billing_api.gateway import GatewayClient, GatewayPayment, GatewayUnavailable
from billing_api.models import Payment, Plan, Subscription, SubscriptionStatus
from billing_api.pricing import service as pricing
from billing_api.pricing.inputs import load_tiers
from shared import events, outbox
from shared.money import Money

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
BATCH = 200
# Renewal charges in flight at once per job run; each holds at most one pooled connection, so
# this stays under the smallest sensible pool (DB_POOL_SIZE, default 10).
CHARGE_CONCURRENCY = 8


@dataclass(frozen=True)
class JobContext:
    sessions: async_sessionmaker[AsyncSession]
    gateway: GatewayClient
    settings: BillingSettings
    now: datetime


def summary(plan: Plan) -> events.PlanSummary:
    return events.PlanSummary(plan_id=plan.id, code=plan.code, name=plan.name)


# --- renewals -------------------------------------------------------------------------------


async def renew_due(ctx: JobContext) -> int:
    """Charge every subscription whose renewal (or next dunning retry) is due, batch by batch.

    The charges of a batch run ``CHARGE_CONCURRENCY`` at a time: each one waits mostly on the
    gateway, and they are independent (own payment, own transactions, idempotency key = payment
    id), so overlapping them changes nothing but the wall time.
    """
    renewed = 0
    limit = asyncio.Semaphore(CHARGE_CONCURRENCY)

    async def charge(payment_id: UUID) -> int:
        async with limit:
            return await _charge(ctx, payment_id)

    while batch := await _claim_renewals(ctx):
        async with asyncio.TaskGroup() as group:
            charges = [group.create_task(charge(payment_id)) for payment_id in batch]
        renewed += sum(task.result() for task in charges)
    return renewed


async def _claim_renewals(ctx: JobContext) -> list[UUID]:
    """Claim a batch of due subscriptions and commit their renewal payments (not yet charged)."""
    lead = timedelta(minutes=ctx.settings.renewal_lead_minutes)
    async with ctx.sessions() as session, session.begin():
        due = list(
            await session.scalars(
                sa.select(Subscription)
                .where(
                    Subscription.status.in_((SubscriptionStatus.ACTIVE, SubscriptionStatus.GRACE)),
                    Subscription.auto_renew,
                    ~Subscription.cancel_at_period_end,
                    Subscription.payment_method_ref.is_not(None),
                    sa.or_(
                        sa.and_(
                            Subscription.renewal_attempts == 0,
                            Subscription.current_period_end <= ctx.now + lead,
                            sa.or_(
                                Subscription.next_renewal_at.is_(None),
                                Subscription.next_renewal_at <= ctx.now,
                            ),
                        ),
                        sa.and_(
                            Subscription.renewal_attempts > 0,
                            Subscription.next_renewal_at <= ctx.now,
                        ),
                    ),
                )
                .order_by(Subscription.current_period_end)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        charges = []
        for subscription in due:
            payment = await _renewal_payment(session, subscription, ctx)
            subscription.next_renewal_at = ctx.now + LEASE  # others skip it while we charge
            charges.append(payment.id)
    return charges


async def _renewal_payment(
    session: AsyncSession, subscription: Subscription, ctx: JobContext
) -> Payment:
    """The pending renewal payment of this subscription, or a new one at today's price."""
    pending = await session.scalar(
        sa.select(Payment).where(
            Payment.subscription_id == subscription.id,
            Payment.purpose == "renewal",
            Payment.status == "pending",
        )
    )
    if pending is not None:
        return pending
    # A scheduled downgrade takes effect here: the renewal buys the new plan.
    plan = await session.get(Plan, subscription.pending_plan_id or subscription.plan_id)
    assert plan is not None
    tiers = await load_tiers(session, plan.id)
    quote = pricing.quote(
        pricing.PlanPrice(
            plan.id, plan.price_amount, plan.currency, max(plan.max_months, subscription.months)
        ),
        subscription.months,
        now=ctx.now,
        tiers=tiers,
        max_total_percent=ctx.settings.max_total_discount_percent,
    )
    payment = Payment(
        id=uuid4(),
        user_id=subscription.user_id,
        email=subscription.email,
        purpose="renewal",
        subscription_id=subscription.id,
        plan_id=plan.id,
        method="card",
        status="pending",
        amount=quote.total,
        currency=quote.currency,
        base_amount=quote.base_amount,
        discount_amount=quote.discount_amount,
        quote=quote.to_json(),
        months=subscription.months,
        description=f"{plan.name}: renewal",
        payment_method_ref=subscription.payment_method_ref,
        refunded_amount=0,
    )
    session.add(payment)
    await session.flush()
    return payment


async def _charge(ctx: JobContext, payment_id: UUID) -> int:
    async with ctx.sessions() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None and payment.payment_method_ref is not None
        request = {
            "payment_id": payment.id,
            "user_id": payment.user_id,
            "email": payment.email,
            "amount": payment.amount,
            "currency": payment.currency,
            "description": payment.description,
            "payment_method_ref": payment.payment_method_ref,
            "metadata": {"purpose": "renewal", "subscription_id": str(payment.subscription_id)},
        }
    try:
        result = await ctx.gateway.charge_off_session(**request)  # type: ignore[arg-type]
    except GatewayUnavailable as exc:
        logger.warning("renewal charge not made; retried on the next run: %s", exc)
        return 0
    async with ctx.sessions() as session, session.begin():
        payment = await session.get(Payment, payment_id, with_for_update=True)
        assert payment is not None
        await apply_gateway_result(session, payment, result, dunning=ctx.settings.dunning_offsets)
    # Counted by the charge, not by who applied it: the gateway's event may have got there first.
    return int(result.status == "succeeded")


async def apply_gateway_result(
    session: AsyncSession,
    payment: Payment,
    result: GatewayPayment,
    *,
    dunning: Sequence[timedelta] = activation.DEFAULT_DUNNING,
) -> bool:
    """Settle a payment from the gateway's answer; the same outcome as its event would have."""
    if result.status in ("succeeded", "partially_refunded", "refunded", "disputed"):
        return await activation.complete_payment(
            session, payment, provider=result.provider, payment_method_ref=result.payment_method_ref
        )
    if result.status == "failed":
        return await activation.fail_payment(
            session,
            payment,
            reason=result.failure_message or result.failure_code,
            dunning=dunning,
        )
    if result.status == "expired":
        return await activation.expire_payment(session, payment)
    return False


# --- period end, grace, reminders -------------------------------------------------------------


async def end_periods(ctx: JobContext) -> int:
    """Periods that ended unpaid: into grace (still renewing) or expired (the user stopped it)."""
    async with ctx.sessions() as session, session.begin():
        ended = list(
            await session.scalars(
                sa.select(Subscription)
                .where(
                    Subscription.status == SubscriptionStatus.ACTIVE,
                    Subscription.current_period_end <= ctx.now,
                )
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for subscription in ended:
            plan = await session.get(Plan, subscription.plan_id)
            assert plan is not None and subscription.current_period_end is not None
            if subscription.cancel_at_period_end or not subscription.auto_renew:
                await expire(session, subscription, plan, ctx.now)
                continue
            subscription.status = SubscriptionStatus.GRACE
            subscription.grace_until = subscription.current_period_end + timedelta(
                days=plan.grace_days
            )
            await outbox.add(
                session,
                events.SubscriptionGraceStarted(
                    user_id=subscription.user_id,
                    email=subscription.email,
                    locale=subscription.locale,
                    subscription_id=subscription.id,
                    plan=summary(plan),
                    amount_due=Money(
                        amount=plan.price_amount * subscription.months, currency=plan.currency
                    ),
                    grace_until=subscription.grace_until,
                ),
            )
            await entitlements.publish_snapshot(session, subscription.user_id)
    return len(ended)


async def end_graces(ctx: JobContext) -> int:
    async with ctx.sessions() as session, session.begin():
        over = list(
            await session.scalars(
                sa.select(Subscription)
                .where(
                    Subscription.status == SubscriptionStatus.GRACE,
                    Subscription.grace_until <= ctx.now,
                )
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for subscription in over:
            plan = await session.get(Plan, subscription.plan_id)
            assert plan is not None
            await expire(session, subscription, plan, ctx.now)
    return len(over)


async def expire(
    session: AsyncSession, subscription: Subscription, plan: Plan, now: datetime
) -> None:
    subscription.status = SubscriptionStatus.EXPIRED
    subscription.next_renewal_at = None
    await outbox.add(
        session,
        events.SubscriptionExpired(
            user_id=subscription.user_id,
            email=subscription.email,
            locale=subscription.locale,
            subscription_id=subscription.id,
            plan=summary(plan),
            expired_at=now,
        ),
    )
    await entitlements.publish_snapshot(session, subscription.user_id)


async def remind_expiring(ctx: JobContext) -> int:
    """Tell people whose subscription will not renew that it ends in a few days (once)."""
    horizon = ctx.now + timedelta(days=ctx.settings.reminder_days)
    async with ctx.sessions() as session, session.begin():
        due = list(
            await session.scalars(
                sa.select(Subscription)
                .where(
                    Subscription.status == SubscriptionStatus.ACTIVE,
                    sa.or_(~Subscription.auto_renew, Subscription.cancel_at_period_end),
                    Subscription.current_period_end > ctx.now,
                    Subscription.current_period_end <= horizon,
                    Subscription.reminded_for.is_distinct_from(Subscription.current_period_end),
                )
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for subscription in due:
            plan = await session.get(Plan, subscription.plan_id)
            assert plan is not None and subscription.current_period_end is not None
            subscription.reminded_for = subscription.current_period_end
            await outbox.add(
                session,
                events.SubscriptionExpiring(
                    user_id=subscription.user_id,
                    email=subscription.email,
                    locale=subscription.locale,
                    subscription_id=subscription.id,
                    plan=summary(plan),
                    current_period_end=subscription.current_period_end,
                ),
            )
    return len(due)


# --- reconciliation ---------------------------------------------------------------------------


async def reconcile_pending(ctx: JobContext) -> int:
    """Card payments pending for too long are asked of the gateway (which asks the provider)."""
    cutoff = ctx.now - timedelta(minutes=ctx.settings.reconcile_after_minutes)
    async with ctx.sessions() as session:
        stale = list(
            await session.scalars(
                sa.select(Payment.id)
                .where(
                    Payment.status == "pending",
                    Payment.method == "card",
                    Payment.created_at < cutoff,
                )
                .order_by(Payment.created_at)
                .limit(BATCH)
            )
        )
    settled = 0
    for payment_id in stale:
        try:
            result = await ctx.gateway.get_payment(payment_id, refresh=True)
        except GatewayUnavailable as exc:
            logger.warning("reconciliation could not settle %s: %s", payment_id, exc)
            continue
        async with ctx.sessions() as session, session.begin():
            payment = await session.get(Payment, payment_id, with_for_update=True)
            if payment is not None and payment.status == "pending":
                settled += await apply_gateway_result(
                    session, payment, result, dunning=ctx.settings.dunning_offsets
                )
    return settled
