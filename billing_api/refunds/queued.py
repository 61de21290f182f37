"""Refunds billing decides on its own: queued, sent by a job, retried, parked.

A payment that came for something billing no longer delivers — a renewal paid after a cancel,
refund or upgrade, an upgrade paid after its subscription ended, a checkout attempt paid after
another had paid for the same thing — is given back in full without anyone asking
(:func:`queue_refund`). Its money is reserved in the transaction that decides it; a card refund
waits ``queued`` until the ``send_queued_refunds`` job asks the gateway for it (then it is
``pending`` and finishes like any other, :mod:`billing_api.refunds.service`), a wallet refund
completes at once. One that is not sent, or that the provider fails, is tried again after a
pause and in the end parked (:mod:`billing_api.refunds.retries`). Money of such a payment that
went back another way meanwhile (refunded at the provider, disputed) comes off the refunds
still queued.

A refund that ends a subscription also gives back the renewals paid for a period it will now not
run (:func:`refund_renewals_cut_off`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api.activation import unused_renewals
from billing_api.gateway import GatewayClient, GatewayRefused, GatewayUnavailable
from billing_api.models import (
    Payment,
    PaymentPurpose,
    PaymentStatus,
    Refund,
    RefundStatus,
    Subscription,
)

# service and this module call each other: a refund that ends a subscription queues refunds of
# its cut-off renewals here, and a queued refund completes or fails through service. Each
# imports the other as a module, so neither needs the other's names while it is being loaded.
from billing_api.refunds import quotes, retries, service

logger = logging.getLogger(__name__)

# The queued refunds one pass of the job takes, the longest due first.
BATCH = 100

# The reason of the refund of a checkout attempt paid after another attempt had paid for the
# same subscription or purchase (or after it ended): it delivered nothing, so taking it back,
# by that refund, one made at the provider or a dispute, cancels nothing.
PAID_FOR_NOTHING = "paid after another payment had paid for the same thing"


async def queue_refund(
    session: AsyncSession, payment: Payment, *, rule: str, reason: str
) -> Refund | None:
    """Give back everything of a payment that has just succeeded for something billing no
    longer delivers (an upgrade paid after its subscription ended), through the normal refund
    path: the money is reserved now and a job asks the gateway (:func:`send_queued_refunds`);
    a wallet payment is refunded at once. The caller holds the locks of what the payment paid
    for and of the payment."""
    amount = payment.amount - payment.refunded_amount
    if amount <= 0 or payment.method not in ("card", "wallet"):
        return None
    refund = Refund(
        id=await service.next_refund_id(session, payment),
        payment_id=payment.id,
        user_id=payment.user_id,
        amount=amount,
        currency=payment.currency,
        status=RefundStatus.QUEUED if payment.method == "card" else RefundStatus.PENDING,
        rule=rule,
        reason=reason,
        billing_decided=True,
    )
    session.add(refund)
    payment.refunded_amount += amount
    await session.flush()
    if payment.method != "card":
        await service.complete_refund(session, refund)
    logger.warning(
        "payment refunded: what it paid for is no longer live",
        extra={"payment_id": str(payment.id), "refund_id": str(refund.id), "rule": rule},
    )
    return refund


async def send_queued_refunds(
    sessions: async_sessionmaker[AsyncSession],
    gateway: GatewayClient,
    now: datetime,
    *,
    limit: int | None = None,
) -> int:
    """Ask the gateway for each queued refund whose next try is due, the longest due first,
    each in its own transaction (billing's lock order); returns how many were sent.

    One that is not sent — the gateway refuses it or cannot be reached, or sending fails
    unexpectedly (logged with the refund id) — is rolled back and tried again after a growing
    pause, then parked (:mod:`billing_api.refunds.retries`); the pass goes on with the others,
    so refunds that cannot be sent never hold back the ones that can."""
    due_at = sa.func.coalesce(Refund.next_attempt_at, Refund.created_at)
    async with sessions() as session:
        queued = list(
            await session.scalars(
                sa.select(Refund.id)
                .where(
                    Refund.status == RefundStatus.QUEUED,
                    sa.or_(Refund.next_attempt_at.is_(None), Refund.next_attempt_at <= now),
                )
                .order_by(due_at, Refund.id)
                .limit(limit or BATCH)
            )
        )
    sent = 0
    for refund_id in queued:
        try:
            async with sessions() as session, session.begin():
                sent += await _send_queued(session, gateway, refund_id, now)
            continue
        except GatewayRefused as exc:
            logger.error("the gateway refused queued refund %s: %s", refund_id, exc)
            reason = retries.REFUSED
        except GatewayUnavailable as exc:
            logger.warning("queued refund %s not sent: %s", refund_id, exc)
            reason = retries.UNAVAILABLE
        except Exception:
            logger.exception(
                "queued refund %s could not be sent", refund_id, extra={"refund_id": str(refund_id)}
            )
            reason = retries.ERROR
        try:
            await _try_later(sessions, refund_id, now, reason)
        except Exception:
            logger.exception(
                "queued refund %s could not be backed off",
                refund_id,
                extra={"refund_id": str(refund_id)},
            )
    return sent


async def _send_queued(
    session: AsyncSession, gateway: GatewayClient, refund_id: UUID, now: datetime
) -> bool:
    found = await session.get(Refund, refund_id)
    assert found is not None
    await service.lock_payment(session, found.payment_id)
    refund = await service.relock_refund(session, found)
    if refund.status != RefundStatus.QUEUED:  # another worker sent it meanwhile
        return False
    refund.status = RefundStatus.PENDING
    answer = await gateway.create_refund(refund.id, refund.payment_id, refund.amount, refund.reason)
    if answer.status == RefundStatus.SUCCEEDED:
        await service.complete_refund(session, refund)
    elif answer.status == RefundStatus.FAILED:
        await service.fail_refund(session, refund, answer.failure_message, now=now)
    return True


async def _try_later(
    sessions: async_sessionmaker[AsyncSession], refund_id: UUID, now: datetime, reason: str
) -> None:
    """A queued refund that was not sent waits before its next try, or is parked."""
    async with sessions() as session, session.begin():
        found = await session.get(Refund, refund_id)
        if found is None:
            return
        payment = await service.lock_payment(session, found.payment_id)
        refund = await service.relock_refund(session, found)
        if refund.status != RefundStatus.QUEUED:
            return
        refund.attempts += 1
        retries.RETRIED.labels(reason).inc()
        if retries.parks(refund.attempts):
            _park(payment, refund, reason)
        else:
            refund.next_attempt_at = now + retries.pause(refund.attempts)


async def retry_failed(
    session: AsyncSession, payment: Payment, failed: Refund, now: datetime
) -> None:
    """A refund billing decided on its own failed at the provider: the money is still owed,
    so a new refund of it is queued after a pause (or the failed one is parked). Nothing is
    owed any more if the money went back another way meanwhile (refunded at the provider,
    disputed). The caller holds the locks of what the payment paid for, of the payment and
    of ``failed``."""
    retries.RETRIED.labels(retries.FAILED).inc()
    amount = min(failed.amount, payment.amount - payment.refunded_amount)
    if payment.status == PaymentStatus.DISPUTED or amount <= 0:
        return
    attempts = failed.attempts + 1
    if retries.parks(attempts):
        failed.attempts = attempts
        failed.status = RefundStatus.PARKED
        retries.PARKED.labels(retries.FAILED).inc()
        logger.error(
            "refund %s parked after %d tries (last: the provider failed it)",
            failed.id,
            attempts,
            extra={"refund_id": str(failed.id), "payment_id": str(payment.id)},
        )
        return
    retry = Refund(
        id=await service.next_refund_id(session, payment),
        payment_id=payment.id,
        user_id=payment.user_id,
        amount=amount,
        currency=payment.currency,
        status=RefundStatus.QUEUED,
        rule=failed.rule,
        reason=failed.reason,
        billing_decided=True,
        attempts=attempts,
        next_attempt_at=now + retries.pause(attempts),
        retry_of=failed.id,
    )
    session.add(retry)
    payment.refunded_amount += amount
    await session.flush()
    logger.warning(
        "refund failed at the provider; queued again",
        extra={"refund_id": str(retry.id), "retry_of": str(failed.id), "attempts": attempts},
    )


def _park(payment: Payment, refund: Refund, reason: str) -> None:
    """Billing stops trying ``refund``: its reservation is freed so staff can refund the
    payment by hand (the parked refund was never sent, or its send is not known to have
    reached the gateway: if it did, its success later finishes it like a failed one's)."""
    refund.status = RefundStatus.PARKED
    refund.next_attempt_at = None
    payment.refunded_amount -= refund.amount
    retries.PARKED.labels(reason).inc()
    logger.error(
        "queued refund %s parked after %d tries (last: %s)",
        refund.id,
        refund.attempts,
        reason,
        extra={"refund_id": str(refund.id), "payment_id": str(payment.id)},
    )


async def drop_queued_refunds(session: AsyncSession, payment: Payment, why: str) -> None:
    """Queued refunds of ``payment`` the gateway was never asked for are dropped (``failed``),
    their reservation freed. The caller holds the locks of what the payment paid for and of the
    payment; the refunds come next in billing's lock order."""
    await shrink_queued_refunds(session, payment, payment.amount, why)


async def shrink_queued_refunds(session: AsyncSession, payment: Payment, by: int, why: str) -> None:
    """``by`` of ``payment`` went back another way (refunded at the provider, disputed): it
    comes off the refunds billing queued and has not sent yet, newest first, and one left
    with nothing is dropped (``failed``). Their reservation shrinks with them. The caller
    holds the locks of what the payment paid for and of the payment."""
    queued = await session.scalars(
        sa.select(Refund)
        .where(Refund.payment_id == payment.id, Refund.status == RefundStatus.QUEUED)
        .order_by(Refund.created_at.desc(), Refund.id.desc())
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    for refund in queued.all():
        if by <= 0:
            break
        taken = min(by, refund.amount)
        by -= taken
        payment.refunded_amount -= taken
        if taken == refund.amount:
            refund.status = RefundStatus.FAILED
        else:
            refund.amount -= taken
        logger.warning(
            "queued refund reduced by %d: %s",
            taken,
            why,
            extra={"refund_id": str(refund.id), "payment_id": str(payment.id)},
        )
    await session.flush()


async def refund_renewals_cut_off(
    session: AsyncSession,
    subscription: Subscription,
    cause: Payment,
    now: datetime,
    refund_started_at: datetime | None,
) -> None:
    """A refund (or dispute) of ``cause`` has just ended the subscription: renewals paid for a
    period it will now not run are refunded in full, like a renewal settled after a cancel
    (:mod:`billing_api.activation.unused_renewals`). Those are a renewal that succeeded while
    this refund waited for the provider (the subscription was being refunded when it was
    charged) and one charged ahead whose period has not begun.

    Their payment rows are locked after the refund's: the subscription's lock, held since the
    start, already serialises every path that locks its payments."""
    cut_off = []
    if refund_started_at is not None:
        cut_off.append(Payment.paid_at >= refund_started_at)
    start = subscription.current_period_start
    if subscription.latest_payment_id is not None and start is not None and start > now:
        cut_off.append(Payment.id == subscription.latest_payment_id)
    if not cut_off:
        return
    renewals = await session.scalars(
        sa.select(Payment)
        .where(
            Payment.subscription_id == subscription.id,
            Payment.purpose == PaymentPurpose.RENEWAL,
            Payment.id != cause.id,
            # Only renewals after the refunded payment: those before it paid for periods that
            # already ran (or for the one being refunded), and stay as they are.
            Payment.paid_at > cause.paid_at,
            Payment.status.in_(quotes.REFUNDABLE_STATUSES),
            sa.or_(*cut_off),
        )
        .order_by(Payment.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    for renewal in renewals.all():
        await queue_refund(
            session,
            renewal,
            rule=f"full refund: renewal not used ({unused_renewals.AFTER_CANCEL})",
            reason=unused_renewals.AFTER_CANCEL,
        )


async def paid_for_nothing(session: AsyncSession, payment: Payment) -> bool:
    """Whether billing refunded ``payment`` as one that delivered nothing (its reason is
    :data:`PAID_FOR_NOTHING`)."""
    found = await session.scalar(
        sa.select(Refund.id)
        .where(Refund.payment_id == payment.id, Refund.reason == PAID_FOR_NOTHING)
        .limit(1)
    )
    return found is not None
