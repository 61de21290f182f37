"""A notification the channel accepted is recorded as sent even if the database hiccups."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import uuid4

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifier.config import NotifierSettings
from notifier.delivery import Sender
from notifier.models import ChannelName, Notification
from shared import clock
from shared.resources import make_database
from shared.settings import ServiceSettings


class Accepting:
    name = ChannelName.EMAIL

    async def send(self, notification: Notification) -> None:
        return None


class FlakySessions:
    """A session factory whose first ``failures`` transactions lose their connection."""

    def __init__(self, real: async_sessionmaker[AsyncSession], failures: int) -> None:
        self.real = real
        self.failures = failures

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        if self.failures:
            self.failures -= 1
            raise OperationalError("UPDATE notification", {}, ConnectionResetError("reset"))
        async with self.real.begin() as session:
            yield session


class TestRecordingTheOutcome:
    async def test_a_lost_connection_while_recording_does_not_send_the_email_again(
        self, service_settings: ServiceSettings
    ) -> None:
        engine, sessions = make_database(service_settings, service="notifier", schema="notifier")
        lease = clock.now() + timedelta(seconds=120)
        notification = Notification(
            id=uuid4(),
            event_id=uuid4(),
            event_type="subscription.activated",
            occurred_at=clock.now(),
            channel=ChannelName.EMAIL,
            user_id=uuid4(),
            locale="en",
            recipient="viewer@example.com",
            subject="s",
            body_text="t",
            body_html="h",
            payload={},
            attempts=1,
            next_attempt_at=lease,
        )
        try:
            async with sessions.begin() as session:
                session.add(notification)
            flaky: Any = FlakySessions(sessions, failures=2)
            sender = Sender(flaky, Accepting(), NotifierSettings(**service_settings.model_dump()))
            await sender._deliver(notification, lease)
            async with sessions() as session:
                status = await session.scalar(
                    sa.select(Notification.status).where(Notification.id == notification.id)
                )
            assert status == "sent"
        finally:
            await engine.dispose()
