"""every captured payment and every refund gets a receipt numbered without gaps per year

``receipt`` holds one row per money movement: ``number`` ``2026-000123`` (``year`` and
``sequence``, at least six digits: the millionth of a year is ``2026-1000000``), ``kind`` ``payment`` or ``refund`` and exactly one of ``payment_id``/``refund_id``
(a check; each unique, so nothing is numbered twice). ``receipt_counter`` holds the last number
given per year.

How numbers are given, whoever moves the money (checkout activation, wallet payments inserted
already succeeded, renewals settled by set-based UPDATE/INSERT, plan changes, top-ups, refunds):
``DEFERRABLE INITIALLY DEFERRED`` constraint triggers on ``payment`` (``AFTER INSERT OR UPDATE OF
status``, when the status is ``succeeded`` and the amount above zero: trials, card updates and
free orders get none) and on ``refund`` (status ``succeeded``) call ``issue_receipt()``. Deferred,
they run at COMMIT of the transaction that moved the money:

* the receipt is part of that transaction: a rolled-back transaction consumes no number;
* the counter's row lock (``INSERT … ON CONFLICT (year) DO UPDATE … RETURNING``) serialises
  numbering, which gaplessness needs, and is the last lock the transaction takes, held only
  while it commits: it cannot deadlock with the application's lock order and queues committers
  for a moment only;
* the function first looks for the row's receipt, so a payment that reaches ``succeeded``
  twice in one transaction (inserted succeeded, then updated) is numbered once, with no gap.
  The unique ``payment_id``/``refund_id`` back that up across transactions (the row locks of
  the payment already serialise those).

A payment moving on to ``partially_refunded``, ``refunded`` or ``disputed`` keeps its receipt.
The year is that of the transaction's ``now()`` in UTC, as is ``issued_at``.

Existing data is backfilled: payments captured (succeeded, refunded, partially refunded or
disputed, amount above zero) and refunds succeeded before this revision get receipts numbered
per year of when the money moved (``paid_at``/``completed_at``, else ``created_at``), in that
order, with ``issued_at`` at that moment; each year's counter continues after them. Money moving
while this runs is not missed: creating ``receipt``'s foreign keys locks ``payment`` and
``refund`` against writes (SHARE ROW EXCLUSIVE) until this revision commits, so the backfill
sees every movement committed before it and the triggers number every one committed after.

A receipt's number, once given, is never taken back: the downgrade refuses while any receipt
exists (dropping them and upgrading again would renumber them by ``paid_at``, not in the order
they were given, and a customer's receipt number would then show someone else's payment). An
operator who accepts that runs ``alembic -x forget_receipts=yes downgrade 0018``.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"

ISSUE_RECEIPT = """
CREATE FUNCTION billing.issue_receipt() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    moment timestamptz := now();
    issued_year integer := extract(year FROM moment AT TIME ZONE 'UTC')::integer;
    next_number integer;
BEGIN
    -- A row may reach 'succeeded' twice in one transaction (inserted so, then updated): both
    -- events fire at COMMIT, the second finds the first's receipt and takes no number.
    IF TG_TABLE_NAME = 'payment' THEN
        PERFORM 1 FROM billing.receipt WHERE payment_id = NEW.id;
    ELSE
        PERFORM 1 FROM billing.receipt WHERE refund_id = NEW.id;
    END IF;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO billing.receipt_counter AS counter (year, last_number)
    VALUES (issued_year, 1)
    ON CONFLICT (year) DO UPDATE SET last_number = counter.last_number + 1
    RETURNING counter.last_number INTO next_number;
    INSERT INTO billing.receipt (number, year, sequence, kind, payment_id, refund_id, issued_at)
    VALUES (
        -- At least six digits: lpad() alone would cut the millionth to six, a duplicate.
        issued_year::text || '-'
            || lpad(next_number::text, greatest(6, length(next_number::text)), '0'),
        issued_year,
        next_number,
        TG_TABLE_NAME,
        CASE WHEN TG_TABLE_NAME = 'payment' THEN NEW.id END,
        CASE WHEN TG_TABLE_NAME = 'refund' THEN NEW.id END,
        moment
    );
    RETURN NULL;
END
$$
"""

PAYMENT_TRIGGER = """
CREATE CONSTRAINT TRIGGER payment_receipt
AFTER INSERT OR UPDATE OF status ON billing.payment
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (NEW.status = 'succeeded' AND NEW.amount > 0)
EXECUTE FUNCTION billing.issue_receipt()
"""

REFUND_TRIGGER = """
CREATE CONSTRAINT TRIGGER refund_receipt
AFTER INSERT OR UPDATE OF status ON billing.refund
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (NEW.status = 'succeeded')
EXECUTE FUNCTION billing.issue_receipt()
"""

# Money moved before this revision, numbered per year in the order it moved.
BACKFILL = """
WITH moved AS (
    SELECT 'payment' AS kind, id AS payment_id, NULL::uuid AS refund_id,
           coalesce(paid_at, created_at) AS moved_at, created_at
    FROM billing.payment
    WHERE amount > 0
      AND status IN ('succeeded', 'partially_refunded', 'refunded', 'disputed')
    UNION ALL
    SELECT 'refund', NULL, id, coalesce(completed_at, created_at), created_at
    FROM billing.refund
    WHERE status = 'succeeded'
), numbered AS (
    SELECT moved.*,
           extract(year FROM moved_at AT TIME ZONE 'UTC')::integer AS year,
           row_number() OVER (
               PARTITION BY extract(year FROM moved_at AT TIME ZONE 'UTC')
               ORDER BY moved_at, created_at, kind, coalesce(payment_id, refund_id)
           )::integer AS sequence
    FROM moved
)
INSERT INTO billing.receipt (number, year, sequence, kind, payment_id, refund_id, issued_at)
SELECT year::text || '-' || lpad(sequence::text, greatest(6, length(sequence::text)), '0'),
       year, sequence, kind,
       payment_id, refund_id, moved_at
FROM numbered
"""

BACKFILL_COUNTERS = """
INSERT INTO billing.receipt_counter (year, last_number)
SELECT year, max(sequence) FROM billing.receipt GROUP BY year
"""


def upgrade() -> None:
    op.create_table(
        "receipt_counter",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_receipt_counter")),
        schema=SCHEMA,
    )
    op.create_table(
        "receipt",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("refund_id", sa.Uuid(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('payment', 'refund')", name=op.f("ck_receipt_kind_known")),
        sa.CheckConstraint(
            "(kind = 'payment' AND payment_id IS NOT NULL AND refund_id IS NULL)"
            " OR (kind = 'refund' AND refund_id IS NOT NULL AND payment_id IS NULL)",
            name=op.f("ck_receipt_one_money_movement"),
        ),
        sa.CheckConstraint("sequence > 0", name=op.f("ck_receipt_sequence_positive")),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            [f"{SCHEMA}.payment.id"],
            name=op.f("fk_receipt_payment_id_payment"),
        ),
        sa.ForeignKeyConstraint(
            ["refund_id"], [f"{SCHEMA}.refund.id"], name=op.f("fk_receipt_refund_id_refund")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipt")),
        sa.UniqueConstraint("number", name=op.f("uq_receipt_number")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_receipt_payment_id")),
        sa.UniqueConstraint("refund_id", name=op.f("uq_receipt_refund_id")),
        sa.UniqueConstraint("year", "sequence", name=op.f("uq_receipt_year_sequence")),
        schema=SCHEMA,
    )
    op.execute(BACKFILL)
    op.execute(BACKFILL_COUNTERS)
    op.execute(ISSUE_RECEIPT)
    op.execute(PAYMENT_TRIGGER)
    op.execute(REFUND_TRIGGER)


REFUSE_TO_FORGET_RECEIPTS = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM billing.receipt) THEN
        RAISE EXCEPTION 'numbered receipts exist: dropping them would give their numbers again'
            USING HINT = 'alembic -x forget_receipts=yes downgrade 0018 drops them anyway';
    END IF;
END $$
"""


def downgrade() -> None:
    if context.get_x_argument(as_dictionary=True).get("forget_receipts") != "yes":
        op.execute(REFUSE_TO_FORGET_RECEIPTS)
    op.execute("DROP TRIGGER refund_receipt ON billing.refund")
    op.execute("DROP TRIGGER payment_receipt ON billing.payment")
    op.execute("DROP FUNCTION billing.issue_receipt()")
    op.drop_table("receipt", schema=SCHEMA)
    op.drop_table("receipt_counter", schema=SCHEMA)
