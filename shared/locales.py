"""The languages people read our pages and messages in, and money and dates written for them.

Two languages: ``ru`` (the default) and ``en``. A page picks one with :func:`negotiate`: the
locale the person chose (a portal session's, an event's), then the browser's ``Accept-Language``,
then Russian. Formatting is babel's CLDR data, so ``152745 RUB`` reads "1 527,45 ₽" in ru and
"RUB1,527.45" in en (the spaces inside a ru amount are no-break spaces).
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Final

from babel.dates import format_date, format_datetime, get_date_format, get_time_format
from babel.numbers import format_currency

from shared.money import exponent

LOCALES: Final = ("ru", "en")
DEFAULT_LOCALE: Final = "ru"


def language_of(tag: str | None) -> str | None:
    """ "en-US" → "en"; a language we do not speak (or nothing) → None."""
    language = (tag or "").replace("_", "-").split("-")[0].strip().lower()
    return language if language in LOCALES else None


def from_accept_language(header: str | None) -> str | None:
    """The first language of ours in an ``Accept-Language`` header, by its q-values.

    ``"de-DE,en;q=0.8,ru;q=0.5"`` → "en"; ``"*"`` or nothing we speak → None.
    """
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        language = language_of(tag)
        if language is not None and weight > 0:
            ranked.append((-weight, position, language))
    return min(ranked)[2] if ranked else None


def negotiate(chosen: str | None = None, accept_language: str | None = None) -> str:
    """The locale of a page: the one chosen, else the browser's, else Russian."""
    return language_of(chosen) or from_accept_language(accept_language) or DEFAULT_LOCALE


def format_money(amount: int, currency: str, locale: str) -> str:
    """``(152745, "RUB")`` → "1 527,45 ₽" (ru), "RUB1,527.45" (en); exact, never a float."""
    major = Decimal(amount).scaleb(-exponent(currency))
    # No quantization: babel's digits for a currency may be fewer than ISO 4217's, and a page
    # or a message must never round away part of an amount.
    return format_currency(major, currency, locale=locale, decimal_quantization=False)


def format_day(moment: date | datetime, locale: str, zone: tzinfo | None = None) -> str:
    """The date, in ``zone`` for a moment: "December 7, 2026" in en."""
    if isinstance(moment, datetime) and zone is not None:
        moment = moment.astimezone(zone)
    return format_date(moment, "long", locale=locale)


def format_moment(moment: datetime, locale: str, zone: tzinfo) -> str:
    """Date and time in ``zone`` with its offset: "December 2, 2026, 12:30 AM (UTC+03:00)"."""
    pattern = (
        f"{get_date_format('long', locale).pattern}, {get_time_format('short', locale).pattern}"
    )
    text = format_datetime(moment, pattern, tzinfo=zone, locale=locale)
    offset = format_datetime(moment, "xxx", tzinfo=zone, locale=locale)
    return f"{text} (UTC{'' if offset == '+00:00' else offset})"
