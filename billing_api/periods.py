"""Billing periods as pure functions of dates: calendar months or a number of days."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta


def add_months(moment: datetime, months: int) -> datetime:
    """The same day ``months`` later, clamped to the month's last day (31 Jan + 1 → 28/29 Feb)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_end(start: datetime, *, unit: str, days: int | None, periods: int) -> datetime:
    """End of ``periods`` billing periods starting at ``start``."""
    if unit == "month":
        return add_months(start, periods)
    assert days is not None
    return start + timedelta(days=days * periods)
