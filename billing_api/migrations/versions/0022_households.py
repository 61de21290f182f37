"""plans get household seats; owners share a subscription with the people they invite

``plan.household_seats`` (0..6, default 0: no household). ``household_member``: one seat of a
subscription, invited by email with an unguessable ``code`` (unique), joined by an account
(``user_id``), removed with a reason; a person is joined to at most one household per plan
(partial unique index on ``user_id, plan_id`` where joined).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def upgrade() -> None:
    op.add_column(
        "plan",
        sa.Column("household_seats", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema=SCHEMA,
    )
    op.create_check_constraint(
        op.f("ck_plan_household_seats_range"),
        "plan",
        "household_seats BETWEEN 0 AND 6",
        schema=SCHEMA,
    )
    op.create_table(
        "household_member",
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("locale", sa.String(length=10), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_reason", sa.String(length=40), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('invited', 'joined', 'removed')",
            name=op.f("ck_household_member_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            [f"{SCHEMA}.subscription.id"],
            name=op.f("fk_household_member_subscription_id_subscription"),
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], [f"{SCHEMA}.plan.id"], name=op.f("fk_household_member_plan_id_plan")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_household_member")),
        sa.UniqueConstraint("code", name=op.f("uq_household_member_code")),
        schema=SCHEMA,
    )
    for column in ("subscription_id", "owner_id", "email", "user_id"):
        op.create_index(
            op.f(f"ix_billing_household_member_{column}"),
            "household_member",
            [column],
            schema=SCHEMA,
        )
    op.create_index(
        "uq_household_member_one_per_plan",
        "household_member",
        ["user_id", "plan_id"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'joined'"),
    )


def downgrade() -> None:
    op.drop_table("household_member", schema=SCHEMA)
    op.drop_constraint(op.f("ck_plan_household_seats_range"), "plan", schema=SCHEMA)
    op.drop_column("plan", "household_seats", schema=SCHEMA)
