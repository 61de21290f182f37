"""the outbox keeps the trace each event was added in (``trace_context``)

With tracing on (``OTEL_EXPORTER_OTLP_ENDPOINT``) a row carries the W3C trace context of the
change that added it; the relay publishes it in the message headers and the consumer continues
the trace, so one purchase is one trace across the services. A nullable column: no row is
rewritten, and processes of the previous release, which do not name it, keep working.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 06:10:00
"""

from collections.abc import Sequence

from alembic import op

from shared.tables import add_outbox_trace_context, drop_outbox_trace_context

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_outbox_trace_context(op, "access")


def downgrade() -> None:
    drop_outbox_trace_context(op, "access")
