"""Back office: find household members by invitation code or email, remove one (audited).

A removal runs the same transition and entitlement path as the owner's own removal (the owner's
subscription locked first), so the member's access ends at once and they are told
(``household.removed`` with reason ``removed_by_staff``)."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import locks
from billing_api.admin.audit import service as audit
from billing_api.admin.households.schemas import AdminMemberOut
from billing_api.households import service as households
from billing_api.households import transitions
from billing_api.models import HouseholdMember, Subscription


def admin_member_out(member: HouseholdMember) -> AdminMemberOut:
    return AdminMemberOut(
        **households.member_out(member).model_dump(),
        owner_id=member.owner_id,
        plan_id=member.plan_id,
    )


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search(
    session: AsyncSession, *, search: str | None, limit: int, offset: int
) -> list[AdminMemberOut]:
    """Members and invitations, newest first: an exact invitation code, or a part of the
    member's email or of the owner's subscription email."""
    query = sa.select(HouseholdMember).join(
        Subscription, Subscription.id == HouseholdMember.subscription_id
    )
    if search:
        text = search.strip()
        pattern = f"%{_escaped(text.casefold())}%"
        query = query.where(
            sa.or_(
                HouseholdMember.code == text,
                HouseholdMember.email.like(pattern, escape="\\"),
                sa.func.lower(Subscription.email).like(pattern, escape="\\"),
            )
        )
    rows = await session.scalars(
        query.order_by(HouseholdMember.created_at.desc(), HouseholdMember.id)
        .limit(limit)
        .offset(offset)
    )
    return [admin_member_out(row) for row in rows]


async def remove(session: AsyncSession, actor: str, member_id: UUID, reason: str) -> AdminMemberOut:
    """Remove a member (access ends now) or take back an invitation; audited."""
    found = await session.get(HouseholdMember, member_id)
    if found is None:
        raise households.MemberNotFound()
    subscription = await locks.lock_subscription(session, found.subscription_id)
    locked = await locks.relock(session, HouseholdMember, member_id)
    assert subscription is not None and locked is not None
    before = audit.snapshot(locked)
    member = await households.remove(
        session, subscription, member_id, reason=transitions.REMOVED_BY_STAFF
    )
    await audit.record(
        session,
        actor,
        "household.remove",
        "household_member",
        member.id,
        before=before,
        after=audit.snapshot(member),
        reason=reason,
    )
    return admin_member_out(member)
