"""The period a report covers: whole UTC days from ``from`` to ``to``, both included."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from shared.errors import UnprocessableEntity

MAX_DAYS = 366
"""The longest period one report covers (a leap year): longer ones are refused, not truncated."""


class ReportPeriodReversed(UnprocessableEntity):
    default_detail = "the period's start is after its end"


class ReportPeriodOutOfRange(UnprocessableEntity):
    default_detail = "the period must end before 9999-12-31"


class ReportPeriodTooLong(UnprocessableEntity):
    default_detail = f"a report covers at most {MAX_DAYS} days"


@dataclass(frozen=True)
class Period:
    first_day: date
    last_day: date

    @property
    def start(self) -> datetime:
        """The first moment in the period (midnight UTC of the first day)."""
        return datetime.combine(self.first_day, time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first moment after the period (midnight UTC after the last day): excluded."""
        return datetime.combine(self.last_day + timedelta(days=1), time(), tzinfo=UTC)

    @property
    def days(self) -> list[date]:
        count = (self.last_day - self.first_day).days + 1
        return [self.first_day + timedelta(days=n) for n in range(count)]


def period_of(first_day: date, last_day: date) -> Period:
    """The period, or a 422 naming what is wrong with it (``from``/``to`` in ``extra``)."""
    where = {"from": first_day.isoformat(), "to": last_day.isoformat()}
    if first_day > last_day:
        raise ReportPeriodReversed(extra=where)
    if last_day >= date.max:  # the moment after it could not be written
        raise ReportPeriodOutOfRange(extra=where)
    days = (last_day - first_day).days + 1
    if days > MAX_DAYS:
        raise ReportPeriodTooLong(f"{days} days asked, at most {MAX_DAYS}", extra=where)
    return Period(first_day, last_day)
