"""Subscription shapes."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from billing_api.payments.schemas import PaymentBrief, PaymentMethod


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_id: UUID
    months: int = Field(1, ge=1, le=12, strict=True)
    promo_code: str | None = Field(None, min_length=1, max_length=64)
    auto_renew: bool = True
    payment_method: PaymentMethod = "card"


class SubscriptionOut(BaseModel):
    id: UUID
    plan_id: UUID
    status: str
    months: int
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    auto_renew: bool
    latest_payment: PaymentBrief | None
    created_at: datetime


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_period_end: bool = True
