"""The ops API: what was sent to whom, and sending it again (admins and services only)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request

from notifier import service
from notifier.models import NotificationStatus
from notifier.schemas import NotificationOut
from shared.auth import AdminOrServicePrincipal
from shared.db import SessionDep
from shared.pagination import Cursor, Limit, Page

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


@router.get("", response_model=Page[NotificationOut])
async def list_notifications(
    principal: AdminOrServicePrincipal,
    session: SessionDep,
    user_id: UUID | None = None,
    status: NotificationStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[NotificationOut]:
    """Notifications newest first, by user and/or status (skipped ones say why)."""
    items, next_cursor = await service.list_notifications(
        session, user_id=user_id, status=status, cursor=cursor, limit=limit
    )
    return Page(
        items=[NotificationOut.model_validate(item) for item in items], next_cursor=next_cursor
    )


@router.post(
    "/{notification_id}/resend",
    response_model=NotificationOut,
    status_code=202,
    responses={
        404: {"description": "no such notification"},
        409: {"description": "pending, skipped or its channel is off"},
    },
)
async def resend(
    notification_id: UUID, request: Request, principal: AdminOrServicePrincipal, session: SessionDep
) -> NotificationOut:
    """Send a sent or failed notification again (it goes back to pending)."""
    notification = await service.resend(
        session, notification_id, channels=request.app.state.channels
    )
    return NotificationOut.model_validate(notification)
