"""provider calls recorded before they are made; webhook retries counted and parked

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 06:00:00

``provider_call``: one row per call that may move money or create something at a provider,
committed before the call and marked with how it ended, so an answer the gateway could not read
still leaves a trace. ``webhook_event`` gains ``attempts``, ``next_attempt_at`` and
``parked_at``: the retry backoff and the parking survive restarts and are shared by replicas.
New table and nullable or constant-default columns: no table is rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "gateway"


def upgrade() -> None:
    op.create_table(
        "provider_call",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("operation", sa.String(40), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("refund_id", sa.Uuid(), nullable=True),
        sa.Column("customer_id", sa.Uuid(), nullable=True),
        sa.Column("provider_ref", sa.String(255), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("detail", sa.String(500), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_call")),
        schema=SCHEMA,
    )
    op.create_index("ix_provider_call_payment_id", "provider_call", ["payment_id"], schema=SCHEMA)
    op.create_index(
        "ix_provider_call_in_doubt",
        "provider_call",
        ["started_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("state IN ('started', 'unreadable')"),
    )
    op.add_column(
        "webhook_event",
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        schema=SCHEMA,
    )
    op.add_column(
        "webhook_event",
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.add_column(
        "webhook_event",
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("webhook_event", "parked_at", schema=SCHEMA)
    op.drop_column("webhook_event", "next_attempt_at", schema=SCHEMA)
    op.drop_column("webhook_event", "attempts", schema=SCHEMA)
    op.drop_index("ix_provider_call_in_doubt", table_name="provider_call", schema=SCHEMA)
    op.drop_index("ix_provider_call_payment_id", table_name="provider_call", schema=SCHEMA)
    op.drop_table("provider_call", schema=SCHEMA)
