"""Catalog shapes: plans and a movie's offers."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from shared.money import Money


class PlanOut(BaseModel):
    id: UUID
    code: str
    name: str
    description: str
    price: Money
    period: Literal["month"] | int  # "month", or a number of days
    max_months: int
    all_movies: bool
    trial_days: int
    grace_days: int
    refund_policy: str
    refund_window_minutes: int
    active: bool
    household_seats: int = Field(
        0, description="How many people a subscriber may share the subscription with (0: none)."
    )


class PlanDetailOut(PlanOut):
    movie_ids: list[UUID]


class MovieOffer(BaseModel):
    kind: Literal["buy", "rent"]
    price: Money
    rent_hours: int | None = None


class MovieOffersOut(BaseModel):
    movie_id: UUID
    title: str
    available: bool = Field(description="On sale: staff sell it and the movie admin still has it.")
    plans: list[PlanOut]
    offers: list[MovieOffer]
