"""How much of a payment can be given back, as a pure function of the payment, the period and now.

Rules (DESIGN section 3, "Refunds"), first match wins:

1. ``override_window`` (an admin's decision): everything not refunded yet.
2. Policy ``none``: never refundable, not even inside the window — a plan sold as
   non-refundable stays so; only an admin override gives money back.
3. Within ``window_minutes`` after the payment (``paid_at <= now < paid_at + window``): everything
   not refunded yet.
4. After the window, policy ``window_then_prorata`` with a known period: the unused whole days,
   the day of payment counted as used — ``paid * unused_days // total_days``, rounded down so we
   never refund more than was paid. Days before the period starts (a renewal charged ahead of
   its period) are not used days.
5. Otherwise (``window_only``, or no period to prorate): nothing.

What was refunded already is subtracted, and the result is never below zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from shared.money import prorata_floor

RefundPolicy = Literal["window_then_prorata", "window_only", "none"]
POLICIES: tuple[str, ...] = ("window_then_prorata", "window_only", "none")


@dataclass(frozen=True)
class RefundQuote:
    """What can still be refunded (minor units of the payment's currency) and why."""

    amount: int
    rule: str


def quote_refund(
    *,
    paid: int,
    paid_at: datetime,
    now: datetime,
    period_start: datetime | None,
    period_end: datetime | None,
    policy: str,
    window_minutes: int,
    already_refunded: int = 0,
    override_window: bool = False,
) -> RefundQuote:
    """The refundable amount of a payment of ``paid`` minor units and the rule that applied."""
    if paid < 0 or already_refunded < 0 or window_minutes < 0:
        raise ValueError("paid, already_refunded and window_minutes must not be negative")
    if policy not in POLICIES:
        raise ValueError(f"unknown refund policy {policy!r}")
    left = max(0, paid - already_refunded)

    def net(gross: int, rule: str) -> RefundQuote:
        if gross > 0 and gross <= already_refunded:
            return RefundQuote(0, "already refunded")
        return RefundQuote(max(0, gross - already_refunded), rule)

    if override_window:
        return RefundQuote(left, "full refund (window overridden by an admin)")
    if policy == "none":
        return RefundQuote(0, "plan is not refundable")
    if now < paid_at + timedelta(minutes=window_minutes):
        return net(paid, f"full refund within {window_minutes} minutes of payment")
    if policy == "window_only" or period_start is None or period_end is None:
        return RefundQuote(0, "refund window closed")
    total_days = (period_end - period_start).days
    if total_days <= 0:
        return RefundQuote(0, "refund window closed")
    used_days = min(total_days, max(0, (now - period_start).days + 1))
    unused_days = total_days - used_days
    return net(
        prorata_floor(paid, unused_days, total_days),
        f"unused {unused_days} of {total_days} days",
    )
