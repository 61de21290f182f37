from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared import clock


class TestFrozen:
    def test_now_stands_still_and_moves_when_advanced(self) -> None:
        start = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)
        with clock.frozen(start) as frozen:
            assert clock.now() == start
            frozen.advance(timedelta(hours=2))
            assert clock.now() == datetime(2026, 2, 1, 1, 0, tzinfo=UTC)
        assert clock.now() > start + timedelta(days=100)

    def test_other_timezones_are_normalised_to_utc(self) -> None:
        moscow = timezone(timedelta(hours=3))
        with clock.frozen(datetime(2026, 5, 1, 12, 0, tzinfo=moscow)):
            assert clock.now() == datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
            assert clock.now().utcoffset() == timedelta(0)

    def test_naive_datetimes_are_refused(self) -> None:
        with pytest.raises(ValueError, match="naive"):
            clock.ensure_utc(datetime(2026, 1, 1))


class TestWallClock:
    def test_now_is_timezone_aware_utc(self) -> None:
        assert clock.now().tzinfo is UTC
