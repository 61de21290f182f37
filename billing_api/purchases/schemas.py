"""Single-movie purchase shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from billing_api.payments.schemas import PaymentBrief, PaymentMethod


class PurchaseIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "movie_id": "69e72d00-f547-5b77-b4d7-9d6c849f8479",
                    "kind": "rent",
                    "payment_method": "card",
                }
            ]
        },
    )

    movie_id: UUID
    kind: Literal["buy", "rent"] = "buy"
    payment_method: PaymentMethod = "card"


class PurchaseOut(BaseModel):
    id: UUID
    movie_id: UUID
    kind: str
    status: str
    valid_until: datetime | None
    latest_payment: PaymentBrief | None
    created_at: datetime
