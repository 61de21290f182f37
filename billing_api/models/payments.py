"""Payments: one attempt to take money for a subscription, a purchase or a wallet top-up."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from billing_api.models.base import Base, status_column, when
from shared.db import Timestamps, UUIDPrimaryKey

if TYPE_CHECKING:
    from billing_api.models.receipts import Receipt


class PaymentPurpose(StrEnum):
    SUBSCRIPTION = "subscription"
    RENEWAL = "renewal"
    PURCHASE = "purchase"
    TOP_UP = "top_up"
    TRIAL = "trial"  # a zero-amount checkout that only saves the card
    UPGRADE = "upgrade"  # a plan change paid now, less the unused part of the current period
    CARD_UPDATE = "card_update"  # a zero-amount checkout saving a subscription's new card
    GIFT = "gift"  # months of a plan bought for someone else (a gift code)


class PaymentStatus(StrEnum):
    PENDING = "pending"  # checkout open, or an off-session charge not settled yet
    REQUIRES_ACTION = "requires_action"  # the cardholder must confirm it (3-D Secure)
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # declined; a checkout still payable may yet succeed
    EXPIRED = "expired"  # the checkout closed unpaid
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DISPUTED = "disputed"  # the cardholder disputed it with their bank


class Payment(UUIDPrimaryKey, Timestamps, Base):
    """One attempt to take money for something; its id is the gateway's idempotency key."""

    __tablename__ = "payment"
    __table_args__ = (
        sa.CheckConstraint("amount >= 0", name="amount_not_negative"),
        sa.CheckConstraint("refunded_amount BETWEEN 0 AND amount", name="refunds_within_amount"),
        sa.Index("ix_payment_user_created", "user_id", "created_at"),
        # Reconciliation takes the card payments whose next ask is due, the longest-due first.
        sa.Index(
            "ix_payment_reconcile_due",
            sa.text("coalesce(reconcile_next_at, created_at)"),
            postgresql_where=sa.text(
                "status = 'pending' AND method = 'card' AND reconcile_parked_at IS NULL"
            ),
        ),
        # The renewals of the last hour, read before every scrape (billing_api.metrics).
        sa.Index(
            "ix_payment_renewal_created",
            "created_at",
            postgresql_where=sa.text("purpose = 'renewal'"),
        ),
        # A subscription's payments: read on every renewal's settlement (the other renewals it
        # voids), renewal claims, refund quotes, upgrades and card updates.
        sa.Index(
            "ix_payment_subscription",
            "subscription_id",
            "created_at",
            postgresql_where=sa.text("subscription_id IS NOT NULL"),
        ),
    )

    user_id: Mapped[UUID]
    email: Mapped[str | None] = mapped_column(sa.String(320))
    purpose: Mapped[str] = mapped_column(sa.String(15))
    subscription_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("subscription.id"))
    purchase_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("purchase.id"))
    gift_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("gift.id"))
    # The plan a subscription or upgrade payment buys (an upgrade's target plan).
    plan_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("plan.id"))
    method: Mapped[str] = mapped_column(sa.String(10))  # card | wallet | free
    status: Mapped[PaymentStatus] = status_column(
        PaymentStatus, length=20, default=PaymentStatus.PENDING
    )
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    base_amount: Mapped[int] = mapped_column(sa.BigInteger)
    discount_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    quote: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    promo_code_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("promo_code.id"))
    months: Mapped[int] = mapped_column(default=1)
    description: Mapped[str] = mapped_column(sa.String(500))
    checkout_url: Mapped[str | None] = mapped_column(sa.Text)
    # Where the cardholder confirms a ``requires_action`` payment (3-D Secure), as the gateway
    # said; shown to the user only while the payment waits for it.
    action_url: Mapped[str | None] = mapped_column(sa.Text)
    expires_at: Mapped[datetime | None] = when()  # when the checkout stops being payable
    provider: Mapped[str | None] = mapped_column(sa.String(20))
    payment_method_ref: Mapped[str | None] = mapped_column(sa.String(255))
    # The card paid with or saved, as the provider showed it (never the number).
    card_brand: Mapped[str | None] = mapped_column(sa.String(20))
    card_last4: Mapped[str | None] = mapped_column(sa.String(4))
    card_exp_month: Mapped[int | None] = mapped_column(sa.SmallInteger)
    card_exp_year: Mapped[int | None] = mapped_column(sa.SmallInteger)
    refunded_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    paid_at: Mapped[datetime | None] = when()
    failure_message: Mapped[str | None] = mapped_column(sa.String(500))
    # A card checkout saves the card for renewals: kept so that the checkout, committed before
    # the gateway is asked, can be opened again from the row alone (retry, reconciliation).
    save_payment_method: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Reconciliation of a payment still pending: how many times the gateway was asked without
    # settling it, when it may be asked next (NULL: never asked), and when asking was given up
    # (the gateway's own event still settles a parked payment).
    reconcile_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    reconcile_next_at: Mapped[datetime | None] = when()
    reconcile_parked_at: Mapped[datetime | None] = when()
    # Its numbered receipt, written by the database once the money moved (read-only here).
    receipt: Mapped[Receipt | None] = relationship(
        lazy="raise", viewonly=True, foreign_keys="Receipt.payment_id"
    )
