"""Webhook ingestion: verify, store once, then process by re-reading the provider.

The store is ``INSERT … ON CONFLICT DO NOTHING`` on ``(provider, provider_event_id)``, so a
redelivered event is recorded once (a concurrent duplicate waits on the unique index and then
does nothing). The delivery that stored the row processes it in the same transaction, inside a
savepoint: one commit per webhook, and a processing failure rolls back to the savepoint and
still commits the stored row, unprocessed, for :func:`process_pending` to retry. The sweep claims
such rows with ``FOR UPDATE SKIP LOCKED``, so they are processed by exactly one process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment_gateway.models import Payment, WebhookEvent
from payment_gateway.payments.reconcile import apply_snapshot
from payment_gateway.providers.base import InvalidWebhook, WebhookNotice
from payment_gateway.providers.registry import Providers
from shared import clock
from shared.errors import AppError

logger = logging.getLogger(__name__)


class WebhookRejected(AppError):
    status_code = 400
    default_detail = "the webhook could not be verified"


async def receive(
    session: AsyncSession,
    providers: Providers,
    provider_name: str,
    body: bytes,
    headers: Mapping[str, str],
) -> tuple[int | None, WebhookNotice]:
    """Verify and store; returns the stored row id (None for a duplicate) and the notice."""
    provider = providers.get(provider_name)
    try:
        notice = provider.parse_webhook(body, headers)
    except InvalidWebhook as exc:
        raise WebhookRejected(str(exc) or WebhookRejected.default_detail) from exc
    stored = await session.scalar(
        insert(WebhookEvent)
        .values(
            provider=provider_name,
            provider_event_id=notice.event_id,
            event_type=notice.event_type,
            payment_id=notice.payment_id,
            provider_ref=notice.provider_ref,
            payload=orjson.loads(body),
            received_at=clock.now(),
            processed_at=None if notice.relevant else clock.now(),
            outcome=None if notice.relevant else "ignored",
        )
        .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
        .returning(WebhookEvent.id)
    )
    return stored, notice


async def process(session: AsyncSession, providers: Providers, event_id: int) -> str | None:
    """Process one stored event if nobody else is; returns the outcome, None if skipped."""
    event = (
        await session.scalars(
            sa.select(WebhookEvent)
            .where(WebhookEvent.id == event_id, WebhookEvent.processed_at.is_(None))
            .with_for_update(skip_locked=True)
        )
    ).first()
    if event is None:
        return None
    outcome = await _apply(
        session,
        providers,
        event.provider,
        event.provider_event_id,
        event.payment_id,
        event.provider_ref,
    )
    event.processed_at = clock.now()
    event.outcome = outcome
    await session.flush()
    return outcome


async def process_received(
    session: AsyncSession, providers: Providers, provider: str, row: int, notice: WebhookNotice
) -> str:
    """Process an event stored by :func:`receive` in this same transaction.

    Nobody else can see the row before the commit, so it needs no claim; the caller runs this
    in a savepoint, so a processing failure still commits the stored row for the sweep.
    """
    outcome = await _apply(
        session, providers, provider, notice.event_id, notice.payment_id, notice.provider_ref
    )
    await session.execute(
        sa.update(WebhookEvent)
        .where(WebhookEvent.id == row)
        .values(processed_at=clock.now(), outcome=outcome)
    )
    return outcome


async def _apply(
    session: AsyncSession,
    providers: Providers,
    provider: str,
    provider_event_id: str,
    payment_id: UUID | None,
    provider_ref: str | None,
) -> str:
    """Re-read the payment at the provider and apply what it says; returns the outcome."""
    payment = await _find_payment(session, provider, payment_id, provider_ref)
    if payment is None:
        logger.warning(
            "webhook for a payment we do not know",
            extra={"provider": provider, "event_id": provider_event_id},
        )
        return "unknown payment"
    assert payment.provider_ref is not None
    snapshot = await providers.get(payment.provider).fetch_payment(payment.provider_ref)
    await apply_snapshot(session, payment, snapshot)
    return f"payment {payment.status}"


async def _find_payment(
    session: AsyncSession, provider: str, payment_id: UUID | None, provider_ref: str | None
) -> Payment | None:
    query = sa.select(Payment).with_for_update()
    if payment_id is not None:
        query = query.where(Payment.id == payment_id)
    elif provider_ref is not None:
        query = query.where(
            Payment.provider == provider,
            sa.or_(Payment.provider_ref == provider_ref, Payment.charge_ref == provider_ref),
        )
    else:
        return None
    return (await session.scalars(query)).first()


async def process_pending(
    sessions: async_sessionmaker[AsyncSession],
    providers: Providers,
    *,
    older_than: timedelta = timedelta(seconds=2),
    limit: int = 100,
) -> int:
    """Process stored events whose first attempt failed or was interrupted."""
    async with sessions() as session:
        ids = list(
            await session.scalars(
                sa.select(WebhookEvent.id)
                .where(
                    WebhookEvent.processed_at.is_(None),
                    WebhookEvent.received_at < clock.now() - older_than,
                )
                .order_by(WebhookEvent.received_at)
                .limit(limit)
            )
        )
    done = 0
    for event_id in ids:
        try:
            async with sessions() as session, session.begin():
                if await process(session, providers, event_id) is not None:
                    done += 1
        except Exception:
            logger.exception("webhook processing failed; will retry", extra={"row": event_id})
    return done


async def run_pending_loop(
    sessions: async_sessionmaker[AsyncSession], providers: Providers, *, interval: float = 2.0
) -> None:
    while True:
        try:
            await process_pending(sessions, providers)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("webhook sweep failed")
        await asyncio.sleep(interval)
