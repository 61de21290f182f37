"""What the ops API shows of a notification."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    event_id: UUID
    event_type: str
    channel: str
    user_id: UUID
    locale: str
    recipient: str
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    sent_at: datetime | None
    skip_reason: str | None = Field(
        None, description="Why a skipped notification was never sent (status skipped)."
    )
    created_at: datetime
    updated_at: datetime
