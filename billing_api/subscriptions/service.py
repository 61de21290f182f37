"""Subscribing: checkout creates a pending subscription and its payment; reading them back."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import entitlements
from billing_api.catalog import service as catalog
from billing_api.config import BillingSettings
from billing_api.customers import Customer
from billing_api.gateway import GatewayClient
from billing_api.models import (
    Payment,
    PaymentPurpose,
    PaymentStatus,
    Plan,
    RenewalSource,
    Subscription,
    SubscriptionStatus,
)
from billing_api.payments import pending
from billing_api.payments import service as payments
from billing_api.pricing.inputs import Priced, price_plan
from billing_api.refunds import quotes as refund_quotes
from billing_api.refunds import service as refunds
from billing_api.subscriptions import cards, pause_records, transitions
from billing_api.subscriptions.schemas import (
    PauseOut,
    RenewalSourceName,
    SavedCard,
    SubscriptionIn,
    SubscriptionOut,
)
from shared import clock, outbox
from shared.errors import Conflict, NotFound, UnprocessableEntity
from shared.pagination import newest_first, page_of


class SubscriptionNotFound(NotFound):
    default_detail = "no such subscription"


async def subscription_out(session: AsyncSession, subscription: Subscription) -> SubscriptionOut:
    latest = (
        await session.get(Payment, subscription.latest_payment_id)
        if subscription.latest_payment_id
        else None
    )
    return _subscription_out(subscription, latest)


def _subscription_out(subscription: Subscription, latest: Payment | None) -> SubscriptionOut:
    return SubscriptionOut(
        id=subscription.id,
        plan_id=subscription.plan_id,
        status=subscription.status,
        months=subscription.months,
        current_period_start=subscription.current_period_start,
        current_period_end=subscription.current_period_end,
        cancel_at_period_end=subscription.cancel_at_period_end,
        auto_renew=subscription.auto_renew,
        latest_payment=payments.brief(latest),
        created_at=subscription.created_at,
        trial_end=subscription.trial_end,
        pending_plan_id=subscription.pending_plan_id,
        payment_method=_saved_card(subscription),
        renewal_source=renewal_source_of(subscription),
        pause=_pause_out(subscription),
    )


def renewal_source_of(subscription: Subscription) -> RenewalSourceName:
    return (
        "wallet_then_card"
        if subscription.renewal_source == RenewalSource.WALLET_THEN_CARD
        else "card"
    )


def _saved_card(subscription: Subscription) -> SavedCard | None:
    card = cards.summary_of(subscription)
    return None if card is None else SavedCard.model_validate(card.model_dump())


def _pause_out(subscription: Subscription) -> PauseOut | None:
    starts_at, resumes_at = subscription.pause_starts_at, subscription.pause_resumes_at
    if starts_at is None or resumes_at is None:
        return None
    return PauseOut(starts_at=starts_at, resumes_at=resumes_at)


async def subscribe(
    session: AsyncSession, settings: BillingSettings, customer: Customer, request: SubscriptionIn
) -> tuple[Subscription, bool]:
    """Check out a plan; returns ``(subscription, created)``.

    While a checkout for the same plan is pending, the pending subscription is returned (with
    the same payment, so the same checkout) instead of charging again
    (:func:`billing_api.payments.pending.start_or_reuse`). A card payment is left for the route
    to open at the gateway after the commit.
    """
    plan = await catalog.load_plan(session, request.plan_id)

    async def check() -> None:
        if request.trial:
            await _check_trial(session, plan, customer.id, request)

    async def order(subscription: Subscription) -> payments.Order:
        priced = await price_plan(
            session,
            plan,
            request.months,
            user_id=customer.id,
            promo_code=request.promo_code,
            max_total_percent=settings.max_total_discount_percent,
        )
        return plan_order(plan, request, priced, subscription)

    return await pending.start_or_reuse(
        session,
        customer,
        Subscription,
        insert=insert(Subscription)
        .values(
            id=uuid4(),
            user_id=customer.id,
            email=customer.email,
            plan_id=plan.id,
            status=SubscriptionStatus.PENDING,
            months=request.months,
            auto_renew=request.auto_renew,
            cancel_at_period_end=False,
            trial=request.trial,
        )
        # Meets the one-pending-checkout index (and, for a racing trial, the one-trial index).
        .on_conflict_do_nothing()
        .returning(Subscription.id),
        pending=sa.select(Subscription).where(
            Subscription.user_id == customer.id,
            Subscription.plan_id == plan.id,
            Subscription.status == SubscriptionStatus.PENDING,
        ),
        order=order,
        method=request.payment_method,
        check=check,
    )


def plan_order(
    plan: Plan, request: SubscriptionIn, priced: Priced, subscription: Subscription
) -> payments.Order:
    """What the checkout of ``subscription`` charges: the priced plan, or for a trial nothing
    (its checkout only saves the card for the first charge at the trial's end)."""
    paid = payments.Order.priced(
        priced.quote,
        purpose="subscription",
        description=describe(plan, request.months),
        promo_code_id=priced.promo_code_id,
        months=request.months,
        subscription_id=subscription.id,
        plan_id=plan.id,
        save_payment_method=request.auto_renew,
    )
    if not subscription.trial:
        return paid
    return replace(
        paid,
        purpose="trial",
        description=f"{plan.name}: {plan.trial_days}-day free trial",
        amount=0,
        base_amount=0,
        discount_amount=0,
        quote=None,
        promo_code_id=None,
        save_payment_method=True,
    )


class TrialNotOffered(UnprocessableEntity):
    default_detail = "this plan has no free trial"


class TrialNeedsCard(UnprocessableEntity):
    default_detail = "a trial saves a card for its first charge; pay by card"


class PromoCodeNotForTrial(UnprocessableEntity):
    default_detail = "promo codes apply to paid checkouts, not to a free trial"


class TrialAlreadyUsed(Conflict):
    default_detail = "you have already had this plan's free trial"


async def _check_trial(
    session: AsyncSession, plan: Plan, user_id: UUID, request: SubscriptionIn
) -> None:
    """A trial is offered by the plan, paid by card, without a promo code, once per user."""
    if plan.trial_days <= 0:
        raise TrialNotOffered(f"plan {plan.code} has no free trial")
    if request.payment_method != "card":
        raise TrialNeedsCard()
    if request.promo_code is not None:
        raise PromoCodeNotForTrial()
    used = await session.scalar(
        sa.select(Subscription.id).where(
            Subscription.user_id == user_id,
            Subscription.plan_id == plan.id,
            Subscription.trial,
            Subscription.status.not_in((SubscriptionStatus.ABANDONED, SubscriptionStatus.PENDING)),
        )
    )
    if used is not None:
        raise TrialAlreadyUsed(f"you have already had the free trial of plan {plan.code}")


def describe(plan: Plan, months: int) -> str:
    """``Premium, 3 months`` / ``Weekend pass, 1 x 3 days``: what a payment line says."""
    if plan.period_unit == "month":
        return f"{plan.name}, {months} month{'s' if months > 1 else ''}"
    return f"{plan.name}, {months} x {plan.period_days} days"


async def list_subscriptions(
    session: AsyncSession, user_id: UUID, *, cursor: str | None, limit: int
) -> tuple[list[SubscriptionOut], str | None]:
    query = sa.select(Subscription).where(Subscription.user_id == user_id)
    rows = (
        await session.scalars(
            newest_first(query, Subscription.created_at, Subscription.id, cursor, limit)
        )
    ).all()
    items, next_cursor = page_of(rows, limit)
    latest = await payments.by_id(session, [s.latest_payment_id for s in items])
    return [_subscription_out(s, latest.get(s.latest_payment_id)) for s in items], next_cursor


async def get_subscription(
    session: AsyncSession, user_id: UUID, subscription_id: UUID
) -> SubscriptionOut:
    subscription = await session.get(Subscription, subscription_id)
    if subscription is None or subscription.user_id != user_id:
        raise SubscriptionNotFound(f"subscription {subscription_id} not found")
    return await subscription_out(session, subscription)


async def owned_subscription(
    session: AsyncSession, user_id: UUID, subscription_id: UUID
) -> Subscription:
    subscription = await session.get(Subscription, subscription_id, with_for_update=True)
    if subscription is None or subscription.user_id != user_id:
        raise SubscriptionNotFound(f"subscription {subscription_id} not found")
    return subscription


async def cancel(
    session: AsyncSession,
    gateway: GatewayClient,
    user_id: UUID,
    subscription_id: UUID,
    *,
    at_period_end: bool,
) -> Subscription:
    """Stop renewing: at period end (access until then, no grace) or now (access ends now,
    with the refund the plan's policy allows for the payment of the current period)."""
    subscription = await owned_subscription(session, user_id, subscription_id)
    if not at_period_end and await waiting_upgrade(session, subscription) is not None:
        raise transitions.SubscriptionNotCancelable(
            "an upgrade is waiting for payment; pay it or let its checkout expire first"
        )
    if not at_period_end and subscription.latest_payment_id is not None:
        latest = await session.get(Payment, subscription.latest_payment_id)
        if latest is not None:
            quote = await refund_quotes.quote_payment(session, latest, now=clock.now())
            if quote.amount > 0:
                await refunds.refund_payment(
                    session,
                    gateway,
                    latest,
                    amount=quote.amount,
                    rule=quote.rule,
                    reason="cancelled by the user",
                )
                if subscription.status == SubscriptionStatus.CANCELED:
                    return subscription  # the refund cancelled it and said so
    plan = await session.get(Plan, subscription.plan_id)
    assert plan is not None
    pause_starts_at = (
        subscription.pause_starts_at if transitions.pause_scheduled(subscription) else None
    )
    changes = transitions.cancel(subscription, plan, now=clock.now(), at_period_end=at_period_end)
    if pause_starts_at is not None:  # the cancel dropped a pause before it began
        await pause_records.mark_taken_back(session, subscription, pause_starts_at, clock.now())
    await entitlements.publish_snapshot(session, subscription.user_id)
    await outbox.add_all(session, changes)
    return subscription


async def waiting_upgrade(session: AsyncSession, subscription: Subscription) -> Payment | None:
    """The upgrade payment of ``subscription`` still waiting to be paid, if any."""
    payment: Payment | None = await session.scalar(
        sa.select(Payment)
        .where(
            Payment.subscription_id == subscription.id,
            Payment.purpose == PaymentPurpose.UPGRADE,
            Payment.status == PaymentStatus.PENDING,
        )
        .order_by(Payment.created_at.desc())
        .limit(1)
    )
    return payment


async def resume(session: AsyncSession, user_id: UUID, subscription_id: UUID) -> Subscription:
    """Undo a cancel at period end while the period still runs: renewals go on as before,
    a failed renewal's dunning retries included (the cancel kept their schedule)."""
    subscription = await owned_subscription(session, user_id, subscription_id)
    changes = transitions.resume(subscription, now=clock.now())
    await entitlements.publish_snapshot(session, subscription.user_id)
    await outbox.add_all(session, changes)
    return subscription
