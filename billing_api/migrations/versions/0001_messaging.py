"""billing schema with its outbox and inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from alembic import op

from shared.tables import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables(op, "billing")


def downgrade() -> None:
    drop_messaging_tables(op, "billing")
