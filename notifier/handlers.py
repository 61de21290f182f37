"""The notifier's consumer: each business event becomes one ``notification`` row per channel.

The handler renders and inserts, nothing else: no network, so a slow SMTP server never holds a
broker delivery or a database transaction. The rows are sent later by :mod:`notifier.delivery`.
Twice protected against duplicates: the consumer's inbox skips a redelivered event, and
``UNIQUE(event_id, channel)`` with ``ON CONFLICT DO NOTHING`` keeps one row per channel even if
the same event reached the handler again (a dead letter replayed after a partial failure, say).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.config import NotifierSettings
from notifier.models import ChannelName, Notification, NotificationStatus
from notifier.rendering import Renderer
from shared import clock, events
from shared.consumer import Handler

CONSUMER = "notifier"

NOTICES: tuple[type[events.UserNotice], ...] = (
    events.SubscriptionActivated,
    events.SubscriptionRenewed,
    events.SubscriptionPlanChanged,
    events.SubscriptionRenewalFailed,
    events.SubscriptionExpiring,
    events.SubscriptionGraceStarted,
    events.SubscriptionExpired,
    events.SubscriptionCanceled,
    events.PurchaseCompleted,
    events.RefundCompleted,
    events.WalletToppedUp,
)
"""Billing's business events a person is told about."""


@dataclass(frozen=True)
class Recipients:
    """Where notifications go: the email channel (to the event's address) and the webhook URL."""

    email: bool
    webhook_url: str | None

    @classmethod
    def from_settings(cls, settings: NotifierSettings) -> Recipients:
        return cls(
            email=settings.email_enabled,
            webhook_url=settings.webhook_url if settings.webhook_on else None,
        )

    def of(self, notice: events.UserNotice) -> dict[ChannelName, str]:
        """Channel → recipient; a person without an email address gets no email row."""
        found: dict[ChannelName, str] = {}
        if self.email and notice.email and notice.email.strip():
            found[ChannelName.EMAIL] = notice.email.strip()
        if self.webhook_url:
            found[ChannelName.WEBHOOK] = self.webhook_url
        return found


async def record_notifications(
    session: AsyncSession,
    envelope: events.Envelope[Any],
    *,
    renderer: Renderer,
    recipients: Recipients,
) -> int:
    """Render ``envelope`` and insert its pending notifications; returns how many were new."""
    notice: events.UserNotice = envelope.data
    targets = recipients.of(notice)
    if not targets:
        return 0
    message = renderer.render(notice)
    now = clock.now()
    rows = [
        {
            "id": uuid4(),
            "event_id": envelope.id,
            "event_type": envelope.type,
            "occurred_at": envelope.occurred_at,
            "channel": channel.value,
            "user_id": notice.user_id,
            "locale": renderer.locale_for(notice.locale),
            "recipient": recipient,
            "subject": message.subject[:500],
            "body_text": message.text,
            "body_html": message.html,
            "payload": notice.model_dump(mode="json"),
            "status": NotificationStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for channel, recipient in targets.items()
    ]
    inserted = await session.scalars(
        insert(Notification)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["event_id", "channel"])
        .returning(Notification.id)
    )
    return len(inserted.all())


def make_handlers(
    renderer: Renderer, recipients: Recipients
) -> Mapping[type[events.EventPayload], Handler]:
    """The consumer's handlers: the same one for every business event."""

    async def on_notice(session: AsyncSession, envelope: events.Envelope[Any]) -> None:
        await record_notifications(session, envelope, renderer=renderer, recipients=recipients)

    return dict.fromkeys(NOTICES, on_notice)
