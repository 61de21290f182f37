from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_api.refunds.policy import POLICIES, RefundQuote, quote_refund

PAID_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
START = PAID_AT
END = START + timedelta(days=30)


def quote(
    *,
    after: timedelta,
    paid: int = 30000,
    policy: str = "window_then_prorata",
    window_minutes: int = 60,
    already_refunded: int = 0,
    override_window: bool = False,
    period: bool = True,
) -> RefundQuote:
    return quote_refund(
        paid=paid,
        paid_at=PAID_AT,
        now=PAID_AT + after,
        period_start=START if period else None,
        period_end=END if period else None,
        policy=policy,
        window_minutes=window_minutes,
        already_refunded=already_refunded,
        override_window=override_window,
    )


class TestWindow:
    @pytest.mark.parametrize("policy", ["window_then_prorata", "window_only"])
    def test_refund_within_the_window_is_full(self, policy: str) -> None:
        assert quote(after=timedelta(minutes=30), policy=policy) == RefundQuote(
            30000, "full refund within 60 minutes of payment"
        )

    def test_window_ends_exactly_window_minutes_after_payment(self) -> None:
        assert quote(after=timedelta(minutes=59, seconds=59)).amount == 30000
        assert quote(after=timedelta(minutes=60), policy="window_only").amount == 0

    def test_full_refund_subtracts_what_was_refunded_already(self) -> None:
        assert quote(after=timedelta(minutes=1), already_refunded=10000).amount == 20000

    def test_window_only_after_the_window_gives_nothing(self) -> None:
        assert quote(after=timedelta(hours=2), policy="window_only") == RefundQuote(
            0, "refund window closed"
        )

    def test_a_payment_without_a_current_period_gets_only_the_window(self) -> None:
        assert quote(after=timedelta(days=3), period=False) == RefundQuote(
            0, "refund window closed"
        )

    def test_zero_minute_window_means_no_window(self) -> None:
        assert quote(after=timedelta(0), window_minutes=0).rule == "unused 29 of 30 days"


class TestProrata:
    @pytest.mark.parametrize(
        ("after", "amount", "rule"),
        [
            (timedelta(hours=2), 30000 * 29 // 30, "unused 29 of 30 days"),  # day 1 is used
            (timedelta(days=1, hours=1), 30000 * 28 // 30, "unused 28 of 30 days"),
            (timedelta(days=9, hours=5), 30000 * 20 // 30, "unused 20 of 30 days"),  # day 10
            (timedelta(days=29, hours=23), 0, "unused 0 of 30 days"),
            (timedelta(days=45), 0, "unused 0 of 30 days"),  # past the end
        ],
    )
    def test_refund_after_window_is_prorated_by_unused_days(
        self, after: timedelta, amount: int, rule: str
    ) -> None:
        assert quote(after=after) == RefundQuote(amount, rule)

    def test_prorated_amount_rounds_down(self) -> None:
        # 29900 * 20 / 30 = 19933.33… → 19933: never more than was paid
        assert quote(after=timedelta(days=9, hours=5), paid=29900).amount == 19933

    def test_prorated_refund_subtracts_what_was_refunded_already(self) -> None:
        assert quote(after=timedelta(days=9, hours=5), already_refunded=5000).amount == 15000

    def test_prorated_share_already_refunded_leaves_nothing(self) -> None:
        assert quote(after=timedelta(days=9, hours=5), already_refunded=25000) == RefundQuote(
            0, "already refunded"
        )

    def test_days_before_a_renewed_period_starts_are_not_used(self) -> None:
        early = quote_refund(
            paid=30000,
            paid_at=START - timedelta(days=2),
            now=START - timedelta(hours=3),
            period_start=START,
            period_end=END,
            policy="window_then_prorata",
            window_minutes=60,
        )
        assert early == RefundQuote(30000, "unused 30 of 30 days")


class TestNotRefundable:
    @pytest.mark.parametrize("after", [timedelta(0), timedelta(minutes=5), timedelta(days=3)])
    def test_policy_none_never_refunds_even_inside_the_window(self, after: timedelta) -> None:
        assert quote(after=after, policy="none") == RefundQuote(0, "plan is not refundable")

    def test_unknown_policy_is_a_bug(self) -> None:
        with pytest.raises(ValueError):
            quote(after=timedelta(0), policy="sometimes")


class TestOverride:
    @pytest.mark.parametrize("policy", POLICIES)
    def test_admin_override_refunds_everything_left(self, policy: str) -> None:
        result = quote(
            after=timedelta(days=20), policy=policy, already_refunded=1000, override_window=True
        )
        assert result.amount == 29000
        assert "overridden" in result.rule


moments = st.timedeltas(min_value=timedelta(days=-3), max_value=timedelta(days=400))


@st.composite
def payments(draw: st.DrawFn) -> tuple[int, int]:
    paid = draw(st.integers(min_value=0, max_value=10**13))
    return paid, draw(st.integers(min_value=0, max_value=paid))


class TestProperties:
    @given(
        payment=payments(),
        since_payment=moments,
        period_offset=moments,
        period_days=st.integers(min_value=0, max_value=400),
        policy=st.sampled_from(POLICIES),
        window_minutes=st.integers(min_value=0, max_value=10_000),
        override_window=st.booleans(),
        has_period=st.booleans(),
    )
    def test_never_below_zero_and_never_more_than_is_left(
        self,
        payment: tuple[int, int],
        since_payment: timedelta,
        period_offset: timedelta,
        period_days: int,
        policy: str,
        window_minutes: int,
        override_window: bool,
        has_period: bool,
    ) -> None:
        paid, already_refunded = payment
        start = PAID_AT + period_offset
        result = quote_refund(
            paid=paid,
            paid_at=PAID_AT,
            now=PAID_AT + since_payment,
            period_start=start if has_period else None,
            period_end=start + timedelta(days=period_days) if has_period else None,
            policy=policy,
            window_minutes=window_minutes,
            already_refunded=already_refunded,
            override_window=override_window,
        )
        assert 0 <= result.amount <= paid - already_refunded
        assert result.rule

    @given(
        paid=st.integers(min_value=0, max_value=10**13),
        day=st.integers(min_value=0, max_value=40),
    )
    def test_later_days_never_refund_more(self, paid: int, day: int) -> None:
        def on(days: int) -> int:
            return quote(after=timedelta(days=days, hours=2), paid=paid).amount

        assert on(day + 1) <= on(day)
