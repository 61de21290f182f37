"""The webhooks the sandbox reports with: queued in its own table in the transaction of the
change (``delivery.py`` signs and posts them), and read back by the gateway as notices.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.providers import base, signatures
from payment_gateway.sandbox.models import SandboxWebhook, new_id
from shared import clock

SIGNATURE_HEADER = "Sandbox-Signature"

RELEVANT_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.failed",
        "checkout.session.expired",
        "charge.succeeded",
        "charge.failed",
        "charge.requires_action",
        "charge.canceled",
        "refund.succeeded",
        "refund.failed",
        "charge.dispute.created",
    }
)


async def enqueue(
    db: AsyncSession,
    event_type: str,
    object_id: str,
    payment_id: UUID | None,
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    """Queue the event ``event_type`` about ``object_id``, to be delivered once committed."""
    event_id = new_id("evt")
    moment = clock.now()
    obj = {
        "id": object_id,
        "payment_id": str(payment_id) if payment_id else None,
        **(extra or {}),
    }
    db.add(
        SandboxWebhook(
            id=event_id,
            event_type=event_type,
            body={
                "id": event_id,
                "type": event_type,
                "created": int(moment.timestamp()),
                "data": {"object": obj},
            },
            created_at=moment,
            next_attempt_at=moment,
            attempts=0,
        )
    )


def parse_notice(
    body: bytes, headers: Mapping[str, str], *, secret: str, tolerance: int
) -> base.WebhookNotice:
    """The notice a signed sandbox webhook carries; ``InvalidWebhook`` when it is not one."""
    header = next((v for k, v in headers.items() if k.lower() == "sandbox-signature"), None)
    try:
        signatures.verify(body, header, secret, now=int(time.time()), tolerance=tolerance)
        event = orjson.loads(body)
        obj = event["data"]["object"]
        event_id, event_type = str(event["id"]), str(event["type"])
        payment_id = UUID(obj["payment_id"]) if obj.get("payment_id") else None
    except signatures.BadSignature as exc:
        raise base.InvalidWebhook(str(exc)) from exc
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise base.InvalidWebhook(f"malformed event: {exc}") from exc
    return base.WebhookNotice(
        event_id=event_id,
        event_type=event_type,
        payment_id=payment_id,
        provider_ref=obj.get("payment_ref") or obj.get("id"),
        relevant=event_type in RELEVANT_EVENTS,
    )
