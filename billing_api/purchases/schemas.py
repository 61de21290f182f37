"""Single-movie purchase shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from billing_api.payments.schemas import PaymentBrief, PaymentMethod


class PurchaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
