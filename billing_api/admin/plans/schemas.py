"""Shapes of the admin plans API: what staff send and what they read back."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, field_validator

from billing_api.catalog.schemas import PlanDetailOut
from shared.auth import PRIVILEGED_ROLES
from shared.money import Money

Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
RefundPolicy = Literal["window_then_prorata", "window_only", "none"]
Period = Literal["month"] | Annotated[int, Strict(), Field(ge=1, le=3650)]


class PlanChangesIn(BaseModel):
    """The editable fields of a plan; on an update, fields left out keep their value."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "price": {"amount": 69900, "currency": "RUB"},
                    "description": "Every film; new price from the next period.",
                }
            ]
        },
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
    household_seats: Annotated[int, Strict(), Field(ge=0, le=6)] | None = Field(
        None, description="People a subscriber may share the subscription with (0: none)."
    )

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
