"""The database layer: engines, sessions, naming conventions and column conventions.

Every service owns one PostgreSQL schema. Its engine sets ``search_path`` to that schema, so the
shared tables every service has (``outbox``, ``inbox``) are addressed without a schema name, while
the service's own models name their schema explicitly through their ``MetaData``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, event, func
from sqlalchemy.exc import DisconnectionError
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


PING_AFTER_IDLE_SECONDS = 1.0
_IDLE_SINCE = "cinema_idle_since"


def create_engine(
    url: str,
    *,
    schema: str,
    application_name: str,
    pool_size: int = 10,
    pre_ping: bool = True,
    **kwargs: Any,
) -> AsyncEngine:
    """An async engine whose connections live in ``schema`` (``search_path``).

    The pool holds at most ``pool_size`` connections and keeps them: no overflow connections
    opened and closed again under a burst (each would cost a connection handshake, a server
    process and every prepared statement again); a burst waits for a free connection instead.
    The most recently used connection is handed out first, so a quiet process keeps few warm.

    ``pre_ping`` checks a connection before handing it out only when it has been idle for
    :data:`PING_AFTER_IDLE_SECONDS`: after a database restart or a dropped connection the
    check fails and the pool opens a fresh one, while under load (connections reused within
    milliseconds) nothing is added to each transaction. (SQLAlchemy's own ``pool_pre_ping``
    spends three round trips, BEGIN, a ping and ROLLBACK, on every checkout.) A connection that
    dies while busy is still detected by the failing statement, and the pool then replaces
    every connection it held.
    """
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_use_lifo=True,
        connect_args={
            "server_settings": {"search_path": schema, "application_name": application_name}
        },
        **kwargs,
    )
    if pre_ping:
        ping_after_idle(engine, PING_AFTER_IDLE_SECONDS)
    return engine


def ping_after_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Check a pooled connection on checkout when it has been idle at least ``idle_seconds``."""
    pool = engine.sync_engine.pool

    def mark_idle(dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if time.monotonic() - record.info.get(_IDLE_SINCE, 0.0) < idle_seconds:
            return
        try:
            dbapi_connection.ping()
        except Exception as error:  # the pool discards it and tries another connection
            raise DisconnectionError(f"stale pooled connection: {error}") from error

    event.listen(pool, "connect", mark_idle)
    event.listen(pool, "checkin", mark_idle)
    event.listen(pool, "checkout", check)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


CommitGuard = Callable[[AsyncSession], Awaitable[None]]
_COMMIT_GUARDS = "cinema.commit_guards"


def guard_commits(scope: MutableMapping[str, Any], guard: CommitGuard) -> None:
    """Run ``guard`` in the request's transaction right before each commit of it.

    For a middleware (``scope`` is the request's ASGI scope): the guard's statements are part of
    the transaction they guard, and it refuses the commit by raising (the transaction is then
    rolled back and the error answered). Billing's idempotency keys fence commits this way.
    """
    scope.setdefault(_COMMIT_GUARDS, []).append(guard)


async def commit(session: AsyncSession) -> None:
    """Commit a request's session (:func:`request_session`) once its guards agreed.

    Every commit of a request's transaction goes through here: the session dependency's at the
    end, and a route's that commits earlier (a card checkout before asking the gateway)."""
    guards: list[CommitGuard] = session.info.get(_COMMIT_GUARDS, [])
    if guards:
        await session.flush()  # the guards' statements come last, right before the commit
    for guard in guards:
        await guard(session)
    await session.commit()


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: committed when the route returns, rolled back when it raises.

    The dependency runs with ``scope="function"`` so the commit happens *before* the response is
    sent: a client never sees a success whose transaction later failed. The commit runs the
    request's guards first (:func:`commit`).
    """
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with factory() as session:
        session.info[_COMMIT_GUARDS] = request.scope.get(_COMMIT_GUARDS, [])
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await commit(session)


SessionDep = Annotated[AsyncSession, Depends(request_session, scope="function")]
