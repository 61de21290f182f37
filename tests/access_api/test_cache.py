from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import uuid4

import sqlalchemy as sa

from access_api.cache import AccessCache
from shared import clock
from tests import support
from tests.access_api.conftest import Access, subscription


class TestSafetyNet:
    async def test_an_expired_entry_is_served_while_it_is_refreshed_in_the_background(
        self, access: Access
    ) -> None:
        user, plan = uuid4(), uuid4()
        await access.plan(plan, all_movies=True)
        await access.grants(user, 1, subscription(plan, clock.now() + timedelta(days=30)))
        engine = access.app.state.resources.engine
        cache = AccessCache(engine, ttl=0.2, max_users=100)
        assert len((await cache.user(user)).plan_grants) == 1

        # The projection changes without a notification reaching this cache (a missed NOTIFY).
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE user_grants SET grants = '[]'::jsonb WHERE user_id = :u"),
                {"u": user},
            )
        assert len((await cache.user(user)).plan_grants) == 1, "within the TTL: cached"
        await asyncio.sleep(0.25)  # past the TTL

        served = await cache.user(user)  # expired: served as is, refreshed behind the scenes

        assert len(served.plan_grants) == 1

        async def refreshed() -> bool:
            return len((await cache.user(user)).plan_grants) == 0

        await support.eventually(refreshed, timeout=2)

    async def test_an_eviction_is_not_undone_by_a_load_that_started_before_it(
        self, access: Access
    ) -> None:
        user = uuid4()
        cache = AccessCache(access.app.state.resources.engine, ttl=60, max_users=100)
        loading = cache._start_load(user)
        cache.evict_user(user)
        await loading
        assert user not in cache._users
