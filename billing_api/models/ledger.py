"""The double-entry ledger: money movements and their balanced entries."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.models.base import Base
from shared.db import UUIDPrimaryKey, utc_now


class LedgerTransaction(UUIDPrimaryKey, Base):
    """One money movement; its entries balance (checked by the database at commit)."""

    __tablename__ = "ledger_transaction"
    __table_args__ = (sa.UniqueConstraint("kind", "reference"),)

    kind: Mapped[str] = mapped_column(sa.String(30))
    # What caused it (payment id, refund id…): the unique key makes posting idempotent.
    reference: Mapped[str] = mapped_column(sa.String(100))
    user_id: Mapped[UUID | None] = mapped_column(index=True)
    description: Mapped[str] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)


class LedgerEntry(Base):
    __tablename__ = "ledger_entry"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("side IN ('debit', 'credit')", name="side_known"),
        sa.Index("ix_ledger_entry_account", "account", "currency"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    transaction_id: Mapped[UUID] = mapped_column(sa.ForeignKey("ledger_transaction.id"), index=True)
    account: Mapped[str] = mapped_column(sa.String(100))
    side: Mapped[str] = mapped_column(sa.String(6))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
