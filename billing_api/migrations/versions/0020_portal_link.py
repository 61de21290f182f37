"""customers open the portal with single-use links; a portal form acts once

``portal_link``: a link an app asked for (``POST /api/v1/portal-sessions``). Only the token's
SHA-256 is kept (``token_hash``, unique), never the token; opening the link sets ``used_at``
once. ``portal_form_submission``: the per-render key of each portal form that acted, with where
it redirected, so a form sent twice acts once and the second answer repeats the first.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def upgrade() -> None:
    op.create_table(
        "portal_link",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("locale", sa.String(length=10), nullable=True),
        sa.Column("return_url", sa.Text(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_link")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_portal_link_token_hash")),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_billing_portal_link_user_id"), "portal_link", ["user_id"], schema=SCHEMA
    )
    op.create_table(
        "portal_form_submission",
        sa.Column("link_id", sa.Uuid(), nullable=False),
        sa.Column("form_key", sa.String(length=64), nullable=False),
        sa.Column("redirect_to", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["billing.portal_link.id"],
            name=op.f("fk_portal_form_submission_link_id_portal_link"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("link_id", "form_key", name=op.f("pk_portal_form_submission")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("portal_form_submission", schema=SCHEMA)
    op.drop_index(op.f("ix_billing_portal_link_user_id"), "portal_link", schema=SCHEMA)
    op.drop_table("portal_link", schema=SCHEMA)
