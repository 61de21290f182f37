"""Tables of the ``gateway`` schema: payments, refunds, received webhooks, provider customers.

The sandbox provider keeps its own tables (``sandbox_*``, in :mod:`payment_gateway.sandbox.models`)
as if it were a remote system; the gateway only reaches them through the provider interface.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from payment_gateway.config import SCHEMA
from shared.db import Timestamps, make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata(SCHEMA)


class PaymentStatus(StrEnum):
    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"  # an off-session charge the cardholder must confirm
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DISPUTED = "disputed"


class RefundState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Payment(Timestamps, Base):
    """One payment asked for by billing, identified by billing's own ``payment_id``."""

    __tablename__ = "payment"
    __table_args__ = (
        # 0 is a checkout that only saves the card (a trial); refunds stay strictly positive.
        sa.CheckConstraint("amount >= 0", name="amount_not_negative"),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount", name="refunds_within_amount"
        ),
        sa.Index("ix_payment_provider_ref", "provider", "provider_ref"),
        # A webhook without our payment id names the provider's payment or charge: both found
        # by index (with one of the two unindexed, the OR of them read the whole table).
        sa.Index(
            "ix_payment_charge_ref",
            "provider",
            "charge_ref",
            postgresql_where=sa.text("charge_ref IS NOT NULL"),
        ),
        # A renewal finds the provider holding its saved card by the card's reference.
        sa.Index("ix_payment_payment_method_ref", "payment_method_ref"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    customer_id: Mapped[UUID]
    customer_email: Mapped[str | None] = mapped_column(sa.String(320))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    description: Mapped[str] = mapped_column(sa.String(500))
    mode: Mapped[str] = mapped_column(sa.String(20))
    provider: Mapped[str] = mapped_column(sa.String(20))
    provider_ref: Mapped[str | None] = mapped_column(sa.String(255))
    charge_ref: Mapped[str | None] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(20), default=PaymentStatus.PENDING)
    checkout_url: Mapped[str | None] = mapped_column(sa.Text)
    # Where the cardholder confirms a ``requires_action`` charge (the provider's page).
    action_url: Mapped[str | None] = mapped_column(sa.Text)
    expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    save_payment_method: Mapped[bool] = mapped_column(default=False)
    payment_method_ref: Mapped[str | None] = mapped_column(sa.String(255))
    success_url: Mapped[str | None] = mapped_column(sa.Text)
    cancel_url: Mapped[str | None] = mapped_column(sa.Text)
    extra: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    failure_code: Mapped[str | None] = mapped_column(sa.String(100))
    failure_message: Mapped[str | None] = mapped_column(sa.String(500))
    # A decline that can never succeed with this card (the provider's code says so).
    hard_decline: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # The card paid with or saved, as the provider shows it (never the number).
    card_brand: Mapped[str | None] = mapped_column(sa.String(20))
    card_last4: Mapped[str | None] = mapped_column(sa.String(4))
    card_exp_month: Mapped[int | None] = mapped_column(sa.SmallInteger)
    card_exp_year: Mapped[int | None] = mapped_column(sa.SmallInteger)
    # Sum of refunds not failed (pending + succeeded): the database refuses more than the amount.
    refunded_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    succeeded_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # The 54-FZ receipt's registration as the provider reports it (YooKassa), when one was sent.
    receipt_registration: Mapped[str | None] = mapped_column(sa.String(20))
    disputed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # The trace of the checkout or charge that created the payment (shared.tracing), so a
    # webhook settling it later, from another request, continues the purchase's trace.
    trace_context: Mapped[str | None] = mapped_column(sa.Text)


class Refund(Timestamps, Base):
    """A refund of (part of) a payment; billing's ``refund_id`` or one derived from the provider."""

    __tablename__ = "refund"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.UniqueConstraint("payment_id", "provider_ref"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    payment_id: Mapped[UUID] = mapped_column(sa.ForeignKey("payment.id"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    status: Mapped[str] = mapped_column(sa.String(20), default=RefundState.PENDING)
    provider_ref: Mapped[str | None] = mapped_column(sa.String(255))
    failure_message: Mapped[str | None] = mapped_column(sa.String(500))
    receipt_registration: Mapped[str | None] = mapped_column(sa.String(20))
    # The lines it was asked with (JSON of base.OrderLine), so that asking again is the same ask.
    order_lines: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=sa.text("'[]'")
    )


class WebhookEvent(Base):
    """A verified webhook as received; the unique key makes every redelivery a no-op."""

    __tablename__ = "webhook_event"
    __table_args__ = (
        sa.UniqueConstraint("provider", "provider_event_id"),
        sa.Index(
            "ix_webhook_event_unprocessed",
            "received_at",
            postgresql_where=sa.text("processed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(20))
    provider_event_id: Mapped[str] = mapped_column(sa.String(255))
    event_type: Mapped[str] = mapped_column(sa.String(100))
    payment_id: Mapped[UUID | None]
    provider_ref: Mapped[str | None] = mapped_column(sa.String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    processed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(sa.String(200))
    # Failed processing attempts, kept across restarts and replicas: the next try waits until
    # ``next_attempt_at``; after too many the event is parked (left for an operator or for a
    # refresh of its payment) instead of being tried forever.
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    parked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class ProviderCallState(StrEnum):
    STARTED = "started"  # recorded, then asked: still so if the process died meanwhile
    ANSWERED = "answered"
    REFUSED = "refused"  # the provider refused or could not be reached (ProviderError)
    UNREADABLE = "unreadable"  # an answer the adapter could not read: the outcome is unknown


class ProviderCall(Base):
    """One call that may move money or create something at a provider, recorded (and committed
    in its own transaction) before it is made, and marked with how it ended.

    The request that made the call may roll back; this row stays. A call left ``started`` or
    ``unreadable`` may have charged, refunded or created at the provider although nothing else
    of ours says so: it names the payment (and refund) so that it can be looked up and settled.
    """

    __tablename__ = "provider_call"
    __table_args__ = (
        sa.Index("ix_provider_call_payment_id", "payment_id"),
        sa.Index(
            "ix_provider_call_in_doubt",
            "started_at",
            postgresql_where=sa.text("state IN ('started', 'unreadable')"),
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(20))
    operation: Mapped[str] = mapped_column(sa.String(40))
    payment_id: Mapped[UUID | None]
    refund_id: Mapped[UUID | None]
    customer_id: Mapped[UUID | None]
    provider_ref: Mapped[str | None] = mapped_column(sa.String(255))
    state: Mapped[str] = mapped_column(sa.String(20), default=ProviderCallState.STARTED)
    detail: Mapped[str | None] = mapped_column(sa.String(500))
    started_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class ProviderCustomer(Base):
    """The provider's customer object for one of our users, reused across payments."""

    __tablename__ = "provider_customer"

    provider: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    user_id: Mapped[UUID] = mapped_column(primary_key=True)
    customer_ref: Mapped[str] = mapped_column(sa.String(255))
