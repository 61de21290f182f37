"""Tables of the ``access`` schema: the projection of billing's snapshots, and role sync work.

Each row keeps the newest snapshot seen (by ``version``), so late, duplicated or reordered events
change nothing wrong.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from access_api.config import SCHEMA
from shared.db import make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata(SCHEMA)


class UserGrants(Base):
    """The latest ``entitlements.changed`` snapshot of one user."""

    __tablename__ = "user_grants"

    user_id: Mapped[UUID] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(sa.BigInteger)
    grants: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class PlanCoverage(Base):
    """The latest ``plan.changed`` snapshot of one plan."""

    __tablename__ = "plan_coverage"

    plan_id: Mapped[UUID] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64))
    version: Mapped[int] = mapped_column(sa.BigInteger)
    all_movies: Mapped[bool]
    movie_ids: Mapped[list[UUID]] = mapped_column(ARRAY(sa.Uuid))
    role: Mapped[str | None] = mapped_column(sa.String(100))
    active: Mapped[bool]
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class RoleSync(Base):
    """A user whose roles in the auth service must be brought in line with their grants."""

    __tablename__ = "role_sync"
    __table_args__ = (sa.Index("ix_role_sync_due", "due_at"),)

    user_id: Mapped[UUID] = mapped_column(primary_key=True)
    due_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    synced_roles: Mapped[list[str]] = mapped_column(ARRAY(sa.String(100)), default=list)
    synced_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
