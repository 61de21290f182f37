"""subscribers may pause a subscription instead of cancelling it

``subscription.pause_starts_at`` / ``pause_resumes_at``: the pause asked for or running (both
null without one). ``subscription_pause`` keeps every pause asked for, so the pauses of a year
are counted honestly (one taken back before it began does not count).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def upgrade() -> None:
    op.add_column(
        "subscription",
        sa.Column("pause_starts_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.add_column(
        "subscription",
        sa.Column("pause_resumes_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.create_table(
        "subscription_pause",
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resumes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_back_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "months BETWEEN 1 AND 12", name=op.f("ck_subscription_pause_months_range")
        ),
        sa.CheckConstraint(
            "resumes_at > starts_at", name=op.f("ck_subscription_pause_resumes_after_start")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["billing.subscription.id"],
            name=op.f("fk_subscription_pause_subscription_id_subscription"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_pause")),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_billing_subscription_pause_subscription_id"),
        "subscription_pause",
        ["subscription_id"],
        unique=False,
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_billing_subscription_pause_subscription_id"), "subscription_pause", schema=SCHEMA
    )
    op.drop_table("subscription_pause", schema=SCHEMA)
    op.drop_column("subscription", "pause_resumes_at", schema=SCHEMA)
    op.drop_column("subscription", "pause_starts_at", schema=SCHEMA)
