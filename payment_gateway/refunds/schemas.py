"""Shapes of the internal refunds API."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from payment_gateway.payments.schemas import OrderLines, PositiveAmount


class RefundIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "refund_id": "5d6e7f80-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
                    "payment_id": "0b8f3c1a-2c4d-4e5f-8a9b-1c2d3e4f5a6b",
                    "amount": 29900,
                    "reason": "cancelled by the user",
                }
            ]
        },
    )

    refund_id: UUID
    payment_id: UUID
    amount: PositiveAmount
    reason: str | None = Field(None, max_length=500)
    order_lines: OrderLines  # what the refund gives back, for a 54-FZ receipt (YooKassa)


class RefundOut(BaseModel):
    refund_id: UUID
    payment_id: UUID
    amount: int
    currency: str
    status: str
    provider_ref: str | None
    failure_message: str | None
    payment_status: str
    receipt_registration: str | None = None
