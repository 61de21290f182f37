"""What back-office staff did: the audit of their changes and complimentary grants."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.models.base import Base, when
from shared.db import Timestamps, UUIDPrimaryKey, utc_now


class AdminAudit(UUIDPrimaryKey, Base):
    """One change made by back-office staff (admin API, admin UI or the ETL's service token).

    Written in the same transaction as the change it describes, so a change without its audit
    row (or the other way round) cannot be committed.
    """

    __tablename__ = "admin_audit"
    __table_args__ = (
        sa.Index("ix_admin_audit_entity", "entity", "entity_id"),
        sa.Index("ix_admin_audit_created", "created_at"),
    )

    actor: Mapped[str] = mapped_column(sa.String(255))  # the token's subject or the UI login
    action: Mapped[str] = mapped_column(sa.String(64))  # e.g. plan.create, refund.override
    entity: Mapped[str] = mapped_column(sa.String(64))
    entity_id: Mapped[str] = mapped_column(sa.String(100))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)


class ComplimentaryGrant(UUIDPrimaryKey, Timestamps, Base):
    """Access to a plan given by staff for free until ``valid_until`` (``revoked_at`` ends it)."""

    __tablename__ = "complimentary_grant"

    user_id: Mapped[UUID] = mapped_column(index=True)
    plan_id: Mapped[UUID] = mapped_column(sa.ForeignKey("plan.id"))
    valid_until: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(sa.String(500))
    granted_by: Mapped[str] = mapped_column(sa.String(255))
    revoked_at: Mapped[datetime | None] = when()
