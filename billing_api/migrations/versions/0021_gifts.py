"""gift subscriptions: the gift, its code, the payment that bought it, the wrong-code counter

``gift``: months of a plan bought by one user for a recipient's email; once paid it has a code
(unique: looked up by its index) that any signed-in user redeems once. ``payment.gift_id``
points at the gift a ``gift`` payment bought. ``gift_code_failure``: wrong codes per user in the
current window (the redeem rate limit). ``payment`` keeps its status check (no new status).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"
STATUSES = (
    "pending",
    "paid",
    "refunding",
    "redeemed",
    "refunded",
    "expired",
    "revoked",
    "abandoned",
)


def _when(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    known = ", ".join(f"'{status}'" for status in STATUSES)
    op.create_table(
        "gift",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("buyer_id", sa.Uuid(), nullable=False),
        sa.Column("buyer_email", sa.String(length=320), nullable=True),
        sa.Column("locale", sa.String(length=10), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.Column("recipient_email", sa.String(length=320), nullable=False),
        sa.Column("message", sa.String(length=1000), nullable=True),
        _when("deliver_at"),
        sa.Column("validity_days", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.Column("latest_payment_id", sa.Uuid(), nullable=True),
        _when("paid_at"),
        _when("expires_at"),
        _when("delivered_at"),
        _when("expiry_reminded_at"),
        sa.Column("redeemed_by", sa.Uuid(), nullable=True),
        _when("redeemed_at"),
        sa.Column("subscription_id", sa.Uuid(), nullable=True),
        _when("period_start"),
        _when("period_end"),
        sa.Column("started_subscription", sa.Boolean(), server_default=sa.false(), nullable=False),
        _when("ended_at"),
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
        sa.CheckConstraint("months BETWEEN 1 AND 12", name=op.f("ck_gift_months_range")),
        sa.CheckConstraint("validity_days > 0", name=op.f("ck_gift_validity_positive")),
        sa.CheckConstraint(f"status IN ({known})", name=op.f("ck_gift_status_known")),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["billing.plan.id"], name=op.f("fk_gift_plan_id_plan")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["billing.subscription.id"],
            name=op.f("fk_gift_subscription_id_subscription"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gift")),
        sa.UniqueConstraint("code", name=op.f("uq_gift_code")),
        schema=SCHEMA,
    )
    op.create_index("ix_gift_buyer_created", "gift", ["buyer_id", "created_at"], schema=SCHEMA)
    op.create_index(
        op.f("ix_billing_gift_recipient_email"), "gift", ["recipient_email"], schema=SCHEMA
    )
    op.create_index(op.f("ix_billing_gift_redeemed_by"), "gift", ["redeemed_by"], schema=SCHEMA)
    op.create_index(
        "ix_gift_delivery_due",
        "gift",
        ["deliver_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'paid' AND delivered_at IS NULL"),
    )
    op.create_index(
        "ix_gift_paid_expires",
        "gift",
        ["expires_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'paid'"),
    )
    op.add_column("payment", sa.Column("gift_id", sa.Uuid(), nullable=True), schema=SCHEMA)
    op.create_foreign_key(
        op.f("fk_payment_gift_id_gift"),
        "payment",
        "gift",
        ["gift_id"],
        ["id"],
        source_schema=SCHEMA,
        referent_schema=SCHEMA,
    )
    op.create_table(
        "gift_code_failure",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        _when("window_started_at", nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_gift_code_failure")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("gift_code_failure", schema=SCHEMA)
    op.drop_constraint(
        op.f("fk_payment_gift_id_gift"), "payment", type_="foreignkey", schema=SCHEMA
    )
    op.drop_column("payment", "gift_id", schema=SCHEMA)
    op.drop_table("gift", schema=SCHEMA)
