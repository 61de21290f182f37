"""Receipts: the numbered record of money taken (a payment) or given back (a refund).

Rows are written by the database only, at the COMMIT of the transaction that moved the money
(see :mod:`billing_api.receipts` and migration 0019): the code reads them and never inserts them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.models.base import Base


class ReceiptKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


class ReceiptCounter(Base):
    """The last number given in a year; its row lock makes numbering one at a time (gapless)."""

    __tablename__ = "receipt_counter"

    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_number: Mapped[int]


class Receipt(Base):
    """``2026-000123``: the year and the receipt's place in it, for one payment or one refund."""

    __tablename__ = "receipt"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('payment', 'refund')", name="kind_known"),
        sa.CheckConstraint(
            "(kind = 'payment' AND payment_id IS NOT NULL AND refund_id IS NULL)"
            " OR (kind = 'refund' AND refund_id IS NOT NULL AND payment_id IS NULL)",
            name="one_money_movement",
        ),
        sa.CheckConstraint("sequence > 0", name="sequence_positive"),
        sa.UniqueConstraint("year", "sequence"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=sa.func.gen_random_uuid())
    number: Mapped[str] = mapped_column(sa.Text, unique=True)
    year: Mapped[int]
    sequence: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(10))
    payment_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("payment.id"), unique=True)
    refund_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("refund.id"), unique=True)
    issued_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
