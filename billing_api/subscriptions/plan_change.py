"""Changing a subscription's plan: upgrades now, downgrades at the period end.

Rules (DESIGN section 3, "Plan change"):

* **Upgrade** (the new plan costs more per day): takes effect as soon as it is paid. The new
  plan's price for the subscription's number of periods is charged, less a credit for the unused
  part of the current period: ``value * unused_days // total_days``, the day of the change counted
  as used and rounded down, exactly like a pro-rata refund. ``value`` is what the current period
  was bought for: its payment plus the credit that payment used (an upgraded period is worth the
  new plan's price, not the difference charged), less what was refunded of it. A period an
  upgrade started has its first day counted as used under the plan it replaced already, so it
  is not counted twice: two upgrades in a row cost what one upgrade to the last plan costs.
  A new period starts at the payment. If the credit is larger than the price, nothing is
  charged and the rest goes to the wallet. The payment that was credited can no longer be
  refunded (its money moved to the new period); refunding the upgrade gives the credit back to
  the wallet (:mod:`billing_api.refunds.plan_credit`).
* **Downgrade** (the same price per day or less): nothing is charged now; the plan is switched
  at the period end by the renewal, which charges the new plan's price.
* Asking for the current plan while a downgrade is scheduled takes the downgrade back.

Only an ``active`` subscription that is not ending at its period end and has no refund in
progress can change plan, and only to an active plan in the same currency. The subscription row
is locked first, so a refund or cancel of the same subscription at the same moment either sees
the waiting upgrade (and is refused) or has canceled it (and the change is refused). One
upgrade payment waits at a time: asking again for the same plan returns the same checkout;
another plan answers 409 until it is paid or expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.catalog import service as catalog
from billing_api.config import BillingSettings
from billing_api.customers import Customer
from billing_api.gifts import refunds as gift_refunds
from billing_api.models import (
    Payment,
    PaymentPurpose,
    PaymentStatus,
    Plan,
    Refund,
    Subscription,
)
from billing_api.payments import service as payments
from billing_api.payments.schemas import PaymentMethod
from billing_api.pricing import service as pricing
from billing_api.pricing.inputs import price_plan
from billing_api.refunds import plan_credit
from billing_api.refunds import quotes as refund_quotes
from billing_api.subscriptions import service as subscriptions
from billing_api.subscriptions import transitions
from billing_api.subscriptions.schemas import PlanChangeOut
from shared import clock
from shared.errors import Conflict
from shared.money import Money, prorata_floor

MONTH_DAYS = 30  # a monthly plan's length when prices per day are compared

ChangeKind = Literal["upgrade", "downgrade", "downgrade_canceled"]


class UpgradeAwaitingPayment(Conflict):
    default_detail = "an upgrade to another plan is waiting for payment"


# --- pure rules -------------------------------------------------------------------------------


def period_days(plan: Plan) -> int:
    if plan.period_unit == "month" or not plan.period_days:
        return MONTH_DAYS
    return plan.period_days


def is_upgrade(new: Plan, current: Plan) -> bool:
    """The new plan costs more per day (compared by cross-multiplying, no division)."""
    return new.price_amount * period_days(current) > current.price_amount * period_days(new)


def unused_credit(
    paid: int, *, start: datetime, end: datetime, now: datetime, first_day_used: bool = True
) -> int:
    """What is left of ``paid`` for the whole days of ``[start, end)`` not yet used at ``now``
    (today counts as used; rounded down). ``first_day_used=False`` for a period whose first day
    was counted as used under the plan before it (a period an upgrade started)."""
    total_days = (end - start).days
    if paid <= 0 or total_days <= 0:
        return 0
    elapsed = (now - start).days + (1 if first_day_used else 0)
    used_days = min(total_days, max(0, elapsed))
    return prorata_floor(paid, total_days - used_days, total_days)


# --- the operation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanChange:
    subscription: Subscription
    kind: ChangeKind
    payment: Payment | None = None
    credit: int = 0
    currency: str = ""

    @property
    def payment_id(self) -> UUID | None:
        """The upgrade's payment, for the route to open its checkout."""
        return self.payment.id if self.payment is not None else None

    @property
    def effective_at(self) -> datetime | None:
        """When the new plan starts: an upgrade once paid, a downgrade at the period end."""
        if self.kind == "upgrade":
            return self.payment.paid_at if self.payment is not None else None
        if self.kind == "downgrade":
            return self.subscription.current_period_end
        return None


async def plan_change_out(session: AsyncSession, change: PlanChange) -> PlanChangeOut:
    return PlanChangeOut(
        change=change.kind,
        subscription=await subscriptions.subscription_out(session, change.subscription),
        payment=payments.brief(change.payment),
        credit=Money(amount=change.credit, currency=change.currency),
        effective_at=change.effective_at,
    )


async def change_plan(
    session: AsyncSession,
    settings: BillingSettings,
    customer: Customer,
    subscription_id: UUID,
    plan_id: UUID,
    *,
    payment_method: PaymentMethod,
) -> PlanChange:
    """Upgrade now (returning the payment to make) or schedule a downgrade for the period end.

    A card payment is only created here: the route opens its checkout at the gateway after the
    commit (:mod:`billing_api.payments.checkout`)."""
    subscription = await subscriptions.owned_subscription(session, customer.id, subscription_id)
    current = await session.get(Plan, subscription.plan_id)
    assert current is not None
    if plan_id == current.id:
        transitions.take_back_downgrade(subscription)
        return PlanChange(subscription, "downgrade_canceled", currency=current.currency)
    new = await catalog.load_plan(session, plan_id)
    transitions.check_plan_change(subscription, current, new)
    await _check_no_refund_in_progress(session, subscription)
    if not is_upgrade(new, current):
        transitions.schedule_downgrade(subscription, current, new)
        return PlanChange(subscription, "downgrade", currency=current.currency)

    waiting = await subscriptions.waiting_upgrade(session, subscription)
    if waiting is not None:
        if waiting.plan_id != new.id:
            raise UpgradeAwaitingPayment(
                f"pay or let the waiting upgrade {waiting.id} expire before choosing another plan"
            )
        credit = int(waiting.quote.get("credit", 0))
        return PlanChange(subscription, "upgrade", waiting, credit, current.currency)

    quote, credit, credited = await _upgrade_price(
        session, settings, subscription, new, now=clock.now()
    )
    applied = min(credit, quote.total)
    payment = await payments.start_payment(
        session,
        customer,
        payments.Order(
            purpose=PaymentPurpose.UPGRADE,
            description=f"{new.name}: upgrade from {current.name}",
            amount=quote.total - applied,
            base_amount=quote.base_amount,
            currency=quote.currency,
            discount_amount=quote.discount_amount + applied,
            quote={
                **quote.to_json(),
                "credit": credit,
                "credit_applied": applied,
                "credit_payment_id": str(credited.id) if credited else None,
            },
            months=subscription.months,
            subscription_id=subscription.id,
            plan_id=new.id,
            save_payment_method=subscription.auto_renew,
        ),
        method=payment_method,
    )
    return PlanChange(subscription, "upgrade", payment, credit, current.currency)


async def _upgrade_price(
    session: AsyncSession,
    settings: BillingSettings,
    subscription: Subscription,
    new: Plan,
    *,
    now: datetime,
) -> tuple[pricing.Quote, int, Payment | None]:
    """An upgrade's quote, the credit for the current period, and the payment credited."""
    credit, credited = await _credit_for_current_period(session, subscription, now)
    priced = await price_plan(
        session,
        new,
        subscription.months,
        user_id=subscription.user_id,
        promo_code=None,
        max_total_percent=settings.max_total_discount_percent,
    )
    return priced.quote, credit, credited


@dataclass(frozen=True)
class ChangePreview:
    """What choosing ``plan`` would do now, priced exactly as :func:`change_plan` prices it."""

    plan: Plan
    kind: ChangeKind
    due_now: int  # charged now: an upgrade's price less the credit; 0 for a downgrade
    credit: int
    currency: str


async def preview_changes(
    session: AsyncSession, settings: BillingSettings, subscription: Subscription
) -> list[ChangePreview]:
    """Every active plan of the subscription's currency it could change to now, with the price
    :func:`change_plan` would charge (read only: nothing is locked or written)."""
    current = await session.get(Plan, subscription.plan_id)
    assert current is not None
    plans = await session.scalars(
        sa.select(Plan)
        .where(Plan.active, Plan.currency == current.currency, Plan.id != current.id)
        .order_by(Plan.price_amount, Plan.code)
    )
    now = clock.now()
    previews = []
    for plan in plans:
        if not is_upgrade(plan, current):
            previews.append(ChangePreview(plan, "downgrade", 0, 0, current.currency))
            continue
        quote, credit, _ = await _upgrade_price(session, settings, subscription, plan, now=now)
        due = quote.total - min(credit, quote.total)
        previews.append(ChangePreview(plan, "upgrade", due, credit, current.currency))
    return previews


async def _check_no_refund_in_progress(session: AsyncSession, subscription: Subscription) -> None:
    """A refund the provider has not confirmed yet will cancel the subscription: no plan
    change meanwhile (it would be paid for a subscription about to end)."""
    refunding = await session.scalar(
        sa.select(Refund.id)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(
            Payment.subscription_id == subscription.id, Refund.status.in_(refund_quotes.IN_PROGRESS)
        )
        .limit(1)
    )
    if refunding is not None:
        raise transitions.PlanChangeNotAllowed("a refund of this subscription is in progress")


async def _credit_for_current_period(
    session: AsyncSession, subscription: Subscription, now: datetime
) -> tuple[int, Payment | None]:
    """The unused part of what the running period was bought for, and the payment that bought
    it (nothing for a free trial)."""
    start, end = subscription.current_period_start, subscription.current_period_end
    if subscription.latest_payment_id is None or start is None or end is None:
        return 0, None
    paid = await session.get(Payment, subscription.latest_payment_id)
    if paid is None or paid.status not in (
        PaymentStatus.SUCCEEDED,
        PaymentStatus.PARTIALLY_REFUNDED,
    ):
        return 0, None
    value = paid.amount + plan_credit.upgrade_credit(paid) - paid.refunded_amount
    end -= await gift_refunds.gifted_span(session, subscription)  # gift days were not paid for
    credit = unused_credit(
        value,
        start=start,
        end=end,
        now=now,
        first_day_used=paid.purpose != PaymentPurpose.UPGRADE,
    )
    return credit, paid if credit > 0 else None
