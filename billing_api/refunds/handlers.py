"""billing-worker's handlers of the gateway's refund and dispute events.

Merged into billing's consumer next to the payment handlers. Each handler locks what the payment
paid for and the payment row first (billing's lock order): a refund being created in a request
holds those locks until its row is committed, so an event that overtakes the request's commit
waits for it instead of missing the refund.

Refunds made at the provider (a refund id billing never made) and disputes are recorded by
:mod:`billing_api.refunds.provider_side`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import locks
from billing_api.models import Payment, PaymentStatus, Refund
from billing_api.refunds import provider_side, service
from shared import events
from shared.consumer import Handler

logger = logging.getLogger(__name__)


async def _refund(
    session: AsyncSession, event: events.RefundEvent
) -> tuple[Payment | None, Refund | None]:
    """The payment and the refund the event is about (by our id, else the provider's ref)."""
    # billing's lock order: what the payment paid for, the payment, then the refund
    payment = await locks.lock_payment(session, event.payment_id)
    if payment is None:
        logger.warning(
            "refund event for a payment billing does not know",
            extra={"refund_id": str(event.refund_id), "payment_id": str(event.payment_id)},
        )
        return None, None
    refund = await session.get(
        Refund, event.refund_id, with_for_update=True
    ) or await provider_side.find_by_provider_ref(session, payment.id, event.provider_ref)
    if refund is not None and (event.amount.amount, event.amount.currency) != (
        refund.amount,
        refund.currency,
    ):
        logger.error(
            "refunded amount differs from the refund; recorded as asked",
            extra={"refund_id": str(refund.id), "refunded": event.amount.amount},
        )
    return payment, refund


async def on_refund_succeeded(
    session: AsyncSession, envelope: events.Envelope[events.RefundSucceeded]
) -> None:
    event = envelope.data
    payment, refund = await _refund(session, event)
    if payment is None:
        return
    if refund is None:  # made at the provider (its dashboard), not by billing
        await provider_side.record_refund(session, payment, event)
        return
    await provider_side.remember_provider_ref(session, refund, event.provider_ref)
    await provider_side.complete(session, payment, refund)


async def on_refund_failed(
    session: AsyncSession, envelope: events.Envelope[events.RefundFailed]
) -> None:
    _, refund = await _refund(session, envelope.data)
    if refund is None:
        logger.warning(
            "a refund billing does not know failed at the provider; no money moved",
            extra={"refund_id": str(envelope.data.refund_id)},
        )
        return
    await service.fail_refund(session, refund, envelope.data.failure_message)


class DisputeBeforePayment(RuntimeError):
    """A dispute overtook the payment's success event; raised so the consumer retries later."""


async def on_payment_disputed(
    session: AsyncSession, envelope: events.Envelope[events.PaymentDisputed]
) -> None:
    event = envelope.data
    payment = await locks.lock_payment(session, event.payment_id)
    if payment is None:
        logger.warning(
            "dispute of a payment billing does not know",
            extra={"payment_id": str(event.payment_id)},
        )
        return
    if payment.status == PaymentStatus.PENDING:
        raise DisputeBeforePayment(f"payment {payment.id} is still pending")
    await provider_side.record_dispute(session, payment, event)


HANDLERS: Mapping[type[events.EventPayload], Handler] = {
    events.RefundSucceeded: on_refund_succeeded,
    events.RefundFailed: on_refund_failed,
    events.PaymentDisputed: on_payment_disputed,
}
