"""Shapes of the admin API: what staff send and what they read back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    field_validator,
    model_validator,
)

from billing_api.catalog.schemas import PlanDetailOut
from shared.auth import PRIVILEGED_ROLES
from shared.money import Money

Count = Annotated[int, Strict()]
Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Percent = Annotated[int, Strict(), Field(ge=1, le=100)]
RefundPolicy = Literal["window_then_prorata", "window_only", "none"]
Period = Literal["month"] | Annotated[int, Strict(), Field(ge=1, le=3650)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- plans -----------------------------------------------------------------------------------


class PlanChangesIn(_In):
    """The editable fields of a plan; on an update, fields left out keep their value."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "price": {"amount": 69900, "currency": "RUB"},
                    "description": "Every film; new price from the next period.",
                }
            ]
        }
    )

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=5000)
    price: Money | None = None
    period: Period | None = None
    max_months: Annotated[int, Strict(), Field(ge=1, le=12)] | None = None
    all_movies: StrictBool | None = None
    movie_ids: list[UUID] | None = Field(None, max_length=10_000)
    role: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Role the auth service gives subscribers; never admin or service.",
    )
    grace_days: Annotated[int, Strict(), Field(ge=0, le=60)] | None = None
    trial_days: Annotated[int, Strict(), Field(ge=0, le=365)] | None = None
    refund_window_minutes: Annotated[int, Strict(), Field(ge=0, le=525_600)] | None = None
    refund_policy: RefundPolicy | None = None

    @field_validator("role")
    @classmethod
    def _role_opens_nothing(cls, role: str | None) -> str | None:
        # Anyone who buys the plan gets its role: one that opens the admin API or the machine
        # endpoints here would be privilege for sale.
        if role is not None and role.strip().lower() in PRIVILEGED_ROLES:
            raise ValueError(f"a plan never grants the role {role!r} (admin and service are ours)")
        return role


class PlanIn(PlanChangesIn):
    """A new plan: ``code``, ``name`` and ``price`` are required, the rest has defaults."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "family",
                    "name": "Family",
                    "description": "Every film, for the whole family.",
                    "price": {"amount": 79900, "currency": "RUB"},
                    "period": "month",
                    "max_months": 12,
                    "all_movies": True,
                    "role": "subscriber_family",
                    "trial_days": 7,
                }
            ]
        }
    )

    code: Slug
    name: str = Field(min_length=1, max_length=200)
    price: Money


class AdminPlanOut(PlanDetailOut):
    role: str | None
    version: int
    live_subscriptions: int  # active or in grace: who keeps access if the plan is archived


# --- movies ----------------------------------------------------------------------------------


class MovieChangesIn(_In):
    """Editable movie fields; ``null`` for a price takes that offer off sale."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"rent_price": {"amount": 9900, "currency": "RUB"}, "rent_hours": 72}]
        }
    )

    title: str | None = Field(None, min_length=1, max_length=500)
    description: str | None = Field(None, max_length=20_000)
    available: StrictBool | None = None
    purchase_price: Money | None = None
    rent_price: Money | None = None
    rent_hours: Annotated[int, Strict(), Field(ge=1, le=8760)] | None = None


class MovieIn(MovieChangesIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "69e72d00-f547-5b77-b4d7-9d6c849f8479",
                    "title": "Brother",
                    "purchase_price": {"amount": 39900, "currency": "RUB"},
                    "rent_price": {"amount": 14900, "currency": "RUB"},
                    "rent_hours": 48,
                }
            ]
        }
    )

    id: UUID
    title: str = Field(min_length=1, max_length=500)


# --- discounts -------------------------------------------------------------------------------


class MonthTierIn(_In):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"plan_id": None, "min_months": 6, "percent": 10}]}
    )

    plan_id: UUID | None = None  # None: a global tier
    min_months: Annotated[int, Strict(), Field(ge=1, le=12)]
    percent: Percent


class MonthTierChangesIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"percent": 12}]})

    percent: Percent


class MonthTierOut(BaseModel):
    id: UUID
    plan_id: UUID | None
    min_months: int
    percent: int


class PersonalDiscountIn(_In):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"percent": 20, "reason": "loyal customer since 2019"}]}
    )

    percent: Percent
    reason: str = Field("", max_length=500)


class PersonalDiscountOut(BaseModel):
    user_id: UUID
    percent: int
    reason: str
    updated_at: datetime


class PromoCodeIn(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "SPRING10",
                    "kind": "percent",
                    "percent": 10,
                    "valid_until": "2027-05-31T23:59:59Z",
                    "max_redemptions": 500,
                }
            ]
        }
    )

    code: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    kind: Literal["percent", "fixed"]
    percent: Percent | None = None
    amount: Money | None = None
    plan_id: UUID | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    max_redemptions: Annotated[int, Strict(), Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _shape(self) -> PromoCodeIn:
        if self.kind == "percent" and (self.percent is None or self.amount is not None):
            raise ValueError("a percent promo code needs percent and no amount")
        if self.kind == "fixed" and (self.amount is None or self.percent is not None):
            raise ValueError("a fixed promo code needs amount and no percent")
        if self.amount is not None and self.amount.amount <= 0:
            raise ValueError("amount must be positive")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class PromoCodeChangesIn(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"valid_until": "2027-06-30T23:59:59Z", "max_redemptions": 1000}]
        }
    )

    valid_until: AwareDatetime | None = None
    max_redemptions: Annotated[int, Strict(), Field(ge=1)] | None = None


class PromoCodeOut(BaseModel):
    id: UUID
    code: str
    kind: str
    percent: int | None
    amount: Money | None
    plan_id: UUID | None
    valid_from: datetime | None
    valid_until: datetime | None
    max_redemptions: int | None
    active: bool
    redemptions: int  # reserved or redeemed now: what counts against max_redemptions
    redeemed: int  # paid for
    reserved: int  # waiting for a payment
    released: int  # given back after a failed or expired payment
    created_at: datetime


# --- customers -------------------------------------------------------------------------------


class CustomerOut(BaseModel):
    user_id: UUID
    email: str | None
    subscriptions: int
    payments: int
    last_seen_at: datetime


class AdminRefundIn(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"reason": "double charge reported by phone", "amount": 29900}]
        }
    )

    reason: str = Field(min_length=1, max_length=500)
    amount: Annotated[int, Strict(), Field(gt=0)] | None = None  # default: all that is left


class ComplimentaryIn(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "plan_id": "7f0c6c2e-5b7a-4c1e-9f33-2d1b9b0c4a11",
                    "days": 30,
                    "reason": "apology for the outage of 12 May",
                }
            ]
        }
    )

    plan_id: UUID
    days: Annotated[int, Strict(), Field(ge=1, le=3650)]
    reason: str = Field(min_length=1, max_length=500)


class ComplimentaryOut(BaseModel):
    id: UUID
    user_id: UUID
    plan_id: UUID
    valid_until: datetime
    reason: str
    granted_by: str
    revoked_at: datetime | None
    created_at: datetime


class RevokeIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "granted by mistake"}]})

    reason: str = Field(min_length=1, max_length=500)
