"""``POST /webhooks/{provider}``: where Stripe, YooKassa and the sandbox report what happened."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from payment_gateway.deps import ProvidersDep, SessionFactoryDep
from payment_gateway.webhooks import service
from payment_gateway.webhooks.processor import WebhookProcessor

router = APIRouter(tags=["webhooks"])


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
