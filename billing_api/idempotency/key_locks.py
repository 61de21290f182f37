"""Which Idempotency-Keys a request is running now: PostgreSQL session-level advisory locks, held
on one connection per process from before a request claims its key until it settled the claim.
A claim still in progress whose lock is free was left by a request that is gone."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.errors import unavailable_dependency
from shared.resources import Resources, make_database
from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)


class KeyLocks:
    """Session-level advisory locks on the keys this process is running, on one connection.

    ``pg_try_advisory_lock`` never waits: a key locked by another session belongs to a request
    running now (or just finishing), and is answered 409 (or replayed). The process keeps the
    keys it runs in memory too, because PostgreSQL's advisory locks are re-entrant within a
    session: a second request with the same key in this process must not "get" the lock again.
    The connection comes from an engine of its own (one connection, opened on first use and
    closed with the app's resources), so requests filling the pool never wait behind it. Lock
    and unlock are one short statement each, shielded from cancellation: a connection is only
    dropped when it is already broken, since dropping it frees every key this process runs.
    """

    def __init__(self) -> None:
        self._running: set[tuple[str, str]] = set()  # keys of requests here, lock held or asked
        self._locked: set[tuple[str, str]] = set()  # keys whose lock this process holds
        self._mutex = asyncio.Lock()
        self._engine: AsyncEngine | None = None
        self._connection: AsyncConnection | None = None

    async def try_lock(
        self, resources: Resources, settings: ServiceSettings, subject: str, key: str
    ) -> bool:
        """Whether this request now holds the key's lock (no one else is running it)."""
        name = (subject, key)
        if name in self._running:
            return False
        self._running.add(name)  # before any await: a twin request here sees it
        for attempt in (1, 2):  # a connection found cut is replaced once
            try:
                with anyio.CancelScope(shield=True):
                    async with self._mutex:
                        connection = await self._connect(resources, settings)
                        got = bool(await connection.scalar(sa.select(_try_lock(name))))
                        if got:
                            self._locked.add(name)
                break
            except Exception as exc:
                if not await self._drop_if_broken(exc) or attempt == 2:
                    self._running.discard(name)
                    raise
        if not got:
            self._running.discard(name)
        return got

    async def unlock(self, subject: str, key: str) -> None:
        """Let the key go (its claim was settled or never made)."""
        name = (subject, key)
        try:
            with anyio.CancelScope(shield=True):
                async with self._mutex:
                    if self._connection is not None and name in self._locked:
                        await self._connection.scalar(
                            sa.select(sa.func.pg_advisory_unlock(_lock_id(name)))
                        )
        except Exception as exc:
            logger.warning("idempotency key lock not released: %s", exc)
            await self._drop_if_broken(exc)
        finally:
            self._locked.discard(name)
            self._running.discard(name)

    async def _connect(self, resources: Resources, settings: ServiceSettings) -> AsyncConnection:
        """The keeper's connection. A new one first takes again the locks of the requests still
        running here: the old session's locks ended with it."""
        if self._connection is not None and not self._connection.closed:
            return self._connection
        if self._engine is None:
            self._engine, _ = make_database(
                settings, service=f"{resources.service}-keys", schema=resources.schema, pool_size=1
            )
            resources.exit_stack.push_async_callback(self.close)
        connection = await self._engine.connect()
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        for setting, value in _KEEPALIVE.items():  # a vanished host's locks end within a minute
            await connection.execute(sa.text(f"SET {setting} = {value}"))
        for name in list(self._locked):
            if not await connection.scalar(sa.select(_try_lock(name))):
                self._locked.discard(name)  # its commit is refused unless it came first (fence)
                logger.warning("idempotency key %r of %s taken over while it ran", *name[::-1])
        self._connection = connection
        return connection

    async def _drop_if_broken(self, exc: BaseException) -> bool:
        """Forget the connection if ``exc`` says it is gone (its locks went with it)."""
        if unavailable_dependency(exc) != "database":
            return False
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.invalidate()
            except Exception as error:
                logger.debug("closing the idempotency lock connection: %s", error)
        return True

    async def close(self) -> None:
        """End the session (and every lock with it) and the engine."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()
        self._locked.clear()


_KEEPALIVE = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}


def _lock_id(name: tuple[str, str]) -> sa.ColumnElement[Any]:
    """The advisory lock's 64-bit id; a collision only makes one request answer 409."""
    subject, key = name
    return sa.func.hashtextextended(f"idempotency:{subject}:{key}", 0)


def _try_lock(name: tuple[str, str]) -> sa.ColumnElement[Any]:
    return sa.func.pg_try_advisory_lock(_lock_id(name))
