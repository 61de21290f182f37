"""The price quote as the API shows it: every amount as ``{amount, currency}``."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict

from billing_api.pricing.service import Candidate, CandidateSource, Quote
from shared.money import Currency, Money


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


def candidate_out(candidate: Candidate, currency: str) -> CandidateOut:
    return CandidateOut(
        source=candidate.source,
        percent=candidate.percent,
        amount=Money(amount=candidate.amount, currency=currency),
        detail=candidate.detail,
        applicable=candidate.applicable,
    )


def quote_out(plan_id: UUID, quote: Quote) -> QuoteOut:
    currency = quote.currency
    return QuoteOut(
        plan_id=plan_id,
        months=quote.months,
        base=Money(amount=quote.base_amount, currency=currency),
        candidates=[candidate_out(candidate, currency) for candidate in quote.candidates],
        applied=None if quote.applied is None else candidate_out(quote.applied, currency),
        discount=Money(amount=quote.discount_amount, currency=currency),
        total=Money(amount=quote.total, currency=currency),
        currency=currency,
    )
