"""Back-office staff accounts and the failed logins that rate-limit their login page."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.models.base import Base, when
from shared.db import UUIDPrimaryKey, utc_now

STAFF_ROLE_NAMES = ("viewer", "support", "finance", "admin")
"""The roles the database accepts (billing_api.admin.roles says what each may do)."""


class StaffUser(UUIDPrimaryKey, Base):
    """A person who logs in to the back office with an email and a password."""

    __tablename__ = "staff_user"
    __table_args__ = (
        sa.CheckConstraint("email = lower(email)", name="email_lowercase"),
        sa.CheckConstraint(
            "role IN (" + ", ".join(f"'{role}'" for role in STAFF_ROLE_NAMES) + ")",
            name="role_known",
        ),
    )

    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))  # Argon2id, PHC string
    role: Mapped[str] = mapped_column(sa.String(16))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)
    last_login_at: Mapped[datetime | None] = when()


class StaffLoginFailure(UUIDPrimaryKey, Base):
    """One failed login: counted per email and per client address within the window."""

    __tablename__ = "staff_login_failure"
    __table_args__ = (
        sa.Index("ix_staff_login_failure_email", "email", "failed_at"),
        sa.Index("ix_staff_login_failure_ip", "ip", "failed_at"),
    )

    email: Mapped[str] = mapped_column(sa.String(320))  # or ``ui:<name>``, the built-in pair's
    ip: Mapped[str] = mapped_column(sa.String(64))
    failed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)
