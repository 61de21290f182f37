"""The two tables every service has in its own schema: ``outbox`` and ``inbox``.

They are declared without a schema: each service's engine puts its schema first in
``search_path``. Migrations create them with :func:`create_messaging_tables`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import NAMING_CONVENTION

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def _outbox_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.Uuid, primary_key=True),
        # Commit order is unknowable, but within a transaction events keep the order they were
        # added in (a payment's success before its refund); ``created_at`` cannot tell them apart.
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("correlation_id", sa.String(128)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    ]


def _inbox_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column(
            "processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


outbox = sa.Table("outbox", metadata, *_outbox_columns())
inbox = sa.Table("inbox", metadata, *_inbox_columns())


def notify_channel(schema: str) -> str:
    """The ``LISTEN/NOTIFY`` channel woken when ``schema.outbox`` gets rows."""
    return f"{schema}_outbox"


def create_messaging_tables(op: Any, schema: str) -> None:
    """Create ``outbox`` and ``inbox`` in ``schema`` (call from the service's first migration).

    A statement-level trigger notifies the relay on commit, so events leave without polling delay.
    """
    op.create_table("outbox", *_outbox_columns(), schema=schema)
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["seq"],
        schema=schema,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table("inbox", *_inbox_columns(), schema=schema)
    op.execute(
        f"""
        CREATE FUNCTION "{schema}".notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{notify_channel(schema)}', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER outbox_notify AFTER INSERT ON "{schema}".outbox
            FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".notify_outbox()
        """
    )


def drop_messaging_tables(op: Any, schema: str) -> None:
    op.execute(f'DROP TRIGGER IF EXISTS outbox_notify ON "{schema}".outbox')
    op.execute(f'DROP FUNCTION IF EXISTS "{schema}".notify_outbox()')
    op.drop_table("inbox", schema=schema)
    op.drop_table("outbox", schema=schema)
