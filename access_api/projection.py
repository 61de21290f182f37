"""access-worker's projection of billing's snapshots, and the signal every replica listens to.

A snapshot is applied only when its ``version`` is newer than the stored one, so late, duplicated
or reordered events change nothing wrong. Each applied change sends ``NOTIFY access_changed`` in
the same transaction: on commit every access-api replica drops that user (or the plans) from its
cache, which is how a revoked grant stops being served within a second everywhere.

The consumer takes events in batches: :func:`on_entitlements_changed_batch` applies all the
snapshots of a batch with one upsert (the newest per user; the stored version still decides), one
statement of notifications for the users it changed and one role-sync upsert, users in id order
so concurrent batches lock rows in the same order. The per-event handlers are what a batch that
failed falls back to, event by event; both paths keep exactly the same rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from access_api import roles
from access_api.models import PlanCoverage, UserGrants
from shared import clock, events
from shared.broker import Broker
from shared.consumer import BatchHandler, Consumer, Handler

CONSUMER = "access"
NOTIFY_CHANNEL = "access_changed"


async def notify(session: AsyncSession, payload: str) -> None:
    await session.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, payload)))


async def on_entitlements_changed(
    session: AsyncSession, envelope: events.Envelope[events.EntitlementsChanged]
) -> None:
    """One snapshot (the consumer's one-by-one path): a batch of one."""
    await on_entitlements_changed_batch(session, [envelope])


async def on_entitlements_changed_batch(
    session: AsyncSession, envelopes: Sequence[events.Envelope[events.EntitlementsChanged]]
) -> None:
    newest: dict[UUID, events.EntitlementsChanged] = {}
    for envelope in envelopes:
        snapshot = envelope.data
        seen = newest.get(snapshot.user_id)
        if seen is None or seen.version < snapshot.version:
            newest[snapshot.user_id] = snapshot
    snapshots = [newest[user_id] for user_id in sorted(newest)]
    rows = (
        sa.func.unnest(
            sa.bindparam("user_ids", [s.user_id for s in snapshots], type_=ARRAY(sa.Uuid)),
            sa.bindparam("versions", [s.version for s in snapshots], type_=ARRAY(sa.BigInteger)),
            sa.bindparam("grants", [_grants_json(s) for s in snapshots], type_=ARRAY(sa.Text)),
        )
        .table_valued("user_id", "version", "grants")
        .render_derived()
    )
    now = clock.now()
    statement = insert(UserGrants).from_select(
        ["user_id", "version", "grants", "updated_at"],
        sa.select(
            rows.c.user_id,
            rows.c.version,
            sa.cast(rows.c.grants, JSONB),
            sa.literal(now, sa.DateTime(timezone=True)),
        ),
    )
    applied = list(
        await session.scalars(
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
    )
    if not applied:
        return
    applied.sort()
    users = sa.func.unnest(sa.bindparam("applied", applied, type_=ARRAY(sa.Uuid))).column_valued()
    await session.execute(
        sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, sa.literal("u:") + sa.cast(users, sa.Text)))
    )
    await roles.schedule_many(session, applied, at=now)


def _grants_json(snapshot: events.EntitlementsChanged) -> str:
    return json.dumps([grant.model_dump(mode="json") for grant in snapshot.grants])


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

BATCH_HANDLERS: Mapping[type[events.EventPayload], BatchHandler] = {
    events.EntitlementsChanged: on_entitlements_changed_batch,
}


def make_consumer(broker: Broker, session_factory: async_sessionmaker[AsyncSession]) -> Consumer:
    """The projection's consumer: entitlement snapshots applied a batch at a time."""
    return Consumer(CONSUMER, broker, session_factory, HANDLERS, batch_handlers=BATCH_HANDLERS)
