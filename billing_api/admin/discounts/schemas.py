"""Shapes of the admin discounts API: months tiers, personal discounts and promo codes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict, model_validator

from shared.money import Money

Percent = Annotated[int, Strict(), Field(ge=1, le=100)]


class MonthTierIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"plan_id": None, "min_months": 6, "percent": 10}]},
    )

    plan_id: UUID | None = None  # None: a global tier
    min_months: Annotated[int, Strict(), Field(ge=1, le=12)]
    percent: Percent


class MonthTierChangesIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"percent": 12}]})

    percent: Percent


class MonthTierOut(BaseModel):
    id: UUID
    plan_id: UUID | None
    min_months: int
    percent: int


class PersonalDiscountIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"percent": 20, "reason": "loyal customer since 2019"}]},
    )

    percent: Percent
    reason: str = Field("", max_length=500)


class PersonalDiscountOut(BaseModel):
    user_id: UUID
    percent: int
    reason: str
    updated_at: datetime


class PromoCodeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
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
        },
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


class PromoCodeChangesIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"valid_until": "2027-06-30T23:59:59Z", "max_redemptions": 1000}]
        },
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
