"""The notifier's consumer: each business event becomes one ``notification`` row per channel.

The handler renders and inserts, nothing else: no network, so a slow SMTP server never holds a
broker delivery or a database transaction. The rows are sent later by :mod:`notifier.delivery`.
Twice protected against duplicates: the consumer's inbox skips a redelivered event, and
``UNIQUE(event_id, channel)`` with ``ON CONFLICT DO NOTHING`` keeps one row per channel even if
the same event reached the handler again (a dead letter replayed after a partial failure, say).

Every enabled channel gets a row for every event: ``pending`` when there is somewhere to send
it, ``skipped`` with a ``skip_reason`` when not (a person without an email address), and an event
that arrives while no channel is enabled gets one skipped row on the channel ``none``. So the
ops API answers "why did this person hear nothing?" for every event the notifier received.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from prometheus_client import Counter
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.config import NotifierSettings
from notifier.models import ChannelName, Notification, NotificationStatus
from notifier.rendering import Renderer
from shared import clock, events
from shared.consumer import Handler

logger = logging.getLogger(__name__)

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
    events.SubscriptionPaymentActionRequired,
    events.SubscriptionPaymentMethodRequired,
    events.PaymentMethodExpiring,
    events.SubscriptionPaused,
    events.SubscriptionResumed,
    events.HouseholdInvited,
    events.HouseholdJoined,
    events.HouseholdRemoved,
    events.GiftPurchased,
    events.GiftDelivered,
    events.GiftRedeemed,
    events.GiftExpiring,
)
"""Billing's business events a person is told about."""

NO_EMAIL_ADDRESS = "the person has no email address"
NO_CHANNEL = "no notification channel is enabled (email off, no webhook)"

SKIPPED = Counter(
    "notifier_skipped_total",
    "Notifications recorded as skipped (nowhere to send them), by channel.",
    ["channel"],
)


@dataclass(frozen=True)
class Target:
    """Where one channel sends an event, or why it cannot (``skip_reason``)."""

    recipient: str
    skip_reason: str | None = None


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

    def of(self, notice: events.UserNotice) -> dict[ChannelName, Target]:
        """Channel → target for every enabled channel (``none`` when none is enabled)."""
        found: dict[ChannelName, Target] = {}
        if self.email:
            address = (notice.email or "").strip()
            found[ChannelName.EMAIL] = Target(address) if address else Target("", NO_EMAIL_ADDRESS)
        if self.webhook_url:
            found[ChannelName.WEBHOOK] = Target(self.webhook_url)
        if not found:
            found[ChannelName.NONE] = Target("", NO_CHANNEL)
        return found


async def record_notifications(
    session: AsyncSession,
    envelope: events.Envelope[Any],
    *,
    renderer: Renderer,
    recipients: Recipients,
) -> int:
    """Render ``envelope`` and insert its notifications (pending, or skipped with the reason);
    returns how many were new."""
    notice: events.UserNotice = envelope.data
    targets = recipients.of(notice)
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
            "recipient": target.recipient,
            "subject": message.subject[:500],
            "body_text": message.text,
            "body_html": message.html,
            "payload": notice.model_dump(mode="json"),
            "status": (
                NotificationStatus.PENDING
                if target.skip_reason is None
                else NotificationStatus.SKIPPED
            ).value,
            "skip_reason": target.skip_reason,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for channel, target in targets.items()
    ]
    inserted = (
        await session.execute(
            insert(Notification)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["event_id", "channel"])
            .returning(Notification.channel, Notification.skip_reason)
        )
    ).all()
    for channel, reason in inserted:
        if reason is not None:
            SKIPPED.labels(channel).inc()
            logger.info(
                "%s for user %s skipped on %s: %s",
                envelope.type,
                notice.user_id,
                channel,
                reason,
                extra={"event_id": str(envelope.id), "channel": channel, "skip_reason": reason},
            )
    return len(inserted)


def make_handlers(
    renderer: Renderer, recipients: Recipients
) -> Mapping[type[events.EventPayload], Handler]:
    """The consumer's handlers: the same one for every business event."""

    async def on_notice(session: AsyncSession, envelope: events.Envelope[Any]) -> None:
        await record_notifications(session, envelope, renderer=renderer, recipients=recipients)

    return dict.fromkeys(NOTICES, on_notice)
