"""What the summary report answers: every figure in minor units of one currency, or a count."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel, Field


class Revenue(BaseModel):
    captured: int = Field(description="Paid in the period (by paid_at), top-ups excluded.")
    refunded: int = Field(description="Refunds completed in the period (by completed_at).")
    net: int = Field(description="captured - refunded.")
    payments: int = Field(description="How many payments make up `captured`.")
    refunds: int = Field(description="How many refunds make up `refunded`.")


class RevenueDay(BaseModel):
    day: date
    captured: int
    refunded: int
    net: int


class StatusCounts(BaseModel):
    active: int = Field(description="Active and paid for (not in a free trial).")
    trial: int = Field(description="Active, still in the free trial.")
    grace: int = Field(description="The period ended unpaid; access kept while renewals retry.")
    paused: int
    total: int


class PlanCount(BaseModel):
    plan_id: UUID
    code: str
    name: str
    subscribers: int


class SubscribersDay(BaseModel):
    day: date
    subscribers: int = Field(description="Subscriptions started and not ended at the day's end.")


class Trials(BaseModel):
    ended: int = Field(description="Trials whose free period ended in the period.")
    converted: int = Field(description="Of those, how many had a paid renewal.")
    conversion_rate: float | None = Field(description="converted / ended; null when none ended.")


class Renewals(BaseModel):
    succeeded: int = Field(description="Renewal payments paid in the period.")
    failed: int = Field(description="Subscriptions that ended in the period after dunning.")
    success_rate: float | None = Field(description="succeeded / (succeeded + failed).")


class Wallets(BaseModel):
    owed: int = Field(description="What the wallets with money in them hold, at the period end.")
    wallets: int = Field(description="How many wallets hold money.")


class ReportSummary(BaseModel):
    currency: str
    first_day: date = Field(description="The period's first day (UTC), included.")
    last_day: date = Field(description="The period's last day (UTC), included.")
    as_of: datetime = Field(description="When the live counts (statuses, MRR, dunning) were read.")
    revenue: Revenue
    revenue_by_day: list[RevenueDay]
    mrr: int = Field(description="Monthly recurring revenue of the live subscriptions, now.")
    subscribers: StatusCounts
    subscribers_by_plan: list[PlanCount]
    subscribers_by_day: list[SubscribersDay]
    new_subscribers: int
    churned_subscribers: int
    trials: Trials
    renewals: Renewals
    in_dunning: int
    wallets: Wallets
