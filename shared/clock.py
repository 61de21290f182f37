"""The one source of "now" for the whole suite.

Every timestamp the services write comes from :func:`now`, so tests (and the ``--now`` option of the
job runner) can move time without patching ``datetime``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_source: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return _source()


def set_source(source: Callable[[], datetime]) -> None:
    """Replace where :func:`now` reads the time from (tests, simulations)."""
    global _source
    _source = source


def reset() -> None:
    """Go back to the wall clock."""
    set_source(lambda: datetime.now(UTC))


def ensure_utc(moment: datetime) -> datetime:
    """Reject naive datetimes and normalise aware ones to UTC."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: every timestamp in the suite must be timezone-aware")
    return moment.astimezone(UTC)


class FrozenClock:
    """A clock that stands still until it is moved; handy in tests."""

    def __init__(self, start: datetime) -> None:
        self.current = ensure_utc(start)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> datetime:
        self.current += delta
        return self.current


@contextmanager
def frozen(start: datetime) -> Iterator[FrozenClock]:
    """Freeze :func:`now` at ``start`` inside the block; move it with ``clock.advance(...)``.

    The clock is process-wide: concurrent tasks must share one frozen block, not nest their own.
    """
    previous = _source
    clock = FrozenClock(start)
    set_source(clock)
    try:
        yield clock
    finally:
        set_source(previous)
