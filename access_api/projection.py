"""access-worker's projection of billing's snapshots, and the signal every replica listens to.

A snapshot is applied only when its ``version`` is newer than the stored one, so late, duplicated
or reordered events change nothing wrong. Each applied change sends ``NOTIFY access_changed`` in
the same transaction: on commit every access-api replica drops that user (or the plans) from its
cache, which is how a revoked grant stops being served within a second everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from access_api import roles
from access_api.models import PlanCoverage, UserGrants
from shared import clock, events
from shared.consumer import Handler

CONSUMER = "access"
NOTIFY_CHANNEL = "access_changed"


async def notify(session: AsyncSession, payload: str) -> None:
    await session.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, payload)))


async def on_entitlements_changed(
    session: AsyncSession, envelope: events.Envelope[events.EntitlementsChanged]
) -> None:
    snapshot = envelope.data
    statement = insert(UserGrants).values(
        user_id=snapshot.user_id,
        version=snapshot.version,
        grants=[grant.model_dump(mode="json") for grant in snapshot.grants],
        updated_at=clock.now(),
    )
    applied = await session.scalar(
        statement.on_conflict_do_update(
            index_elements=[UserGrants.user_id],
            set_={
                "version": statement.excluded.version,
                "grants": statement.excluded.grants,
                "updated_at": statement.excluded.updated_at,
            },
            where=UserGrants.version < statement.excluded.version,
        ).returning(UserGrants.user_id)
    )
    if applied is not None:
        await notify(session, f"u:{snapshot.user_id}")
        await roles.schedule(session, snapshot.user_id, at=clock.now())


async def on_plan_changed(
    session: AsyncSession, envelope: events.Envelope[events.PlanChanged]
) -> None:
    snapshot = envelope.data
    statement = insert(PlanCoverage).values(
        plan_id=snapshot.plan_id,
        code=snapshot.code,
        version=snapshot.version,
        all_movies=snapshot.all_movies,
        movie_ids=list(snapshot.movie_ids),
        role=snapshot.role,
        active=snapshot.active,
        updated_at=clock.now(),
    )
    applied = await session.scalar(
        statement.on_conflict_do_update(
            index_elements=[PlanCoverage.plan_id],
            set_={
                column: statement.excluded[column]
                for column in (
                    "code",
                    "version",
                    "all_movies",
                    "movie_ids",
                    "role",
                    "active",
                    "updated_at",
                )
            },
            where=PlanCoverage.version < statement.excluded.version,
        ).returning(PlanCoverage.plan_id)
    )
    if applied is not None:
        await notify(session, f"p:{snapshot.plan_id}")


HANDLERS: Mapping[type[events.EventPayload], Handler] = {
    events.EntitlementsChanged: on_entitlements_changed,
    events.PlanChanged: on_plan_changed,
}
