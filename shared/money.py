"""Money as an integer amount of minor units plus an ISO 4217 currency code.

``{"amount": 29900, "currency": "RUB"}`` is 299.00 roubles. Values are never floats and never
``Decimal``: amounts are ``int``, and decimal strings are parsed and formatted digit by digit.

Rounding rules (the one place they are stated; every helper below follows them):

* Discounts round **half up**: 5 % of 10 minor units is 1 (0.5 rounds up), 5 % of 9 is 0 (0.45).
* Refunds and pro-rata shares round **down** (floor): we never refund more than was paid.
* A discount never takes a price below zero.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, WithJsonSchema

MAX_AMOUNT = 10**13
"""Largest amount of minor units we accept (10^11 roubles): far above any real charge."""

# ISO 4217 list one (published 2026-01-01), grouped by minor-unit exponent. Codes whose minor unit
# is "N.A." (metals XAU/XAG/XPT/XPD, XDR, XSU, XUA, bond units XBA-XBD, XTS, XXX) are not money we
# bill in and are left out; withdrawn codes (ANG, BGN, CUC, HRK, SLL, ZWL, ...) are left out too.
_CODES_BY_EXPONENT = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: """
        AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
        CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
        GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK
        LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO
        NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS
        SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST
        XAD XCD XCG YER ZAR ZMW ZWG
    """,
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}
CURRENCY_EXPONENTS: Mapping[str, int] = MappingProxyType(
    {code: exp for exp, codes in _CODES_BY_EXPONENT.items() for code in codes.split()}
)
"""Every accepted ISO 4217 code -> number of decimal digits of its minor unit (JPY 0, RUB 2)."""

_DECIMAL = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")


class UnknownCurrency(ValueError):
    """The code is not an active ISO 4217 currency code (codes are case-sensitive: "RUB")."""


class CurrencyMismatch(ValueError):
    """Two amounts in different currencies were combined or compared."""


def exponent(currency: str) -> int:
    """Number of decimal digits of ``currency``'s minor unit: JPY 0, RUB 2, KWD 3."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise UnknownCurrency(f"{currency!r} is not a known ISO 4217 currency code") from None


def _check_int(name: str, value: int, low: int | None = None, high: int | None = None) -> None:
    if type(value) is not int:  # bool is an int subclass, and a float here is always a bug
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")


def basis_points_half_up(amount: int, bps: int) -> int:
    """``amount * bps / 10000`` rounded half up (a discount); 0 <= bps <= 10000, amount >= 0."""
    _check_int("amount", amount, 0)
    _check_int("bps", bps, 0, 10_000)
    return (amount * bps + 5_000) // 10_000


def percent_half_up(amount: int, percent: int) -> int:
    """``amount * percent / 100`` rounded half up (a discount); 0 <= percent <= 100, amount >= 0."""
    _check_int("percent", percent, 0, 100)
    return basis_points_half_up(amount, percent * 100)


def prorata_floor(amount: int, numerator: int, denominator: int) -> int:
    """``amount * numerator / denominator`` rounded down, so a refund never exceeds the payment.

    Requires amount >= 0, denominator > 0 and 0 <= numerator <= denominator.
    """
    _check_int("amount", amount, 0)
    _check_int("denominator", denominator, 1)
    _check_int("numerator", numerator, 0, denominator)
    return amount * numerator // denominator


def apply_discount(amount: int, discount: int) -> int:
    """The price after taking ``discount`` off ``amount``, never below zero (both >= 0)."""
    _check_int("amount", amount, 0)
    _check_int("discount", discount, 0)
    return max(0, amount - discount)


def to_minor_units(major: str, currency: str) -> int:
    """Parse a decimal string of major units exactly: ``("299.90", "RUB") -> 29990``.

    Accepts ``[-]digits[.digits]`` with at most ``exponent(currency)`` fractional digits; anything
    else (floats, more precision than the currency has, signs, spaces) is rejected.
    """
    if not isinstance(major, str):
        raise TypeError(f"major units must be a decimal string, got {type(major).__name__}")
    exp = exponent(currency)
    match = _DECIMAL.fullmatch(major)
    if match is None:
        raise ValueError(f"{major!r} is not a decimal amount like '299.90'")
    sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
    if len(fraction) > exp:
        raise ValueError(f"{currency} has {exp} decimal digits, {major!r} has {len(fraction)}")
    scale: int = 10**exp  # annotated: int ** int is typed Any (negative powers give floats)
    minor = int(whole) * scale + int(fraction.ljust(exp, "0") or "0")
    return -minor if sign else minor


def format_minor_units(amount: int, currency: str) -> str:
    """Major units as a decimal string: 29990 RUB -> "299.90", 500 JPY -> "500", -150 -> "-1.50"."""
    _check_int("amount", amount)
    exp = exponent(currency)
    whole, fraction = divmod(abs(amount), 10**exp)
    sign = "-" if amount < 0 else ""
    return f"{sign}{whole}.{fraction:0{exp}d}" if exp else f"{sign}{whole}"


def _known_currency(code: str) -> str:
    exponent(code)
    return code


Currency = Annotated[
    str,
    Strict(),
    AfterValidator(_known_currency),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["RUB"]}),
]
"""An active ISO 4217 code, exactly as written: "RUB" passes, "rub" and "XXX" are rejected."""

Amount = Annotated[int, Strict(), Field(ge=0, le=MAX_AMOUNT)]
"""A non-negative amount of minor units; only real ints (no bools, floats or numeric strings)."""

SignedAmount = Annotated[int, Strict(), Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
"""Like :data:`Amount` but may be negative (balances, adjustments)."""


class Money(BaseModel):
    """A non-negative amount of one currency; arithmetic only within the same currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: Amount
    currency: Currency

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(amount=0, currency=currency)

    def _amount_of(self, other: Money) -> int:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")
        return other.amount

    def __add__(self, other: Money) -> Money:
        return Money(amount=self.amount + self._amount_of(other), currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        if self._amount_of(other) > self.amount:
            raise ValueError(f"{self} - {other} would be negative; money is never negative")
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def __lt__(self, other: Money) -> bool:
        return self.amount < self._amount_of(other)

    def __le__(self, other: Money) -> bool:
        return self.amount <= self._amount_of(other)

    def __gt__(self, other: Money) -> bool:
        return self.amount > self._amount_of(other)

    def __ge__(self, other: Money) -> bool:
        return self.amount >= self._amount_of(other)

    def percent(self, percent: int) -> Money:
        """``percent`` % of this money, rounded half up (used for discounts)."""
        return Money(amount=percent_half_up(self.amount, percent), currency=self.currency)

    def prorata(self, numerator: int, denominator: int) -> Money:
        """The ``numerator/denominator`` share of this money, rounded down (used for refunds)."""
        share = prorata_floor(self.amount, numerator, denominator)
        return Money(amount=share, currency=self.currency)

    def major_units_str(self) -> str:
        """The amount in major units without the code: "299.00"."""
        return format_minor_units(self.amount, self.currency)

    def __str__(self) -> str:
        return f"{self.major_units_str()} {self.currency}"
