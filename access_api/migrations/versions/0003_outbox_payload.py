"""the outbox keeps the bytes it publishes (``payload``), serialised once

Events were stored as JSONB (``body``): serialised to JSON on the way in, parsed back by the
relay and serialised again to publish. They are now stored as the exact bytes the relay publishes.

Expand step of an expand/contract change, safe for a rolling deploy (see
:func:`shared.tables.store_outbox_payload`): ``payload bytea`` is added and filled for the rows
not yet published, ``body`` becomes nullable and is kept, and a row trigger fills whichever of
the two a writer left out, so processes of the previous release (which write and publish
``body``) and of this one (``payload``) can share the outbox while the deploy rolls. A later
revision drops the trigger and ``body`` once no process of the previous release runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 23:20:00
"""

from collections.abc import Sequence

from alembic import op

from shared.tables import restore_outbox_body, store_outbox_payload

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    store_outbox_payload(op, "access")


def downgrade() -> None:
    restore_outbox_body(op, "access")
