"""back-office staff accounts (``staff_user``) and their failed logins (``staff_login_failure``)

``staff_user``: one person of the back office, logging in with an email (unique, kept in lower
case: the database refuses anything else) and a password kept as an Argon2id hash, with one of
the roles viewer, support, finance, admin. ``staff_login_failure``: one row per failed login,
counted per email and per client address over the last minutes (the login page's rate limit);
rows older than the window are deleted as new failures arrive.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 06:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"
ROLES = ("viewer", "support", "finance", "admin")


def upgrade() -> None:
    known = ", ".join(f"'{role}'" for role in ROLES)
    op.create_table(
        "staff_user",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("email = lower(email)", name=op.f("ck_staff_user_email_lowercase")),
        sa.CheckConstraint(f"role IN ({known})", name=op.f("ck_staff_user_role_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_user")),
        sa.UniqueConstraint("email", name=op.f("uq_staff_user_email")),
        schema=SCHEMA,
    )
    op.create_table(
        "staff_login_failure",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_login_failure")),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_staff_login_failure_email",
        "staff_login_failure",
        ["email", "failed_at"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_staff_login_failure_ip", "staff_login_failure", ["ip", "failed_at"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_table("staff_login_failure", schema=SCHEMA)
    op.drop_table("staff_user", schema=SCHEMA)
