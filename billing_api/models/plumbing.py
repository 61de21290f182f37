"""Bookkeeping the services run on: entitlement snapshot versions and idempotency keys."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.models.base import Base, status_column
from shared.db import utc_now


class EntitlementVersion(Base):
    """The per-user counter stamped on ``entitlements.changed`` snapshots."""

    __tablename__ = "entitlement_version"

    user_id: Mapped[UUID] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class IdempotencyKeyStatus(StrEnum):
    IN_PROGRESS = "in_progress"  # claimed by a request still running
    DONE = "done"  # its response is stored for replay


class IdempotencyKey(Base):
    """The first response to a POST with an ``Idempotency-Key``, replayed for 24 hours."""

    __tablename__ = "idempotency_key"
    __table_args__ = (sa.Index("ix_idempotency_key_expires", "expires_at"),)

    subject: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    method: Mapped[str] = mapped_column(sa.String(10))
    path: Mapped[str] = mapped_column(sa.String(500))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[IdempotencyKeyStatus] = status_column(
        IdempotencyKeyStatus, length=12, default=IdempotencyKeyStatus.IN_PROGRESS
    )
    response_status: Mapped[int | None]
    response_body: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    response_content_type: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # The claim's owner (a takeover sets a new one), and when its request's transaction first
    # committed as that owner: from then on the claim is never taken over.
    owner: Mapped[UUID | None]
    effect_committed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
