"""Refund shapes as users see them."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.money import Money


class RefundIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "changed my mind"}]}
    )

    reason: str | None = Field(None, max_length=500)


class RefundQuoteOut(BaseModel):
    """What a refund requested now would give back, and the rule that decided it."""

    payment_id: UUID
    refundable_amount: Money
    rule: str


class RefundOut(BaseModel):
    id: UUID
    payment_id: UUID
    amount: Money
    status: str
    rule: str
    reason: str | None
    created_at: datetime
    completed_at: datetime | None
