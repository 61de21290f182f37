from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from shared.money import (
    CURRENCY_EXPONENTS,
    MAX_AMOUNT,
    Amount,
    CurrencyMismatch,
    Money,
    SignedAmount,
    UnknownCurrency,
    apply_discount,
    basis_points_half_up,
    exponent,
    format_minor_units,
    percent_half_up,
    prorata_floor,
    to_minor_units,
)

amounts = st.integers(min_value=0, max_value=MAX_AMOUNT)
codes = st.sampled_from(sorted(CURRENCY_EXPONENTS))


def rub(amount: int) -> Money:
    return Money(amount=amount, currency="RUB")


class TestExponent:
    @pytest.mark.parametrize(
        ("currency", "expected"),
        [("JPY", 0), ("KRW", 0), ("RUB", 2), ("USD", 2), ("KZT", 2), ("KWD", 3), ("CLF", 4)],
    )
    def test_known_currency_has_its_iso_exponent(self, currency: str, expected: int) -> None:
        assert exponent(currency) == expected

    @pytest.mark.parametrize("currency", ["XXX", "rub", "RUBX", "", "XAU"])
    def test_unknown_or_miswritten_code_is_rejected(self, currency: str) -> None:
        with pytest.raises(UnknownCurrency, match="ISO 4217"):
            exponent(currency)

    def test_table_holds_only_uppercase_three_letter_codes_with_iso_exponents(self) -> None:
        assert len(CURRENCY_EXPONENTS) > 150
        assert all(len(c) == 3 and c.isascii() and c.isupper() for c in CURRENCY_EXPONENTS)
        assert set(CURRENCY_EXPONENTS.values()) == {0, 2, 3, 4}
        assert {"RUB", "USD", "EUR", "GBP", "KZT", "BYN", "AMD", "CNY"} <= set(CURRENCY_EXPONENTS)


class TestPercentHalfUp:
    @pytest.mark.parametrize(
        ("amount", "percent", "expected"),
        [
            (10, 5, 1),  # 0.5 rounds up
            (9, 5, 0),  # 0.45 rounds down
            (1, 50, 1),  # 0.5 rounds up
            (100, 33, 33),
            (29900, 15, 4485),
            (29999, 10, 3000),  # 2999.9
            (0, 100, 0),
            (12345, 0, 0),
            (12345, 100, 12345),
        ],
    )
    def test_share_is_rounded_half_up(self, amount: int, percent: int, expected: int) -> None:
        assert percent_half_up(amount, percent) == expected

    @pytest.mark.parametrize(("amount", "percent"), [(100, -1), (100, 101), (-1, 10)])
    def test_out_of_range_arguments_are_rejected(self, amount: int, percent: int) -> None:
        with pytest.raises(ValueError):
            percent_half_up(amount, percent)

    @pytest.mark.parametrize(("amount", "percent"), [(10.0, 5), (10, 5.0), (True, 5)])
    def test_non_int_arguments_are_rejected(self, amount: Any, percent: Any) -> None:
        with pytest.raises(TypeError):
            percent_half_up(amount, percent)

    @given(amount=amounts, percent=st.integers(0, 100))
    def test_share_never_exceeds_amount(self, amount: int, percent: int) -> None:
        assert 0 <= percent_half_up(amount, percent) <= amount

    @given(amount=amounts, percent=st.integers(0, 100))
    def test_share_is_within_half_a_minor_unit_of_exact_value(
        self, amount: int, percent: int
    ) -> None:
        exact_times_200 = amount * percent * 2
        assert -100 < percent_half_up(amount, percent) * 200 - exact_times_200 <= 100


class TestBasisPointsHalfUp:
    @pytest.mark.parametrize(
        ("amount", "bps", "expected"),
        [(10000, 1, 1), (5000, 1, 1), (4999, 1, 0), (29900, 1250, 3738), (100, 10000, 100)],
    )
    def test_share_is_rounded_half_up(self, amount: int, bps: int, expected: int) -> None:
        assert basis_points_half_up(amount, bps) == expected

    @pytest.mark.parametrize("bps", [-1, 10001])
    def test_out_of_range_basis_points_are_rejected(self, bps: int) -> None:
        with pytest.raises(ValueError):
            basis_points_half_up(100, bps)

    @given(amount=amounts, percent=st.integers(0, 100))
    def test_whole_percent_in_basis_points_matches_percent(self, amount: int, percent: int) -> None:
        assert basis_points_half_up(amount, percent * 100) == percent_half_up(amount, percent)


class TestProrataFloor:
    @pytest.mark.parametrize(
        ("amount", "numerator", "denominator", "expected"),
        [
            (29900, 15, 30, 14950),
            (29900, 1, 3, 9966),  # 9966.67 rounds down
            (100, 2, 3, 66),  # 66.67 rounds down, never up
            (100, 0, 30, 0),
            (100, 30, 30, 100),
            (1, 29, 30, 0),
        ],
    )
    def test_share_is_rounded_down(
        self, amount: int, numerator: int, denominator: int, expected: int
    ) -> None:
        assert prorata_floor(amount, numerator, denominator) == expected

    @pytest.mark.parametrize(
        ("amount", "numerator", "denominator"), [(100, 1, 0), (100, -1, 3), (100, 4, 3), (-1, 1, 2)]
    )
    def test_invalid_fraction_or_amount_is_rejected(
        self, amount: int, numerator: int, denominator: int
    ) -> None:
        with pytest.raises(ValueError):
            prorata_floor(amount, numerator, denominator)

    @given(amount=amounts, data=st.data())
    def test_refund_never_exceeds_amount_and_grows_with_numerator(
        self, amount: int, data: st.DataObject
    ) -> None:
        denominator = data.draw(st.integers(1, 10_000))
        low = data.draw(st.integers(0, denominator))
        high = data.draw(st.integers(low, denominator))
        assert (
            0 <= prorata_floor(amount, low, denominator) <= prorata_floor(amount, high, denominator)
        )
        assert prorata_floor(amount, high, denominator) <= amount
        assert prorata_floor(amount, denominator, denominator) == amount


class TestApplyDiscount:
    @pytest.mark.parametrize(
        ("amount", "discount", "expected"), [(29900, 4485, 25415), (100, 100, 0), (100, 250, 0)]
    )
    def test_discount_is_subtracted_but_never_below_zero(
        self, amount: int, discount: int, expected: int
    ) -> None:
        assert apply_discount(amount, discount) == expected

    def test_negative_discount_is_rejected(self) -> None:
        with pytest.raises(ValueError):
            apply_discount(100, -1)


class TestToMinorUnits:
    @pytest.mark.parametrize(
        ("major", "currency", "expected"),
        [
            ("299.90", "RUB", 29990),
            ("299.9", "RUB", 29990),
            ("299", "RUB", 29900),
            ("0.01", "USD", 1),
            ("500", "JPY", 500),
            ("1.234", "KWD", 1234),
            ("-1.50", "EUR", -150),
            ("1.0001", "CLF", 10001),
        ],
    )
    def test_decimal_string_is_parsed_exactly(
        self, major: str, currency: str, expected: int
    ) -> None:
        assert to_minor_units(major, currency) == expected

    @pytest.mark.parametrize(
        ("major", "currency"), [("299.901", "RUB"), ("500.0", "JPY"), ("1.2345", "KWD")]
    )
    def test_more_decimals_than_the_currency_has_are_rejected(
        self, major: str, currency: str
    ) -> None:
        with pytest.raises(ValueError, match="decimal digits"):
            to_minor_units(major, currency)

    @pytest.mark.parametrize("major", ["", "1.", ".5", "+1", " 1", "1,50", "1e3", "abc", "١٢"])
    def test_malformed_string_is_rejected(self, major: str) -> None:
        with pytest.raises(ValueError):
            to_minor_units(major, "RUB")

    @pytest.mark.parametrize("major", [299.9, 299, Decimal("299.90"), None])
    def test_non_string_is_rejected(self, major: Any) -> None:
        with pytest.raises(TypeError):
            to_minor_units(major, "RUB")

    def test_unknown_currency_is_rejected(self) -> None:
        with pytest.raises(UnknownCurrency):
            to_minor_units("1.00", "rub")


class TestFormatMinorUnits:
    @pytest.mark.parametrize(
        ("amount", "currency", "expected"),
        [
            (29990, "RUB", "299.90"),
            (5, "RUB", "0.05"),
            (0, "USD", "0.00"),
            (500, "JPY", "500"),
            (1234, "KWD", "1.234"),
            (-150, "EUR", "-1.50"),
            (-5, "RUB", "-0.05"),
            (10001, "CLF", "1.0001"),
        ],
    )
    def test_amount_is_written_in_major_units(
        self, amount: int, currency: str, expected: str
    ) -> None:
        assert format_minor_units(amount, currency) == expected

    @given(amount=st.integers(-MAX_AMOUNT, MAX_AMOUNT), currency=codes)
    def test_parsing_the_formatted_amount_gives_it_back_in_every_currency(
        self, amount: int, currency: str
    ) -> None:
        assert to_minor_units(format_minor_units(amount, currency), currency) == amount

    @pytest.mark.parametrize("currency", sorted(CURRENCY_EXPONENTS))
    def test_round_trip_holds_for_each_currency_in_the_table(self, currency: str) -> None:
        for amount in (0, 1, 99, 10 ** exponent(currency) + 7, -12345, MAX_AMOUNT):
            assert to_minor_units(format_minor_units(amount, currency), currency) == amount


class TestMoneyValidation:
    @pytest.mark.parametrize("amount", [True, 1.5, "10", 10.0, -1, MAX_AMOUNT + 1, None])
    def test_non_int_or_out_of_range_amount_is_rejected(self, amount: Any) -> None:
        with pytest.raises(ValidationError):
            Money.model_validate({"amount": amount, "currency": "RUB"})

    @pytest.mark.parametrize("amount", ["true", "1.5", '"10"', "10.0", "-1", "1e3", "null"])
    def test_non_int_or_negative_amount_in_json_is_rejected(self, amount: str) -> None:
        with pytest.raises(ValidationError):
            Money.model_validate_json(f'{{"amount": {amount}, "currency": "RUB"}}')

    @pytest.mark.parametrize("currency", ["XXX", "rub", "RUBX", "RU", "", 643, None])
    def test_unknown_or_miswritten_currency_is_rejected(self, currency: Any) -> None:
        with pytest.raises(ValidationError):
            Money.model_validate({"amount": 100, "currency": currency})

    def test_lowercase_code_error_names_it_as_unknown_iso_code(self) -> None:
        with pytest.raises(ValidationError, match=r"'rub' is not a known ISO 4217 currency code"):
            Money.model_validate_json('{"amount": 100, "currency": "rub"}')

    def test_valid_json_round_trips(self) -> None:
        money = Money.model_validate_json('{"amount": 29900, "currency": "RUB"}')
        assert money == rub(29900)
        assert money.model_dump_json() == '{"amount":29900,"currency":"RUB"}'

    def test_extra_fields_are_rejected(self) -> None:
        with pytest.raises(ValidationError):
            Money.model_validate({"amount": 1, "currency": "RUB", "note": "x"})

    def test_money_is_frozen_and_hashable(self) -> None:
        money = rub(100)
        with pytest.raises(ValidationError):
            money.amount = 5  # type: ignore[misc]
        assert {money, rub(100)} == {rub(100)}


class TestAmountTypes:
    def test_amount_accepts_zero_and_the_maximum(self) -> None:
        adapter = TypeAdapter(Amount)
        assert adapter.validate_python(0) == 0
        assert adapter.validate_json(str(MAX_AMOUNT)) == MAX_AMOUNT

    @pytest.mark.parametrize("value", [-MAX_AMOUNT, -1, 0, MAX_AMOUNT])
    def test_signed_amount_accepts_negative_values_within_bounds(self, value: int) -> None:
        assert TypeAdapter(SignedAmount).validate_python(value) == value

    @pytest.mark.parametrize("value", [-MAX_AMOUNT - 1, True, 1.0, "-5"])
    def test_signed_amount_rejects_non_int_or_out_of_bounds(self, value: Any) -> None:
        with pytest.raises(ValidationError):
            TypeAdapter(SignedAmount).validate_python(value)


class TestMoneyZero:
    def test_zero_has_no_amount_in_the_given_currency(self) -> None:
        assert Money.zero("JPY") == Money(amount=0, currency="JPY")

    def test_zero_in_unknown_currency_is_rejected(self) -> None:
        with pytest.raises(ValidationError):
            Money.zero("XXX")


class TestMoneyAdd:
    def test_same_currency_amounts_are_summed(self) -> None:
        assert rub(29900) + rub(100) == rub(30000)

    def test_different_currencies_cannot_be_added(self) -> None:
        with pytest.raises(CurrencyMismatch):
            rub(100) + Money(amount=100, currency="USD")

    def test_sum_above_the_maximum_is_rejected(self) -> None:
        with pytest.raises(ValueError):
            rub(MAX_AMOUNT) + rub(1)


class TestMoneySubtract:
    def test_same_currency_amounts_are_subtracted(self) -> None:
        assert rub(29900) - rub(4485) == rub(25415)

    def test_result_below_zero_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            rub(100) - rub(101)

    def test_different_currencies_cannot_be_subtracted(self) -> None:
        with pytest.raises(CurrencyMismatch):
            rub(100) - Money(amount=1, currency="EUR")


class TestMoneyCompare:
    def test_same_currency_amounts_are_ordered(self) -> None:
        assert rub(1) < rub(2) <= rub(2) < rub(3)
        assert rub(3) > rub(2) >= rub(2)
        assert max(rub(5), rub(7), rub(6)) == rub(7)

    def test_different_currencies_cannot_be_compared(self) -> None:
        with pytest.raises(CurrencyMismatch):
            _ = rub(1) < Money(amount=2, currency="USD")

    def test_equal_amounts_in_different_currencies_are_not_equal(self) -> None:
        assert rub(100) != Money(amount=100, currency="USD")


class TestMoneyPercent:
    def test_discount_share_is_rounded_half_up(self) -> None:
        assert Money(amount=10, currency="JPY").percent(5) == Money(amount=1, currency="JPY")
        assert rub(9).percent(5) == rub(0)


class TestMoneyProrata:
    def test_refund_share_is_rounded_down(self) -> None:
        assert rub(29900).prorata(1, 3) == rub(9966)

    @given(amount=amounts, days=st.integers(0, 30))
    def test_refund_never_exceeds_the_payment(self, amount: int, days: int) -> None:
        assert rub(amount).prorata(days, 30) <= rub(amount)


class TestMoneyStr:
    @pytest.mark.parametrize(
        ("money", "expected"),
        [
            (Money(amount=29900, currency="RUB"), "299.00 RUB"),
            (Money(amount=500, currency="JPY"), "500 JPY"),
            (Money(amount=1234, currency="KWD"), "1.234 KWD"),
            (Money(amount=7, currency="USD"), "0.07 USD"),
        ],
    )
    def test_money_is_shown_in_major_units_with_its_code(self, money: Money, expected: str) -> None:
        assert str(money) == expected
        assert money.major_units_str() == expected.split()[0]
