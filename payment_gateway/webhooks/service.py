"""Webhook ingestion: verify, store once and answer; processing comes after, in batches.

The request verifies the signature over the raw body and stores the event with one statement,
``INSERT … ON CONFLICT DO NOTHING`` on ``(provider, provider_event_id)``, so a redelivered event
is recorded once (a concurrent duplicate waits on the unique index and then does nothing). It
commits and answers without processing: the answer says only whether the event was new.

Processing (``processing.py``) re-reads the payments at the provider and applies what it says,
for many stored events in one transaction; the :class:`~.processor.WebhookProcessor` of every
gateway process runs it, woken by the request that stored an event and polling for the ones
other processes stored. A gateway that dies between storing and processing has committed the
row unprocessed, so the next run of any processor picks it up; nothing is lost.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.models import WebhookEvent
from payment_gateway.providers.base import InvalidWebhook, WebhookSourceRefused
from payment_gateway.providers.registry import Providers
from shared import clock
from shared.errors import AppError


class WebhookRejected(AppError):
    status_code = 400
    default_detail = "the webhook could not be verified"


class WebhookSenderRefused(AppError):
    status_code = 403
    default_detail = "webhooks of this provider are not accepted from this address"


async def receive(
    session: AsyncSession,
    providers: Providers,
    provider_name: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    peer: str | None = None,
) -> bool:
    """Verify and store; True when the event is new, False for a duplicate.

    ``peer`` is the connection's address: a provider that does not sign its webhooks accepts
    them only from its own addresses. An event type the gateway does not act on is stored
    already processed (``ignored``).
    """
    provider = providers.get(provider_name)
    try:
        provider.verify_source(peer, headers)
    except WebhookSourceRefused as exc:
        raise WebhookSenderRefused(str(exc)) from exc
    try:
        notice = provider.parse_webhook(body, headers)
    except InvalidWebhook as exc:
        raise WebhookRejected(str(exc) or WebhookRejected.default_detail) from exc
    moment = clock.now()
    stored = await session.scalar(
        insert(WebhookEvent)
        .values(
            provider=provider_name,
            provider_event_id=notice.event_id,
            event_type=notice.event_type,
            payment_id=notice.payment_id,
            provider_ref=notice.provider_ref,
            payload=orjson.loads(body),
            received_at=moment,
            processed_at=None if notice.relevant else moment,
            outcome=None if notice.relevant else "ignored",
        )
        .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
        .returning(WebhookEvent.id)
    )
    return stored is not None
