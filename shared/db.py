"""The database layer: engines, sessions, naming conventions and column conventions.

Every service owns one PostgreSQL schema. Its engine sets ``search_path`` to that schema, so the
shared tables every service has (``outbox``, ``inbox``) are addressed without a schema name, while
the service's own models name their schema explicitly through their ``MetaData``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, func
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared import clock

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata(schema: str) -> MetaData:
    """A ``MetaData`` for one service's schema with the suite's constraint naming convention."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def utc_now() -> datetime:
    return clock.now()


class UUIDPrimaryKey:
    """Mixin: a UUID primary key generated in Python (ids are known before the flush)."""

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)


class Timestamps:
    """Mixin: timezone-aware ``created_at`` / ``updated_at`` taken from the suite's clock."""

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now, onupdate=utc_now, server_default=func.now()
    )


def create_engine(
    url: str,
    *,
    schema: str,
    application_name: str,
    pool_size: int = 10,
    pre_ping: bool = True,
    **kwargs: Any,
) -> AsyncEngine:
    """An async engine whose connections live in ``schema`` (``search_path``)."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        connect_args={
            "server_settings": {"search_path": schema, "application_name": application_name}
        },
        **kwargs,
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: committed when the route returns, rolled back when it raises.

    The dependency runs with ``scope="function"`` so the commit happens *before* the response is
    sent: a client never sees a success whose transaction later failed.
    """
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


SessionDep = Annotated[AsyncSession, Depends(request_session, scope="function")]
