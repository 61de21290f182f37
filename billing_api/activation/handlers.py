"""billing-worker's consumer of the gateway's payment events.

The consumer takes its deliveries in batches (:mod:`shared.consumer`); each handler still handles
one event and takes billing's locks for it (what the payment paid for, then the payment). A batch
is wrapped in :func:`billing_api.entitlements.deferred_snapshots`: a user touched by several events
of the batch gets one snapshot at its end, and the users are locked last, in user-id order, so two
batches (or a batch and a job) never deadlock on each other's users. A batch that fails is handled
again event by event, each publishing its own snapshot as it always did.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api import entitlements, locks
from billing_api.activation import confirmations, service
from billing_api.config import BillingSettings
from billing_api.models import Payment
from billing_api.refunds import handlers as refund_handlers
from shared import events
from shared.broker import Broker
from shared.consumer import Consumer, Handler

logger = logging.getLogger(__name__)

CONSUMER = "billing"


async def _payment(session: AsyncSession, event: events.PaymentEvent) -> Payment | None:
    # billing's lock order: what the payment paid for first, then the payment
    payment = await locks.lock_payment(session, event.payment_id)
    if payment is None:
        logger.warning(
            "event for a payment billing does not know", extra={"payment_id": str(event.payment_id)}
        )
    return payment


async def on_payment_succeeded(
    session: AsyncSession, envelope: events.Envelope[events.PaymentSucceeded]
) -> None:
    event = envelope.data
    payment = await _payment(session, event)
    if payment is None:
        return
    if (event.amount.amount, event.amount.currency) != (payment.amount, payment.currency):
        logger.error(
            "captured amount differs from the payment; recorded as asked",
            extra={"payment_id": str(payment.id), "captured": event.amount.amount},
        )
    await service.complete_payment(
        session,
        payment,
        provider=event.provider,
        payment_method_ref=event.payment_method_ref,
        card=event.card,
    )


def on_payment_failed(
    dunning: Sequence[timedelta] = service.DEFAULT_DUNNING,
    account_url: str = service.DEFAULT_ACCOUNT_URL,
) -> Handler:
    async def handle(
        session: AsyncSession, envelope: events.Envelope[events.PaymentFailed]
    ) -> None:
        payment = await _payment(session, envelope.data)
        if payment is not None:
            reason = envelope.data.failure_message or envelope.data.failure_code
            await service.fail_payment(
                session,
                payment,
                reason=reason,
                dunning=dunning,
                hard_decline=envelope.data.hard_decline,
                account_url=account_url,
            )

    return handle


def on_payment_action_required(
    dunning: Sequence[timedelta] = service.DEFAULT_DUNNING,
) -> Handler:
    async def handle(
        session: AsyncSession, envelope: events.Envelope[events.PaymentActionRequired]
    ) -> None:
        payment = await _payment(session, envelope.data)
        if payment is not None:
            await confirmations.require_action(
                session, payment, action_url=envelope.data.action_url, dunning=dunning
            )

    return handle


async def on_payment_expired(
    session: AsyncSession, envelope: events.Envelope[events.PaymentExpired]
) -> None:
    payment = await _payment(session, envelope.data)
    if payment is not None:
        await service.expire_payment(session, payment)


def make_handlers(
    settings: BillingSettings | None = None,
) -> dict[type[events.EventPayload], Handler]:
    """billing's consumer: payment outcomes, plus refunds and disputes."""
    dunning = settings.dunning_offsets if settings else service.DEFAULT_DUNNING
    account_url = settings.account_url if settings else service.DEFAULT_ACCOUNT_URL
    return {
        events.PaymentSucceeded: on_payment_succeeded,
        events.PaymentFailed: on_payment_failed(dunning, account_url),
        events.PaymentActionRequired: on_payment_action_required(dunning),
        events.PaymentExpired: on_payment_expired,
        **refund_handlers.HANDLERS,
    }


HANDLERS: Mapping[type[events.EventPayload], Handler] = make_handlers()


def make_consumer(
    broker: Broker,
    session_factory: async_sessionmaker[AsyncSession],
    settings: BillingSettings | None = None,
    **options: Any,
) -> Consumer:
    """billing's consumer, its batches wrapped in :func:`entitlements.deferred_snapshots`
    (``options``: the batching knobs of :class:`Consumer`)."""
    return Consumer(
        CONSUMER,
        broker,
        session_factory,
        make_handlers(settings),
        around_batch=entitlements.deferred_snapshots,
        **options,
    )
