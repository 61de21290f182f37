"""Gift shapes as staff see them."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class AdminGiftOut(BaseModel):
    id: UUID
    status: str
    plan_id: UUID
    months: int
    buyer_id: UUID
    buyer_email: str | None
    recipient_email: str
    code: str | None
    latest_payment_id: UUID | None
    paid_at: datetime | None
    deliver_at: datetime | None
    delivered_at: datetime | None
    expires_at: datetime | None
    redeemed_by: UUID | None
    redeemed_at: datetime | None
    subscription_id: UUID | None
    ended_at: datetime | None
    created_at: datetime


class GiftRevokeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "bought with a stolen card"}]}
    )

    reason: str = Field(min_length=1, max_length=500)
