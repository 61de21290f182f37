"""Subscription shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from billing_api.payments.schemas import PaymentBrief, PaymentMethod
from shared.money import Money


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "plan_id": "7f0c6c2e-5b7a-4c1e-9f33-2d1b9b0c4a11",
                    "months": 3,
                    "promo_code": "WELCOME15",
                    "auto_renew": True,
                    "payment_method": "card",
                }
            ]
        },
    )

    plan_id: UUID
    months: int = Field(1, ge=1, le=12, strict=True)
    promo_code: str | None = Field(None, min_length=1, max_length=64)
    auto_renew: StrictBool = True
    payment_method: PaymentMethod = "card"
    trial: StrictBool = Field(
        False,
        description="Start with the plan's free trial: the checkout only saves the card and "
        "the first charge is made at the trial's end. One trial per user and plan; card only.",
    )


class SavedCard(BaseModel):
    """The card renewals are charged to, as the payment provider shows it (never its number)."""

    brand: str | None = Field(None, description='"visa", "mastercard", "mir", …')
    last4: str | None = Field(None, description="The card number's last four digits.")
    exp_month: int | None = None
    exp_year: int | None = None


RenewalSourceName = Literal["card", "wallet_then_card"]


class SubscriptionPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"renewal_source": "wallet_then_card"}]}
    )

    renewal_source: RenewalSourceName = Field(
        description="How renewals are paid: `card` (the saved card) or `wallet_then_card` (the "
        "wallet when its balance covers the renewal, else the card)."
    )


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
    trial_end: datetime | None = None
    pending_plan_id: UUID | None = Field(
        None, description="The plan a scheduled downgrade switches to at the period end."
    )
    payment_method: SavedCard | None = Field(
        None, description="The saved card renewals are charged to; null when none is known."
    )
    renewal_source: RenewalSourceName = Field(
        "card", description="How renewals are paid: `card` or `wallet_then_card`."
    )
    pause: PauseOut | None = Field(
        None,
        description="The pause asked for (it starts at the period end) or running (status "
        "paused): no access and no charge from starts_at, renewed at resumes_at.",
    )


class PauseOut(BaseModel):
    starts_at: datetime
    resumes_at: datetime


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"months": 1}]})

    months: int = Field(
        ge=1, le=3, strict=True, description="Calendar months to pause, from the period end."
    )


class CancelIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"at_period_end": True}]}
    )

    at_period_end: StrictBool = True


class ChangePlanIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"plan_id": "7f0c6c2e-5b7a-4c1e-9f33-2d1b9b0c4a11", "payment_method": "card"}
            ]
        },
    )

    plan_id: UUID
    payment_method: PaymentMethod = Field(
        "card", description="How an upgrade is paid (a downgrade charges nothing now)."
    )


class PlanChangeOut(BaseModel):
    change: Literal["upgrade", "downgrade", "downgrade_canceled"]
    subscription: SubscriptionOut
    payment: PaymentBrief | None = Field(
        None, description="The upgrade's payment: pay at its checkout_url when pending."
    )
    credit: Money = Field(description="The unused part of the current period, credited.")
    effective_at: datetime | None = Field(
        None, description="When the new plan starts: once paid (upgrade) or the period end."
    )


class PaymentMethodIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"payment_method": "card"}]}
    )

    payment_method: Literal["card"] = Field(
        "card",
        description="The kind of payment method to save for renewals: a card (the only one).",
    )


class PaymentMethodUpdateOut(BaseModel):
    payment_id: UUID
    checkout_url: str | None = Field(
        description="Where the subscriber enters the new card (and pays what is due)."
    )
    purpose: Literal["card_update", "renewal"] = Field(
        description="card_update: nothing is charged, the card is saved; renewal: the renewal "
        "due is paid with the new card, which is then saved."
    )
    amount: Money = Field(description="What the checkout charges (0 for a card_update).")
    status: str
    expires_at: datetime | None = Field(None, description="When the checkout stops being payable.")
    subscription_id: UUID | None
