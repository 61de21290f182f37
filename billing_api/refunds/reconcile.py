"""Refunds pending too long are asked of the gateway, so that none waits forever.

A card refund is ``pending`` from the moment the gateway took it until the provider's report
(``refund.succeeded`` / ``refund.failed``) settles it. That report can fail to come: the gateway
asked the provider, and the call ended without an answer it could read (the connection dropped
with the provider's database, say), so the gateway kept the refund pending, but the provider had
never made it and will never report it. The customer would then wait for money that is not coming,
and the subscription the refund cancels would stay active.

So the ``reconcile_pending_refunds`` job asks the gateway about each refund pending for longer
than ``BILLING_RECONCILE_AFTER_MINUTES`` with ``refresh=true``: the gateway reads the refund at
the provider and, if the provider never made it, asks for it again under the same refund id
(:mod:`payment_gateway.refunds.service`). The answer is settled here as the provider's report
would be -- succeeded: posted, what the payment paid for canceled, the customer told; failed: the
money is refundable again (:func:`billing_api.refunds.service.fail_refund`) -- and the report,
if it comes too, then changes nothing. A refund still pending afterwards (the provider has not
decided, the gateway cannot be reached) is asked again after a pause as long as its age (at
least five minutes, at most six hours), each refund in its own transaction, the longest due
first, so refunds that stay pending never hold back the others.

It runs before the renewals of a pass: a subscription whose refund is settled here is canceled
before it could be renewed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api.config import BillingSettings
from billing_api.gateway import GatewayClient, GatewayRefund, GatewayUnavailable
from billing_api.models import Refund, RefundStatus
from billing_api.refunds import provider_side, service

logger = logging.getLogger(__name__)

BATCH = 100
FIRST_PAUSE = timedelta(minutes=5)
MAX_PAUSE = timedelta(hours=6)

UNSETTLED = Counter(
    "billing_refund_reconcile_unsettled_total",
    "Asks about a long-pending refund that left it pending, by why (pending: the provider has "
    "no outcome yet; gateway: the gateway could not answer; error: settling the answer failed, "
    "see the log for the refund id).",
    ["reason"],
)


def pause(refund: Refund, now: datetime) -> timedelta:
    """How long a refund still pending waits before it is asked about again: its age, bounded."""
    return min(max(now - refund.created_at, FIRST_PAUSE), MAX_PAUSE)


async def reconcile_pending_refunds(
    sessions: async_sessionmaker[AsyncSession],
    gateway: GatewayClient,
    settings: BillingSettings,
    now: datetime,
) -> int:
    """Ask the gateway about the refunds pending too long; returns how many were settled."""
    cutoff = now - timedelta(minutes=settings.reconcile_after_minutes)
    due_at = sa.func.coalesce(Refund.reconcile_next_at, Refund.created_at)
    async with sessions() as session:
        stale = list(
            await session.scalars(
                sa.select(Refund.id)
                .where(
                    Refund.status == RefundStatus.PENDING,
                    due_at <= now,
                    Refund.created_at < cutoff,
                )
                .order_by(due_at, Refund.id)
                .limit(BATCH)
            )
        )
    settled = 0
    for refund_id in stale:
        reason = "pending"
        try:
            answer = await gateway.get_refund(refund_id, refresh=True)
            async with sessions() as session, session.begin():
                if await _settle(session, refund_id, answer):
                    settled += 1
                    continue
        except GatewayUnavailable as exc:  # refused and not found included
            logger.warning("pending refund %s not settled: %s", refund_id, exc)
            reason = "gateway"
        except Exception:
            logger.exception(
                "pending refund %s could not be settled",
                refund_id,
                extra={"refund_id": str(refund_id)},
            )
            reason = "error"
        UNSETTLED.labels(reason).inc()
        await _ask_later(sessions, refund_id, now)
    return settled


async def _settle(session: AsyncSession, refund_id: UUID, answer: GatewayRefund) -> bool:
    """Apply the gateway's answer under billing's locks; whether the refund is settled now."""
    if answer.status not in (RefundStatus.SUCCEEDED, RefundStatus.FAILED):
        return False
    found = await session.get(Refund, refund_id)
    if found is None:
        return False
    payment = await service.lock_payment(session, found.payment_id)
    refund = await service.relock_refund(session, found)
    if refund.status != RefundStatus.PENDING:  # the provider's report settled it meanwhile
        return True
    await provider_side.remember_provider_ref(session, refund, answer.provider_ref)
    if answer.status == RefundStatus.SUCCEEDED:
        await provider_side.complete(session, payment, refund)
    else:
        await service.fail_refund(session, refund, answer.failure_message)
    return True


async def _ask_later(
    sessions: async_sessionmaker[AsyncSession], refund_id: UUID, now: datetime
) -> None:
    try:
        async with sessions() as session, session.begin():
            refund = await session.get(Refund, refund_id, with_for_update=True)
            if refund is not None and refund.status == RefundStatus.PENDING:
                refund.reconcile_next_at = now + pause(refund, now)
    except Exception:
        logger.exception(
            "pending refund %s could not be backed off",
            refund_id,
            extra={"refund_id": str(refund_id)},
        )
