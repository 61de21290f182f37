"""The two tables every service has in its own schema: ``outbox`` and ``inbox``.

They are declared without a schema: each service's engine puts its schema first in
``search_path``. Migrations create them with :func:`create_messaging_tables` and move the outbox
to stored bytes with :func:`store_outbox_payload`.

An outbox row keeps the exact bytes the relay publishes (``payload``): the envelope is serialised
once, when the event is added, and the relay hands those bytes to the broker untouched. Rows from
before that change kept a JSONB ``body`` that every publish parsed and serialised again.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import NAMING_CONVENTION

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def _outbox_key_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.Uuid, primary_key=True),
        # Commit order is unknowable, but within a transaction events keep the order they were
        # added in (a payment's success before its refund); ``created_at`` cannot tell them apart.
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
    ]


def _outbox_tail_columns() -> list[sa.Column[Any]]:
    return [
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


# What the code reads and writes. ``payload`` is NULL only on rows published before the column
# existed; every row the relay claims has it. The transitional ``body`` is left out on purpose.
outbox = sa.Table(
    "outbox",
    metadata,
    *_outbox_key_columns(),
    sa.Column("payload", sa.LargeBinary),
    *_outbox_tail_columns(),
    # The trace the event was added in (W3C headers as JSON, :mod:`shared.tracing`); NULL when
    # the writer did not trace. The relay publishes it in the message headers.
    sa.Column("trace_context", sa.Text),
)
inbox = sa.Table("inbox", metadata, *_inbox_columns())


def notify_channel(schema: str) -> str:
    """The ``LISTEN/NOTIFY`` channel woken when ``schema.outbox`` gets rows."""
    return f"{schema}_outbox"


def create_messaging_tables(op: Any, schema: str) -> None:
    """Create ``outbox`` and ``inbox`` in ``schema`` (call from the service's first migration).

    The outbox is created as it first was, with a JSONB ``body``: a later revision of every
    service (:func:`store_outbox_payload`) moves it to stored bytes, and the first revision must
    keep creating what the revisions after it expect.

    A statement-level trigger notifies the relay on commit, so events leave without polling delay.
    """
    op.create_table(
        "outbox",
        *_outbox_key_columns(),
        sa.Column("body", JSONB, nullable=False),
        *_outbox_tail_columns(),
        schema=schema,
    )
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


def store_outbox_payload(op: Any, schema: str) -> None:
    """Expand step: add ``payload bytea``, fill it for unpublished rows, relax ``body``.

    For one release both forms are kept in step by a row trigger (``outbox_both_forms``), so a
    rolling deploy is safe in both directions while old and new processes share the table:

    - a process of the previous release still writes only ``body``: the trigger fills
      ``payload`` from it (PostgreSQL's JSON text: other spacing and key order, the same JSON),
      and a new relay publishes those bytes;
    - a new process writes only ``payload``: the trigger fills ``body`` from it, so a relay of
      the previous release, which publishes ``body``, still publishes the event (without it the
      old relay would publish ``null`` and the event would be lost to a dead letter).

    ``body`` becomes nullable so that the trigger can be dropped on its own. Once no process of
    the previous release runs, the next revision drops the trigger and ``body``; until then each
    insert pays for one JSON parse inside PostgreSQL. Rows already published keep only ``body``
    (``payload`` stays NULL there): rewriting the whole history would lock the table for long,
    and the relay never reads a published row.
    """
    op.add_column("outbox", sa.Column("payload", sa.LargeBinary), schema=schema)
    op.execute(
        f"""
        UPDATE "{schema}".outbox SET payload = convert_to(body::text, 'UTF8')
        WHERE published_at IS NULL
        """
    )
    op.alter_column("outbox", "body", nullable=True, schema=schema)
    op.execute(
        f"""
        CREATE FUNCTION "{schema}".outbox_both_forms() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.payload IS NULL AND NEW.body IS NOT NULL THEN
                NEW.payload := convert_to(NEW.body::text, 'UTF8');
            ELSIF NEW.body IS NULL AND NEW.payload IS NOT NULL THEN
                NEW.body := convert_from(NEW.payload, 'UTF8')::jsonb;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER outbox_both_forms BEFORE INSERT ON "{schema}".outbox
            FOR EACH ROW EXECUTE FUNCTION "{schema}".outbox_both_forms()
        """
    )


def restore_outbox_body(op: Any, schema: str) -> None:
    """Undo :func:`store_outbox_payload`: ``body`` filled from ``payload`` where missing."""
    op.execute(f'DROP TRIGGER IF EXISTS outbox_both_forms ON "{schema}".outbox')
    op.execute(f'DROP FUNCTION IF EXISTS "{schema}".outbox_both_forms()')
    op.execute(
        f"""
        UPDATE "{schema}".outbox SET body = convert_from(payload, 'UTF8')::jsonb
        WHERE body IS NULL
        """
    )
    op.alter_column("outbox", "body", nullable=False, schema=schema)
    op.drop_column("outbox", "payload", schema=schema)


def add_outbox_trace_context(op: Any, schema: str) -> None:
    """Add ``outbox.trace_context``: nullable, so no row is rewritten and a process of the
    previous release, which does not name the column, keeps inserting and publishing."""
    op.add_column("outbox", sa.Column("trace_context", sa.Text), schema=schema)


def drop_outbox_trace_context(op: Any, schema: str) -> None:
    op.drop_column("outbox", "trace_context", schema=schema)
