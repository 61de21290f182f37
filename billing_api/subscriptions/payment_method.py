"""Updating a subscription's card: a hosted checkout that saves the new card, and pays what is due.

``POST /api/v1/subscriptions/{id}/payment-method`` ``{"payment_method": "card"}`` answers
``201 {payment_id, checkout_url, amount, purpose, ...}``; the subscriber enters the new card at
``checkout_url`` (sandbox or Stripe). What the checkout is depends on what the subscription owes:

* **Owes nothing** (active and renewing normally, cancelled at its period end, on a trial,
  paused): a zero-amount **setup checkout** (purpose ``card_update``, method ``card``), like a
  trial's: the gateway opens it as a setup checkout (Stripe: a Checkout Session in ``setup``
  mode) and nothing is charged. Once it completes, the subscription's saved card
  (``payment_method_ref``) is the new one (:func:`transitions.replace_payment_method`) and
  nothing else changes; later renewals charge it.
* **Owes a renewal** (in grace, or in dunning: a renewal was declined and it still renews,
  :func:`transitions.owes_renewal`): a card checkout of **the amount due**, as a renewal payment
  (purpose ``renewal``, method ``card``, ``save_payment_method``). The amount is today's
  renewal price exactly as the renewal job would charge its next retry
  (:func:`billing_api.lifecycle.renewal_claims.quote_renewal`: the plan it renews to, today's
  price, months tiers and personal discount), not the declined renewal's amount: this checkout
  takes the place of that next retry, so it charges what the retry would (the two differ only
  if the price or a discount changed since the decline, and the retry itself would charge the
  new price). Its success is settled like any renewal (:func:`transitions.renew`): the period
  runs on from the old end (no day lost or doubled), the subscription is active again, the
  dunning is cleared and the new card is saved for later renewals. A due renewal that costs
  nothing today (the plan became free) is left to the renewal job; the update is then a setup
  checkout.

**No period is charged twice.** While a checkout paying the renewal is open, no off-session
retry may charge the same period: under the subscription's lock, the next retry is postponed
to at least :data:`CHECKOUT_HOLD` from now (the longest a gateway checkout stays payable) and
the time it replaced is kept on the payment (``quote.renewal_hold``). When the checkout expires
unpaid (the gateway's event, or the expired-checkouts job), the retry goes back to that time
and the dunning goes on (:func:`transitions.release_renewals`); a decline at the checkout is no
dunning attempt (the checkout stays payable with another card). The renewal job never charges
such a payment off-session (it has no card yet). If an off-session renewal charge is in flight
when the update is asked for (a pending renewal payment the job has claimed), nothing is made
and the answer is ``503 RenewalChargeInProgress`` with ``Retry-After``: its outcome lands in
seconds, after which the update either owes nothing (it succeeded) or opens a checkout. It is a
503, not a 409, for the same reason as ``CheckoutContended``: a keyed 409 would be replayed to
the retry for the key's lifetime, a 503 releases the ``Idempotency-Key``. Should a retry and the
checkout still both succeed for the same period (a hold that lapsed on a checkout left
unopened, a checkout paid after it was voided), the one settled second is refunded in full as
``renewal_superseded`` (:mod:`billing_api.activation.unused_renewals`): one period for one
payment, never a lost payment.

**One update checkout at a time.** A second request while one is open (pending and not past its
expiry) answers ``200`` with the same checkout, as a pending subscription checkout does. One
that expired, was declined, or no longer fits (it was a setup checkout and a renewal is owed
now, or the reverse) is voided (expired, releasing its hold) and a new one is made.

Only a subscription whose card can still be used may update it: active, grace or paused
(:data:`transitions.CARD_REPLACEABLE`); pending, abandoned, canceled or expired answer ``409
PaymentMethodNotUpdatable``. Only ``"card"`` is accepted (422 otherwise). Another user's
subscription answers 404. Every POST takes an ``Idempotency-Key`` (the middleware replays the
first answer). The payment is committed before the gateway is asked
(:mod:`billing_api.payments.checkout`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.activation import service as activation
from billing_api.config import BillingSettings
from billing_api.customers import Customer
from billing_api.lifecycle import renewal_claims
from billing_api.models import Payment, PaymentPurpose, PaymentStatus, Plan, Subscription
from billing_api.payments import service as payments
from billing_api.subscriptions import service as subscriptions
from billing_api.subscriptions import transitions
from billing_api.subscriptions.schemas import PaymentMethodUpdateOut
from shared import clock
from shared.errors import AppError
from shared.money import Money

CHECKOUT_HOLD = timedelta(hours=24)
"""How long a checkout paying the due renewal holds the dunning retries at most: the longest a
gateway checkout stays payable (``GATEWAY_CHECKOUT_TTL_MINUTES`` is at most 24 h, Stripe's
limit). Its expiry releases them sooner."""

# A payment of these purposes on a subscription is one of its card updates (a renewal one only
# when paid at a checkout: transitions.renewal_at_checkout).
_UPDATE_PURPOSES = (PaymentPurpose.CARD_UPDATE, PaymentPurpose.RENEWAL)
# An update checkout in these states may still be paid at the gateway.
_OPEN = (PaymentStatus.PENDING, PaymentStatus.FAILED)


class RenewalChargeInProgress(AppError):
    """A 503 with ``Retry-After``: nothing was written and the same request succeeds once the
    charge's outcome is in (a 409 would be replayed to the retry for the key's lifetime)."""

    status_code = 503
    default_detail = (
        "a renewal charge of the saved card is in progress; try again in a moment "
        "(if it succeeds nothing is owed)"
    )


@dataclass(frozen=True)
class CardUpdate:
    payment: Payment
    created: bool  # False: the open update checkout, returned again


async def update_payment_method(
    session: AsyncSession, settings: BillingSettings, customer: Customer, subscription_id: UUID
) -> CardUpdate:
    """Open (or return the open) checkout that saves a new card for the subscription, paying
    the due renewal if it owes one. The route opens the card checkout after the commit."""
    subscription = await subscriptions.owned_subscription(session, customer.id, subscription_id)
    transitions.check_card_update(subscription)
    now = clock.now()
    renewal = await _renewal_due(session, settings, subscription, now)
    wanted = PaymentPurpose.CARD_UPDATE if renewal is None else PaymentPurpose.RENEWAL
    for update in await _open_updates(session, subscription):
        if (
            update.status == PaymentStatus.PENDING
            and update.purpose == wanted
            and (update.expires_at is None or update.expires_at > now)
        ):
            return CardUpdate(update, created=False)
        # Past its expiry, declined, or for what was owed before: voided (releasing its hold).
        await activation.expire_payment(session, update)
    if renewal is None:
        payment = await payments.start_payment(
            session,
            customer,
            _setup_order(subscription, await _plan(session, subscription)),
            method="card",
        )
    else:
        await _check_no_charge_in_flight(session, subscription)
        payment = await payments.start_payment(session, customer, renewal, method="card")
        _hold_renewals(subscription, payment, now)
    await session.flush()
    return CardUpdate(payment, created=True)


async def _plan(session: AsyncSession, subscription: Subscription) -> Plan:
    plan = await session.get(Plan, subscription.plan_id)
    assert plan is not None
    return plan


def _setup_order(subscription: Subscription, plan: Plan) -> payments.Order:
    """A zero-amount checkout that only saves the card."""
    return payments.Order(
        purpose=PaymentPurpose.CARD_UPDATE,
        description=f"{plan.name}: new card for renewals",
        amount=0,
        base_amount=0,
        currency=plan.currency,
        months=subscription.months,
        subscription_id=subscription.id,
        save_payment_method=True,
    )


async def _renewal_due(
    session: AsyncSession, settings: BillingSettings, subscription: Subscription, now: datetime
) -> payments.Order | None:
    """The renewal the update's checkout pays, priced as the renewal job's next retry would
    be; None when nothing is owed (or what is owed costs nothing today)."""
    if not transitions.owes_renewal(subscription):
        return None
    plan, quote = await renewal_claims.quote_renewal(
        session, subscription, now=now, max_total_percent=settings.max_total_discount_percent
    )
    if quote.total == 0:
        return None  # the renewal job settles a free renewal by itself
    return payments.Order.priced(
        quote,
        purpose=PaymentPurpose.RENEWAL,
        description=f"{plan.name}: renewal",
        months=subscription.months,
        subscription_id=subscription.id,
        plan_id=plan.id,
        save_payment_method=True,
    )


async def _open_updates(session: AsyncSession, subscription: Subscription) -> list[Payment]:
    """The subscription's update checkouts that may still be paid, locked (after the
    subscription: billing's lock order)."""
    found = await session.scalars(
        sa.select(Payment)
        .where(
            Payment.subscription_id == subscription.id,
            Payment.purpose.in_(_UPDATE_PURPOSES),
            Payment.save_payment_method,
            Payment.method == "card",
            Payment.status.in_(_OPEN),
        )
        .order_by(Payment.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(found)


async def _check_no_charge_in_flight(session: AsyncSession, subscription: Subscription) -> None:
    """Refuse while an off-session renewal charge of the subscription is pending: it may
    succeed, and the checkout would then charge the same period a second time. Read after the
    subscription's lock, so a claim that committed one before it is seen."""
    in_flight = await session.scalar(
        sa.select(Payment.id)
        .where(
            Payment.subscription_id == subscription.id,
            Payment.purpose == PaymentPurpose.RENEWAL,
            Payment.status == PaymentStatus.PENDING,
            ~Payment.save_payment_method,
        )
        .limit(1)
    )
    if in_flight is not None:
        raise RenewalChargeInProgress(extra={"payment_id": str(in_flight)})


def _hold_renewals(subscription: Subscription, payment: Payment, now: datetime) -> None:
    """No off-session retry while the checkout is open; what it replaced is kept on the
    payment, for its expiry to put back."""
    scheduled = subscription.next_renewal_at
    until = now + CHECKOUT_HOLD
    if transitions.hold_renewals(subscription, until=until):
        payment.quote = {
            **payment.quote,
            "renewal_hold": {
                "until": until.isoformat(),
                "resume_at": scheduled.isoformat() if scheduled else None,
            },
        }


def update_out(update: CardUpdate) -> PaymentMethodUpdateOut:
    payment = update.payment
    return PaymentMethodUpdateOut(
        payment_id=payment.id,
        checkout_url=payment.checkout_url,
        purpose="renewal" if payment.purpose == PaymentPurpose.RENEWAL else "card_update",
        amount=Money(amount=payment.amount, currency=payment.currency),
        status=payment.status,
        expires_at=payment.expires_at,
        subscription_id=payment.subscription_id,
    )
