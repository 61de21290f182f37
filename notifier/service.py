"""What operators do with notifications: look them up and send one again."""

from __future__ import annotations

from collections.abc import Set
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.models import Notification, NotificationStatus
from shared import clock
from shared.errors import Conflict, NotFound
from shared.pagination import newest_first, page_of


class NotificationNotFound(NotFound):
    default_detail = "no such notification"


class NotificationPending(Conflict):
    default_detail = "the notification is still pending: it will be sent at next_attempt_at"


class NotificationSkipped(Conflict):
    default_detail = "the notification was skipped: there is nowhere to send it"


class ChannelDisabled(Conflict):
    default_detail = "the notification's channel is not enabled in this notifier"


async def list_notifications(
    session: AsyncSession,
    *,
    user_id: UUID | None,
    status: NotificationStatus | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Notification], str | None]:
    """Newest first, optionally one user's and/or in one status."""
    query = sa.select(Notification)
    if user_id is not None:
        query = query.where(Notification.user_id == user_id)
    if status is not None:
        query = query.where(Notification.status == status)
    rows = (
        await session.scalars(
            newest_first(query, Notification.created_at, Notification.id, cursor, limit)
        )
    ).all()
    return page_of(rows, limit)


async def resend(
    session: AsyncSession, notification_id: UUID, *, channels: Set[str]
) -> Notification:
    """Put a sent or failed notification back in the queue with a fresh set of attempts.

    A skipped one is refused: the event had nowhere to go, and resending would not change that.
    """
    notification = await session.get(Notification, notification_id, with_for_update=True)
    if notification is None:
        raise NotificationNotFound
    if notification.status == NotificationStatus.PENDING:
        raise NotificationPending
    if notification.status == NotificationStatus.SKIPPED:
        raise NotificationSkipped(f"the notification was skipped: {notification.skip_reason}")
    if notification.channel not in channels:
        raise ChannelDisabled(f"the {notification.channel} channel is not enabled")
    now = clock.now()
    notification.status = NotificationStatus.PENDING
    notification.attempts = 0
    notification.next_attempt_at = now
    notification.last_error = None
    notification.sent_at = None
    notification.updated_at = now
    await session.flush()
    return notification
