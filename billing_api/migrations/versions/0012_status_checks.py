"""the database refuses a status billing does not know

Every ``status`` column of billing is now typed with its enum in the models; a ``CHECK`` per
table (``ck_<table>_status_known``) makes the database refuse any other value, whoever writes it.
The values are those the code writes today, so existing rows pass. A new status needs a migration
that drops and recreates its table's check with the new list.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 20:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"

STATUSES: dict[str, tuple[str, ...]] = {
    "promo_redemption": ("reserved", "redeemed", "released"),
    "subscription": ("pending", "active", "grace", "expired", "abandoned", "canceled"),
    "purchase": ("pending", "completed", "abandoned", "refunded", "canceled"),
    "payment": (
        "pending",
        "succeeded",
        "failed",
        "expired",
        "partially_refunded",
        "refunded",
        "disputed",
    ),
    "refund": ("queued", "pending", "succeeded", "failed", "parked"),
    "idempotency_key": ("in_progress", "done"),
}


def upgrade() -> None:
    for table, statuses in STATUSES.items():
        known = ", ".join(f"'{status}'" for status in statuses)
        op.create_check_constraint(
            op.f(f"ck_{table}_status_known"), table, f"status IN ({known})", schema=SCHEMA
        )


def downgrade() -> None:
    for table in reversed(STATUSES):
        op.drop_constraint(op.f(f"ck_{table}_status_known"), table, type_="check", schema=SCHEMA)
