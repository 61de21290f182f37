"""Movies bought or rented one by one."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.models.base import Base, status_column, when
from shared.db import Timestamps, UUIDPrimaryKey


class PurchaseStatus(StrEnum):
    PENDING = "pending"  # checkout open
    COMPLETED = "completed"  # paid: the movie is the user's (until ``valid_until`` for a rental)
    ABANDONED = "abandoned"  # its checkout failed or expired unpaid
    REFUNDED = "refunded"
    CANCELED = "canceled"  # its payment was disputed


class Purchase(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "purchase"
    __table_args__ = (
        sa.Index(
            "uq_purchase_one_pending",
            "user_id",
            "movie_id",
            "kind",
            unique=True,
            postgresql_where=sa.text("status = 'pending'"),
        ),
    )

    user_id: Mapped[UUID] = mapped_column(index=True)
    email: Mapped[str | None] = mapped_column(sa.String(320))
    locale: Mapped[str] = mapped_column(sa.String(10), default="ru")
    movie_id: Mapped[UUID] = mapped_column(sa.ForeignKey("movie.id"))
    kind: Mapped[str] = mapped_column(sa.String(4))
    status: Mapped[PurchaseStatus] = status_column(
        PurchaseStatus, length=10, default=PurchaseStatus.PENDING
    )
    valid_until: Mapped[datetime | None] = when()
    latest_payment_id: Mapped[UUID | None]
