"""Every (state, action) of a household seat: the state it leads to and the events it returns,
the forbidden ones included."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from billing_api.households import transitions
from billing_api.models import HouseholdMember, HouseholdMemberStatus, Plan
from shared import events
from shared.errors import Conflict

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
MEMBER_USER = uuid4()


def plan() -> Plan:
    return Plan(id=uuid4(), code="premium", name="Premium", household_seats=3)


def member(status: HouseholdMemberStatus) -> HouseholdMember:
    joined = status != HouseholdMemberStatus.INVITED
    return HouseholdMember(
        id=uuid4(),
        subscription_id=uuid4(),
        owner_id=uuid4(),
        plan_id=uuid4(),
        email="kin@example.com",
        locale="en",
        code="hh_" + "a" * 22,
        status=status,
        user_id=MEMBER_USER if joined else None,
        joined_at=NOW if joined else None,
    )


def join(row: HouseholdMember) -> list[events.EventPayload]:
    return list(transitions.join(row, plan(), user_id=MEMBER_USER, owner_email=None, now=NOW))


def remove(row: HouseholdMember) -> list[events.EventPayload]:
    return list(transitions.remove(row, plan(), reason=transitions.REMOVED_BY_OWNER, now=NOW))


INVITED, JOINED, REMOVED = (
    HouseholdMemberStatus.INVITED,
    HouseholdMemberStatus.JOINED,
    HouseholdMemberStatus.REMOVED,
)


@pytest.mark.parametrize(
    ("state", "action", "after", "published"),
    [
        (INVITED, join, JOINED, ["household.joined"]),
        (INVITED, remove, REMOVED, []),  # an invitation taken back: nobody to tell
        (JOINED, remove, REMOVED, ["household.removed"]),
        (JOINED, join, None, None),
        (REMOVED, join, None, None),
        (REMOVED, remove, None, None),
    ],
)
def test_each_state_and_action(
    state: HouseholdMemberStatus,
    action: Callable[[HouseholdMember], list[events.EventPayload]],
    after: HouseholdMemberStatus | None,
    published: list[str] | None,
) -> None:
    row = member(state)
    if after is None:
        with pytest.raises(Conflict):
            action(row)
        assert row.status == state, "a refused transition changes nothing"
        return
    changes = action(row)
    assert row.status == after
    assert [event.event_type for event in changes] == published


def test_a_join_sets_who_and_when() -> None:
    row = member(INVITED)
    join(row)
    assert (row.user_id, row.joined_at) == (MEMBER_USER, NOW)


def test_a_removal_sets_when_and_why_and_tells_the_member() -> None:
    row = member(JOINED)
    (event,) = transitions.remove(row, plan(), reason=transitions.SEATS_REDUCED, now=NOW)
    assert isinstance(event, events.HouseholdRemoved)
    assert (row.removed_at, row.removed_reason) == (NOW, "seats_reduced")
    assert event.user_id == MEMBER_USER
    assert event.reason == "seats_reduced"
