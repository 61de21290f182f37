"""What each portal page shows, gathered from the services the API uses (read only).

The pages add nothing of their own to the rules: the next charge is priced by the renewal
claim's own quote, a plan change by :func:`billing_api.subscriptions.plan_change.preview_changes`,
a refund by :func:`billing_api.refunds.quotes.quote_payment`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.config import BillingSettings
from billing_api.ledger import service as ledger
from billing_api.lifecycle import renewal_claims
from billing_api.models import (
    Movie,
    Payment,
    Plan,
    Receipt,
    Refund,
    Subscription,
    SubscriptionStatus,
)
from billing_api.payments import service as payments
from billing_api.payments.schemas import PaymentOut
from billing_api.purchases import service as purchases
from billing_api.purchases.schemas import PurchaseOut
from billing_api.refunds import quotes as refund_quotes
from billing_api.subscriptions import cards, plan_change, transitions
from billing_api.subscriptions.service import SubscriptionNotFound
from billing_api.wallet import service as wallet_service
from billing_api.wallet.schemas import StatementEntry, WalletOut
from shared import clock
from shared.events import CardSummary
from shared.money import Money

PAGE = 50  # rows of a list the portal shows (the newest)


@dataclass(frozen=True)
class SubscriptionView:
    id: UUID
    plan_name: str
    status: str
    period_end: datetime | None
    cancel_at_period_end: bool
    next_charge_at: datetime | None  # None: it does not renew
    next_charge: Money | None
    card: CardSummary | None
    pause_starts_at: datetime | None
    pause_resumes_at: datetime | None
    pending_plan_name: str | None
    actions: frozenset[str]


def next_charge_at(subscription: Subscription, settings: BillingSettings) -> datetime | None:
    """When the renewal job charges next: a dunning retry's time, else the renewal lead before
    the next period starts (the period end, or a running pause's end); None if it won't renew."""
    if not transitions.renews(subscription):
        return None
    if subscription.renewal_attempts > 0 and subscription.next_renewal_at is not None:
        return subscription.next_renewal_at
    start = transitions.next_period_start(subscription)
    return start - timedelta(minutes=settings.renewal_lead_minutes)


def actions_of(subscription: Subscription) -> frozenset[str]:
    """The buttons a subscription gets; the services still decide (a refusal is shown)."""
    status, found = subscription.status, set()
    live = status in transitions.LIVE
    if live and not subscription.cancel_at_period_end:
        found.add("cancel")
    if subscription.pause_starts_at is not None or (live and subscription.cancel_at_period_end):
        found.add("resume")
    if status == SubscriptionStatus.ACTIVE and transitions.renews(subscription):
        found.add("pause")
    if status == SubscriptionStatus.ACTIVE and not subscription.cancel_at_period_end:
        found.add("change_plan")
    if status in transitions.CARD_REPLACEABLE:
        found.add("card")
    return frozenset(found)


async def subscription_views(
    session: AsyncSession, settings: BillingSettings, user_id: UUID
) -> list[SubscriptionView]:
    rows = await session.scalars(
        sa.select(Subscription)
        .where(Subscription.user_id == user_id, Subscription.status != SubscriptionStatus.ABANDONED)
        .order_by(Subscription.created_at.desc(), Subscription.id)
        .limit(PAGE)
    )
    plans = {p.id: p for p in await session.scalars(sa.select(Plan))}
    found = []
    for subscription in rows:
        when = next_charge_at(subscription, settings)
        amount = None
        if when is not None:
            _, quote = await renewal_claims.quote_renewal(
                session,
                subscription,
                now=clock.now(),
                max_total_percent=settings.max_total_discount_percent,
            )
            amount = Money(amount=quote.total, currency=quote.currency)
        pending = plans.get(subscription.pending_plan_id) if subscription.pending_plan_id else None
        found.append(
            SubscriptionView(
                id=subscription.id,
                plan_name=plans[subscription.plan_id].name,
                status=subscription.status,
                period_end=subscription.current_period_end,
                cancel_at_period_end=subscription.cancel_at_period_end,
                next_charge_at=when,
                next_charge=amount,
                card=cards.summary_of(subscription),
                pause_starts_at=subscription.pause_starts_at,
                pause_resumes_at=subscription.pause_resumes_at,
                pending_plan_name=pending.name if pending else None,
                actions=actions_of(subscription),
            )
        )
    return found


async def own_subscription(
    session: AsyncSession, user_id: UUID, subscription_id: UUID
) -> Subscription:
    subscription = await session.get(Subscription, subscription_id)
    if subscription is None or subscription.user_id != user_id:
        raise SubscriptionNotFound(f"subscription {subscription_id} not found")
    return subscription


async def plan_choices(
    session: AsyncSession, settings: BillingSettings, user_id: UUID, subscription_id: UUID
) -> tuple[Subscription, Plan, list[plan_change.ChangePreview]]:
    subscription = await own_subscription(session, user_id, subscription_id)
    current = await session.get(Plan, subscription.plan_id)
    assert current is not None
    if "change_plan" not in actions_of(subscription):
        return subscription, current, []
    return subscription, current, await plan_change.preview_changes(session, settings, subscription)


@dataclass(frozen=True)
class PurchaseView:
    purchase: PurchaseOut
    title: str


async def purchase_views(session: AsyncSession, user_id: UUID) -> list[PurchaseView]:
    items, _ = await purchases.list_purchases(session, user_id, cursor=None, limit=PAGE)
    rows = await session.execute(
        sa.select(Movie.id, Movie.title).where(Movie.id.in_([p.movie_id for p in items]))
    )
    titles = {row.id: row.title for row in rows}
    return [PurchaseView(p, titles.get(p.movie_id, str(p.movie_id))) for p in items]


@dataclass(frozen=True)
class PaymentView:
    payment: PaymentOut
    refundable: int  # what a refund asked for now would give back
    has_receipt: bool
    refunds: list[Refund] = field(default_factory=list)
    refund_receipts: frozenset[UUID] = frozenset()  # the refunds that have one


async def payment_views(session: AsyncSession, user_id: UUID) -> list[PaymentView]:
    rows = (
        await session.scalars(
            sa.select(Payment)
            .where(Payment.user_id == user_id)
            .order_by(Payment.created_at.desc(), Payment.id.desc())
            .limit(PAGE)
        )
    ).all()
    refunds: dict[UUID, list[Refund]] = defaultdict(list)
    for refund in await session.scalars(
        sa.select(Refund)
        .where(Refund.payment_id.in_([p.id for p in rows]))
        .order_by(Refund.created_at, Refund.id)
    ):
        refunds[refund.payment_id].append(refund)
    receipts = await session.execute(
        sa.select(Receipt.payment_id, Receipt.refund_id).where(
            sa.or_(
                Receipt.payment_id.in_([p.id for p in rows]),
                Receipt.refund_id.in_([r.id for found in refunds.values() for r in found]),
            )
        )
    )
    paid, given_back = set(), set()
    for payment_id, refund_id in receipts:
        paid.add(payment_id)
        given_back.add(refund_id)
    now = clock.now()
    found = []
    for payment in rows:
        quote = await refund_quotes.quote_payment(session, payment, now=now)
        found.append(
            PaymentView(
                payments.payment_out(payment),
                quote.amount,
                payment.id in paid,
                refunds[payment.id],
                frozenset(r.id for r in refunds[payment.id] if r.id in given_back),
            )
        )
    return found


@dataclass(frozen=True)
class WalletLine:
    entry: StatementEntry
    change: int  # what it did to the wallet, in minor units: credits +, debits -
    currency: str


async def wallet_page(
    session: AsyncSession, settings: BillingSettings, user_id: UUID
) -> tuple[WalletOut, list[WalletLine]]:
    balances = await wallet_service.wallet(session, user_id, settings.default_currency)
    entries, _ = await wallet_service.statement(
        session, user_id, since=None, until=None, cursor=None, limit=PAGE
    )
    account = ledger.wallet_account(user_id)
    lines = []
    for entry in entries:
        mine = [line for line in entry.lines if line.account == account]
        if not mine:
            continue  # the user's, but not the wallet's (a card payment and its refund)
        change = sum(x.amount.amount if x.side == "credit" else -x.amount.amount for x in mine)
        lines.append(WalletLine(entry, change, mine[0].amount.currency))
    return balances, lines
