"""Refunds: money given back for (part of) a payment."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from billing_api.models.base import Base, status_column, when
from shared.db import Timestamps, UUIDPrimaryKey

if TYPE_CHECKING:
    from billing_api.models.receipts import Receipt


class RefundStatus(StrEnum):
    QUEUED = "queued"  # decided by billing, waiting for the job that sends it
    PENDING = "pending"  # sent (or being sent), the provider has not answered yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARKED = "parked"  # billing stopped retrying: left to staff


class Refund(UUIDPrimaryKey, Timestamps, Base):
    """Money given back for (part of) a payment; its id is the gateway's idempotency key.

    A refund made at the provider (its dashboard) takes the id the gateway gave it; either way
    ``provider_ref`` names the provider's refund once known, at most once per payment.
    """

    __tablename__ = "refund"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.UniqueConstraint("payment_id", "provider_ref"),
        # The send_queued_refunds job takes the queued refunds whose next try is due first.
        sa.Index(
            "ix_refund_queued_due",
            sa.text("coalesce(next_attempt_at, created_at)"),
            postgresql_where=sa.text("status = 'queued'"),
        ),
        # reconcile_pending_refunds takes the pending refunds whose next ask is due first.
        sa.Index(
            "ix_refund_pending_due",
            sa.text("coalesce(reconcile_next_at, created_at)"),
            postgresql_where=sa.text("status = 'pending'"),
        ),
    )

    payment_id: Mapped[UUID] = mapped_column(sa.ForeignKey("payment.id"), index=True)
    user_id: Mapped[UUID]
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[RefundStatus] = status_column(
        RefundStatus, length=10, default=RefundStatus.PENDING
    )
    rule: Mapped[str] = mapped_column(sa.String(200))
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    completed_at: Mapped[datetime | None] = when()
    provider_ref: Mapped[str | None] = mapped_column(sa.String(255))
    # Billing refunded on its own (no one asked): a failed try is retried, then ``parked``.
    billing_decided: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Failed tries to give this money back (a retry carries its failed refund's count on).
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = when()
    retry_of: Mapped[UUID | None] = mapped_column(sa.ForeignKey("refund.id"))
    # A pending refund's next ask of the gateway (billing_api.refunds.reconcile).
    reconcile_next_at: Mapped[datetime | None] = when()
    # Its numbered receipt, written by the database once the money moved (read-only here).
    receipt: Mapped[Receipt | None] = relationship(
        lazy="raise", viewonly=True, foreign_keys="Receipt.refund_id"
    )
