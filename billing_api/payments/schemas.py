"""Payment shapes as users see them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from shared.money import Money

PaymentMethod = Literal["card", "wallet"]


class PaymentBrief(BaseModel):
    """The ``latest_payment`` of a subscription or purchase."""

    id: UUID
    status: str
    amount: Money
    checkout_url: str | None
    # While ``status`` is ``requires_action``: the page where the cardholder confirms it.
    action_url: str | None = None


class PaymentOut(PaymentBrief):
    purpose: str
    method: str
    description: str
    base_amount: Money
    discount: Money
    subscription_id: UUID | None
    purchase_id: UUID | None
    refunded: Money
    created_at: datetime
    paid_at: datetime | None
    expires_at: datetime | None
    failure_message: str | None
    provider: str | None = Field(
        None,
        description="The payment provider that took it (sandbox, stripe, yookassa);"
        " null for a payment no provider saw (wallet, free).",
    )
