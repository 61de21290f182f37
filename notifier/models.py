"""Tables of the ``notifier`` schema (``outbox``/``inbox`` come from :mod:`shared.tables`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from notifier.config import SCHEMA
from shared.db import Timestamps, make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata(SCHEMA)


class ChannelName(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    # Not a way to send: the row of an event that arrived while no channel was enabled, kept
    # (skipped) so support can see why the person heard nothing.
    NONE = "none"


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    # Nothing to send to (no email address, no channel): recorded with ``skip_reason``, never sent.
    SKIPPED = "skipped"


class Notification(Timestamps, Base):
    """One event told through one channel; ``UNIQUE(event_id, channel)`` makes it happen once.

    ``recipient`` is the email address or the webhook URL at the time the event arrived (empty
    for a skipped row). Rows are rendered when the event arrives, so a later template change does
    not alter what is resent.
    """

    __tablename__ = "notification"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "channel"),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed', 'skipped')", name="status_known"
        ),
        sa.CheckConstraint("channel IN ('email', 'webhook', 'none')", name="channel_known"),
        sa.CheckConstraint(
            "(status = 'skipped') = (skip_reason IS NOT NULL)", name="skipped_has_reason"
        ),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # The senders' queue: only pending rows, in the order they fall due.
        sa.Index(
            "ix_notification_due",
            "channel",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
        ),
        # The ops list, newest first, by user or by status.
        sa.Index("ix_notification_user_id_created_at", "user_id", "created_at", "id"),
        sa.Index("ix_notification_status_created_at", "status", "created_at", "id"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    event_id: Mapped[UUID]
    event_type: Mapped[str] = mapped_column(sa.String(100))
    occurred_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(sa.String(20))
    user_id: Mapped[UUID]
    locale: Mapped[str] = mapped_column(sa.String(16))
    recipient: Mapped[str] = mapped_column(sa.String(2048))
    subject: Mapped[str] = mapped_column(sa.String(500))
    body_text: Mapped[str] = mapped_column(sa.Text)
    body_html: Mapped[str] = mapped_column(sa.Text)
    # The event's data as it arrived: the webhook sends it beside the rendered message.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(sa.String(20), default=NotificationStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(sa.String(1000))
    sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    skip_reason: Mapped[str | None] = mapped_column(sa.String(200))
