"""Discounts: month tiers, personal discounts, promo codes and their redemptions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.models.base import Base, status_column, when
from shared.db import Timestamps, UUIDPrimaryKey


class MonthTier(UUIDPrimaryKey, Base):
    """``percent`` off when buying at least ``min_months``; per plan, or global (plan NULL)."""

    __tablename__ = "month_tier"
    __table_args__ = (
        sa.UniqueConstraint("plan_id", "min_months", postgresql_nulls_not_distinct=True),
        sa.CheckConstraint("percent BETWEEN 1 AND 100", name="percent_range"),
        sa.CheckConstraint("min_months BETWEEN 1 AND 12", name="months_range"),
    )

    plan_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("plan.id"))
    min_months: Mapped[int]
    percent: Mapped[int]


class PersonalDiscount(Timestamps, Base):
    __tablename__ = "personal_discount"
    __table_args__ = (sa.CheckConstraint("percent BETWEEN 1 AND 100", name="percent_range"),)

    user_id: Mapped[UUID] = mapped_column(primary_key=True)
    percent: Mapped[int]
    reason: Mapped[str] = mapped_column(sa.String(500), default="")


class PromoCode(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "promo_code"
    __table_args__ = (
        sa.CheckConstraint(
            "(kind = 'percent' AND percent BETWEEN 1 AND 100 AND amount IS NULL)"
            " OR (kind = 'fixed' AND amount > 0 AND currency IS NOT NULL AND percent IS NULL)",
            name="kind_shape",
        ),
        sa.CheckConstraint(
            "max_redemptions IS NULL OR redemptions <= max_redemptions", name="within_max"
        ),
    )

    code: Mapped[str] = mapped_column(sa.String(64), unique=True)  # stored upper-case
    kind: Mapped[str] = mapped_column(sa.String(10))
    percent: Mapped[int | None]
    amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    plan_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("plan.id"))
    valid_from: Mapped[datetime | None] = when()
    valid_until: Mapped[datetime | None] = when()
    max_redemptions: Mapped[int | None]
    # Reserved at checkout and kept when paid; released when the payment fails or expires.
    redemptions: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)


class PromoRedemptionStatus(StrEnum):
    RESERVED = "reserved"  # at checkout: counts against the code's limits
    REDEEMED = "redeemed"  # the payment succeeded
    RELEASED = "released"  # the payment failed or expired: the use is given back


class PromoRedemption(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "promo_redemption"
    __table_args__ = (
        sa.Index(
            "uq_promo_redemption_once_per_user",
            "promo_code_id",
            "user_id",
            unique=True,
            postgresql_where=sa.text("status <> 'released'"),
        ),
    )

    promo_code_id: Mapped[UUID] = mapped_column(sa.ForeignKey("promo_code.id"))
    user_id: Mapped[UUID]
    payment_id: Mapped[UUID] = mapped_column(unique=True)
    status: Mapped[PromoRedemptionStatus] = status_column(
        PromoRedemptionStatus, length=10, default=PromoRedemptionStatus.RESERVED
    )
