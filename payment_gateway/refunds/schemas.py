"""Shapes of the internal refunds API."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from payment_gateway.payments.schemas import PositiveAmount


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_id: UUID
    payment_id: UUID
    amount: PositiveAmount
    reason: str | None = Field(None, max_length=500)


class RefundOut(BaseModel):
    refund_id: UUID
    payment_id: UUID
    amount: int
    currency: str
    status: str
    provider_ref: str | None
    failure_message: str | None
    payment_status: str
