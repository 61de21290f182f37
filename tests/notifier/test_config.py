"""Which channels a configuration turns on, and how the retry schedule is read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from notifier.config import NotifierSettings
from notifier.delivery import enabled_channels
from notifier.models import ChannelName


class TestChannels:
    def test_by_default_only_email_is_on(self) -> None:
        assert enabled_channels(NotifierSettings()) == {ChannelName.EMAIL}

    def test_a_webhook_url_turns_the_webhook_on(self) -> None:
        settings = NotifierSettings(webhook_url="http://notify.cinema.local/hooks")
        assert enabled_channels(settings) == {ChannelName.EMAIL, ChannelName.WEBHOOK}

    def test_the_webhook_can_be_off_even_with_a_url(self) -> None:
        settings = NotifierSettings(webhook_url="http://x.test/hooks", webhook_enabled=False)
        assert enabled_channels(settings) == {ChannelName.EMAIL}

    def test_a_webhook_without_a_url_is_a_configuration_error(self) -> None:
        with pytest.raises(ValidationError, match="WEBHOOK_URL"):
            NotifierSettings(webhook_enabled=True)


class TestRetrySchedule:
    @pytest.mark.parametrize("raw", ["1,5,30", "[1, 5, 30]", " 1, 5 ,30 "])
    def test_is_read_from_the_environment(self, monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
        monkeypatch.setenv("NOTIFIER_RETRY_DELAYS_SECONDS", raw)
        assert NotifierSettings().retry_delays_seconds == (1.0, 5.0, 30.0)

    def test_the_last_delay_repeats(self) -> None:
        settings = NotifierSettings(retry_delays_seconds=(1.0, 5.0))
        assert [settings.retry_delay(n) for n in (1, 2, 3, 9)] == [1.0, 5.0, 5.0, 5.0]

    def test_negative_delays_are_refused(self) -> None:
        with pytest.raises(ValidationError):
            NotifierSettings(retry_delays_seconds=(1.0, -5.0))
