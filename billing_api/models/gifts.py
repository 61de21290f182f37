"""Gift subscriptions: months of a plan bought by one user and redeemed by whoever has the code."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.models.base import Base, status_column, when
from shared.db import Timestamps, UUIDPrimaryKey


class GiftStatus(StrEnum):
    PENDING = "pending"  # checkout open
    PAID = "paid"  # paid, the code works until ``expires_at``
    REFUNDING = "refunding"  # a refund of the unredeemed gift is on its way: the code is held
    REDEEMED = "redeemed"  # the months went to ``redeemed_by``
    REFUNDED = "refunded"  # refunded before anyone redeemed it: the code is void
    EXPIRED = "expired"  # nobody redeemed it in time
    REVOKED = "revoked"  # staff revoked it, or its payment was disputed
    ABANDONED = "abandoned"  # its checkout failed or expired unpaid


class Gift(UUIDPrimaryKey, Timestamps, Base):
    """One gift: who bought it, for whom, what it gives and where it stands.

    The code is kept as it is shown (the buyer may hand it over themselves); it is looked up by
    its unique index only, so comparing it costs the same whatever the guess."""

    __tablename__ = "gift"
    __table_args__ = (
        sa.CheckConstraint("months BETWEEN 1 AND 12", name="months_range"),
        sa.CheckConstraint("validity_days > 0", name="validity_positive"),
        sa.Index("ix_gift_buyer_created", "buyer_id", "created_at"),
        # The delivery job's claim: paid gifts whose email is due and not sent yet.
        sa.Index(
            "ix_gift_delivery_due",
            "deliver_at",
            postgresql_where=sa.text("status = 'paid' AND delivered_at IS NULL"),
        ),
        # The expiry and reminder jobs' claim: paid gifts by the end of their validity.
        sa.Index("ix_gift_paid_expires", "expires_at", postgresql_where=sa.text("status = 'paid'")),
        # The gifts redeemed into a subscription (what its refund quote leaves out).
        sa.Index(
            "ix_gift_subscription",
            "subscription_id",
            postgresql_where=sa.text("subscription_id IS NOT NULL"),
        ),
    )

    buyer_id: Mapped[UUID]
    buyer_email: Mapped[str | None] = mapped_column(sa.String(320))
    locale: Mapped[str] = mapped_column(sa.String(10), default="ru")
    plan_id: Mapped[UUID] = mapped_column(sa.ForeignKey("plan.id"))
    months: Mapped[int]
    recipient_email: Mapped[str] = mapped_column(sa.String(320), index=True)
    message: Mapped[str | None] = mapped_column(sa.String(1000))
    deliver_at: Mapped[datetime | None] = when()  # None: at once when paid
    # Days the code works after payment, as sold (BILLING_GIFT_VALIDITY_DAYS at checkout).
    validity_days: Mapped[int]
    status: Mapped[GiftStatus] = status_column(GiftStatus, length=10, default=GiftStatus.PENDING)
    code: Mapped[str | None] = mapped_column(sa.String(32), unique=True)
    latest_payment_id: Mapped[UUID | None]
    paid_at: Mapped[datetime | None] = when()
    expires_at: Mapped[datetime | None] = when()
    delivered_at: Mapped[datetime | None] = when()
    expiry_reminded_at: Mapped[datetime | None] = when()
    redeemed_by: Mapped[UUID | None] = mapped_column(index=True)
    redeemed_at: Mapped[datetime | None] = when()
    # The subscription the months went to, and the span they added to it.
    subscription_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("subscription.id"))
    period_start: Mapped[datetime | None] = when()
    period_end: Mapped[datetime | None] = when()
    # Whether redeeming started that subscription (else it extended a live one).
    started_subscription: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    ended_at: Mapped[datetime | None] = when()  # refunded, expired or revoked


class GiftCodeFailure(Base):
    """Wrong gift codes one user sent in the current window (the redeem rate limit)."""

    __tablename__ = "gift_code_failure"

    user_id: Mapped[UUID] = mapped_column(primary_key=True)
    window_started_at: Mapped[datetime] = when(nullable=False)
    failures: Mapped[int] = mapped_column(default=0)
