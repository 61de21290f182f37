"""The subscription lifecycle over time: dunning, grace, expiry, the end of pauses, reminders,
and the reconciliation of payments whose outcome never arrived (renewal charges are in
:mod:`billing_api.lifecycle.renewals`).

Every job is a function of ``now`` that claims its rows with ``FOR UPDATE SKIP LOCKED``, so two
workers never process the same subscription, and running a job twice changes nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api import entitlements, locks
from billing_api.activation import confirmations
from billing_api.activation import service as activation
from billing_api.config import BillingSettings
from billing_api.gateway import (
    GatewayClient,
    GatewayNotFound,
    GatewayPayment,
    GatewayRefused,
    GatewayUnavailable,
)
from billing_api.models import Payment, PaymentStatus, Plan, Subscription, SubscriptionStatus
from billing_api.payments import checkout
from billing_api.subscriptions import transitions
from shared import outbox

logger = logging.getLogger(__name__)

# How long a claimed renewal is left to the run that claimed it before another may retry it.
LEASE = timedelta(minutes=5)
BATCH = 200


@dataclass(frozen=True)
class JobContext:
    sessions: async_sessionmaker[AsyncSession]
    gateway: GatewayClient
    settings: BillingSettings
    now: datetime


# --- gateway answers ------------------------------------------------------------------------


async def apply_gateway_result(
    session: AsyncSession,
    payment: Payment,
    result: GatewayPayment,
    *,
    dunning: Sequence[timedelta] = activation.DEFAULT_DUNNING,
    account_url: str = activation.DEFAULT_ACCOUNT_URL,
) -> bool:
    """Settle a payment from the gateway's answer; the same outcome as its event would have
    (a hard decline included: the answer says it as the event does)."""
    if result.status in (
        PaymentStatus.SUCCEEDED,
        PaymentStatus.PARTIALLY_REFUNDED,
        PaymentStatus.REFUNDED,
        PaymentStatus.DISPUTED,
    ):
        return await activation.complete_payment(
            session,
            payment,
            provider=result.provider,
            payment_method_ref=result.payment_method_ref,
            card=result.card,
        )
    if result.status == PaymentStatus.FAILED:
        return await activation.fail_payment(
            session,
            payment,
            reason=result.failure_message or result.failure_code,
            dunning=dunning,
            hard_decline=result.hard_decline,
            account_url=account_url,
        )
    if result.status == PaymentStatus.EXPIRED:
        return await activation.expire_payment(session, payment)
    if result.status == PaymentStatus.REQUIRES_ACTION:
        return await confirmations.require_action(
            session, payment, action_url=result.action_url, dunning=dunning
        )
    return False


# --- period end, grace, reminders -------------------------------------------------------------


async def end_periods(ctx: JobContext) -> int:
    """Periods that ended unpaid: into grace (still renewing) or expired (the user stopped it).

    A period's end is a promise to the user, so a subscription that a request or an event holds
    at this moment is waited for (briefly: they lock one subscription), not skipped until the
    next pass. Rows are locked in id order, so two workers never deadlock; the second re-reads
    each row after the first commits and leaves the ones no longer due."""
    # Several users at once: their entitlement locks are taken last, in user-id order.
    async with (
        ctx.sessions() as session,
        session.begin(),
        entitlements.deferred_snapshots(session),
    ):
        ended = list(
            await session.scalars(
                sa.select(Subscription)
                .where(
                    Subscription.status == SubscriptionStatus.ACTIVE,
                    Subscription.current_period_end <= ctx.now,
                )
                .order_by(Subscription.id)
                .limit(BATCH)
                .with_for_update()
            )
        )
        for subscription in ended:
            plan = await session.get(Plan, subscription.plan_id)
            assert plan is not None
            changes = transitions.end_period(
                subscription, plan, now=ctx.now, account_url=ctx.settings.account_url
            )
            await outbox.add_all(session, changes)
            await entitlements.publish_snapshot(session, subscription.user_id)
    return len(ended)


async def end_graces(ctx: JobContext) -> int:
    """Graces that ran out: expired. Held rows are waited for, as in :func:`end_periods`."""
    # Several users at once: their entitlement locks are taken last, in user-id order.
    async with (
        ctx.sessions() as session,
        session.begin(),
        entitlements.deferred_snapshots(session),
    ):
        over = list(
            await session.scalars(
                sa.select(Subscription)
                .where(
                    Subscription.status == SubscriptionStatus.GRACE,
                    Subscription.grace_until <= ctx.now,
                )
                .order_by(Subscription.id)
                .limit(BATCH)
                .with_for_update()
            )
        )
        for subscription in over:
            plan = await session.get(Plan, subscription.plan_id)
            assert plan is not None
            await outbox.add_all(session, transitions.end_grace(subscription, plan, now=ctx.now))
            await entitlements.publish_snapshot(session, subscription.user_id)
    return len(over)


async def end_pauses(ctx: JobContext) -> int:
    """Pauses that ended without a paid renewal (the charge at the pause's end was declined, or
    there was nothing to charge): into grace, as a period end would be. Held rows are waited
    for, as in :func:`end_periods`."""
    async with (
        ctx.sessions() as session,
        session.begin(),
        entitlements.deferred_snapshots(session),
    ):
        over = list(
            await session.scalars(
                sa.select(Subscription)
                .where(
                    Subscription.status == SubscriptionStatus.PAUSED,
                    Subscription.pause_resumes_at <= ctx.now,
                )
                .order_by(Subscription.id)
                .limit(BATCH)
                .with_for_update()
            )
        )
        for subscription in over:
            plan = await session.get(Plan, subscription.plan_id)
            assert plan is not None
            await outbox.add_all(session, transitions.end_pause(subscription, plan, now=ctx.now))
            await entitlements.publish_snapshot(session, subscription.user_id)
    return len(over)


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
            assert plan is not None
            await outbox.add_all(session, transitions.remind_of_end(subscription, plan))
    return len(due)


# --- reconciliation ---------------------------------------------------------------------------

# A payment the gateway was asked about without settling it is asked again after a growing
# pause (5 min, 10, 20 … at most 6 h), and after RECONCILE_MAX_ATTEMPTS asks (about a day) it is
# parked: reconciliation stops asking (the gateway's own event still settles it) and the
# ``billing_reconcile_parked_total`` counter says so. Each pass takes the payments whose next ask
# is the longest due, so payments the gateway refuses or keeps pending never hold back the
# others (a lost webhook is repaired within a pass or two however many such rows there are).
# Each payment is settled in its own transaction; one whose answer cannot be settled (an
# unexpected error: a bug, or a row that breaks an invariant) is rolled back, logged with its
# id and backed off like the others (reason ``error``), and the pass goes on with the rest.
RECONCILE_FIRST_RETRY = timedelta(minutes=5)
RECONCILE_MAX_PAUSE = timedelta(hours=6)
RECONCILE_MAX_ATTEMPTS = 10

RECONCILE_UNSETTLED = Counter(
    "billing_reconcile_unsettled_total",
    "Reconciliation asks that left a pending payment pending, by why "
    "(pending: the provider has no outcome yet; not_found: the gateway never saw it; "
    "refused: the gateway refused the question; unavailable: it could not be reached; "
    "error: settling the answer failed unexpectedly, see the log for the payment id).",
    ["reason"],
)
RECONCILE_PARKED = Counter(
    "billing_reconcile_parked_total",
    "Pending card payments reconciliation stopped asking about after too many tries, "
    "by the reason of the last try.",
    ["reason"],
)


def reconcile_pause(attempts: int) -> timedelta:
    """The pause before the next ask of a payment asked ``attempts`` times (1 or more)."""
    return min(RECONCILE_FIRST_RETRY * (1 << min(attempts - 1, 16)), RECONCILE_MAX_PAUSE)


async def reconcile_pending(ctx: JobContext) -> int:
    """Card payments pending for too long are asked of the gateway (which asks the provider)."""
    cutoff = ctx.now - timedelta(minutes=ctx.settings.reconcile_after_minutes)
    due_at = sa.func.coalesce(Payment.reconcile_next_at, Payment.created_at)
    async with ctx.sessions() as session:
        stale = (
            await session.execute(
                sa.select(
                    Payment.id,
                    # charged off-session by the renewal job, not opened at a checkout
                    sa.and_(Payment.purpose == "renewal", ~Payment.save_payment_method),
                )
                .where(
                    Payment.status == PaymentStatus.PENDING,
                    Payment.method == "card",
                    Payment.reconcile_parked_at.is_(None),
                    due_at <= ctx.now,
                    Payment.created_at < cutoff,
                )
                .order_by(due_at)
                .limit(BATCH)
            )
        ).all()
    settled = 0
    for payment_id, off_session in stale:
        try:
            settled += await _reconcile_one(ctx, payment_id, off_session=off_session)
        except Exception:
            # Being the longest due, a payment that fails here would come first again on every
            # pass and stop each one before the payments behind it: it waits like any other.
            logger.exception(
                "reconciliation could not settle payment %s",
                payment_id,
                extra={"payment_id": str(payment_id)},
            )
            await _ask_later(ctx, payment_id, "error")
    return settled


async def _reconcile_one(ctx: JobContext, payment_id: UUID, *, off_session: bool) -> bool:
    """Ask the gateway about one payment and settle it from the answer; whether it settled."""
    try:
        result = await ctx.gateway.get_payment(payment_id, refresh=True)
    except GatewayNotFound:
        # A renewal is charged off-session by the renewal job; one paid at a card update's
        # checkout is opened like any checkout.
        if not off_session:
            await _open_unopened(ctx, payment_id)
        # Asked and not settled: the next ask waits like any other's.
        await _ask_later(ctx, payment_id, "not_found")
        return False
    except GatewayRefused as exc:
        logger.error("reconciliation: the gateway refused to say about %s: %s", payment_id, exc)
        await _ask_later(ctx, payment_id, "refused")
        return False
    except GatewayUnavailable as exc:
        logger.warning("reconciliation could not settle %s: %s", payment_id, exc)
        await _ask_later(ctx, payment_id, "unavailable")
        return False
    async with ctx.sessions() as session, session.begin():
        # billing's lock order: what the payment paid for first (a renewal settled here
        # meets an upgrade that voids it), then the payment, re-read
        payment = await locks.lock_payment(session, payment_id)
        if payment is None or payment.status != PaymentStatus.PENDING:
            return False
        done = await apply_gateway_result(
            session,
            payment,
            result,
            dunning=ctx.settings.dunning_offsets,
            account_url=ctx.settings.account_url,
        )
        if not done:
            _back_off(payment, ctx.now, "pending")
    return done


async def _open_unopened(ctx: JobContext, payment_id: UUID) -> None:
    """A checkout committed whose opening call never reached the gateway (its request got a
    503 and nobody retried): open it now under the same id; it then expires, unpaid, like any
    other checkout (releasing its promo code), or is paid if the user still finds it."""
    try:
        await checkout.open_committed(ctx.sessions, ctx.gateway, ctx.settings, payment_id)
    except GatewayUnavailable as exc:
        logger.warning("reconciliation could not open the checkout of %s: %s", payment_id, exc)
    except GatewayRefused:
        # Expected: open_committed has already expired the payment (promo code released).
        logger.info("the gateway refused to open the checkout of %s: it expired", payment_id)


async def _ask_later(ctx: JobContext, payment_id: UUID, reason: str) -> None:
    async with ctx.sessions() as session, session.begin():
        payment = await session.get(Payment, payment_id, with_for_update=True)
        if payment is not None and payment.status == PaymentStatus.PENDING:
            _back_off(payment, ctx.now, reason)


def _back_off(payment: Payment, now: datetime, reason: str) -> None:
    """One more ask that settled nothing: ask again later, or park the payment."""
    RECONCILE_UNSETTLED.labels(reason).inc()
    payment.reconcile_attempts += 1
    if payment.reconcile_attempts >= RECONCILE_MAX_ATTEMPTS:
        payment.reconcile_parked_at = now
        RECONCILE_PARKED.labels(reason).inc()
        logger.error(
            "reconciliation parked payment %s after %d tries (last: %s)",
            payment.id,
            payment.reconcile_attempts,
            reason,
        )
        return
    payment.reconcile_next_at = now + reconcile_pause(payment.reconcile_attempts)
