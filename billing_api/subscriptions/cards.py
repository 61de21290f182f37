"""The saved card of a subscription as people see it: brand, last four digits and expiry.

Never the number: the provider shows these and billing keeps only them. A card works through
the last day of its expiry month; :func:`expiry_end` is the first moment it no longer does
(the next month's first instant, UTC, as issuers count it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from billing_api.models import Payment, Subscription
from shared.events import CardSummary


def expiry_end(exp_month: int, exp_year: int) -> datetime:
    """When a card expiring ``exp_month``/``exp_year`` stops working."""
    return datetime(exp_year + exp_month // 12, exp_month % 12 + 1, 1, tzinfo=UTC)


def summary_of(row: Payment | Subscription) -> CardSummary | None:
    """The card a payment was made with, or a subscription's saved card; None if unknown."""
    if row.card_last4 is None and row.card_brand is None:
        return None
    return CardSummary(
        brand=row.card_brand,
        last4=row.card_last4,
        exp_month=row.card_exp_month,
        exp_year=row.card_exp_year,
    )


def record_on_payment(payment: Payment, card: CardSummary) -> None:
    """Keep what the gateway said of the card a payment was made with."""
    payment.card_brand = card.brand
    payment.card_last4 = card.last4
    payment.card_exp_month = card.exp_month
    payment.card_exp_year = card.exp_year
