"""Refunds: what a payment can still give back, giving it back, and what that undoes.

Money goes back where it came from (DESIGN, "Purchases and wallet"): a card payment is refunded
through the gateway, a wallet payment straight into the wallet. Once the money is back the
refund cancels what the payment paid for and access is revoked.

Which payments are refundable, and how much, is decided in :mod:`billing_api.refunds.quotes`.

What the payment paid for and then the payment row are locked while a refund is quoted and
created (billing's lock order, :mod:`billing_api.locks`), so concurrent requests line up and the
second one finds nothing left — a second refund, a cancel-now or an upgrade of the same
subscription (whose waiting payment then holds the credit); ``refunded_amount`` reserves the
money of pending refunds and the database refuses refunds above what was paid.

Refunding an upgrade payment gives its plan-change credit back too
(:mod:`billing_api.refunds.plan_credit`); refunding a gift's payment voids the unredeemed gift
or takes its months back (:mod:`billing_api.gifts.refunds`). Refunds billing decides on its own,
without anyone asking, are queued and sent by a job (:mod:`billing_api.refunds.queued`); they
complete or fail here like any other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID, uuid5

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import entitlements, locks
from billing_api.gateway import GatewayClient
from billing_api.gifts import refunds as gift_refunds
from billing_api.ledger import service as ledger
from billing_api.models import (
    Payment,
    PaymentPurpose,
    PaymentStatus,
    Plan,
    PurchaseStatus,
    Refund,
    RefundStatus,
)
from billing_api.payments import service as payments
from billing_api.receipts import links as receipt_links

# queued and this module call each other (see there), so it is imported as a module, not by name
from billing_api.refunds import plan_credit, queued, quotes
from billing_api.refunds.schemas import RefundOut, RefundQuoteOut
from billing_api.subscriptions import transitions
from shared import clock, events, outbox
from shared.errors import Conflict
from shared.money import Money

logger = logging.getLogger(__name__)


class PaymentNotRefundable(Conflict):
    default_detail = "this payment cannot be refunded"


def refund_out(refund: Refund) -> RefundOut:
    return RefundOut(
        id=refund.id,
        payment_id=refund.payment_id,
        amount=Money(amount=refund.amount, currency=refund.currency),
        status=refund.status,
        rule=refund.rule,
        reason=refund.reason,
        created_at=refund.created_at,
        completed_at=refund.completed_at,
    )


# --- quoting ---------------------------------------------------------------------------------


async def get_refund_quote(
    session: AsyncSession, user_id: UUID, payment_id: UUID
) -> RefundQuoteOut:
    """What refunding one of the user's payments would give back now (0 with the reason)."""
    payment = await _own_payment(session, user_id, payment_id, lock=False)
    quote = await quotes.quote_payment(session, payment, now=clock.now())
    return RefundQuoteOut(
        payment_id=payment.id,
        refundable_amount=Money(amount=quote.amount, currency=payment.currency),
        rule=quote.rule,
    )


# --- refunding -------------------------------------------------------------------------------


async def request_refund(
    session: AsyncSession,
    gateway: GatewayClient,
    user_id: UUID,
    payment_id: UUID,
    *,
    reason: str | None,
) -> RefundOut:
    """Refund everything the rules allow now of one of the user's payments."""
    payment = await _own_payment(session, user_id, payment_id, lock=True)
    quote = await quotes.quote_payment(session, payment, now=clock.now())
    refund = await refund_payment(
        session, gateway, payment, amount=quote.amount, rule=quote.rule, reason=reason
    )
    return refund_out(refund)


async def refund_payment(
    session: AsyncSession,
    gateway: GatewayClient,
    payment: Payment,
    *,
    amount: int,
    rule: str,
    reason: str | None,
    override_window: bool = False,
) -> Refund:
    """Give ``amount`` of ``payment`` back, to the card or the wallet it came from.

    The amount is checked again under the locks of what the payment paid for and of the
    payment, so of two concurrent requests the second finds nothing left (or the upgrade that
    took the credit) and is refused. A card refund the provider has not settled yet stays
    ``pending``; the ``refund.*`` consumer finishes it.
    """
    payment = await lock_payment(session, payment.id)
    quote = await quotes.quote_payment(
        session, payment, now=clock.now(), override_window=override_window
    )
    if quote.amount <= 0:
        raise PaymentNotRefundable(f"nothing to refund: {quote.rule}")
    if not 0 < amount <= quote.amount:
        raise PaymentNotRefundable(
            f"at most {quote.amount} {payment.currency} can be refunded now ({quote.rule})"
        )
    refund = Refund(
        id=await next_refund_id(session, payment),
        payment_id=payment.id,
        user_id=payment.user_id,
        amount=amount,
        currency=payment.currency,
        status=RefundStatus.PENDING,
        rule=rule,
        reason=reason,
    )
    session.add(refund)
    payment.refunded_amount += amount  # reserved; the database refuses more than was paid
    await session.flush()
    await gift_refunds.refund_started(session, payment)
    if payment.method == "wallet":
        await complete_refund(session, refund)
        return refund
    answer = await gateway.create_refund(refund.id, payment.id, amount, reason)
    if answer.status == RefundStatus.SUCCEEDED:
        await complete_refund(session, refund)
    elif answer.status == RefundStatus.FAILED:
        await fail_refund(session, refund, answer.failure_message)
    return refund


async def next_refund_id(session: AsyncSession, payment: Payment) -> UUID:
    """The n-th refund of a payment has a fixed id (the gateway's idempotency key).

    A request retried after the gateway's answer was lost (our transaction rolled back, so the
    count is the same) sends the same id, and the gateway answers with the refund it already
    made instead of making a second one (or refuses, if the amount changed in between).
    """
    count = await session.scalar(
        sa.select(sa.func.count()).select_from(Refund).where(Refund.payment_id == payment.id)
    )
    return uuid5(payment.id, f"refund:{int(count or 0) + 1}")


async def complete_refund(session: AsyncSession, refund: Refund) -> bool:
    """The money is back: post it, cancel what the payment paid for, revoke access.

    Idempotent: False (and nothing changed) if the refund had succeeded already.
    """
    if refund.status == RefundStatus.SUCCEEDED:
        return False
    payment = await lock_payment(session, refund.payment_id)
    refund = await relock_refund(session, refund)
    if refund.status == RefundStatus.SUCCEEDED:
        return False
    # The provider reported success after a failure.
    if refund.status in (RefundStatus.FAILED, RefundStatus.PARKED):
        logger.warning("refund succeeded after it had failed", extra={"refund_id": str(refund.id)})
        # The money left after all: a refund queued since (a retry of this one) would give it
        # back a second time.
        await queued.shrink_queued_refunds(
            session, payment, refund.amount, "an earlier refund succeeded after it had failed"
        )
        payment.refunded_amount += refund.amount
    now = clock.now()
    refund.status = RefundStatus.SUCCEEDED
    refund.completed_at = now
    if payment.method == "wallet":
        destination = ledger.wallet_account(payment.user_id)
    else:
        assert payment.provider is not None, "a captured card payment knows its provider"
        destination = ledger.clearing_account(payment.provider)
    await ledger.post(
        session,
        kind="refund",
        reference=str(refund.id),
        user_id=payment.user_id,
        description=f"Refund: {payment.description}",
        currency=refund.currency,
        lines=ledger.transfer(ledger.REFUNDS, destination, refund.amount),
    )
    await plan_credit.release(session, payment, refund)
    quotes.mark_refunded(payment)
    refund_money = Money(amount=refund.amount, currency=refund.currency)
    # A gift's refund may change the redeemer's access too: both snapshots at the end, in
    # user-id order.
    async with entitlements.deferred_snapshots(session):
        revoked = await _revoke(
            session,
            payment,
            now,
            purchase_status=PurchaseStatus.REFUNDED,
            refund_amount=refund_money,
            refund_started_at=refund.created_at,
        )
        await entitlements.publish_snapshot(session, payment.user_id)
    await outbox.add(
        session,
        events.RefundCompleted(
            user_id=payment.user_id,
            email=payment.email,
            locale=revoked.locale,
            refund_id=refund.id,
            payment_id=payment.id,
            amount=refund_money,
            description=payment.description,
            receipt_url=receipt_links.url_in(session, "refund", refund.id),
        ),
    )
    await outbox.add_all(session, revoked.events)
    return True


async def fail_refund(
    session: AsyncSession, refund: Refund, message: str | None, *, now: datetime | None = None
) -> bool:
    """The provider refused: the reserved amount becomes refundable again.

    A refund someone asked for stays failed (they can ask again). One billing decided on its
    own is tried again as a new refund (the gateway answers a failed refund's id with that
    failure, so a retry needs a new id), ``queued`` after a pause, until it is parked
    (:mod:`billing_api.refunds.retries`)."""
    if refund.status != RefundStatus.PENDING:
        return False
    payment = await lock_payment(session, refund.payment_id)
    refund = await relock_refund(session, refund)
    if refund.status != RefundStatus.PENDING:
        return False
    refund.status = RefundStatus.FAILED
    payment.refunded_amount -= refund.amount
    await gift_refunds.refund_failed(session, payment)
    logger.warning(
        "refund failed",
        extra={"refund_id": str(refund.id), "payment_id": str(payment.id), "reason": message},
    )
    if refund.billing_decided:
        await queued.retry_failed(session, payment, refund, now or clock.now())
    return True


async def on_payment_disputed(session: AsyncSession, payment: Payment, reason: str | None) -> bool:
    """The payer disputed the charge: access to what it paid for ends now.

    The disputed amount is posted to the ledger by the caller,
    :func:`billing_api.refunds.provider_side.record_dispute`, before access is revoked here.
    """
    if payment.status == PaymentStatus.DISPUTED:
        return False
    payment.status = PaymentStatus.DISPUTED
    if reason:
        payment.failure_message = f"disputed: {reason}"[:500]
    now = clock.now()
    async with entitlements.deferred_snapshots(session):
        revoked = await _revoke(session, payment, now, purchase_status=PurchaseStatus.CANCELED)
        await entitlements.publish_snapshot(session, payment.user_id)
    await outbox.add_all(session, revoked.events)
    logger.warning(
        "payment disputed; what it paid for is canceled",
        extra={"payment_id": str(payment.id), "user_id": str(payment.user_id), "reason": reason},
    )
    return True


# --- helpers ---------------------------------------------------------------------------------


@dataclass
class Revoked:
    """What a refund or dispute canceled: the events of a subscription it ended (only one
    still running is), to publish after the refund's own."""

    locale: str = "ru"
    events: transitions.Events = field(default_factory=list)


async def _revoke(
    session: AsyncSession,
    payment: Payment,
    now: datetime,
    *,
    purchase_status: PurchaseStatus,
    refund_amount: Money | None = None,
    refund_started_at: datetime | None = None,
) -> Revoked:
    revoked = Revoked()
    if payment.subscription_id is not None:
        subscription = await locks.lock_subscription(session, payment.subscription_id)
        assert subscription is not None
        revoked.locale = subscription.locale
        # A renewal the subscription never ran on (refunded as unused, see
        # billing_api.activation.unused_renewals) paid for nothing it has: it cancels nothing.
        never_ran = (
            payment.purpose == PaymentPurpose.RENEWAL
            and subscription.latest_payment_id != payment.id
        ) or await queued.paid_for_nothing(session, payment)
        if transitions.revocable(subscription) and not never_ran:
            plan = await session.get(Plan, subscription.plan_id)
            assert plan is not None
            revoked.events = transitions.revoke(
                subscription, plan, now=now, refund_amount=refund_amount
            )
            await queued.refund_renewals_cut_off(
                session, subscription, payment, now, refund_started_at
            )
    if payment.purchase_id is not None:
        purchase = await locks.lock_purchase(session, payment.purchase_id)
        assert purchase is not None
        revoked.locale = purchase.locale
        completed = purchase.status == PurchaseStatus.COMPLETED
        if completed and not await queued.paid_for_nothing(session, payment):
            purchase.status = purchase_status
    if payment.gift_id is not None and not await queued.paid_for_nothing(session, payment):
        revoked.events = await gift_refunds.take_back(
            session, payment, now=now, refunded=purchase_status == PurchaseStatus.REFUNDED
        )
    return revoked


async def lock_payment(session: AsyncSession, payment_id: UUID) -> Payment:
    """What the payment paid for and then the payment row, locked and re-read (another
    transaction may have just changed them)."""
    payment = await locks.lock_payment(session, payment_id)
    if payment is None:
        raise payments.PaymentNotFound(f"payment {payment_id} not found")
    return payment


async def relock_refund(session: AsyncSession, refund: Refund) -> Refund:
    """The refund row, locked and re-read after its payment's locks (the order's third)."""
    found = await locks.relock(session, Refund, refund.id)
    assert found is not None
    return found


async def _own_payment(
    session: AsyncSession, user_id: UUID, payment_id: UUID, *, lock: bool
) -> Payment:
    payment = (
        await lock_payment(session, payment_id) if lock else await session.get(Payment, payment_id)
    )
    if payment is None or payment.user_id != user_id:
        raise payments.PaymentNotFound(f"payment {payment_id} not found")
    return payment
