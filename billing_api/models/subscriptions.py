"""Subscriptions to a plan and their states."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.models.base import Base, status_column, when
from shared.db import Timestamps, UUIDPrimaryKey


class SubscriptionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    GRACE = "grace"
    PAUSED = "paused"  # the subscriber paused it: no access, no charge until the pause ends
    EXPIRED = "expired"
    ABANDONED = "abandoned"
    CANCELED = "canceled"


class RenewalSource(StrEnum):
    """How a renewal is paid."""

    CARD = "card"  # the saved card, off-session
    WALLET_THEN_CARD = "wallet_then_card"  # the wallet when its balance covers it, else the card


class Subscription(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "subscription"
    __table_args__ = (
        # One checkout at a time per user and plan: concurrent checkouts meet here.
        sa.Index(
            "uq_subscription_one_pending",
            "user_id",
            "plan_id",
            unique=True,
            postgresql_where=sa.text("status = 'pending'"),
        ),
        # One trial per user and plan, ever (an abandoned trial checkout does not count).
        sa.Index(
            "uq_subscription_one_trial",
            "user_id",
            "plan_id",
            unique=True,
            postgresql_where=sa.text("trial AND status <> 'abandoned'"),
        ),
        sa.CheckConstraint("months BETWEEN 1 AND 12", name="months_range"),
        # The card expiry reminder's claim: renewing subscriptions whose card ends before the
        # next renewal, not yet reminded for it.
        sa.Index(
            "ix_subscription_card_expiry_due",
            "card_expires_at",
            postgresql_where=sa.text(
                "status = 'active' AND auto_renew AND NOT cancel_at_period_end"
                " AND card_expires_at IS NOT NULL"
                " AND card_expiry_reminded_for IS DISTINCT FROM card_expires_at"
            ),
        ),
        sa.CheckConstraint(
            "renewal_source IN ('card', 'wallet_then_card')", name="renewal_source_known"
        ),
    )

    user_id: Mapped[UUID] = mapped_column(index=True)
    email: Mapped[str | None] = mapped_column(sa.String(320))
    locale: Mapped[str] = mapped_column(sa.String(10), default="ru")
    plan_id: Mapped[UUID] = mapped_column(sa.ForeignKey("plan.id"))
    status: Mapped[SubscriptionStatus] = status_column(
        SubscriptionStatus, length=10, default=SubscriptionStatus.PENDING
    )
    months: Mapped[int] = mapped_column(default=1)
    current_period_start: Mapped[datetime | None] = when()
    current_period_end: Mapped[datetime | None] = when()
    auto_renew: Mapped[bool] = mapped_column(default=True)
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    payment_method_ref: Mapped[str | None] = mapped_column(sa.String(255))
    # The saved card behind payment_method_ref, as the provider showed it (never the number),
    # and the moment it stops working (the end of its expiry month, UTC).
    card_brand: Mapped[str | None] = mapped_column(sa.String(20))
    card_last4: Mapped[str | None] = mapped_column(sa.String(4))
    card_exp_month: Mapped[int | None] = mapped_column(sa.SmallInteger)
    card_exp_year: Mapped[int | None] = mapped_column(sa.SmallInteger)
    card_expires_at: Mapped[datetime | None] = when()
    # The card expiry a "your card expires before the renewal" notice was sent for (once a card).
    card_expiry_reminded_for: Mapped[datetime | None] = when()
    latest_payment_id: Mapped[UUID | None]
    canceled_at: Mapped[datetime | None] = when()
    # Renewal and dunning: when the next off-session charge is due, and how many have failed.
    next_renewal_at: Mapped[datetime | None] = when()
    renewal_attempts: Mapped[int] = mapped_column(default=0)
    dunning_started_at: Mapped[datetime | None] = when()
    grace_until: Mapped[datetime | None] = when()
    # The period end a "your subscription ends soon" reminder was sent for (sent once).
    reminded_for: Mapped[datetime | None] = when()
    # Trials: the first period is free, the card is saved at checkout, the first charge is the
    # renewal at ``trial_end``.
    trial: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    trial_end: Mapped[datetime | None] = when()
    # A downgrade waits for the period end: the renewal then charges and switches to this plan.
    pending_plan_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("plan.id"))
    # How renewals are paid (the subscriber chooses, PATCH /api/v1/subscriptions/{id}).
    renewal_source: Mapped[str] = mapped_column(
        sa.String(20), default=RenewalSource.CARD, server_default=RenewalSource.CARD.value
    )
    # The pause asked for (scheduled from the period end) or running (status ``paused``): no
    # access and no charge from ``pause_starts_at``, the renewal is due at ``pause_resumes_at``.
    # Both None without a pause; every pause asked for is also kept in ``subscription_pause``.
    pause_starts_at: Mapped[datetime | None] = when()
    pause_resumes_at: Mapped[datetime | None] = when()


class SubscriptionPause(UUIDPrimaryKey, Timestamps, Base):
    """Every pause a subscriber asked for (``created_at``), kept after it ends: the pauses of a
    year are counted from here. One taken back before it began (``taken_back_at``) does not
    count; one ended early by the subscriber has ``resumed_at``."""

    __tablename__ = "subscription_pause"
    __table_args__ = (
        sa.CheckConstraint("months BETWEEN 1 AND 12", name="months_range"),
        sa.CheckConstraint("resumes_at > starts_at", name="resumes_after_start"),
    )

    subscription_id: Mapped[UUID] = mapped_column(sa.ForeignKey("subscription.id"), index=True)
    user_id: Mapped[UUID]
    months: Mapped[int]
    starts_at: Mapped[datetime] = when(nullable=False)
    resumes_at: Mapped[datetime] = when(nullable=False)
    taken_back_at: Mapped[datetime | None] = when()
    resumed_at: Mapped[datetime | None] = when()
