"""Snapshots of what a user may watch, sent to access_api as ``entitlements.changed``.

A snapshot lists every grant that is still valid, with ``valid_until`` already including grace,
so access ends on time even when a later event is late. Versions grow per user; access_api keeps
only the newest it has seen, so snapshots may arrive in any order or twice.

**Lock, then read.** Two transactions often change one user's grants at once: six purchases paid
together, a refund while another payment settles, a renewal against a cancel, a complimentary
grant against a purchase. Since access keeps only the newest snapshot, that one must contain the
other transaction's change. So :func:`publish_snapshot` first takes the user's lock, the upsert
that bumps the user's ``entitlement_version`` row (held until commit), and only then reads the
grants. The other transaction, if it got there first, has committed by the time the lock is
ours, and under READ COMMITTED every statement after the lock sees what it committed; the one
that commits last builds the higher version from everything. The grants are read as columns,
never through objects the session already holds (those show the rows as this transaction
first loaded them, before the lock).

The lock is the last one a transaction takes (after what was bought, payments, refunds and the
wallet), so waiting for it never closes a cycle. A transaction that changes several users'
grants wraps its work in :func:`deferred_snapshots`: their snapshots are published together at
the end, the users locked in sorted id order, so two such transactions cannot deadlock on each
other's users.

**Households.** A member's grant (source ``household``) is the owner's subscription grant, read
from the member's ``household_member`` row joined to the owner's subscription, so it ends exactly
when the owner's does. Every publish of an owner's snapshot first asks
:func:`billing_api.households.following.follow_owners` to bring the owner's households in line
(members of an ended subscription or beyond the plan's seats are removed) and publishes the
members' snapshots with the owner's, all users locked by one statement in user-id order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.households import following
from billing_api.models import (
    ComplimentaryGrant,
    EntitlementVersion,
    HouseholdMember,
    HouseholdMemberStatus,
    Plan,
    Purchase,
    PurchaseStatus,
    Subscription,
    SubscriptionStatus,
)
from shared import clock, events, outbox

LIVE_SUBSCRIPTION = (SubscriptionStatus.ACTIVE, SubscriptionStatus.GRACE)
# ``session.info`` key: the users whose snapshots wait for the end of a deferred block.
_DEFERRED = "entitlements.deferred"


def subscription_valid_until(
    period_end: datetime | None, *, stops: bool, grace_days: int
) -> datetime | None:
    """End of access: period end, plus grace unless the user chose to stop."""
    if period_end is None:
        return None
    return period_end if stops else period_end + timedelta(days=grace_days)


@asynccontextmanager
async def deferred_snapshots(session: AsyncSession) -> AsyncIterator[None]:
    """Publish the snapshots asked for inside the block once it is done, in user-id order.

    For a transaction that settles changes of several users (a batch of renewals, periods
    ending): each user is locked once, at the end, and always in the same order.
    """
    if _DEFERRED in session.info:  # already inside a deferred block: it publishes them
        yield
        return
    users: set[UUID] = set()
    session.info[_DEFERRED] = users
    try:
        yield
    finally:
        del session.info[_DEFERRED]
    await publish_snapshots(session, users)


def _stops_at_period_end() -> sa.ColumnElement[bool]:
    """Whether the subscription's access ends at its period end, without grace: canceled at the
    end, not renewing, or a pause starting there. The owner's grant and the household members'
    both end by it."""
    return (
        Subscription.cancel_at_period_end
        | ~Subscription.auto_renew
        | Subscription.pause_starts_at.is_not(None)
    )


async def publish_snapshot(
    session: AsyncSession, user_id: UUID
) -> events.EntitlementsChanged | None:
    """Lock the user, read their grants, stage the snapshot in the outbox (None when deferred
    to the end of a :func:`deferred_snapshots` block)."""
    deferred: set[UUID] | None = session.info.get(_DEFERRED)
    if deferred is not None:
        deferred.add(user_id)
        return None
    await session.flush()  # this transaction's own changes, written before the lock is taken
    members = await following.follow_owners(session, [user_id])
    if members:  # an owner: the members' snapshots change with theirs, locked together
        snapshots = await _publish(session, sorted({user_id, *members}))
        return next(snapshot for snapshot in snapshots if snapshot.user_id == user_id)
    version = await _lock_user(session, user_id)
    snapshot = events.EntitlementsChanged(
        user_id=user_id, version=version, grants=tuple(await _grants(session, user_id))
    )
    await outbox.add(session, snapshot)
    return snapshot


async def publish_snapshots(
    session: AsyncSession, user_ids: Collection[UUID]
) -> list[events.EntitlementsChanged]:
    """:func:`publish_snapshot` for several users, as one transaction settling many changes
    needs (a batch of renewals): every user is locked by one statement, in user-id order (the
    order :func:`deferred_snapshots` promises), then all their grants are read together."""
    users = set(user_ids)
    if not users:
        return []
    await session.flush()
    users |= await following.follow_owners(session, users)
    return await _publish(session, sorted(users))


async def _publish(
    session: AsyncSession, users: Sequence[UUID]
) -> list[events.EntitlementsChanged]:
    """Lock ``users`` (sorted) by one statement, read their grants, stage their snapshots."""
    versions = await _lock_users(session, users)
    grants = await _grants_of(session, users)
    snapshots = [
        events.EntitlementsChanged(
            user_id=user_id, version=versions[user_id], grants=tuple(grants.get(user_id, ()))
        )
        for user_id in users
    ]
    await outbox.add_all(session, snapshots)
    return snapshots


async def _lock_user(session: AsyncSession, user_id: UUID) -> int:
    """Bump the user's snapshot version; the row stays locked until this transaction ends."""
    return (await _lock_users(session, [user_id]))[user_id]


async def _lock_users(session: AsyncSession, user_ids: Sequence[UUID]) -> dict[UUID, int]:
    """Bump each user's snapshot version, locking the rows in the order given (one statement:
    PostgreSQL inserts the rows of a VALUES list in their order)."""
    rows = await session.execute(
        insert(EntitlementVersion)
        .values([{"user_id": user_id, "version": 1} for user_id in user_ids])
        .on_conflict_do_update(
            index_elements=[EntitlementVersion.user_id],
            set_={"version": EntitlementVersion.version + 1},
        )
        .returning(EntitlementVersion.user_id, EntitlementVersion.version)
    )
    return {row.user_id: int(row.version) for row in rows}


async def _grants(session: AsyncSession, user_id: UUID) -> list[events.Grant]:
    """Every grant of the user valid now (see :func:`_grants_of`)."""
    return (await _grants_of(session, [user_id])).get(user_id, [])


async def _grants_of(
    session: AsyncSession, user_ids: Sequence[UUID]
) -> dict[UUID, list[events.Grant]]:
    """Every grant valid now of each user, read from the rows as committed (columns, not the
    session's objects): one query per kind of grant, whatever the number of users."""
    now = clock.now()
    grants: dict[UUID, list[events.Grant]] = {}
    subscriptions = await session.execute(
        sa.select(
            Subscription.user_id,
            Subscription.id,
            Subscription.current_period_end,
            _stops_at_period_end().label("stops"),
            Plan.id.label("plan_id"),
            Plan.role,
            Plan.grace_days,
        )
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.user_id.in_(user_ids), Subscription.status.in_(LIVE_SUBSCRIPTION))
        .order_by(Subscription.id)
    )
    for row in subscriptions:
        valid_until = subscription_valid_until(
            row.current_period_end, stops=row.stops, grace_days=row.grace_days
        )
        if valid_until is not None and valid_until > now:
            grants.setdefault(row.user_id, []).append(
                events.Grant(
                    source="subscription",
                    source_id=row.id,
                    plan_id=row.plan_id,
                    role=row.role,
                    valid_until=valid_until,
                )
            )
    purchases = await session.execute(
        sa.select(Purchase.user_id, Purchase.id, Purchase.movie_id, Purchase.valid_until)
        .where(
            Purchase.user_id.in_(user_ids),
            Purchase.status == PurchaseStatus.COMPLETED,
            sa.or_(Purchase.valid_until.is_(None), Purchase.valid_until > now),
        )
        .order_by(Purchase.id)
    )
    for bought in purchases:
        grants.setdefault(bought.user_id, []).append(
            events.Grant(
                source="purchase",
                source_id=bought.id,
                movie_id=bought.movie_id,
                valid_until=bought.valid_until,
            )
        )
    gifts = await session.execute(
        sa.select(
            ComplimentaryGrant.user_id,
            ComplimentaryGrant.id,
            ComplimentaryGrant.valid_until,
            Plan.id.label("plan_id"),
            Plan.role,
        )
        .join(Plan, Plan.id == ComplimentaryGrant.plan_id)
        .where(
            ComplimentaryGrant.user_id.in_(user_ids),
            ComplimentaryGrant.revoked_at.is_(None),
            ComplimentaryGrant.valid_until > now,
        )
        .order_by(ComplimentaryGrant.id)
    )
    for gift in gifts:
        grants.setdefault(gift.user_id, []).append(
            events.Grant(
                source="complimentary",
                source_id=gift.id,
                plan_id=gift.plan_id,
                role=gift.role,
                valid_until=gift.valid_until,
            )
        )
    members = await session.execute(
        sa.select(
            HouseholdMember.user_id,
            HouseholdMember.id,
            Subscription.current_period_end,
            _stops_at_period_end().label("stops"),
            Plan.id.label("plan_id"),
            Plan.role,
            Plan.grace_days,
        )
        .join(Subscription, Subscription.id == HouseholdMember.subscription_id)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(
            HouseholdMember.user_id.in_(user_ids),
            HouseholdMember.status == HouseholdMemberStatus.JOINED,
            Subscription.status.in_(LIVE_SUBSCRIPTION),
        )
        .order_by(HouseholdMember.id)
    )
    for seat in members:
        # exactly the owner's access: the same period end, grace and stop rules
        valid_until = subscription_valid_until(
            seat.current_period_end, stops=seat.stops, grace_days=seat.grace_days
        )
        if seat.user_id is not None and valid_until is not None and valid_until > now:
            grants.setdefault(seat.user_id, []).append(
                events.Grant(
                    source="household",
                    source_id=seat.id,
                    plan_id=seat.plan_id,
                    role=seat.role,
                    valid_until=valid_until,
                )
            )
    return grants
