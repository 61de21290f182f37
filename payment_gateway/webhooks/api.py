"""``POST /webhooks/{provider}``: where Stripe, YooKassa and the sandbox report what happened."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel

from payment_gateway.deps import ProvidersDep, SessionDep, SessionFactoryDep
from payment_gateway.models import WebhookEvent
from payment_gateway.webhooks import parking, service
from payment_gateway.webhooks.processor import WebhookProcessor
from shared.auth import InternalServicePrincipal
from shared.db import commit

router = APIRouter(tags=["webhooks"])
operator_router = APIRouter(prefix="/internal/v1/webhooks", tags=["webhooks"])


class WebhookReceived(BaseModel):
    received: bool
    duplicate: bool  # stored before: this delivery changed nothing


@router.post(
    "/webhooks/{provider}",
    responses={
        400: {"description": "bad or missing signature; nothing stored"},
        403: {"description": "not from the provider's addresses (YooKassa); nothing stored"},
    },
)
async def receive_webhook(
    provider: str, request: Request, sessions: SessionFactoryDep, providers: ProvidersDep
) -> WebhookReceived:
    """Verify the signature (or the sender's address) and store the event once; processed
    right after."""
    body = await request.body()
    peer = request.client.host if request.client else None
    async with sessions() as session, session.begin():
        stored = await service.receive(
            session, providers, provider, body, request.headers, peer=peer
        )
    if stored:
        processor: WebhookProcessor = request.app.state.webhook_processor
        processor.wake()  # committed: the processor can see the row now
    return WebhookReceived(received=True, duplicate=not stored)


class StoredWebhookOut(BaseModel):
    id: int
    provider: str
    provider_event_id: str
    event_type: str
    payment_id: UUID | None
    provider_ref: str | None
    received_at: datetime
    processed_at: datetime | None
    outcome: str | None
    attempts: int
    next_attempt_at: datetime | None
    parked_at: datetime | None

    @classmethod
    def of(cls, event: WebhookEvent) -> StoredWebhookOut:
        return cls(
            id=event.id,
            provider=event.provider,
            provider_event_id=event.provider_event_id,
            event_type=event.event_type,
            payment_id=event.payment_id,
            provider_ref=event.provider_ref,
            received_at=event.received_at,
            processed_at=event.processed_at,
            outcome=event.outcome,
            attempts=event.attempts,
            next_attempt_at=event.next_attempt_at,
            parked_at=event.parked_at,
        )


class StoredWebhooksOut(BaseModel):
    items: list[StoredWebhookOut]
    next_cursor: str | None = None


@operator_router.get("/parked", response_model=StoredWebhooksOut)
async def list_parked(
    principal: InternalServicePrincipal, session: SessionDep
) -> StoredWebhooksOut:
    """Webhook events parked after too many failed attempts, oldest first (at most 100)."""
    events = await parking.list_parked(session)
    return StoredWebhooksOut(items=[StoredWebhookOut.of(event) for event in events])


class SentBack(BaseModel):
    sent_back: int


@operator_router.post("/parked/retry", response_model=SentBack)
async def retry_all_parked(
    request: Request, principal: InternalServicePrincipal, session: SessionDep
) -> SentBack:
    """Send every parked event back to the processor (after a provider's outage)."""
    sent_back = await parking.retry_all_parked(session)
    await commit(session)
    processor: WebhookProcessor = request.app.state.webhook_processor
    processor.wake()
    return SentBack(sent_back=sent_back)


@operator_router.post("/{event_id}/retry", response_model=StoredWebhookOut)
async def retry_parked(
    event_id: int, request: Request, principal: InternalServicePrincipal, session: SessionDep
) -> StoredWebhookOut:
    """Send a parked event back to the processor with a fresh attempt count."""
    event = await parking.retry_parked(session, event_id)
    answer = StoredWebhookOut.of(event)
    await commit(session)
    processor: WebhookProcessor = request.app.state.webhook_processor
    processor.wake()  # committed: the processor can take it now
    return answer
