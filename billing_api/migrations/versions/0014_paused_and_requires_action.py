"""subscriptions may be paused, payments may wait for the cardholder's confirmation

Widens two status checks (see 0012): ``subscription`` adds ``paused``, ``payment`` adds
``requires_action``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 02:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"

BEFORE: dict[str, tuple[str, ...]] = {
    "subscription": ("pending", "active", "grace", "expired", "abandoned", "canceled"),
    "payment": (
        "pending",
        "succeeded",
        "failed",
        "expired",
        "partially_refunded",
        "refunded",
        "disputed",
    ),
}
ADDED = {"subscription": ("paused",), "payment": ("requires_action",)}


def _recreate(table: str, statuses: tuple[str, ...]) -> None:
    name = op.f(f"ck_{table}_status_known")
    op.drop_constraint(name, table, type_="check", schema=SCHEMA)
    known = ", ".join(f"'{status}'" for status in statuses)
    op.create_check_constraint(name, table, f"status IN ({known})", schema=SCHEMA)


def upgrade() -> None:
    for table, statuses in BEFORE.items():
        _recreate(table, statuses + ADDED[table])


def downgrade() -> None:
    for table, statuses in BEFORE.items():
        _recreate(table, statuses)
