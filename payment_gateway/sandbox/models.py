"""The sandbox provider's own tables: what a remote card processor would keep on its side."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from payment_gateway.models import Base
from shared.db import Timestamps


def new_id(prefix: str) -> str:
    """An id shaped like Stripe's, marked as the sandbox's: ``cs_sb_…``, ``evt_sb_…``."""
    return f"{prefix}_sb_{secrets.token_hex(12)}"


class SandboxSession(Timestamps, Base):
    """A hosted checkout: ``open`` until paid (``succeeded``), declined (``failed``) or expired."""

    __tablename__ = "sandbox_session"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    payment_id: Mapped[UUID] = mapped_column(unique=True)
    customer_id: Mapped[UUID]
    customer_email: Mapped[str | None] = mapped_column(sa.String(320))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    description: Mapped[str] = mapped_column(sa.String(500))
    success_url: Mapped[str] = mapped_column(sa.Text)
    cancel_url: Mapped[str] = mapped_column(sa.Text)
    save_payment_method: Mapped[bool]
    status: Mapped[str] = mapped_column(sa.String(20), default="open")
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    card_last4: Mapped[str | None] = mapped_column(sa.String(4))
    card_brand: Mapped[str | None] = mapped_column(sa.String(20))
    card_exp_month: Mapped[int | None] = mapped_column(sa.SmallInteger)
    card_exp_year: Mapped[int | None] = mapped_column(sa.SmallInteger)
    payment_method_id: Mapped[str | None] = mapped_column(sa.String(64))
    failure_code: Mapped[str | None] = mapped_column(sa.String(64))


class SandboxPaymentMethod(Timestamps, Base):
    """A saved card; ``fails_off_session`` mimics 4000000000000341, ``off_session_failure_code``
    the sandbox's own cards declined hard later, and ``requires_action`` 4000002760003184 (every
    off-session charge waits for the cardholder's confirmation)."""

    __tablename__ = "sandbox_payment_method"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    customer_id: Mapped[UUID]
    card_last4: Mapped[str] = mapped_column(sa.String(4))
    fails_off_session: Mapped[bool] = mapped_column(default=False)
    off_session_failure_code: Mapped[str | None] = mapped_column(sa.String(64))
    brand: Mapped[str | None] = mapped_column(sa.String(20))
    exp_month: Mapped[int | None] = mapped_column(sa.SmallInteger)
    exp_year: Mapped[int | None] = mapped_column(sa.SmallInteger)
    requires_action: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


class SandboxCharge(Timestamps, Base):
    """An off-session charge of a saved card (idempotent on ``payment_id``).

    ``status``: ``succeeded`` or ``failed`` at once, or ``requires_action`` until the cardholder
    confirms it at ``action_url`` (then ``succeeded``), refuses it (``failed``) or the gateway
    cancels it (``canceled``).
    """

    __tablename__ = "sandbox_charge"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    payment_id: Mapped[UUID] = mapped_column(unique=True)
    customer_id: Mapped[UUID]
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    # As the gateway took it (up to 255): a reference the sandbox never issued is a failed charge.
    payment_method_id: Mapped[str] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(20))
    failure_code: Mapped[str | None] = mapped_column(sa.String(64))
    # The card charged, as the saved method had it (none for a method the sandbox never issued).
    card_brand: Mapped[str | None] = mapped_column(sa.String(20))
    card_last4: Mapped[str | None] = mapped_column(sa.String(4))
    card_exp_month: Mapped[int | None] = mapped_column(sa.SmallInteger)
    card_exp_year: Mapped[int | None] = mapped_column(sa.SmallInteger)
    action_url: Mapped[str | None] = mapped_column(sa.Text)


class SandboxRefund(Timestamps, Base):
    """A refund against a session or a charge (idempotent on our ``refund_id``).

    A refund made in the sandbox's dashboard (as staff would in Stripe's) has no ``refund_id``.
    """

    __tablename__ = "sandbox_refund"
    __table_args__ = (sa.CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    refund_id: Mapped[UUID | None] = mapped_column(unique=True)
    payment_ref: Mapped[str] = mapped_column(sa.String(64), index=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(20))


class SandboxDispute(Timestamps, Base):
    """A chargeback the payer's bank opened against a session or a charge (one per payment)."""

    __tablename__ = "sandbox_dispute"
    __table_args__ = (sa.CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    payment_ref: Mapped[str] = mapped_column(sa.String(64), unique=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    reason: Mapped[str] = mapped_column(sa.String(64))


class SandboxWebhook(Base):
    """An outgoing webhook, retried with backoff until the gateway acknowledges it."""

    __tablename__ = "sandbox_webhook"
    __table_args__ = (
        sa.Index(
            "ix_sandbox_webhook_due",
            "next_attempt_at",
            postgresql_where=sa.text("delivered_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    event_type: Mapped[str] = mapped_column(sa.String(100))
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
