from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_api.pricing.service import (
    Candidate,
    MonthsOutOfRange,
    PlanPrice,
    Promo,
    PromoCodeAlreadyUsed,
    PromoCodeCurrencyMismatch,
    PromoCodeExhausted,
    PromoCodeExpired,
    PromoCodeInactive,
    PromoCodeNotForPlan,
    PromoCodeNotFound,
    PromoCodeNotYetValid,
    Quote,
    Tier,
    quote,
    quote_out,
)
from shared.errors import AppError

PLAN_ID = UUID("00000000-0000-4000-8000-000000000001")
OTHER_PLAN_ID = UUID("00000000-0000-4000-8000-000000000002")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TIERS = (Tier(min_months=3, percent=10), Tier(min_months=6, percent=15), Tier(12, 20))


def plan(price: int = 10_000, *, currency: str = "RUB", max_months: int = 12) -> PlanPrice:
    return PlanPrice(plan_id=PLAN_ID, price=price, currency=currency, max_months=max_months)


def promo(**changes: Any) -> Promo:
    """A 20 % code for any plan, active, unlimited and unused, changed by keyword."""
    code = Promo(
        code="SPRING",
        kind="percent",
        percent=20,
        amount=None,
        currency=None,
        plan_id=None,
        valid_from=None,
        valid_until=None,
        max_redemptions=None,
        redemptions=0,
        active=True,
        used_by_user=False,
    )
    return dataclasses.replace(code, **changes)


def fixed_promo(amount: int, currency: str = "RUB", **changes: Any) -> Promo:
    return promo(kind="fixed", percent=None, amount=amount, currency=currency, **changes)


def candidate(result: Quote, source: str) -> Candidate | None:
    return next((c for c in result.candidates if c.source == source), None)


def percent_of(discount: Candidate | None) -> int:
    return 0 if discount is None or discount.percent is None else discount.percent


class TestQuoteWithoutDiscounts:
    @pytest.mark.parametrize(
        ("price", "months", "base"), [(10_000, 1, 10_000), (29_900, 12, 358_800)]
    )
    def test_total_is_price_times_months(self, price: int, months: int, base: int) -> None:
        result = quote(plan(price), months, now=NOW)

        assert (result.base_amount, result.discount_amount, result.total) == (base, 0, base)
        assert (result.currency, result.months) == ("RUB", months)
        assert result.candidates == ()
        assert result.applied is None

    @pytest.mark.parametrize(("months", "max_months"), [(0, 12), (-1, 12), (13, 12), (4, 3)])
    def test_months_outside_what_the_plan_allows_are_rejected(
        self, months: int, max_months: int
    ) -> None:
        with pytest.raises(MonthsOutOfRange, match=f"between 1 and {max_months}") as caught:
            quote(plan(max_months=max_months), months, now=NOW)
        assert caught.value.status_code == 422

    def test_naive_now_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            quote(plan(), 1, now=datetime(2026, 3, 1))


class TestQuoteMonthsTier:
    @pytest.mark.parametrize(
        ("months", "percent"), [(1, 0), (2, 0), (3, 10), (5, 10), (6, 15), (11, 15), (12, 20)]
    )
    def test_the_largest_tier_reached_applies(self, months: int, percent: int) -> None:
        result = quote(plan(), months, now=NOW, tiers=TIERS[::-1])

        assert percent_of(candidate(result, "months_tier")) == percent
        assert percent_of(result.applied) == percent

    def test_tier_alone_is_shown_but_applies_only_as_the_combination(self) -> None:
        result = quote(plan(), 6, now=NOW, tiers=TIERS)

        assert result.candidates == (
            Candidate("months_tier", 15, 9_000, "6+ months tier: 15%", applicable=False),
            Candidate("tiers_and_personal", 15, 9_000, "months tier 15%", applicable=True),
        )
        assert result.applied == result.candidates[1]
        assert (result.discount_amount, result.total) == (9_000, 51_000)


class TestQuotePersonalDiscount:
    def test_personal_discount_adds_to_the_months_tier(self) -> None:
        result = quote(plan(), 3, now=NOW, tiers=TIERS, personal_percent=5)

        assert [(c.source, c.percent, c.amount, c.applicable) for c in result.candidates] == [
            ("months_tier", 10, 3_000, False),
            ("personal", 5, 1_500, False),
            ("tiers_and_personal", 15, 4_500, True),
        ]
        assert result.total == 25_500

    @pytest.mark.parametrize(
        ("personal", "cap", "percent"), [(40, 50, 50), (45, 50, 50), (39, 50, 49), (40, 30, 30)]
    )
    def test_combination_is_capped_at_the_maximum_total_percent(
        self, personal: int, cap: int, percent: int
    ) -> None:
        result = quote(
            plan(), 3, now=NOW, tiers=TIERS, personal_percent=personal, max_total_percent=cap
        )

        assert result.applied is not None
        assert result.applied.percent == percent
        assert result.total == 30_000 - 300 * percent

    def test_capped_combination_says_so(self) -> None:
        result = quote(plan(), 12, now=NOW, tiers=TIERS, personal_percent=40)

        assert result.applied is not None
        assert result.applied.detail == "months tier 20% + personal 40% = 60%, capped at 50%"

    def test_personal_discount_applies_without_any_tier(self) -> None:
        result = quote(plan(), 1, now=NOW, personal_percent=7)

        assert [c.source for c in result.candidates] == ["personal", "tiers_and_personal"]
        assert result.total == 9_300

    @pytest.mark.parametrize("personal", [None, 0])
    def test_no_personal_discount_adds_no_candidate(self, personal: int | None) -> None:
        result = quote(plan(), 1, now=NOW, personal_percent=personal)

        assert result.candidates == ()
        assert result.total == 10_000


class TestQuotePromoCode:
    def test_percent_promo_beats_a_smaller_combination(self) -> None:
        result = quote(plan(), 3, now=NOW, tiers=TIERS, personal_percent=5, promo=promo())

        assert result.applied == Candidate("promo", 20, 6_000, "promo code SPRING: 20%", True)
        assert result.total == 24_000

    def test_promo_never_stacks_with_a_larger_combination(self) -> None:
        result = quote(plan(), 12, now=NOW, tiers=TIERS, personal_percent=10, promo=promo())

        assert result.applied is not None
        assert result.applied.source == "tiers_and_personal"
        assert result.discount_amount == 36_000  # 30 %, not 30 % + 20 %

    def test_tie_goes_to_the_combination_so_no_redemption_is_used(self) -> None:
        result = quote(plan(), 12, now=NOW, tiers=TIERS, promo=promo(percent=20))

        assert result.applied is not None
        assert result.applied.source == "tiers_and_personal"
        assert candidate(result, "promo") is not None

    def test_fixed_promo_takes_its_amount_off_the_whole_purchase(self) -> None:
        result = quote(plan(), 2, now=NOW, promo=fixed_promo(2_550))

        assert result.applied == Candidate(
            "promo", None, 2_550, "promo code SPRING: 25.50 RUB off", applicable=True
        )
        assert result.total == 17_450

    def test_fixed_promo_larger_than_the_price_makes_it_free_not_negative(self) -> None:
        result = quote(plan(), 1, now=NOW, promo=fixed_promo(50_000))

        assert result.applied is not None
        assert (result.applied.amount, result.discount_amount, result.total) == (10_000, 10_000, 0)
        assert result.applied.detail.endswith(", limited to the price")

    def test_promo_that_rounds_to_nothing_is_not_applied(self) -> None:
        result = quote(plan(price=2), 1, now=NOW, promo=promo(percent=20))  # 0.4 -> 0

        assert candidate(result, "promo") is not None
        assert result.applied is None
        assert result.total == 2


class TestQuoteRounding:
    @pytest.mark.parametrize(
        ("price", "months", "percent", "discount"),
        [
            (10, 1, 5, 1),  # 0.5 rounds up
            (9, 1, 5, 0),  # 0.45 rounds down
            (1, 1, 50, 1),  # 0.5 rounds up: a 1-kopeck plan at 50 % is free
            (3, 3, 50, 5),  # 4.5 of the whole base, not 2 x 3 taken per month
            (29_900, 1, 15, 4_485),
            (29_999, 1, 10, 3_000),  # 2999.9
        ],
    )
    def test_percent_discounts_round_half_up_on_the_whole_base(
        self, price: int, months: int, percent: int, discount: int
    ) -> None:
        base = price * months
        by_personal = quote(plan(price), months, now=NOW, personal_percent=percent)
        by_promo = quote(plan(price), months, now=NOW, promo=promo(percent=percent))

        for result in (by_personal, by_promo):
            assert (result.discount_amount, result.total) == (discount, base - discount)


class TestQuotePromoValidation:
    @pytest.mark.parametrize(
        ("changes", "error", "status"),
        [
            ({"active": False}, PromoCodeInactive, 422),
            ({"valid_from": NOW + timedelta(seconds=1)}, PromoCodeNotYetValid, 422),
            ({"valid_until": NOW}, PromoCodeExpired, 422),
            ({"valid_until": NOW - timedelta(days=1)}, PromoCodeExpired, 422),
            ({"max_redemptions": 5, "redemptions": 5}, PromoCodeExhausted, 409),
            ({"used_by_user": True}, PromoCodeAlreadyUsed, 409),
            ({"plan_id": OTHER_PLAN_ID}, PromoCodeNotForPlan, 422),
            ({"kind": "fixed", "percent": None, "amount": 100, "currency": "USD"},
             PromoCodeCurrencyMismatch, 422),
        ],
    )  # fmt: skip
    def test_unusable_code_is_rejected_with_the_reason(
        self, changes: dict[str, Any], error: type[AppError], status: int
    ) -> None:
        with pytest.raises(error, match="SPRING") as caught:
            quote(plan(), 1, now=NOW, promo=promo(**changes))
        assert caught.value.status_code == status

    @pytest.mark.parametrize(
        "changes",
        [
            {"valid_from": NOW, "valid_until": NOW + timedelta(microseconds=1)},
            {"max_redemptions": 5, "redemptions": 4},
            {"plan_id": PLAN_ID},
            {"kind": "fixed", "percent": None, "amount": 100, "currency": "RUB"},
        ],
    )
    def test_code_within_its_limits_is_accepted(self, changes: dict[str, Any]) -> None:
        result = quote(plan(), 1, now=NOW, promo=promo(**changes))

        assert result.applied is not None
        assert result.applied.source == "promo"

    def test_unusable_code_is_rejected_even_when_tiers_would_win(self) -> None:
        with pytest.raises(PromoCodeExpired):
            quote(plan(), 12, now=NOW, tiers=TIERS, promo=promo(percent=1, valid_until=NOW))

    def test_switched_off_is_reported_before_other_reasons(self) -> None:
        with pytest.raises(PromoCodeInactive):
            quote(plan(), 1, now=NOW, promo=promo(active=False, valid_until=NOW, used_by_user=True))

    def test_unknown_code_is_bad_input_to_the_quote(self) -> None:
        error = PromoCodeNotFound()

        assert (error.status_code, error.detail, error.name) == (
            422,
            "unknown promo code",
            "PromoCodeNotFound",
        )


class TestQuoteToJson:
    def test_snapshot_holds_every_candidate_and_survives_json(self) -> None:
        result = quote(plan(), 3, now=NOW, tiers=TIERS, personal_percent=5, promo=promo())

        snapshot = result.to_json()

        assert json.loads(json.dumps(snapshot)) == snapshot
        assert snapshot["total"] == 24_000
        assert snapshot["discount_amount"] == 6_000
        assert snapshot["applied"] == {
            "source": "promo",
            "percent": 20,
            "amount": 6_000,
            "detail": "promo code SPRING: 20%",
            "applicable": True,
        }
        sources = [c["source"] for c in snapshot["candidates"]]
        assert sources == ["months_tier", "personal", "tiers_and_personal", "promo"]

    def test_snapshot_without_discount_has_no_applied_candidate(self) -> None:
        assert quote(plan(), 1, now=NOW).to_json() == {
            "base_amount": 10_000,
            "currency": "RUB",
            "months": 1,
            "candidates": [],
            "applied": None,
            "discount_amount": 0,
            "total": 10_000,
        }


class TestQuoteOut:
    def test_every_amount_is_money_in_the_plan_currency(self) -> None:
        result = quote(plan(currency="JPY"), 3, now=NOW, tiers=TIERS)

        body = quote_out(PLAN_ID, result).model_dump(mode="json")

        assert body["plan_id"] == str(PLAN_ID)
        assert body["base"] == {"amount": 30_000, "currency": "JPY"}
        assert body["discount"] == {"amount": 3_000, "currency": "JPY"}
        assert body["total"] == {"amount": 27_000, "currency": "JPY"}
        assert body["applied"]["amount"] == {"amount": 3_000, "currency": "JPY"}
        assert [c["source"] for c in body["candidates"]] == ["months_tier", "tiers_and_personal"]
        assert (body["months"], body["currency"]) == (3, "JPY")

    def test_no_discount_shows_null_applied_and_zero_discount(self) -> None:
        body = quote_out(PLAN_ID, quote(plan(), 1, now=NOW)).model_dump(mode="json")

        assert body["applied"] is None
        assert body["discount"] == {"amount": 0, "currency": "RUB"}


# --- properties ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setup:
    """One user's discounts for one plan; ``quote(months)`` prices it."""

    plan: PlanPrice
    tiers: tuple[Tier, ...]
    personal_percent: int | None
    promo: Promo | None
    max_total_percent: int

    def quote(self, months: int) -> Quote:
        return quote(
            self.plan,
            months,
            now=NOW,
            tiers=self.tiers,
            personal_percent=self.personal_percent,
            promo=self.promo,
            max_total_percent=self.max_total_percent,
        )


@st.composite
def sane_tiers(draw: st.DrawFn) -> tuple[Tier, ...]:
    """Tiers whose percent grows with ``min_months``, as an admin would set them up."""
    thresholds = draw(st.lists(st.integers(1, 12), unique=True, max_size=4))
    percents = draw(st.lists(st.integers(1, 100), min_size=len(thresholds), max_size=4))
    pairs = zip(sorted(thresholds), sorted(percents[: len(thresholds)]), strict=True)
    return tuple(Tier(min_months, percent) for min_months, percent in pairs)


@st.composite
def setups(draw: st.DrawFn, *, promos: bool = True) -> Setup:
    currency = draw(st.sampled_from(["RUB", "JPY", "KWD"]))
    price_plan = plan(draw(st.integers(0, 10**7)), currency=currency)
    percent_promo = st.builds(promo, percent=st.integers(1, 100))
    fixed = st.builds(fixed_promo, st.integers(1, 10**8), currency=st.just(currency))
    return Setup(
        plan=price_plan,
        tiers=draw(sane_tiers()),
        personal_percent=draw(st.none() | st.integers(0, 100)),
        promo=draw(st.none() | percent_promo | fixed) if promos else None,
        max_total_percent=draw(st.integers(0, 100)),
    )


def combined_percent(result: Quote) -> int:
    return percent_of(candidate(result, "tiers_and_personal"))


months = st.integers(1, 12)


class TestQuoteProperties:
    @given(setups(), months)
    def test_total_is_base_minus_discount_within_zero_and_base(self, setup: Setup, m: int) -> None:
        result = setup.quote(m)

        assert 0 <= result.total <= result.base_amount == setup.plan.price * m
        assert result.total == result.base_amount - result.discount_amount

    @given(setups(), months)
    def test_discount_is_the_larger_candidate_never_the_sum(self, setup: Setup, m: int) -> None:
        result = setup.quote(m)

        contenders = [c for c in result.candidates if c.applicable]
        assert {c.source for c in contenders} <= {"tiers_and_personal", "promo"}
        assert result.discount_amount == max((c.amount for c in contenders), default=0)
        assert result.applied is None or result.applied in contenders
        assert (result.applied is None) == (result.discount_amount == 0)

    @given(setups(), months, months)
    def test_buying_more_months_never_lowers_the_discount(
        self, setup: Setup, m: int, more: int
    ) -> None:
        fewer, longer = setup.quote(min(m, more)), setup.quote(max(m, more))

        assert combined_percent(longer) >= combined_percent(fewer)
        assert longer.discount_amount >= fewer.discount_amount

    @given(setups(promos=False), months, months)
    def test_applied_percent_never_decreases_with_months(
        self, setup: Setup, m: int, more: int
    ) -> None:
        fewer, longer = setup.quote(min(m, more)), setup.quote(max(m, more))

        assert percent_of(longer.applied) >= percent_of(fewer.applied)

    @given(setups(), st.integers(1, 11))
    def test_total_grows_with_months_while_the_combined_percent_stays(
        self, setup: Setup, m: int
    ) -> None:
        shorter, longer = setup.quote(m), setup.quote(m + 1)

        if combined_percent(shorter) == combined_percent(longer):
            assert longer.total >= shorter.total

    def test_total_may_drop_when_a_tier_threshold_is_crossed(self) -> None:
        setup = Setup(plan(100), (Tier(3, 50),), None, None, max_total_percent=50)

        assert [setup.quote(m).total for m in (1, 2, 3, 4)] == [100, 200, 150, 200]
