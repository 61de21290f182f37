"""Quote the price of a plan bought for a number of months.

Pure functions of their inputs: callers load the plan, its months-count tiers, the user's personal
discount and the promo code row, and pass plain values in (including ``now``). Rules, from DESIGN
section 3 "Catalog and pricing":

* **Base** = price per period x months, with months in ``1..plan.max_months``.
* **Months tier**: of the tiers with ``min_months <= months``, the one with the greatest
  ``min_months`` applies.
* **Tiers + personal**: tier percent + personal percent, capped at ``max_total_percent``.
* **Promo code**: a percent of the base, or a fixed amount in the plan's currency; never more than
  the base. It never stacks with tiers or personal discounts.
* **Applied discount** = the larger of (tiers + personal) and (promo), never their sum. On a tie
  tiers + personal wins, so a quote does not use up a promo redemption for nothing.
* **Total** = base - applied discount, never below zero.

Rounding: every percent is taken of the whole base (not per month) and rounded half up, as
:func:`shared.money.percent_half_up` does: 5 % of 10 minor units is 1, 5 % of 9 is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from billing_api.pricing.schemas import CandidateOut, CandidateSource, QuoteOut
from shared.errors import Conflict, UnprocessableEntity
from shared.money import Money, apply_discount, format_minor_units, percent_half_up


class MonthsOutOfRange(UnprocessableEntity):
    default_detail = "the plan cannot be bought for that many months"


class PromoCodeNotFound(UnprocessableEntity):
    """Raised by callers when no promo code has the given code (bad input to the quote)."""

    default_detail = "unknown promo code"


class PromoCodeInactive(UnprocessableEntity):
    default_detail = "the promo code is switched off"


class PromoCodeNotYetValid(UnprocessableEntity):
    default_detail = "the promo code is not valid yet"


class PromoCodeExpired(UnprocessableEntity):
    default_detail = "the promo code has expired"


class PromoCodeExhausted(Conflict):
    default_detail = "the promo code has been used up"


class PromoCodeAlreadyUsed(Conflict):
    default_detail = "you have already used this promo code"


class PromoCodeNotForPlan(UnprocessableEntity):
    default_detail = "the promo code does not apply to this plan"


class PromoCodeCurrencyMismatch(UnprocessableEntity):
    default_detail = "the promo code is in another currency than the plan"


@dataclass(frozen=True)
class Tier:
    """``percent`` off when buying at least ``min_months``."""

    min_months: int
    percent: int


@dataclass(frozen=True)
class Promo:
    """A promo code row plus what the caller knows about its use (``used_by_user``)."""

    code: str
    kind: Literal["percent", "fixed"]
    percent: int | None
    amount: int | None
    currency: str | None
    plan_id: UUID | None
    valid_from: datetime | None
    valid_until: datetime | None
    max_redemptions: int | None
    redemptions: int
    active: bool
    used_by_user: bool


@dataclass(frozen=True)
class PlanPrice:
    plan_id: UUID
    price: int  # per period, minor units
    currency: str
    max_months: int


@dataclass(frozen=True)
class Candidate:
    """One discount considered. ``applicable=False`` marks parts shown only for explanation."""

    source: CandidateSource
    percent: int | None
    amount: int
    detail: str
    applicable: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Quote:
    base_amount: int
    currency: str
    months: int
    candidates: tuple[Candidate, ...]
    applied: Candidate | None  # None when nothing is taken off
    discount_amount: int
    total: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready snapshot to store with the payment it priced."""
        return {
            "base_amount": self.base_amount,
            "currency": self.currency,
            "months": self.months,
            "candidates": [candidate.to_json() for candidate in self.candidates],
            "applied": None if self.applied is None else self.applied.to_json(),
            "discount_amount": self.discount_amount,
            "total": self.total,
        }


def quote(
    plan: PlanPrice,
    months: int,
    *,
    now: datetime,
    tiers: Sequence[Tier] = (),
    personal_percent: int | None = None,
    promo: Promo | None = None,
    max_total_percent: int = 50,
) -> Quote:
    """Price ``plan`` for ``months`` periods with every discount the caller found for the user.

    ``tiers`` are the plan's own months-count tiers when it has any, otherwise the global ones:
    the caller chooses, this function only picks the tier that applies. ``personal_percent`` of
    ``None`` or 0 means no personal discount. A ``promo`` that cannot be used raises a
    ``PromoCode*`` error even when tiers + personal would win: the client asked for that code.

    Candidates list the months tier and the personal discount alone (``applicable=False``: they
    only apply combined), then their capped combination, then the promo. ``applied`` is the
    larger of the last two, preferring tiers + personal on a tie.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not 1 <= months <= plan.max_months:
        raise MonthsOutOfRange(f"months must be between 1 and {plan.max_months}, got {months}")
    if promo is not None:
        _check_promo(promo, plan, now)

    base = plan.price * months
    candidates: list[Candidate] = []
    tier = _months_tier(tiers, months)
    if tier is not None:
        detail = f"{tier.min_months}+ months tier: {tier.percent}%"
        candidates.append(_percent_off(base, "months_tier", tier.percent, detail, applicable=False))
    if personal_percent:
        detail = f"personal discount: {personal_percent}%"
        candidates.append(
            _percent_off(base, "personal", personal_percent, detail, applicable=False)
        )
    combined = None
    if tier is not None or personal_percent:
        combined = _combined(base, tier, personal_percent or 0, max_total_percent)
        candidates.append(combined)
    promo_off = None if promo is None else _promo_off(base, promo, plan.currency)
    if promo_off is not None:
        candidates.append(promo_off)

    # max() keeps the first of equal amounts, so tiers + personal beats the promo on a tie.
    worth_applying = [c for c in (combined, promo_off) if c is not None and c.amount > 0]
    applied = max(worth_applying, key=lambda candidate: candidate.amount, default=None)
    discount = 0 if applied is None else applied.amount
    return Quote(
        base_amount=base,
        currency=plan.currency,
        months=months,
        candidates=tuple(candidates),
        applied=applied,
        discount_amount=discount,
        total=apply_discount(base, discount),
    )


def _check_promo(promo: Promo, plan: PlanPrice, now: datetime) -> None:
    """Raise the first reason, checked in this order, why ``promo`` cannot be used on ``plan``."""
    if not promo.active:
        raise PromoCodeInactive(f"promo code {promo.code} is switched off")
    if promo.plan_id is not None and promo.plan_id != plan.plan_id:
        raise PromoCodeNotForPlan(f"promo code {promo.code} does not apply to this plan")
    if promo.kind == "fixed" and promo.currency != plan.currency:
        raise PromoCodeCurrencyMismatch(
            f"promo code {promo.code} is in {promo.currency}, the plan is in {plan.currency}"
        )
    if promo.valid_from is not None and now < promo.valid_from:
        raise PromoCodeNotYetValid(
            f"promo code {promo.code} is valid from {promo.valid_from.isoformat()}"
        )
    if promo.valid_until is not None and now >= promo.valid_until:
        raise PromoCodeExpired(
            f"promo code {promo.code} expired at {promo.valid_until.isoformat()}"
        )
    if promo.max_redemptions is not None and promo.redemptions >= promo.max_redemptions:
        raise PromoCodeExhausted(f"promo code {promo.code} has been used up")
    if promo.used_by_user:
        raise PromoCodeAlreadyUsed(f"you have already used promo code {promo.code}")


def _months_tier(tiers: Sequence[Tier], months: int) -> Tier | None:
    reached = [tier for tier in tiers if tier.min_months <= months]
    return max(reached, key=lambda tier: tier.min_months, default=None)


def _percent_off(
    base: int, source: CandidateSource, percent: int, detail: str, *, applicable: bool
) -> Candidate:
    return Candidate(source, percent, percent_half_up(base, percent), detail, applicable)


def _combined(base: int, tier: Tier | None, personal: int, cap: int) -> Candidate:
    parts = []
    if tier is not None:
        parts.append(f"months tier {tier.percent}%")
    if personal:
        parts.append(f"personal {personal}%")
    wanted = (0 if tier is None else tier.percent) + personal
    detail = " + ".join(parts)
    if wanted > cap:
        detail += f" = {wanted}%, capped at {cap}%"
    return _percent_off(base, "tiers_and_personal", min(wanted, cap), detail, applicable=True)


def _promo_off(base: int, promo: Promo, currency: str) -> Candidate:
    if promo.kind == "percent":
        if promo.percent is None:
            raise ValueError(f"percent promo code {promo.code} has no percent")
        detail = f"promo code {promo.code}: {promo.percent}%"
        return _percent_off(base, "promo", promo.percent, detail, applicable=True)
    if promo.amount is None:
        raise ValueError(f"fixed promo code {promo.code} has no amount")
    detail = f"promo code {promo.code}: {format_minor_units(promo.amount, currency)} {currency} off"
    if promo.amount > base:
        detail += ", limited to the price"
    return Candidate("promo", None, min(promo.amount, base), detail, applicable=True)


def candidate_out(candidate: Candidate, currency: str) -> CandidateOut:
    """A discount as the API shows it."""
    return CandidateOut(
        source=candidate.source,
        percent=candidate.percent,
        amount=Money(amount=candidate.amount, currency=currency),
        detail=candidate.detail,
        applicable=candidate.applicable,
    )


def quote_out(plan_id: UUID, quote: Quote) -> QuoteOut:
    """The quote as the API shows it: every amount as ``{amount, currency}``."""
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
