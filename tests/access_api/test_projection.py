"""The projection's batch path: one upsert for a batch of snapshots, the newest per user winning
and the stored version still deciding, with the same notifications and role scheduling as the
event-by-event path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from access_api.models import RoleSync, UserGrants
from access_api.projection import NOTIFY_CHANNEL, on_entitlements_changed_batch
from shared import clock, events
from tests.access_api.conftest import Access, purchase

Snapshot = events.Envelope[events.EntitlementsChanged]


def snapshot(user_id: UUID, version: int, *grants: events.Grant) -> Snapshot:
    return events.wrap(
        events.EntitlementsChanged(user_id=user_id, version=version, grants=grants),
        producer="billing_api",
    )


async def apply_batch(access: Access, batch: list[Snapshot]) -> None:
    sessions = access.app.state.resources.session_factory
    async with sessions() as session, session.begin():
        await on_entitlements_changed_batch(session, batch)


async def stored(access: Access, user_id: UUID) -> tuple[int, list[str]] | None:
    sessions = access.app.state.resources.session_factory
    async with sessions() as session:
        row = await session.get(UserGrants, user_id)
        if row is None:
            return None
        return row.version, [grant["movie_id"] for grant in row.grants]


async def due(access: Access) -> set[UUID]:
    sessions = access.app.state.resources.session_factory
    async with sessions() as session:
        return set(await session.scalars(sa.select(RoleSync.user_id)))


@pytest.fixture
async def notified(access: Access) -> AsyncIterator[list[str]]:
    """The ``access_changed`` notifications committed while the test runs."""
    received: list[str] = []

    def listen(connection: Any, pid: int, channel: str, payload: str) -> None:
        received.append(payload)

    async with access.app.state.resources.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.add_listener(NOTIFY_CHANNEL, listen)
        yield received
        await raw.remove_listener(NOTIFY_CHANNEL, listen)


class TestBatch:
    async def test_the_newest_snapshot_per_user_wins_and_older_ones_change_nothing(
        self, access: Access, notified: list[str]
    ) -> None:
        kept, newcomer = uuid4(), uuid4()
        movies = {version: uuid4() for version in range(1, 8)}
        await access.grants(kept, 5, purchase(movies[5]))
        await asyncio.sleep(0.2)
        notified.clear()
        await forget_role_sync(access)

        await apply_batch(
            access,
            [
                snapshot(kept, 3, purchase(movies[3])),  # older than the stored v5
                snapshot(kept, 7, purchase(movies[7])),
                snapshot(newcomer, 2, purchase(movies[2])),
                snapshot(kept, 6, purchase(movies[6])),  # reordered: v7 came first
                snapshot(newcomer, 1, purchase(movies[1])),
                snapshot(newcomer, 2, purchase(movies[2])),  # twice
            ],
        )

        assert await stored(access, kept) == (7, [str(movies[7])])
        assert await stored(access, newcomer) == (2, [str(movies[2])])
        await asyncio.sleep(0.2)
        assert sorted(notified) == sorted([f"u:{kept}", f"u:{newcomer}"])
        assert await due(access) == {kept, newcomer}

    async def test_a_batch_of_old_and_repeated_snapshots_notifies_and_schedules_nobody(
        self, access: Access, notified: list[str]
    ) -> None:
        user, movie = uuid4(), uuid4()
        await access.grants(user, 4, purchase(movie))
        await asyncio.sleep(0.2)
        notified.clear()
        await forget_role_sync(access)

        await apply_batch(access, [snapshot(user, 4), snapshot(user, 2), snapshot(user, 3)])

        assert await stored(access, user) == (4, [str(movie)])
        await asyncio.sleep(0.2)
        assert notified == []
        assert await due(access) == set()

    async def test_snapshots_published_out_of_order_end_at_each_users_newest(
        self, access: Access
    ) -> None:
        users = [uuid4() for _ in range(3)]
        movies = {(user, version): uuid4() for user in users for version in range(1, 6)}
        for version in (3, 5, 1, 4, 2):
            for user in users:
                await access.grants(
                    user,
                    version,
                    purchase(movies[user, version], clock.now() + timedelta(days=1)),
                    wait=False,
                )
        for user in users:
            await access.wait_for("user_grants", "user_id", user, 5)
        await asyncio.sleep(0.3)

        for user in users:
            assert await stored(access, user) == (5, [str(movies[user, 5])])
            assert (await access.check(user, movies[user, 5]))["allowed"] is True
            assert (await access.check(user, movies[user, 4]))["allowed"] is False


async def forget_role_sync(access: Access) -> None:
    async with access.app.state.resources.engine.begin() as conn:
        await conn.execute(sa.text("TRUNCATE role_sync"))
