"""Gift shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from billing_api.payments.schemas import PaymentBrief, PaymentMethod

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class GiftIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "plan_id": "7f0c6c2e-5b7a-4c1e-9f33-2d1b9b0c4a11",
                    "months": 3,
                    "recipient_email": "friend@example.com",
                    "message": "Happy birthday!",
                    "payment_method": "card",
                }
            ]
        },
    )

    plan_id: UUID
    months: int = Field(1, ge=1, le=12, strict=True)
    recipient_email: str = Field(max_length=320, pattern=EMAIL_PATTERN)
    message: str | None = Field(None, max_length=1000)
    deliver_at: AwareDatetime | None = Field(
        None, description="When the recipient gets the email; default: as soon as it is paid."
    )
    promo_code: str | None = Field(None, min_length=1, max_length=64)
    payment_method: PaymentMethod = "card"
    locale: Literal["ru", "en"] = Field("ru", description="Language of the gift's emails.")


class RedeemIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"code": "ABCD-EFGH-JKMN-PQRS"}]}
    )

    code: str = Field(min_length=1, max_length=64)


class GiftOut(BaseModel):
    """A gift as its buyer sees it; ``code`` once paid (the buyer's to hand over)."""

    id: UUID
    plan_id: UUID
    months: int
    status: str
    recipient_email: str
    message: str | None
    deliver_at: datetime | None
    delivered_at: datetime | None
    code: str | None
    expires_at: datetime | None
    redeemed_at: datetime | None
    latest_payment: PaymentBrief | None
    created_at: datetime


class RedeemedOut(BaseModel):
    """What redeeming gave the caller: the subscription the months went to."""

    gift_id: UUID
    status: str
    plan_id: UUID
    months: int
    subscription_id: UUID
    current_period_end: datetime
    started_subscription: bool = Field(
        description="True: a new non-renewing subscription; false: a live one was extended."
    )
