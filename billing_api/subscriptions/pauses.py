"""Pausing a subscription instead of cancelling it, and resuming it.

A subscriber pauses an active, renewing subscription for 1 to 3 calendar months: access runs to
the end of the paid period, then the subscription is ``paused`` (no access, no charge) until the
pause ends, when it renews as usual. Resuming takes a pause back before it began, or ends a
running one now with a renewal charged at once. What each step changes is decided in
:mod:`billing_api.subscriptions.transitions` (section "pause"); this module checks what needs
the database (the yearly limit, an upgrade waiting, renewals being charged), keeps the record of
pauses (:mod:`billing_api.subscriptions.pause_records`) and publishes.
"""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import entitlements
from billing_api.activation import service as activation
from billing_api.config import BillingSettings
from billing_api.lifecycle import renewal_claims
from billing_api.lifecycle.renewal_claims import RenewalCharge
from billing_api.lifecycle.service import JobContext
from billing_api.models import Payment, PaymentPurpose, PaymentStatus, Plan, Subscription
from billing_api.subscriptions import pause_records, service, transitions
from shared import clock, outbox
from shared.errors import Conflict


class PauseLimitReached(Conflict):
    default_detail = "this subscription has had as many pauses this year as it may"


async def pause(
    session: AsyncSession,
    settings: BillingSettings,
    user_id: UUID,
    subscription_id: UUID,
    *,
    months: int,
) -> Subscription:
    """Schedule a pause of ``months`` months from the period end (see the module's doc)."""
    subscription = await service.owned_subscription(session, user_id, subscription_id)
    now = clock.now()
    transitions.check_pausable(subscription, now=now)
    if await service.waiting_upgrade(session, subscription) is not None:
        raise transitions.SubscriptionNotPausable(
            "an upgrade is waiting for payment; pay it or let its checkout expire first"
        )
    used = await pause_records.pauses_in_year(session, subscription, now)
    if used >= settings.max_pauses_per_year:
        raise PauseLimitReached(
            f"{used} pauses in the last 365 days; at most {settings.max_pauses_per_year} a year"
        )
    plan = await session.get(Plan, subscription.plan_id)
    assert plan is not None
    changes = transitions.schedule_pause(subscription, plan, months=months, now=now)
    session.add(pause_records.record(subscription, months))
    await _void_pending_renewals(session, subscription)
    # Access now ends at the period end, without the grace a renewing period would have.
    await entitlements.publish_snapshot(session, subscription.user_id)
    await outbox.add_all(session, changes)
    return subscription


async def _void_pending_renewals(session: AsyncSession, subscription: Subscription) -> None:
    """A renewal of this period end being charged (asked for within the renewal lead) is voided:
    the pause replaces that period. If its charge still succeeds it is refunded in full
    (:mod:`billing_api.activation.unused_renewals`)."""
    pending = await session.scalars(
        sa.select(Payment)
        .where(
            Payment.subscription_id == subscription.id,
            Payment.purpose == PaymentPurpose.RENEWAL,
            Payment.status == PaymentStatus.PENDING,
        )
        .order_by(Payment.id)
        .with_for_update()
    )
    for renewal in pending:
        await activation.expire_payment(session, renewal)


async def resume(
    session: AsyncSession, ctx: JobContext, user_id: UUID, subscription_id: UUID
) -> tuple[Subscription, RenewalCharge | None]:
    """Take back a pause that has not begun, end a running one now, or (no pause) undo a
    cancel at period end. Ending a pause returns the renewal committed with it, for the caller
    to charge once this transaction is committed."""
    subscription = await service.owned_subscription(session, user_id, subscription_id)
    starts_at = subscription.pause_starts_at
    if starts_at is None:
        return await service.resume(session, user_id, subscription_id), None
    plan = await session.get(Plan, subscription.plan_id)
    assert plan is not None
    if transitions.pause_scheduled(subscription):
        changes = transitions.take_back_pause(subscription, plan, now=ctx.now)
        await pause_records.mark_taken_back(session, subscription, starts_at, ctx.now)
        # Access runs to the period end and its grace again, as for any renewing period.
        await entitlements.publish_snapshot(session, subscription.user_id)
        await outbox.add_all(session, changes)
        return subscription, None
    changes = transitions.resume_now(subscription, plan, now=ctx.now)
    if changes:
        await pause_records.mark_resumed(session, subscription, starts_at, ctx.now)
    charge = await renewal_claims.claim_renewal_of(session, ctx, subscription)
    await outbox.add_all(session, changes)
    return subscription, charge
