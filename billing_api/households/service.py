"""Inviting, joining and removing household members.

**Lock, then read.** Every path that changes a household locks the owner's subscription row
first (``FOR UPDATE``), then the member row, and only then counts seats or checks states: two
joins of one household wait for each other, and the second counts the first's seat, so the
plan's ``household_seats`` is never exceeded. A join also takes a transaction advisory lock on
(person, plan) before it checks that the person is in no other household of the plan (the
partial unique index on joined members is the backstop). The members' entitlement snapshots
come last, as everywhere.
"""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import entitlements, locks
from billing_api.config import BillingSettings
from billing_api.customers import Customer
from billing_api.households import codes, notices, transitions
from billing_api.households.schemas import MemberOut, MembershipOut, MembersOut
from billing_api.models import (
    HouseholdMember,
    HouseholdMemberStatus,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from billing_api.subscriptions.service import SubscriptionNotFound
from shared import clock, outbox
from shared.errors import Conflict, Forbidden, NotFound

LIVE = (SubscriptionStatus.ACTIVE, SubscriptionStatus.GRACE)
# Open invitations plus members, per seat: enough to re-invite, not a mailing list.
INVITATIONS_PER_SEAT = 2


class HouseholdNotOffered(Conflict):
    default_detail = "this subscription's plan has no household seats"


class SubscriptionNotLive(Conflict):
    default_detail = "the subscription gives no access now (it is not active or in grace)"


class TrialNotShared(Conflict):
    default_detail = "a free trial is not shared; the household opens with the first payment"


class AlreadyInvited(Conflict):
    default_detail = "this email is invited to or a member of this household already"


class TooManyInvitations(Conflict):
    default_detail = "too many open invitations; take one back first"


class InvitationNotFound(NotFound):
    default_detail = "no such invitation"


class MemberNotFound(NotFound):
    default_detail = "no such member of this household"


class InvitationForAnotherEmail(Forbidden):
    default_detail = "this invitation is for another email address"


class OwnHousehold(Conflict):
    default_detail = "the owner already watches through this subscription"


class HouseholdFull(Conflict):
    default_detail = "every seat of this household is taken"


class AlreadyInHousehold(Conflict):
    default_detail = "you are a member of another household of this plan already"


def normal_email(email: str) -> str:
    return email.strip().casefold()


async def _plan(session: AsyncSession, plan_id: UUID) -> Plan:
    plan = await session.get(Plan, plan_id)
    assert plan is not None
    return plan


async def _owned(session: AsyncSession, owner_id: UUID, subscription_id: UUID) -> Subscription:
    """The owner's subscription, locked (the first lock of every household change)."""
    subscription = await locks.lock_subscription(session, subscription_id)
    if subscription is None or subscription.user_id != owner_id:
        raise SubscriptionNotFound(f"subscription {subscription_id} not found")
    return subscription


def _check_shareable(subscription: Subscription) -> None:
    """Only a paid, live period is shared: a free trial would give several people free access
    for one trial (each person has one trial per plan of their own)."""
    if subscription.status not in LIVE:
        raise SubscriptionNotLive()
    if subscription.trial_end is not None and subscription.trial_end > clock.now():
        raise TrialNotShared()


async def _joined_count(session: AsyncSession, subscription_id: UUID) -> int:
    return int(
        await session.scalar(
            sa.select(sa.func.count()).where(
                HouseholdMember.subscription_id == subscription_id,
                HouseholdMember.status == HouseholdMemberStatus.JOINED,
            )
        )
        or 0
    )


async def invite(
    session: AsyncSession,
    settings: BillingSettings,
    owner: Customer,
    subscription_id: UUID,
    email: str,
) -> HouseholdMember:
    """Invite ``email`` to share a live subscription of a plan with seats; the invitation
    (its code and join link) is sent there. Seats are taken at the join, not here."""
    subscription = await _owned(session, owner.id, subscription_id)
    plan = await _plan(session, subscription.plan_id)
    if plan.household_seats == 0:
        raise HouseholdNotOffered()
    _check_shareable(subscription)
    email = normal_email(email)
    open_ones = (
        await session.scalars(
            sa.select(HouseholdMember.email).where(
                HouseholdMember.subscription_id == subscription.id,
                HouseholdMember.status != HouseholdMemberStatus.REMOVED,
            )
        )
    ).all()
    if email in open_ones:
        raise AlreadyInvited()
    if len(open_ones) >= plan.household_seats * INVITATIONS_PER_SEAT:
        raise TooManyInvitations()
    member = HouseholdMember(
        subscription_id=subscription.id,
        owner_id=subscription.user_id,
        plan_id=plan.id,
        email=email,
        locale=subscription.locale,
        code=codes.new_code(),
        status=HouseholdMemberStatus.INVITED,
    )
    session.add(member)
    await session.flush()
    await outbox.add(
        session,
        notices.invited(
            member,
            plan,
            owner_email=owner.email or subscription.email,
            account_url=settings.account_url,
        ),
    )
    return member


async def join(session: AsyncSession, customer: Customer, code: str) -> HouseholdMember:
    """Use an invitation: the caller watches through the owner's subscription from now until
    the owner's access ends. Joining again with the same code returns the same membership."""
    row = (
        await session.execute(
            sa.select(HouseholdMember.id, HouseholdMember.subscription_id).where(
                HouseholdMember.code == code
            )
        )
    ).first()
    if row is None:
        raise InvitationNotFound()
    subscription = await locks.lock_subscription(session, row.subscription_id)
    member = await locks.relock(session, HouseholdMember, row.id)
    assert subscription is not None and member is not None
    if member.status == HouseholdMemberStatus.JOINED and member.user_id == customer.id:
        return member  # a retry of this join
    if member.status != HouseholdMemberStatus.INVITED:
        raise transitions.InvitationNotOpen()
    if customer.email is not None and normal_email(customer.email) != member.email:
        raise InvitationForAnotherEmail()
    if customer.id == subscription.user_id:
        raise OwnHousehold()
    _check_shareable(subscription)
    plan = await _plan(session, subscription.plan_id)
    if await _joined_count(session, subscription.id) >= plan.household_seats:
        raise HouseholdFull()
    await session.execute(
        sa.select(
            sa.func.pg_advisory_xact_lock(
                sa.func.hashtextextended(f"household:{customer.id}:{plan.id}", 0)
            )
        )
    )
    elsewhere = await session.scalar(
        sa.select(HouseholdMember.id).where(
            HouseholdMember.user_id == customer.id,
            HouseholdMember.plan_id == plan.id,
            HouseholdMember.status == HouseholdMemberStatus.JOINED,
        )
    )
    if elsewhere is not None:
        raise AlreadyInHousehold()
    member.plan_id = plan.id
    changes = transitions.join(
        member, plan, user_id=customer.id, owner_email=subscription.email, now=clock.now()
    )
    await entitlements.publish_snapshot(session, customer.id)
    await outbox.add_all(session, changes)
    return member


async def remove(
    session: AsyncSession,
    subscription: Subscription,
    member_id: UUID,
    *,
    reason: str,
) -> HouseholdMember:
    """Remove a member (access ends at once) or take back an invitation; ``subscription``
    is locked by the caller."""
    member = await locks.relock(session, HouseholdMember, member_id)
    if member is None or member.subscription_id != subscription.id:
        raise MemberNotFound()
    plan = await _plan(session, subscription.plan_id)
    changes = transitions.remove(member, plan, reason=reason, now=clock.now())
    if member.user_id is not None:
        await entitlements.publish_snapshot(session, member.user_id)
    await outbox.add_all(session, changes)
    return member


async def remove_by_owner(
    session: AsyncSession, owner_id: UUID, subscription_id: UUID, member_id: UUID
) -> HouseholdMember:
    subscription = await _owned(session, owner_id, subscription_id)
    return await remove(session, subscription, member_id, reason=transitions.REMOVED_BY_OWNER)


async def leave(session: AsyncSession, user_id: UUID, member_id: UUID) -> HouseholdMember:
    """The member leaves the household: their access through it ends at once and the seat is
    free. Leaving again answers the same membership (a retry); another user's membership, or an
    invitation not joined, is not found."""
    row = (
        await session.execute(
            sa.select(HouseholdMember.subscription_id).where(
                HouseholdMember.id == member_id, HouseholdMember.user_id == user_id
            )
        )
    ).first()
    if row is None:
        raise MemberNotFound()
    subscription = await locks.lock_subscription(session, row.subscription_id)
    member = await locks.relock(session, HouseholdMember, member_id)
    assert subscription is not None and member is not None
    if member.status == HouseholdMemberStatus.REMOVED and member.removed_reason == transitions.LEFT:
        return member
    return await remove(session, subscription, member_id, reason=transitions.LEFT)


async def memberships(session: AsyncSession, user_id: UUID) -> list[HouseholdMember]:
    """The households the user is a member of now, newest first."""
    rows = await session.scalars(
        sa.select(HouseholdMember)
        .where(
            HouseholdMember.user_id == user_id,
            HouseholdMember.status == HouseholdMemberStatus.JOINED,
        )
        .order_by(HouseholdMember.joined_at.desc(), HouseholdMember.id)
    )
    return list(rows)


def membership_out(member: HouseholdMember) -> MembershipOut:
    return MembershipOut(
        id=member.id,
        subscription_id=member.subscription_id,
        plan_id=member.plan_id,
        status=member.status.value,
        joined_at=member.joined_at,
        removed_at=member.removed_at,
    )


async def members(session: AsyncSession, owner_id: UUID, subscription_id: UUID) -> MembersOut:
    """The owner's household: every invitation and member, oldest first."""
    subscription = await session.get(Subscription, subscription_id)
    if subscription is None or subscription.user_id != owner_id:
        raise SubscriptionNotFound(f"subscription {subscription_id} not found")
    plan = await _plan(session, subscription.plan_id)
    rows = (
        await session.scalars(
            sa.select(HouseholdMember)
            .where(HouseholdMember.subscription_id == subscription.id)
            .order_by(HouseholdMember.created_at, HouseholdMember.id)
        )
    ).all()
    items = [member_out(row) for row in rows]
    return MembersOut(
        seats=plan.household_seats,
        seats_taken=sum(1 for item in items if item.status == HouseholdMemberStatus.JOINED),
        items=items,
    )


def member_out(member: HouseholdMember) -> MemberOut:
    return MemberOut(
        id=member.id,
        subscription_id=member.subscription_id,
        email=member.email,
        code=member.code,
        status=member.status.value,
        user_id=member.user_id,
        joined_at=member.joined_at,
        removed_at=member.removed_at,
        removed_reason=member.removed_reason,
        created_at=member.created_at,
    )
