"""The catalog: plans, the movies billing sells, and which movies a plan includes."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.models.base import Base
from shared.db import Timestamps, UUIDPrimaryKey


class Plan(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "plan"
    __table_args__ = (
        sa.CheckConstraint("price_amount >= 0", name="price_not_negative"),
        sa.CheckConstraint("max_months BETWEEN 1 AND 12", name="max_months_range"),
        sa.CheckConstraint(
            "(period_unit = 'month' AND period_days IS NULL)"
            " OR (period_unit = 'day' AND period_days > 0)",
            name="period_shape",
        ),
        sa.CheckConstraint(
            "refund_policy IN ('window_then_prorata', 'window_only', 'none')",
            name="refund_policy_known",
        ),
        sa.CheckConstraint("household_seats BETWEEN 0 AND 6", name="household_seats_range"),
    )

    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    price_amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    period_unit: Mapped[str] = mapped_column(sa.String(5), default="month")
    period_days: Mapped[int | None]
    max_months: Mapped[int] = mapped_column(default=12)
    all_movies: Mapped[bool] = mapped_column(default=False)
    role: Mapped[str | None] = mapped_column(sa.String(100))
    grace_days: Mapped[int] = mapped_column(default=2)
    trial_days: Mapped[int] = mapped_column(default=0)
    refund_window_minutes: Mapped[int] = mapped_column(default=60)
    refund_policy: Mapped[str] = mapped_column(sa.String(30), default="window_then_prorata")
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(default=1)
    # The ``active`` the last ``plan.changed`` said (access_api grants nothing for a plan it
    # was told is inactive): a renewal that would charge for such a plan republishes it first.
    published_active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # How many people the owner of a subscription may share it with (0: no household).
    household_seats: Mapped[int] = mapped_column(default=0, server_default=sa.text("0"))


class Movie(Timestamps, Base):
    """A movie billing can sell.

    Two flags, each with one owner: ``in_source`` is whether the movie admin still has the movie
    (written only by the ETL's bulk upsert and its full pass), ``available`` is whether staff sell
    it (written only by admins). A movie is on sale when both hold, so a source edit never puts
    back on sale a film staff took off, and staff's choice survives the film leaving the source
    and coming back.
    """

    __tablename__ = "movie"
    __table_args__ = (
        sa.CheckConstraint(
            "purchase_amount IS NULL OR purchase_amount > 0", name="purchase_positive"
        ),
        sa.CheckConstraint(
            "(rent_amount IS NULL AND rent_hours IS NULL) OR (rent_amount > 0 AND rent_hours > 0)",
            name="rent_shape",
        ),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(500))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    purchase_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    rent_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    rent_hours: Mapped[int | None]
    currency: Mapped[str] = mapped_column(sa.String(3))
    available: Mapped[bool] = mapped_column(default=True)
    in_source: Mapped[bool] = mapped_column(default=True, server_default=sa.true())

    @property
    def on_sale(self) -> bool:
        return self.available and self.in_source


class PlanMovie(Base):
    __tablename__ = "plan_movie"

    plan_id: Mapped[UUID] = mapped_column(sa.ForeignKey("plan.id"), primary_key=True)
    movie_id: Mapped[UUID] = mapped_column(sa.ForeignKey("movie.id"), primary_key=True)
