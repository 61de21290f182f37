"""Changing a subscription's plan: upgrades now, downgrades at the period end.

Rules (DESIGN section 3, "Plan change"):

* **Upgrade** (the new plan costs more per day): takes effect as soon as it is paid. The new
  plan's price for the subscription's number of periods is charged, less a credit for the unused
  part of the current period: ``paid * unused_days // total_days``, the day of the change counted
  as used and rounded down, exactly like a pro-rata refund. A new period starts at the payment.
  If the credit is larger than the price, nothing is charged and the rest goes to the wallet.
  The payment that was credited can no longer be refunded (its money moved to the new period).
* **Downgrade** (the same price per day or less): nothing is charged now; the plan is switched
  at the period end by the renewal, which charges the new plan's price.
* Asking for the current plan while a downgrade is scheduled takes the downgrade back.

Only an ``active`` subscription that is not ending at its period end can change plan, and only
to an active plan in the same currency. One upgrade payment waits at a time: asking again for
the same plan returns the same checkout; another plan answers 409 until it is paid or expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.catalog import service as catalog
from billing_api.config import BillingSettings
from billing_api.deps import Customer
from billing_api.gateway import GatewayClient
from billing_api.models import Payment, PaymentPurpose, Plan, Subscription, SubscriptionStatus
from billing_api.payments import service as payments
from billing_api.payments.schemas import PaymentMethod
from billing_api.pricing.inputs import price_plan
from billing_api.subscriptions import service as subscriptions
from shared import clock
from shared.errors import Conflict
from shared.money import prorata_floor

MONTH_DAYS = 30  # a monthly plan's length when prices per day are compared

ChangeKind = Literal["upgrade", "downgrade", "downgrade_canceled"]


class PlanChangeNotAllowed(Conflict):
    default_detail = "this subscription cannot change plan now"


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


def unused_credit(paid: int, *, start: datetime, end: datetime, now: datetime) -> int:
    """What is left of ``paid`` for the whole days of ``[start, end)`` not yet used at ``now``
    (today counts as used; rounded down)."""
    total_days = (end - start).days
    if paid <= 0 or total_days <= 0:
        return 0
    used_days = min(total_days, max(0, (now - start).days + 1))
    return prorata_floor(paid, total_days - used_days, total_days)


# --- the operation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanChange:
    subscription: Subscription
    kind: ChangeKind
    payment: Payment | None = None
    credit: int = 0
    currency: str = ""


async def change_plan(
    session: AsyncSession,
    gateway: GatewayClient,
    settings: BillingSettings,
    customer: Customer,
    subscription_id: UUID,
    plan_id: UUID,
    *,
    payment_method: PaymentMethod,
) -> PlanChange:
    """Upgrade now (returning the payment to make) or schedule a downgrade for the period end."""
    subscription = await subscriptions.owned_subscription(session, customer.id, subscription_id)
    current = await session.get(Plan, subscription.plan_id)
    assert current is not None
    if plan_id == current.id:
        if subscription.pending_plan_id is None:
            raise PlanChangeNotAllowed("the subscription is on this plan already")
        subscription.pending_plan_id = None
        return PlanChange(subscription, "downgrade_canceled", currency=current.currency)
    new = await catalog.load_plan(session, plan_id)
    _check_changeable(subscription, current, new)
    if not is_upgrade(new, current):
        subscription.pending_plan_id = new.id
        return PlanChange(subscription, "downgrade", currency=current.currency)

    waiting = await subscriptions.waiting_upgrade(session, subscription)
    if waiting is not None:
        if waiting.plan_id != new.id:
            raise UpgradeAwaitingPayment(
                f"pay or let the waiting upgrade {waiting.id} expire before choosing another plan"
            )
        credit = int(waiting.quote.get("credit", 0))
        return PlanChange(subscription, "upgrade", waiting, credit, current.currency)

    now = clock.now()
    credit = await _credit_for_current_period(session, subscription, now)
    priced = await price_plan(
        session,
        new,
        subscription.months,
        user_id=customer.id,
        promo_code=None,
        max_total_percent=settings.max_total_discount_percent,
    )
    quote = priced.quote
    applied = min(credit, quote.total)
    payment = await payments.start_payment(
        session,
        gateway,
        settings,
        customer,
        payments.Order(
            purpose=PaymentPurpose.UPGRADE,
            description=f"{new.name}: upgrade from {current.name}",
            amount=quote.total - applied,
            base_amount=quote.base_amount,
            currency=quote.currency,
            discount_amount=quote.discount_amount + applied,
            quote={**quote.to_json(), "credit": credit, "credit_applied": applied},
            months=subscription.months,
            subscription_id=subscription.id,
            plan_id=new.id,
            save_payment_method=subscription.auto_renew,
        ),
        method=payment_method,
    )
    return PlanChange(subscription, "upgrade", payment, credit, current.currency)


def _check_changeable(subscription: Subscription, current: Plan, new: Plan) -> None:
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise PlanChangeNotAllowed(
            f"only an active subscription can change plan; this one is {subscription.status}"
        )
    if subscription.cancel_at_period_end:
        raise PlanChangeNotAllowed("the subscription ends at its period end; resume it first")
    if new.currency != current.currency:
        raise PlanChangeNotAllowed(
            f"plan {new.code} is sold in {new.currency}, this subscription in {current.currency}"
        )


async def _credit_for_current_period(
    session: AsyncSession, subscription: Subscription, now: datetime
) -> int:
    """The unused part of what was paid for the running period (nothing for a free trial)."""
    start, end = subscription.current_period_start, subscription.current_period_end
    if subscription.latest_payment_id is None or start is None or end is None:
        return 0
    paid = await session.get(Payment, subscription.latest_payment_id)
    if paid is None or paid.status not in ("succeeded", "partially_refunded"):
        return 0
    return unused_credit(paid.amount - paid.refunded_amount, start=start, end=end, now=now)
