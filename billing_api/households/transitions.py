"""Every change of state of a household seat, as pure functions.

::

    invited ──join──▶ joined ──remove──▶ removed
       └──────────remove (invitation taken back)──▶ removed

A transition takes the member row (locked by the caller, after the owner's subscription row),
``now`` and what it needs, checks that it is allowed, sets every field that goes with it and
returns the events to publish. Nothing else assigns a member's ``status``; the caller
publishes the member's entitlement snapshot where access changes.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from billing_api.households import notices
from billing_api.models import HouseholdMember, HouseholdMemberStatus, Plan
from shared import events
from shared.errors import Conflict

REMOVED_BY_OWNER = "removed_by_owner"
LEFT = "left"  # the member left on their own
REMOVED_BY_STAFF = "removed_by_staff"
SEATS_REDUCED = "seats_reduced"
SUBSCRIPTION_ENDED = "subscription_ended"
ALREADY_IN_HOUSEHOLD = "already_in_household"


class InvitationNotOpen(Conflict):
    default_detail = "this invitation was used or taken back already"


class MemberAlreadyRemoved(Conflict):
    default_detail = "this member was removed already"


def join(
    member: HouseholdMember, plan: Plan, *, user_id: UUID, owner_email: str | None, now: datetime
) -> list[events.EventPayload]:
    """invited → joined: ``user_id`` watches through the owner's subscription from now."""
    if member.status != HouseholdMemberStatus.INVITED:
        raise InvitationNotOpen()
    member.status = HouseholdMemberStatus.JOINED
    member.user_id = user_id
    member.joined_at = now
    return [notices.joined(member, plan, owner_email=owner_email)]


def remove(
    member: HouseholdMember, plan: Plan, *, reason: str, now: datetime
) -> list[events.EventPayload]:
    """invited or joined → removed. A joined member removed by someone else is told
    (``household.removed``); one who left, or an invitation taken back, is not (a code taken
    back only stops working)."""
    if member.status == HouseholdMemberStatus.REMOVED:
        raise MemberAlreadyRemoved()
    told = member.status == HouseholdMemberStatus.JOINED and reason != LEFT
    member.status = HouseholdMemberStatus.REMOVED
    member.removed_at = now
    member.removed_reason = reason
    return [notices.removed(member, plan, reason=reason)] if told else []


def follow_plan(member: HouseholdMember, plan_id: UUID) -> None:
    """A joined member follows the owner's plan change (no state change, no notice)."""
    member.plan_id = plan_id
