"""Each access-api replica's in-process cache of user grants and plan coverage.

Steady state costs no database round trip: a user is loaded once, then served from memory until
``NOTIFY access_changed`` (sent by the projection on commit) evicts them, or the short TTL runs
out as a safety net. If the ``LISTEN`` connection drops, notifications may have been missed, so
the whole cache is dropped and rebuilt on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from access_api.decide import EMPTY, PlanInfo, UserAccess
from access_api.projection import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)

MAX_BACKGROUND_LOADS = 8

_USER = sa.text("SELECT grants FROM user_grants WHERE user_id = :user_id")
_PLANS = sa.text("SELECT plan_id, code, all_movies, movie_ids, role, active FROM plan_coverage")


class AccessCache:
    def __init__(self, engine: AsyncEngine, *, ttl: float, max_users: int) -> None:
        self.engine = engine
        self.ttl = ttl
        self.max_users = max_users
        self._users: dict[UUID, tuple[float, UserAccess]] = {}
        self._loading: dict[UUID, asyncio.Future[UserAccess]] = {}
        self._plans: Mapping[UUID, PlanInfo] = {}
        self._plans_until = 0.0
        self._plans_loaded = False  # False: requests wait for a fresh load (a plan changed)
        self._plans_epoch = 0
        self._plans_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._epoch = 0  # bumped by every eviction, so a load racing one is not cached
        self.listening = False

    # --- reads ---------------------------------------------------------------------------------

    async def user(self, user_id: UUID) -> UserAccess:
        hit = self._users.get(user_id)
        if hit is not None:
            if (
                hit[0] <= time.monotonic()
                and user_id not in self._loading
                and len(self._loading) < MAX_BACKGROUND_LOADS
            ):
                # The TTL is only a safety net (notifications evict at once): serve what we have
                # and refresh it in the background instead of making this request wait. Refreshes
                # are bounded, so a wave of expiries never crowds out the requests themselves.
                self._start_load(user_id)
            return hit[1]
        loading = self._loading.get(user_id) or self._start_load(user_id)
        return await asyncio.shield(loading)

    def _start_load(self, user_id: UUID) -> asyncio.Future[UserAccess]:
        """One load per user at a time; its result is cached unless an eviction raced it."""
        task = asyncio.ensure_future(self._load_and_store(user_id, self._epoch))
        self._loading[user_id] = task
        task.add_done_callback(lambda done: self._load_finished(user_id, done))
        return task

    async def _load_and_store(self, user_id: UUID, epoch: int) -> UserAccess:
        access = await self._load_user(user_id)
        if epoch == self._epoch:
            self._store(user_id, access)
        return access

    def _load_finished(self, user_id: UUID, task: asyncio.Future[UserAccess]) -> None:
        if self._loading.get(user_id) is task:
            del self._loading[user_id]
        if not task.cancelled() and task.exception() is not None:
            logger.warning("loading a user's grants failed: %s", task.exception())

    async def plans(self) -> Mapping[UUID, PlanInfo]:
        """All plans. After a plan change, requests wait for the fresh load; when only the TTL
        ran out, the current copy is served while it refreshes in the background."""
        if self._plans_until > time.monotonic():
            return self._plans
        if not self._plans_loaded:
            while not self._plans_loaded:
                async with self._plans_lock:
                    if not self._plans_loaded:
                        await self._refresh_plans()
            return self._plans
        if not self._plans_lock.locked():
            task = asyncio.create_task(self._refresh_plans_once())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return self._plans

    async def _refresh_plans_once(self) -> None:
        if self._plans_lock.locked():
            return
        async with self._plans_lock:
            try:
                await self._refresh_plans()
            except Exception:
                logger.warning("refreshing the plans failed", exc_info=True)

    async def _refresh_plans(self) -> None:
        epoch = self._plans_epoch
        plans = await self._load_plans()
        if epoch == self._plans_epoch:  # no plan change was announced while loading
            self._plans = plans
            self._plans_loaded = True
            self._plans_until = time.monotonic() + self._ttl_jittered()

    def _ttl_jittered(self) -> float:
        """The TTL give or take 20 %, so entries loaded together do not expire together."""
        return self.ttl * random.uniform(0.8, 1.2)

    async def _load_user(self, user_id: UUID) -> UserAccess:
        async with self.engine.connect() as conn:
            grants = await conn.scalar(_USER, {"user_id": user_id})
        return UserAccess.from_grants(grants) if grants else EMPTY

    async def _load_plans(self) -> dict[UUID, PlanInfo]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(_PLANS)).all()
        return {
            row.plan_id: PlanInfo(
                row.code, row.all_movies, frozenset(row.movie_ids or ()), row.role, row.active
            )
            for row in rows
        }

    def _store(self, user_id: UUID, access: UserAccess) -> None:
        if len(self._users) >= self.max_users:
            self._users.pop(next(iter(self._users)))  # the oldest entry
        self._users[user_id] = (time.monotonic() + self._ttl_jittered(), access)

    # --- invalidation --------------------------------------------------------------------------

    def evict_user(self, user_id: UUID) -> None:
        self._epoch += 1
        self._users.pop(user_id, None)
        self._loading.pop(user_id, None)  # a load begun before the change must not be awaited

    def evict_plans(self) -> None:
        self._plans_epoch += 1
        self._plans_loaded = False
        self._plans_until = 0.0

    def clear(self) -> None:
        self._epoch += 1
        self._users.clear()
        self._loading.clear()
        self.evict_plans()

    def on_notification(self, payload: str) -> None:
        kind, _, key = payload.partition(":")
        try:
            if kind == "u":
                self.evict_user(UUID(key))
            elif kind == "p":
                self.evict_plans()
        except ValueError:
            logger.warning("unreadable access notification %r", payload)

    async def listen(self, *, retry: float = 1.0) -> None:
        """Follow ``NOTIFY access_changed`` forever, reconnecting (and clearing) after a drop."""

        def callback(*args: Any) -> None:
            self.on_notification(str(args[3]))

        while True:
            try:
                async with self.engine.connect() as conn:
                    raw = (await conn.get_raw_connection()).driver_connection
                    assert raw is not None
                    await raw.add_listener(NOTIFY_CHANNEL, callback)
                    self.clear()  # anything cached before listening may be stale
                    self.listening = True
                    try:
                        while not raw.is_closed():
                            await asyncio.sleep(retry)
                    finally:
                        self.listening = False
                        if not raw.is_closed():
                            with contextlib.suppress(Exception):
                                await raw.remove_listener(NOTIFY_CHANNEL, callback)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("access LISTEN connection lost; cache cleared, reconnecting")
            self.clear()
            await asyncio.sleep(retry)
