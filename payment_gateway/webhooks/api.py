"""``POST /webhooks/{provider}``: where Stripe and the sandbox report what happened."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request

from payment_gateway.deps import ProvidersDep, SessionFactoryDep
from payment_gateway.webhooks import service

logger = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])


@router.post(
    "/webhooks/{provider}",
    responses={400: {"description": "bad or missing signature; nothing stored"}},
)
async def receive_webhook(
    provider: str, request: Request, sessions: SessionFactoryDep, providers: ProvidersDep
) -> dict[str, object]:
    """Verify the signature over the raw body, store the event once and process it."""
    body = await request.body()
    async with sessions() as session, session.begin():
        stored, notice = await service.receive(session, providers, provider, body, request.headers)
        if stored is None:
            return {"received": True, "duplicate": True}
        outcome = None
        if notice.relevant:
            try:
                async with session.begin_nested():
                    outcome = await service.process_received(
                        session, providers, provider, stored, notice
                    )
            except Exception:
                # Stored all the same: the sweep retries it. The provider need not resend it.
                logger.exception(
                    "webhook processing failed; left for the sweep", extra={"row": stored}
                )
    return {"received": True, "duplicate": False, "outcome": outcome}
