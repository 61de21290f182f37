"""Money moved at the provider without billing asking: refunds made there, and disputes.

Staff can refund a payment in the provider's dashboard and a payer's bank can dispute a charge.
The gateway records both and reports them (``refund.succeeded`` with a refund id billing never
made, ``payment.disputed``); billing records them as it would its own:

* **A refund made at the provider** becomes a :class:`~billing_api.models.Refund` under the id
  the gateway gave it (derived from the provider's refund), remembered with the provider's
  reference, so a redelivery, or the same refund reported under another id, is recorded once.
  It then completes like any refund: the ledger posts it, the payment shows ``refunded`` (or
  ``partially_refunded``), what it paid for is canceled and access revoked, ``refund.completed``
  tells the user. A refund of a wallet top-up takes the money out of the wallet instead
  (``user_wallet:<user>`` → ``provider_clearing:<provider>``): it left through the card.
* **The sum of refunds never exceeds the payment.** A refund that would exceed it is matched to
  a refund of ours still pending with the same amount (the provider cannot have made both, so
  it is that one); otherwise a refund billing queued and has not sent yet is reduced by the
  excess (dropped if nothing is left), or it waits (the consumer retries) until a pending
  refund of ours fails and gives its reservation back.
* **A dispute** marks the payment ``disputed``, cancels what it paid for and revokes access, and
  posts the disputed amount (what the provider holds back, at most what was not refunded) as
  one ``dispute`` ledger transaction referenced by the payment:
  ``disputes`` → ``provider_clearing:<provider>`` for a payment for a subscription or a movie;
  ``user_wallet:<user>`` → ``provider_clearing:<provider>`` for a wallet top-up, which freezes
  that money: the balance shown and spendable drops by it. If part of it was spent already the
  balance goes below zero, and the wallet shows that part as ``owed`` rather than a balance.
  A refund billing queued on its own and has not sent yet is dropped (``failed``): the dispute
  gives that money back instead.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.ledger import service as ledger
from billing_api.models import Payment, PaymentPurpose, PaymentStatus, Refund, RefundStatus
from billing_api.receipts import links as receipt_links
from billing_api.refunds import queued, quotes, service
from shared import clock, events, outbox
from shared.money import Money

logger = logging.getLogger(__name__)

MADE_AT_PROVIDER = "made at the provider"
CAPTURED = (
    PaymentStatus.SUCCEEDED,
    PaymentStatus.PARTIALLY_REFUNDED,
    PaymentStatus.REFUNDED,
    PaymentStatus.DISPUTED,
)


class PaymentNotCapturedYet(RuntimeError):
    """A provider-side event overtook the payment's success; raised so the consumer retries."""


class RefundBeyondPayment(RuntimeError):
    """Recording the refund now would exceed the payment; retried until a pending one settles."""


async def find_by_provider_ref(
    session: AsyncSession, payment_id: object, provider_ref: str | None
) -> Refund | None:
    """The refund of a payment already known by the provider's reference, locked."""
    if not provider_ref:
        return None
    found: Refund | None = await session.scalar(
        sa.select(Refund)
        .where(Refund.payment_id == payment_id, Refund.provider_ref == provider_ref)
        .with_for_update()
    )
    return found


async def remember_provider_ref(
    session: AsyncSession, refund: Refund, provider_ref: str | None
) -> None:
    """Keep the provider's reference of one of our refunds (unless another refund has it)."""
    if refund.provider_ref or not provider_ref:
        return
    if await find_by_provider_ref(session, refund.payment_id, provider_ref) is None:
        refund.provider_ref = provider_ref  # kept by the re-read under lock (locks.relock)


async def record_refund(session: AsyncSession, payment: Payment, event: events.RefundEvent) -> bool:
    """A refund billing did not start has succeeded at the provider: record and complete it.

    The caller holds the locks of what ``payment`` paid for and of ``payment``. False when it was
    recorded before (under its provider reference).
    """
    if payment.status not in CAPTURED:
        raise PaymentNotCapturedYet(f"payment {payment.id} is {payment.status}")
    if event.amount.currency != payment.currency or event.amount.amount <= 0:
        logger.error(
            "refund at the provider in another currency or of no amount; not recorded",
            extra={"payment_id": str(payment.id), "refund_id": str(event.refund_id)},
        )
        return False
    known = await find_by_provider_ref(session, payment.id, event.provider_ref)
    if known is not None:
        return await complete(session, payment, known)
    amount = event.amount.amount
    if payment.refunded_amount + amount > payment.amount:
        ours = await _pending_of_same_amount(session, payment, amount)
        if ours is not None:
            logger.warning(
                "refund at the provider is one of ours reported under another id",
                extra={"refund_id": str(ours.id), "reported_as": str(event.refund_id)},
            )
            ours.provider_ref = event.provider_ref
            return await complete(session, payment, ours)
        # A refund billing queued but has not sent gives way: the provider has paid that much.
        over = payment.refunded_amount + amount - payment.amount
        await queued.shrink_queued_refunds(session, payment, over, "refunded at the provider")
        if payment.refunded_amount + amount > payment.amount:
            raise RefundBeyondPayment(
                f"refund {event.refund_id} of {amount} would exceed payment {payment.id}"
            )
    refund = Refund(
        id=event.refund_id,
        payment_id=payment.id,
        user_id=payment.user_id,
        amount=amount,
        currency=payment.currency,
        status=RefundStatus.PENDING,
        rule=MADE_AT_PROVIDER,
        reason=f"refunded at {event.provider}",
        provider_ref=event.provider_ref,
    )
    session.add(refund)
    payment.refunded_amount += amount  # the database refuses more than was paid
    await session.flush()
    logger.warning(
        "refund made at the provider recorded",
        extra={"payment_id": str(payment.id), "refund_id": str(refund.id), "amount": amount},
    )
    return await complete(session, payment, refund)


async def _pending_of_same_amount(
    session: AsyncSession, payment: Payment, amount: int
) -> Refund | None:
    found: Refund | None = await session.scalar(
        sa.select(Refund)
        .where(
            Refund.payment_id == payment.id,
            Refund.status.in_((RefundStatus.QUEUED, RefundStatus.PENDING)),
            Refund.amount == amount,
            Refund.provider_ref.is_(None),
        )
        .order_by(Refund.created_at)
        .limit(1)
        .with_for_update()
    )
    return found


async def complete(session: AsyncSession, payment: Payment, refund: Refund) -> bool:
    """Finish a refund the provider reports succeeded (a top-up's goes out of the wallet)."""
    if payment.purpose != PaymentPurpose.TOP_UP:
        return await service.complete_refund(session, refund)
    return await _complete_top_up_refund(session, payment, refund)


async def _complete_top_up_refund(session: AsyncSession, payment: Payment, refund: Refund) -> bool:
    """A top-up refunded to the card: the wallet gives that money back (and may owe it)."""
    if refund.status == RefundStatus.SUCCEEDED:
        return False
    if refund.status == RefundStatus.FAILED:
        payment.refunded_amount += refund.amount
    refund.status = RefundStatus.SUCCEEDED
    refund.completed_at = clock.now()
    assert payment.provider is not None, "a captured top-up knows its provider"
    await ledger.lock_wallet(session, payment.user_id, payment.currency)
    await ledger.post(
        session,
        kind="refund",
        reference=str(refund.id),
        user_id=payment.user_id,
        description=f"Refund: {payment.description}",
        currency=refund.currency,
        lines=ledger.transfer(
            ledger.wallet_account(payment.user_id),
            ledger.clearing_account(payment.provider),
            refund.amount,
        ),
    )
    quotes.mark_refunded(payment)
    await outbox.add(
        session,
        events.RefundCompleted(
            user_id=payment.user_id,
            email=payment.email,
            refund_id=refund.id,
            payment_id=payment.id,
            amount=Money(amount=refund.amount, currency=refund.currency),
            description=payment.description,
            receipt_url=receipt_links.url_in(session, "refund", refund.id),
        ),
    )
    return True


async def record_dispute(
    session: AsyncSession, payment: Payment, event: events.PaymentDisputed
) -> bool:
    """The payer disputed the charge: post what the provider holds back, then cancel and revoke.

    The caller holds the locks of what ``payment`` paid for and of ``payment``; the wallet's
    lock comes next and the entitlement snapshot last. False if it was recorded before.
    """
    if payment.status == PaymentStatus.DISPUTED:
        return False
    if payment.status not in CAPTURED:
        raise PaymentNotCapturedYet(f"payment {payment.id} is {payment.status}")
    # The bank takes the money back: a refund billing queued but never sent would return it a
    # second time (and the provider refuses it now), so it is dropped and its reservation freed.
    await queued.drop_queued_refunds(session, payment, "the payment was disputed")
    left = max(payment.amount - payment.refunded_amount, 0)
    asked = event.disputed_amount.amount if event.disputed_amount is not None else left
    amount = min(asked, left)
    if amount > 0 and payment.method == "card" and payment.provider is not None:
        top_up = payment.purpose == PaymentPurpose.TOP_UP
        if top_up:
            await ledger.lock_wallet(session, payment.user_id, payment.currency)
        source = ledger.wallet_account(payment.user_id) if top_up else ledger.DISPUTES
        await ledger.post(
            session,
            kind="dispute",
            reference=str(payment.id),
            user_id=payment.user_id,
            description=f"Disputed: {payment.description}",
            currency=payment.currency,
            lines=ledger.transfer(source, ledger.clearing_account(payment.provider), amount),
        )
    return await service.on_payment_disputed(session, payment, event.reason)
