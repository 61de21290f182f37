"""The price quote as the API shows it: every amount as ``{amount, currency}``."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared.money import Currency, Money

CandidateSource = Literal["months_tier", "personal", "tiers_and_personal", "promo"]


class CandidateOut(BaseModel):
    """A discount considered; ``applicable=False`` parts only apply combined."""

    model_config = ConfigDict(frozen=True)

    source: CandidateSource
    percent: int | None
    amount: Money
    detail: str
    applicable: bool


class QuoteOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    plan_id: UUID
    months: int
    base: Money
    candidates: list[CandidateOut]
    applied: CandidateOut | None
    discount: Money
    total: Money
    currency: Currency
