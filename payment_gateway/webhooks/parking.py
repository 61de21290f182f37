"""Webhook events that keep failing: counted in their row, then parked, and how they come back.

Every failed attempt is counted in the event's row (``attempts``) with the moment it may be
tried again (``next_attempt_at``, 1 s, 2 s, 4 s … at most ``max_backoff``), so the wait holds
across restarts and replicas. At ``max_attempts`` failures the event is parked (``parked_at``):
no processor claims it again, the metric ``gateway_webhook_events_parked_total`` counts it and
the log says so. A parked event is not lost: a ``refresh=true`` of its payment applies the
provider's truth and marks the payment's parked events processed (:func:`settle_parked`), and
an operator lists them and sends one back to the processor (:func:`retry_parked`, the internal
``/internal/v1/webhooks/parked`` routes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer

from payment_gateway.models import Payment, WebhookEvent
from shared import clock
from shared.errors import NotFound

logger = logging.getLogger(__name__)

LIST_LIMIT = 100


class WebhookEventNotFound(NotFound):
    default_detail = "no such webhook event"


PARKED = Counter(
    "gateway_webhook_events_parked_total",
    "Webhook events parked after too many failed processing attempts (see webhook_event"
    " parked_at and outcome; GET /internal/v1/webhooks/parked), by provider.",
    ["provider"],
)


@dataclass(frozen=True)
class RetryPolicy:
    """How failed events wait and when they are parked (``GATEWAY_WEBHOOK_MAX_ATTEMPTS``,
    ``GATEWAY_WEBHOOK_MAX_BACKOFF_SECONDS``)."""

    max_attempts: int = 10
    max_backoff: float = 600.0

    def pause(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failure: 1 s, 2 s, 4 s … at most max_backoff."""
        return timedelta(seconds=min(2.0 ** min(attempts - 1, 60), self.max_backoff))


DEFAULT_POLICY = RetryPolicy()


async def count_failure(
    sessions: async_sessionmaker[AsyncSession], event_id: int, why: str, policy: RetryPolicy
) -> bool:
    """Count one failed attempt in the event's row: its next try waits, or it is parked."""
    async with sessions() as session, session.begin():
        event = await session.get(
            WebhookEvent, event_id, with_for_update=True, options=[defer(WebhookEvent.payload)]
        )
        if event is None or event.processed_at is not None or event.parked_at is not None:
            return False
        moment = clock.now()  # from the failure, however long the attempt took
        event.attempts += 1
        event.outcome = why
        event.next_attempt_at = moment + policy.pause(event.attempts)
        if event.attempts < policy.max_attempts:
            return False
        event.parked_at = moment
        event.outcome = f"parked after {event.attempts} attempts; {why}"[:200]
        provider = event.provider
    PARKED.labels(provider=provider).inc()
    logger.error(
        "webhook event parked after %s failed attempts",
        policy.max_attempts,
        extra={"row": event_id, "provider": provider},
    )
    return True


async def settle_parked(session: AsyncSession, payment: Payment, outcome: str) -> int:
    """Mark the parked events about ``payment`` processed: its provider was just re-read and
    applied (a refresh), which is all processing them would do. Returns how many."""
    refs = [ref for ref in (payment.provider_ref, payment.charge_ref) if ref is not None]
    about = WebhookEvent.payment_id == payment.id
    if refs:
        about = sa.or_(
            about,
            sa.and_(
                WebhookEvent.payment_id.is_(None),
                WebhookEvent.provider == payment.provider,
                WebhookEvent.provider_ref.in_(refs),
            ),
        )
    settled = await session.execute(
        sa.update(WebhookEvent)
        .where(about, WebhookEvent.parked_at.is_not(None), WebhookEvent.processed_at.is_(None))
        .values(processed_at=clock.now(), outcome=outcome[:200])
        .execution_options(synchronize_session=False)
    )
    return int(getattr(settled, "rowcount", 0) or 0)


async def reported_reference(session: AsyncSession, payment: Payment) -> str | None:
    """The provider's reference a stored (verified) event names for ``payment`` by our id:
    for a payment kept without one (the answer to the call that made it could not be read),
    whose report may be parked, a refresh then has something to re-read."""
    found: str | None = await session.scalar(
        sa.select(WebhookEvent.provider_ref)
        .where(
            WebhookEvent.payment_id == payment.id,
            WebhookEvent.provider == payment.provider,
            WebhookEvent.provider_ref.is_not(None),
        )
        .order_by(WebhookEvent.id)
        .limit(1)
    )
    return found


async def list_parked(session: AsyncSession) -> list[WebhookEvent]:
    """The parked events, oldest first (at most :data:`LIST_LIMIT`)."""
    query = (
        sa.select(WebhookEvent)
        .options(defer(WebhookEvent.payload))
        .where(WebhookEvent.parked_at.is_not(None), WebhookEvent.processed_at.is_(None))
        .order_by(WebhookEvent.id)
        .limit(LIST_LIMIT)
    )
    return list(await session.scalars(query))


async def retry_parked(session: AsyncSession, event_id: int) -> WebhookEvent:
    """Send a parked event back to the processor with a fresh count (an operator fixed the
    cause); an event not parked is answered as it is."""
    event = await session.get(
        WebhookEvent, event_id, with_for_update=True, options=[defer(WebhookEvent.payload)]
    )
    if event is None:
        raise WebhookEventNotFound(f"webhook event {event_id} not found")
    if event.parked_at is not None and event.processed_at is None:
        event.parked_at = None
        event.attempts = 0
        event.next_attempt_at = None
        event.outcome = "sent back by an operator"
        await session.flush()
    return event


async def retry_all_parked(session: AsyncSession) -> int:
    """Send every parked event back to the processor (after a provider's outage); how many."""
    sent = await session.execute(
        sa.update(WebhookEvent)
        .where(WebhookEvent.parked_at.is_not(None), WebhookEvent.processed_at.is_(None))
        .values(
            parked_at=None, attempts=0, next_attempt_at=None, outcome="sent back by an operator"
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(sent, "rowcount", 0) or 0)
