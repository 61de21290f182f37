"""Sending notifications: one sender loop per channel, retries with backoff, then ``failed``.

A sender claims due rows (``status = 'pending' AND next_attempt_at <= now``) of its channel with
``FOR UPDATE SKIP LOCKED`` in a short transaction that counts the attempt and pushes
``next_attempt_at`` forward by a lease, so no lock is held while the SMTP server or the webhook
answers and other replicas leave the rows alone. After the call a second short transaction records
the outcome — ``sent``; or the next attempt after the configured delay; or ``failed`` after the
last attempt — but only while the lease is still the sender's own (a sender that took longer
than the lease leaves the row to whoever claimed it next). Each channel has its own loop and every
row of a batch is sent concurrently, so a slow or broken channel never holds back the others.

At least once, not exactly once, on a crash: a process that dies after the SMTP server or the
webhook accepted a notification but before the outcome was recorded sends it again when the lease
runs out. Email has no idempotency (the ``Message-ID`` is the notification id, which some mail
systems use to drop duplicates); the webhook carries the notification id in its body and in
``X-Notification-ID`` so the receiver can drop the second copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, Protocol

import aiosmtplib
import httpx
import orjson
import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifier.config import NotifierSettings
from notifier.models import ChannelName, Notification, NotificationStatus
from shared import clock
from shared.errors import unavailable_dependency

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Cinema-Signature"
NOTIFICATION_ID_HEADER = "X-Notification-ID"

NOTIFICATIONS = Counter(
    "notifier_deliveries_total",
    "Delivery attempts by channel and outcome (sent, retry, failed).",
    ["channel", "outcome"],
)


class DeliveryFailed(Exception):
    """The channel did not accept the notification (the message says why)."""


class Channel(Protocol):
    name: ChannelName

    async def send(self, notification: Notification) -> None:
        """Deliver or raise; any exception counts as a failed attempt."""


class EmailChannel:
    """Email over SMTP, one connection per message (notifications are few and far between)."""

    name = ChannelName.EMAIL

    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings
        self.domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "cinema.local"

    def compose(self, notification: Notification) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = notification.recipient
        message["Subject"] = notification.subject
        message["Date"] = formatdate(time.time(), usegmt=True)
        message["Message-ID"] = f"<{notification.id}@{self.domain}>"
        message[NOTIFICATION_ID_HEADER] = str(notification.id)
        message.set_content(notification.body_text)
        message.add_alternative(notification.body_html, subtype="html")
        return message

    async def send(self, notification: Notification) -> None:
        settings = self.settings
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        await aiosmtplib.send(
            self.compose(notification),
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password,
            use_tls=settings.smtp_use_tls,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``, the suite's webhook scheme."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def webhook_body(notification: Notification) -> dict[str, Any]:
    """What the cinema's notification service receives: the rendered message and the event."""
    return {
        "notification_id": str(notification.id),
        "event_id": str(notification.event_id),
        "event_type": notification.event_type,
        "occurred_at": notification.occurred_at.isoformat(),
        "user_id": str(notification.user_id),
        "locale": notification.locale,
        "subject": notification.subject,
        "text": notification.body_text,
        "html": notification.body_html,
        "data": notification.payload,
    }


class WebhookChannel:
    """A signed JSON POST to the cinema's notification service; any 2xx is delivered."""

    name = ChannelName.WEBHOOK

    def __init__(self, http: httpx.AsyncClient, url: str, secret: str, *, timeout: float) -> None:
        self.http = http
        self.url = url
        self.secret = secret
        self.timeout = timeout

    async def send(self, notification: Notification) -> None:
        body = orjson.dumps(webhook_body(notification))
        # Signatures are about real time on the wire, not the suite clock tests may move.
        signature = sign(body, self.secret, int(time.time()))
        response = await self.http.post(
            self.url,
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature,
                NOTIFICATION_ID_HEADER: str(notification.id),
            },
            timeout=self.timeout,
        )
        if not response.is_success:
            raise DeliveryFailed(f"HTTP {response.status_code}: {response.text[:200]}")


def enabled_channels(settings: NotifierSettings) -> frozenset[ChannelName]:
    """The channels this configuration sends through."""
    names = {ChannelName.EMAIL} if settings.email_enabled else set()
    if settings.webhook_on:
        names.add(ChannelName.WEBHOOK)
    return frozenset(names)


def build_channels(settings: NotifierSettings, http: httpx.AsyncClient) -> list[Channel]:
    channels: list[Channel] = []
    if settings.email_enabled:
        channels.append(EmailChannel(settings))
    if settings.webhook_on:
        assert settings.webhook_url is not None  # checked by the settings
        channels.append(
            WebhookChannel(
                http,
                settings.webhook_url,
                settings.webhook_secret.get_secret_value(),
                timeout=settings.webhook_timeout_seconds,
            )
        )
    return channels


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:1000] if text else type(exc).__name__


class Sender:
    """Sends one channel's due notifications; run as many replicas as you like."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        channel: Channel,
        settings: NotifierSettings,
    ) -> None:
        self.sessions = sessions
        self.channel = channel
        self.settings = settings

    async def run(self) -> None:
        """Send forever; a full batch is followed at once by the next one."""
        while True:
            handled = 0
            try:
                handled = await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s sender failed; retrying", self.channel.name)
            if handled < self.settings.sender_batch_size:
                await asyncio.sleep(self.settings.sender_interval_seconds)

    async def send_due(self) -> int:
        """Send one batch of due notifications; returns how many were attempted."""
        now = clock.now()
        lease = now + timedelta(seconds=self.settings.sender_lease_seconds)
        claimed = await self._claim(now, lease)
        results = await asyncio.gather(
            *(self._deliver(notification, lease) for notification in claimed),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, Exception):
                logger.error("recording a delivery failed", exc_info=result)
        return len(claimed)

    async def _claim(self, now: datetime, lease: datetime) -> list[Notification]:
        due = (
            sa.select(Notification.id)
            .where(
                Notification.status == NotificationStatus.PENDING,
                Notification.channel == self.channel.name,
                Notification.next_attempt_at <= now,
            )
            .order_by(Notification.next_attempt_at)
            .limit(self.settings.sender_batch_size)
            .with_for_update(skip_locked=True)
        )
        async with self.sessions.begin() as session:
            claimed = await session.scalars(
                sa.update(Notification)
                .where(Notification.id.in_(due))
                .values(next_attempt_at=lease, attempts=Notification.attempts + 1, updated_at=now)
                .returning(Notification)
                .execution_options(synchronize_session=False)
            )
            return list(claimed.all())

    async def _deliver(self, notification: Notification, lease: datetime) -> None:
        try:
            async with asyncio.timeout(self.settings.sender_lease_seconds):
                await self.channel.send(notification)
        except Exception as exc:  # any failure of one notification is only that one's
            await self._record(notification, lease, describe(exc))
        else:
            await self._record(notification, lease, None)

    async def _record(self, notification: Notification, lease: datetime, error: str | None) -> None:
        now = clock.now()
        values: dict[str, Any]
        if error is None:
            outcome = "sent"
            values = {"status": NotificationStatus.SENT, "sent_at": now, "last_error": None}
        elif notification.attempts >= self.settings.max_attempts:
            outcome = "failed"
            values = {"status": NotificationStatus.FAILED, "last_error": error}
        else:
            outcome = "retry"
            delay = timedelta(seconds=self.settings.retry_delay(notification.attempts))
            values = {"next_attempt_at": now + delay, "last_error": error}
        # The channel has already answered: losing the outcome to a database hiccup would send
        # the notification again when the lease runs out, so recording is retried meanwhile.
        deadline = time.monotonic() + self.settings.sender_lease_seconds / 2
        pause = 0.2
        while True:
            try:
                async with self.sessions.begin() as session:
                    await session.execute(
                        sa.update(Notification)
                        .where(
                            Notification.id == notification.id,
                            Notification.status == NotificationStatus.PENDING,
                            Notification.next_attempt_at == lease,  # still our claim
                        )
                        .values(updated_at=now, **values)
                    )
                break
            except Exception as exc:
                if unavailable_dependency(exc) is None or time.monotonic() + pause > deadline:
                    raise
                logger.warning("recording a delivery outcome failed; retrying: %s", exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
        NOTIFICATIONS.labels(self.channel.name.value, outcome).inc()
        log = logger.info if error is None else logger.warning
        log(
            "notification %s",
            outcome,
            extra={
                "notification_id": str(notification.id),
                "channel": self.channel.name.value,
                "attempt": notification.attempts,
                "error": error,
            },
        )
