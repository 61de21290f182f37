"""Members follow their owner: what :mod:`billing_api.entitlements` asks before it publishes.

Every change of an owner's subscription (activation, renewal, grace, expiry, refund, cancel,
plan change, pause) ends by publishing the owner's entitlement snapshot, so that is where the
members are brought in line, in the same transaction: :func:`follow_owners` removes the members
of a subscription that ended for good (``subscription_ended``), the newest members beyond the
seats of the owner's plan (``seats_reduced``), moves the others to the owner's new plan, and
returns every member whose snapshot must be published with the owner's. Those snapshots are
then locked together with the owner's, in user-id order (the entitlement lock stays the last
one a transaction takes).

This module does not import :mod:`billing_api.entitlements` (which imports it).
"""

from __future__ import annotations

from collections.abc import Collection
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.households import transitions
from billing_api.models import (
    HouseholdMember,
    HouseholdMemberStatus,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from shared import clock, outbox

ENDED = (SubscriptionStatus.EXPIRED, SubscriptionStatus.CANCELED, SubscriptionStatus.ABANDONED)


async def follow_owners(session: AsyncSession, owner_ids: Collection[UUID]) -> set[UUID]:
    """Bring the households of ``owner_ids`` in line with their subscriptions; the members
    (joined, or removed just now) whose snapshots change with the owners'."""
    if not owner_ids:
        return set()
    members = (
        await session.scalars(
            sa.select(HouseholdMember)
            .where(
                HouseholdMember.owner_id.in_(owner_ids),
                HouseholdMember.status == HouseholdMemberStatus.JOINED,
            )
            .order_by(HouseholdMember.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    if not members:
        return set()
    subscription_rows = await session.execute(
        sa.select(Subscription.id, Subscription.status, Subscription.plan_id).where(
            Subscription.id.in_({member.subscription_id for member in members})
        )
    )
    subscriptions = {row.id: row for row in subscription_rows}
    plans = {
        plan.id: plan
        for plan in await session.scalars(
            sa.select(Plan).where(Plan.id.in_({row.plan_id for row in subscriptions.values()}))
        )
    }
    now = clock.now()
    by_subscription: dict[UUID, list[HouseholdMember]] = {}
    for member in members:
        by_subscription.setdefault(member.subscription_id, []).append(member)
    for subscription_id, seated in by_subscription.items():
        subscription = subscriptions[subscription_id]
        plan = plans[subscription.plan_id]
        seated.sort(key=lambda member: (member.joined_at or now, member.id))
        if subscription.status in ENDED:
            leaving, staying = seated, []
        else:
            leaving, staying = seated[plan.household_seats :], seated[: plan.household_seats]
        reason = (
            transitions.SUBSCRIPTION_ENDED
            if subscription.status in ENDED
            else transitions.SEATS_REDUCED
        )
        for member in leaving:
            await outbox.add_all(session, transitions.remove(member, plan, reason=reason, now=now))
        for member in staying:
            if member.plan_id != plan.id:
                await _follow_plan_change(session, member, plan)
    await session.flush()
    return {member.user_id for member in members if member.user_id is not None}


async def _follow_plan_change(session: AsyncSession, member: HouseholdMember, plan: Plan) -> None:
    """Move a member to the owner's new plan, unless they are in another household of it
    already (one household per plan): then they leave this one."""
    elsewhere = await session.scalar(
        sa.select(HouseholdMember.id).where(
            HouseholdMember.user_id == member.user_id,
            HouseholdMember.plan_id == plan.id,
            HouseholdMember.status == HouseholdMemberStatus.JOINED,
            HouseholdMember.id != member.id,
        )
    )
    if elsewhere is None:
        transitions.follow_plan(member, plan.id)
        return
    await outbox.add_all(
        session,
        transitions.remove(member, plan, reason=transitions.ALREADY_IN_HOUSEHOLD, now=clock.now()),
    )
