"""Factories of the household tests: owners of plans with seats, invitations, joined members."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from billing_api.catalog.service import PlanSpec, save_plan
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_lifecycle import subscribed


async def plan_with_seats(suite: Suite, seats: int, *, price: int = 79900) -> dict[str, Any]:
    """A plan covering every film with ``seats`` household seats (price per month)."""
    code = f"household-{seats}-{price}"
    async with suite.billing.state.session_factory() as session, session.begin():
        await save_plan(
            session,
            PlanSpec(
                code=code,
                name=f"Household of {seats}",
                price_amount=price,
                currency="RUB",
                all_movies=True,
                role="subscriber_premium",
                household_seats=seats,
            ),
        )
    return await suite.plan(code)


def person(suite: Suite, name: str | None = None) -> User:
    """A user whose token carries their own email."""
    return suite.as_user(email=f"{name or uuid4().hex[:10]}@example.com")


async def owner_of(suite: Suite, plan_code: str = "premium") -> tuple[User, dict[str, Any]]:
    owner = person(suite, "owner")
    return owner, await subscribed(suite, owner, plan=plan_code)


async def invite(owner: User, subscription_id: str, email: str) -> dict[str, Any]:
    response = await owner.post(
        f"/api/v1/subscriptions/{subscription_id}/members", json={"email": email}
    )
    assert response.status_code == 201, response.text
    invited: dict[str, Any] = response.json()
    return invited


async def join(user: User, code: str) -> Any:
    return await user.post("/api/v1/households/join", json={"code": code})


async def joined_member(
    suite: Suite, owner: User, subscription_id: str, name: str | None = None
) -> tuple[User, dict[str, Any]]:
    """A person invited by ``owner`` who joined with their code."""
    name = name or f"m{uuid4().hex[:10]}"
    member = person(suite, name)
    invited = await invite(owner, subscription_id, f"{name}@example.com")
    response = await join(member, invited["code"])
    assert response.status_code == 200, response.text
    return member, invited


async def members(owner: User, subscription_id: str) -> dict[str, Any]:
    response = await owner.get(f"/api/v1/subscriptions/{subscription_id}/members")
    assert response.status_code == 200, response.text
    listed: dict[str, Any] = response.json()
    return listed


async def snapshots_of(suite: Suite, user_id: UUID) -> list[dict[str, Any]]:
    """Billing's entitlement snapshots of one user, oldest first (from the outbox)."""
    engine = suite.billing.state.resources.engine
    return [
        message["data"]
        for message in await support.outbox_messages(engine, "entitlements.changed")
        if message["data"]["user_id"] == str(user_id)
    ]


async def latest_grants(suite: Suite, user_id: UUID) -> list[dict[str, Any]]:
    snapshots = await snapshots_of(suite, user_id)
    return list(max(snapshots, key=lambda s: s["version"])["grants"]) if snapshots else []


async def notices(suite: Suite, event_type: str) -> list[dict[str, Any]]:
    engine = suite.billing.state.resources.engine
    return [message["data"] for message in await support.outbox_messages(engine, event_type)]
