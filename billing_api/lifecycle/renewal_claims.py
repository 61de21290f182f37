"""Step 1 of a renewal (:mod:`billing_api.lifecycle.renewals`): claim the subscriptions due and
commit their renewal payments, priced, before anything is charged.

What a renewal costs, decided at the claim:

* **Priced like a purchase today.** A renewal is quoted by :func:`billing_api.pricing.service.quote`
  exactly as buying the plan for the subscription's number of periods (one, unless more were
  bought) would be quoted now: today's price, the plan's months tiers and the user's personal
  discount (capped together as at checkout). Promo codes were for the first payment only. The
  payment stores the quote and shows the discount in ``discount_amount``. A batch loads its
  plans, tiers and personal discounts in one query each, then quotes in memory.
* **Nothing to pay, nothing to charge.** A renewal that costs nothing (a downgrade to a free
  plan, a 100 % discount) is a ``free`` payment, like a free order at checkout: the gateway is
  not asked (it refuses zero charges) and the renewal is settled by this run as if the charge
  had succeeded. A subscription renewing onto a free plan needs no saved card.
* **The wallet first, if asked.** A subscription renewing ``wallet_then_card`` is paid from the
  wallet when its balance covers the renewal, else charged to the card; without a card it is
  due all the same, and fails (dunning) when the wallet falls short
  (:mod:`billing_api.lifecycle.wallet_renewals`).
* **Never charge for a plan that grants nothing.** A scheduled downgrade to a plan archived since
  goes ahead (the user chose it), and an archived plan keeps granting while anyone is on it or
  will switch to it (:func:`billing_api.catalog.service.plan_grants_access`). If the last
  ``plan.changed`` of the plan being renewed said ``active: false`` (``published_active``), the
  claim publishes it again, now granting, before the payment is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.catalog import service as catalog
from billing_api.lifecycle import wallet_renewals
from billing_api.lifecycle.service import BATCH, LEASE, JobContext
from billing_api.models import (
    Payment,
    PaymentStatus,
    Plan,
    RenewalSource,
    Subscription,
    SubscriptionStatus,
)
from billing_api.pricing import service as pricing
from billing_api.pricing.inputs import load_personal_discounts, load_tiers_of
from billing_api.subscriptions import transitions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenewalCharge:
    """One committed renewal payment, as the gateway is asked to charge it."""

    payment_id: UUID
    subscription_id: UUID
    user_id: UUID
    email: str | None
    amount: int
    currency: str
    description: str
    payment_method_ref: str | None
    free: bool = False  # nothing to pay: settled here, the gateway is not asked
    # paid from the wallet, or failed for want of it: settled here, the gateway is not asked
    wallet: wallet_renewals.WalletOutcome | None = None
    # Charged already and waiting for the cardholder's confirmation (3-D Secure): never charged
    # again; the run cancels it at the gateway (billing_api.activation.confirmations).
    confirming: bool = False


def _due(ctx: JobContext) -> sa.ColumnElement[bool]:
    lead = timedelta(minutes=ctx.settings.renewal_lead_minutes)
    # A renewal onto a free plan needs no card (a free plan may have been checked out without).
    onto_free_plan = (
        sa.select(Plan.id)
        .where(
            Plan.id == sa.func.coalesce(Subscription.pending_plan_id, Subscription.plan_id),
            Plan.price_amount == 0,
        )
        .exists()
    )
    return sa.and_(
        _renewing(),
        Subscription.auto_renew,
        ~Subscription.cancel_at_period_end,
        sa.or_(
            Subscription.payment_method_ref.is_not(None),
            onto_free_plan,
            Subscription.renewal_source == RenewalSource.WALLET_THEN_CARD,
        ),
        sa.or_(
            sa.and_(
                Subscription.renewal_attempts == 0,
                _next_period_start() <= ctx.now + lead,
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


def _renewing() -> sa.ColumnElement[bool]:
    """Live, or paused (renewed at the pause's end), and not about to pause at the period end
    (no renewal is charged for it: :func:`billing_api.subscriptions.transitions.renews`)."""
    return sa.or_(
        sa.and_(Subscription.status.in_(transitions.LIVE), Subscription.pause_starts_at.is_(None)),
        Subscription.status == SubscriptionStatus.PAUSED,
    )


def _next_period_start() -> sa.ColumnElement[datetime]:
    """When the next period starts: the period end, or a paused subscription's pause end
    (:func:`billing_api.subscriptions.transitions.next_period_start`)."""
    return sa.case(
        (Subscription.status == SubscriptionStatus.PAUSED, Subscription.pause_resumes_at),
        else_=Subscription.current_period_end,
    )


async def claim_renewal_of(
    session: AsyncSession, ctx: JobContext, subscription: Subscription
) -> RenewalCharge | None:
    """Claim one subscription's renewal now, in the caller's transaction (which holds the
    subscription's lock and commits the payment before anything is charged): a subscriber
    ending a pause early renews at once. The same payment a pass of the job would commit: a
    pending one left by an earlier claim (the same id, so the gateway charges it once), else a
    new one priced as :func:`claim_renewals` prices it, with the same lease. None when there
    is nothing to charge it to (a paid plan and no saved card)."""
    charge = (await _pending_renewals(session, [subscription.id])).get(subscription.id)
    if charge is None:
        prices = await _Prices.load(session, ctx, [subscription])
        plan, quote = prices.renewal(subscription)
        if quote.total > 0 and subscription.payment_method_ref is None:
            return None
        payment = _new_payment(subscription, plan, quote)
        await _keep_granting(session, prices.plans_charged([payment]))
        await session.execute(sa.insert(Payment), [payment])
        charge = _charge_of(payment)
    subscription.next_renewal_at = ctx.now + LEASE
    return charge


async def claim_renewals(ctx: JobContext) -> list[RenewalCharge]:
    """Claim a batch of due subscriptions and commit their renewal payments (not yet charged)."""
    async with ctx.sessions() as session, session.begin():
        due = (
            await session.execute(
                sa.select(
                    Subscription.id,
                    Subscription.user_id,
                    Subscription.email,
                    Subscription.plan_id,
                    Subscription.pending_plan_id,
                    Subscription.months,
                    Subscription.payment_method_ref,
                    Subscription.renewal_source,
                )
                .where(_due(ctx))
                .order_by(_next_period_start())
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if not due:
            return []
        ids = [row.id for row in due]
        pending = await _pending_renewals(session, ids)
        # A scheduled downgrade takes effect here: the renewal buys the new plan.
        to_price = [row for row in due if row.id not in pending]
        prices = await _Prices.load(session, ctx, to_price)
        charges: list[RenewalCharge] = []
        new_payments: list[dict[str, Any]] = []
        for row in due:
            charge = pending.get(row.id)
            if charge is None:
                plan, quote = prices.renewal(row)
                if quote.total > 0 and row.payment_method_ref is None and not _wallet_first(row):
                    continue  # the plan is no longer free and there is no card: grace, expiry
                payment = _new_payment(row, plan, quote)
                new_payments.append(payment)
                charge = _charge_of(payment)
            charges.append(charge)
        await _keep_granting(session, prices.plans_charged(new_payments))
        from_wallet = await _pay_from_wallets(session, due, new_payments, pending.values())
        if new_payments:
            await session.execute(sa.insert(Payment), new_payments)
        await session.execute(
            sa.update(Subscription)
            .where(Subscription.id.in_(ids))
            .values(next_renewal_at=ctx.now + LEASE)  # others skip them while we charge
            .execution_options(synchronize_session=False)
        )
    return [
        replace(c, wallet=from_wallet[c.payment_id]) if c.payment_id in from_wallet else c
        for c in charges
    ]


def _wallet_first(row: Any) -> bool:
    return bool(row.renewal_source == RenewalSource.WALLET_THEN_CARD)


async def _pay_from_wallets(
    session: AsyncSession,
    due: Sequence[Any],
    new_payments: list[dict[str, Any]],
    pending: Iterable[RenewalCharge],
) -> dict[UUID, wallet_renewals.WalletOutcome]:
    """Decide which renewals the wallets pay (or fail for want of them): the new payments of
    subscriptions renewing from the wallet first, and the pending wallet payments of earlier
    runs (which never go to the card). A new payment the wallet pays or fails becomes a
    ``wallet`` payment before it is inserted; the money is taken in this transaction.

    billing's lock order: the subscriptions are held; the pending wallet payments are locked
    here in id order (new ones are not in the database yet), then the wallets."""
    wallet_first = {row.id for row in due if _wallet_first(row)}
    draws = [
        wallet_renewals.Draw(
            payment_id=p["id"],
            user_id=p["user_id"],
            amount=p["amount"],
            currency=p["currency"],
            description=p["description"],
            card=p["payment_method_ref"] is not None,
        )
        for p in new_payments
        if p["subscription_id"] in wallet_first and p["method"] == "card"
    ]
    committed = [c for c in pending if c.wallet == wallet_renewals.UNDECIDED]
    if committed:
        await session.execute(
            sa.select(Payment.id)
            .where(Payment.id.in_([c.payment_id for c in committed]))
            .order_by(Payment.id)
            .with_for_update()
        )
    draws += [
        wallet_renewals.Draw(
            payment_id=c.payment_id,
            user_id=c.user_id,
            amount=c.amount,
            currency=c.currency,
            description=c.description,
            card=False,
        )
        for c in committed
    ]
    if not draws:
        return {}
    outcomes = await wallet_renewals.draw(session, draws)
    for payment in new_payments:
        if payment["id"] in outcomes:
            payment["method"] = "wallet"
            payment["payment_method_ref"] = None
    return outcomes


async def _pending_renewals(
    session: AsyncSession, ids: Sequence[UUID]
) -> dict[UUID, RenewalCharge]:
    """Renewal payments an earlier run committed but never settled, by subscription (one
    waiting for the cardholder's confirmation too: it is cancelled, never charged again)."""
    rows = await session.execute(
        sa.select(
            Payment.id,
            Payment.subscription_id,
            Payment.user_id,
            Payment.email,
            Payment.amount,
            Payment.currency,
            Payment.description,
            Payment.payment_method_ref,
            Payment.method,
            Payment.status,
        )
        .where(
            Payment.subscription_id.in_(ids),
            Payment.purpose == "renewal",
            Payment.status.in_((PaymentStatus.PENDING, PaymentStatus.REQUIRES_ACTION)),
            # A renewal paid at a card update's checkout is the subscriber's to pay, never
            # charged off-session (transitions.renewal_at_checkout).
            ~Payment.save_payment_method,
        )
        .order_by(Payment.created_at)
    )
    found: dict[UUID, RenewalCharge] = {}
    for row in rows:
        assert row.subscription_id is not None
        found.setdefault(
            row.subscription_id,
            RenewalCharge(
                payment_id=row.id,
                subscription_id=row.subscription_id,
                user_id=row.user_id,
                email=row.email,
                amount=row.amount,
                currency=row.currency,
                description=row.description,
                payment_method_ref=row.payment_method_ref,
                free=row.method == "free" or row.amount == 0,
                wallet=wallet_renewals.UNDECIDED
                if row.method == "wallet" and row.amount > 0
                else None,
                confirming=row.status == PaymentStatus.REQUIRES_ACTION,
            ),
        )
    # Zero renewals committed as card payments before free renewals were settled here (the
    # gateway refuses them): from now on they are free payments too.
    zero_cards = [c.payment_id for c in found.values() if c.free and c.amount == 0]
    if zero_cards:
        await session.execute(
            sa.update(Payment)
            .where(Payment.id.in_(zero_cards), Payment.method == "card")
            .values(method="free")
            .execution_options(synchronize_session=False)
        )
    return found


class _Prices:
    """Today's renewal prices for one batch: its plans, their months tiers and the users'
    personal discounts are each loaded in one query, then every renewal is quoted in memory."""

    def __init__(
        self,
        ctx: JobContext,
        plans: dict[UUID, Plan],
        tiers: dict[UUID, list[pricing.Tier]],
        personal: dict[UUID, int],
    ) -> None:
        self.ctx = ctx
        self.plans = plans
        self.tiers = tiers
        self.personal = personal

    @classmethod
    async def load(cls, session: AsyncSession, ctx: JobContext, rows: Sequence[Any]) -> _Prices:
        plan_ids = {row.pending_plan_id or row.plan_id for row in rows}
        if not plan_ids:
            return cls(ctx, {}, {}, {})
        plans = {
            p.id: p for p in await session.scalars(sa.select(Plan).where(Plan.id.in_(plan_ids)))
        }
        tiers = await load_tiers_of(session, plan_ids)
        personal = await load_personal_discounts(session, {row.user_id for row in rows})
        return cls(ctx, plans, tiers, personal)

    def renewal(self, row: Any) -> tuple[Plan, pricing.Quote]:
        """The plan this renewal buys and its quote: a purchase of ``row.months`` periods
        today, with the plan's tiers and the user's personal discount (no promo code)."""
        plan = self.plans[row.pending_plan_id or row.plan_id]
        quote = price_renewal(
            plan,
            row.months,
            now=self.ctx.now,
            tiers=self.tiers[plan.id],
            personal_percent=self.personal.get(row.user_id),
            max_total_percent=self.ctx.settings.max_total_discount_percent,
        )
        return plan, quote

    def plans_charged(self, payments: Sequence[dict[str, Any]]) -> list[Plan]:
        return [self.plans[plan_id] for plan_id in {p["plan_id"] for p in payments}]


def price_renewal(
    plan: Plan,
    months: int,
    *,
    now: datetime,
    tiers: Sequence[pricing.Tier],
    personal_percent: int | None,
    max_total_percent: int,
) -> pricing.Quote:
    """A renewal's quote: a purchase of ``months`` periods of ``plan`` at ``now``, with the
    plan's tiers and the user's personal discount (no promo code). The plan's ``max_months``
    lowered since does not stop a subscription renewing for as many periods as it bought."""
    return pricing.quote(
        pricing.PlanPrice(plan.id, plan.price_amount, plan.currency, max(plan.max_months, months)),
        months,
        now=now,
        tiers=tiers,
        personal_percent=personal_percent,
        max_total_percent=max_total_percent,
    )


async def quote_renewal(
    session: AsyncSession, subscription: Subscription, *, now: datetime, max_total_percent: int
) -> tuple[Plan, pricing.Quote]:
    """What a renewal of ``subscription`` claimed at ``now`` would buy and charge, priced as the
    claim prices it: for a renewal paid at a checkout instead (a card update while the
    subscription owes, :mod:`billing_api.subscriptions.payment_method`)."""
    plan = await session.get(Plan, subscription.pending_plan_id or subscription.plan_id)
    assert plan is not None
    tiers = await load_tiers_of(session, [plan.id])
    personal = await load_personal_discounts(session, [subscription.user_id])
    quote = price_renewal(
        plan,
        subscription.months,
        now=now,
        tiers=tiers[plan.id],
        personal_percent=personal.get(subscription.user_id),
        max_total_percent=max_total_percent,
    )
    return plan, quote


async def _keep_granting(session: AsyncSession, plans: Sequence[Plan]) -> None:
    """Make sure every plan about to be charged for grants access: one whose last
    ``plan.changed`` said ``active: false`` (archived while nobody seemed to be on it) is
    published again, now granting, since this renewal puts someone on it. Rare: most batches
    only read ``published_active`` of plans already loaded."""
    for plan in sorted((p for p in plans if not p.published_active), key=lambda p: p.id):
        await session.refresh(plan, with_for_update=True)
        if plan.published_active:
            continue  # published meanwhile
        plan.version += 1
        await catalog.publish_plan(
            session, plan, [] if plan.all_movies else await catalog.plan_movie_ids(session, plan.id)
        )
        logger.warning(
            "plan %s was published as granting nothing; republished for renewals", plan.code
        )


def _new_payment(row: Any, plan: Plan, quote: pricing.Quote) -> dict[str, Any]:
    return {
        "id": uuid4(),
        "user_id": row.user_id,
        "email": row.email,
        "purpose": "renewal",
        "subscription_id": row.id,
        "plan_id": plan.id,
        "method": "card" if quote.total > 0 else "free",
        "status": PaymentStatus.PENDING,
        "amount": quote.total,
        "currency": quote.currency,
        "base_amount": quote.base_amount,
        "discount_amount": quote.discount_amount,
        "quote": quote.to_json(),
        "months": row.months,
        "description": f"{plan.name}: renewal",
        "payment_method_ref": row.payment_method_ref,
        "refunded_amount": 0,
    }


def _charge_of(payment: dict[str, Any]) -> RenewalCharge:
    return RenewalCharge(
        payment_id=payment["id"],
        subscription_id=payment["subscription_id"],
        user_id=payment["user_id"],
        email=payment["email"],
        amount=payment["amount"],
        currency=payment["currency"],
        description=payment["description"],
        payment_method_ref=payment["payment_method_ref"],
        free=payment["method"] == "free",
    )
