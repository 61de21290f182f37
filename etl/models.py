"""Tables of the ``etl`` schema (``outbox``/``inbox`` come from :mod:`shared.tables`)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from etl.config import SCHEMA
from shared.db import make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata(SCHEMA)


class SyncState(Base):
    """Where one copied table stands: its keyset watermark and its last full pass.

    The watermark ``(modified_at, last_id)`` is the last source row billing has accepted; it only
    moves forward, and only after the batch that contains that row was loaded.
    """

    __tablename__ = "sync_state"

    name: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    modified_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_id: Mapped[UUID | None]
    rows_loaded: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    full_pass_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )
