"""Households: the people an owner shares a subscription's plan with."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.models.base import Base, status_column, when
from shared.db import Timestamps, UUIDPrimaryKey


class HouseholdMemberStatus(StrEnum):
    INVITED = "invited"  # a code was sent to ``email``; nobody has used it yet
    JOINED = "joined"  # ``user_id`` watches through the owner's subscription
    REMOVED = "removed"  # no access through it any more (``removed_reason`` says why)


class HouseholdMember(UUIDPrimaryKey, Timestamps, Base):
    """One seat of an owner's subscription: invited by email, joined by an account.

    The seats of a subscription are counted under the subscription's row lock (join and remove
    lock it first), so ``joined`` rows never outnumber the plan's ``household_seats``. A person
    is joined to at most one household per plan: the partial unique index below, on the plan
    the membership follows (``plan_id`` moves with the owner's plan change).
    """

    __tablename__ = "household_member"
    __table_args__ = (
        sa.Index(
            "uq_household_member_one_per_plan",
            "user_id",
            "plan_id",
            unique=True,
            postgresql_where=sa.text("status = 'joined'"),
        ),
    )

    subscription_id: Mapped[UUID] = mapped_column(sa.ForeignKey("subscription.id"), index=True)
    owner_id: Mapped[UUID] = mapped_column(index=True)
    plan_id: Mapped[UUID] = mapped_column(sa.ForeignKey("plan.id"))
    email: Mapped[str] = mapped_column(sa.String(320), index=True)
    locale: Mapped[str] = mapped_column(sa.String(10), default="ru")
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    status: Mapped[HouseholdMemberStatus] = status_column(
        HouseholdMemberStatus, length=10, default=HouseholdMemberStatus.INVITED
    )
    user_id: Mapped[UUID | None] = mapped_column(index=True)
    joined_at: Mapped[datetime | None] = when()
    removed_at: Mapped[datetime | None] = when()
    removed_reason: Mapped[str | None] = mapped_column(sa.String(40))
