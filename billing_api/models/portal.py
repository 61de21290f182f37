"""The customer portal's state: single-use links and the forms that already acted."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.models.base import Base, when
from shared.db import UUIDPrimaryKey, utc_now


class PortalLink(UUIDPrimaryKey, Base):
    """A link into the portal, opened once before ``expires_at``. Only the SHA-256 of its token
    is kept: the database never holds what opens a session."""

    __tablename__ = "portal_link"

    user_id: Mapped[UUID] = mapped_column(index=True)
    email: Mapped[str | None] = mapped_column(sa.String(320))
    locale: Mapped[str | None] = mapped_column(sa.String(10))
    return_url: Mapped[str | None] = mapped_column(sa.Text)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    expires_at: Mapped[datetime] = when(nullable=False)
    used_at: Mapped[datetime | None] = when()
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utc_now, server_default=sa.func.now()
    )


class PortalFormSubmission(Base):
    """A portal form that acted, by its per-render key, in the action's own transaction: the
    same form sent again does not act again and is sent where the first one went."""

    __tablename__ = "portal_form_submission"

    link_id: Mapped[UUID] = mapped_column(
        sa.ForeignKey("portal_link.id", ondelete="CASCADE"), primary_key=True
    )
    form_key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    redirect_to: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utc_now, server_default=sa.func.now()
    )
