"""billing-worker's handlers of the gateway's refund and dispute events.

Merged into billing's consumer next to the payment handlers. Each handler locks the payment row
first: a refund being created in a request holds that lock until its row is committed, so an
event that overtakes the request's commit waits for it instead of missing the refund.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.models import Payment, Refund
from billing_api.refunds import service
from shared import events
from shared.consumer import Handler

logger = logging.getLogger(__name__)


async def _refund(session: AsyncSession, event: events.RefundEvent) -> Refund | None:
    await session.get(Payment, event.payment_id, with_for_update=True)
    refund = await session.get(Refund, event.refund_id, with_for_update=True)
    if refund is None:
        logger.warning(
            "event for a refund billing does not know",
            extra={"refund_id": str(event.refund_id), "payment_id": str(event.payment_id)},
        )
        return None
    if (event.amount.amount, event.amount.currency) != (refund.amount, refund.currency):
        logger.error(
            "refunded amount differs from the refund; recorded as asked",
            extra={"refund_id": str(refund.id), "refunded": event.amount.amount},
        )
    return refund


async def on_refund_succeeded(
    session: AsyncSession, envelope: events.Envelope[events.RefundSucceeded]
) -> None:
    refund = await _refund(session, envelope.data)
    if refund is not None:
        await service.complete_refund(session, refund)


async def on_refund_failed(
    session: AsyncSession, envelope: events.Envelope[events.RefundFailed]
) -> None:
    refund = await _refund(session, envelope.data)
    if refund is not None:
        await service.fail_refund(session, refund, envelope.data.failure_message)


class DisputeBeforePayment(RuntimeError):
    """A dispute overtook the payment's success event; raised so the consumer retries later."""


async def on_payment_disputed(
    session: AsyncSession, envelope: events.Envelope[events.PaymentDisputed]
) -> None:
    event = envelope.data
    payment = await session.get(Payment, event.payment_id, with_for_update=True)
    if payment is None:
        logger.warning(
            "dispute of a payment billing does not know",
            extra={"payment_id": str(event.payment_id)},
        )
        return
    if payment.status == "pending":
        raise DisputeBeforePayment(f"payment {payment.id} is still pending")
    await service.on_payment_disputed(session, payment, event.reason)


HANDLERS: Mapping[type[events.EventPayload], Handler] = {
    events.RefundSucceeded: on_refund_succeeded,
    events.RefundFailed: on_refund_failed,
    events.PaymentDisputed: on_payment_disputed,
}
