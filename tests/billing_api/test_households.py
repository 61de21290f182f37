"""Households: an owner shares a live subscription with people they invite; seats are never
exceeded, members watch through the real access API and lose access with the owner."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from billing_api import demo
from shared import events
from tests import support
from tests.access_api.conftest import Access, access
from tests.billing_api.conftest import Suite, User
from tests.billing_api.households_support import (
    invite,
    join,
    joined_member,
    latest_grants,
    members,
    notices,
    owner_of,
    person,
    plan_with_seats,
)
from tests.billing_api.test_admin_api import admin_headers, audit_rows
from tests.billing_api.test_admin_ui import admin_token, login
from tests.billing_api.test_lifecycle import end_of, run_jobs, subscribed
from tests.billing_api.test_trials import trial

__all__ = ["access"]

FILM = demo.movie_id(demo.MOVIES[0][0])


async def allowed(suite: Suite, access: Access, user: User) -> bool:
    """Whether the real access API lets ``user`` watch a film, once it has billing's newest
    snapshot of them."""
    await support.outbox_published(suite.billing.state.resources.engine)
    version = await suite.scalar(
        "SELECT version FROM entitlement_version WHERE user_id = :user", user=user.id
    )
    if version is not None:
        await access.wait_for("user_grants", "user_id", user.id, int(version))
    return bool((await access.check(user.id, FILM))["allowed"])


async def access_knows_plans(suite: Suite, access: Access) -> None:
    """Give the access API billing's newest ``plan.changed`` of every plan (the access fixture
    starts empty, after the demo catalog was published)."""
    engine = suite.billing.state.resources.engine
    newest: dict[str, dict[str, Any]] = {}
    for message in await support.outbox_messages(engine, "plan.changed"):
        newest[message["data"]["plan_id"]] = message["data"]
    for data in newest.values():
        await access.publish(events.PlanChanged.model_validate(data))
    for data in newest.values():
        await access.wait_for("plan_coverage", "plan_id", UUID(data["plan_id"]), data["version"])


def household_grants(grants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [grant for grant in grants if grant["source"] == "household"]


class TestInvite:
    async def test_the_owner_invites_an_email_and_it_is_sent_the_code_and_join_link(
        self, suite: Suite
    ) -> None:
        owner, subscription = await owner_of(suite)
        response = await owner.post(
            f"/api/v1/subscriptions/{subscription['id']}/members",
            json={"email": "Sister@Example.com"},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "invited"
        assert body["email"] == "sister@example.com"
        assert body["code"].startswith("hh_") and len(body["code"]) >= 20
        (sent,) = await notices(suite, "household.invited")
        assert sent["email"] == "sister@example.com"
        assert sent["code"] == body["code"]
        assert sent["join_url"].endswith(f"/household?code={body['code']}")
        assert sent["owner_email"] == "owner@example.com"
        assert sent["plan"]["code"] == "premium"

    async def test_codes_are_unique_and_unguessable(self, suite: Suite) -> None:
        owner, subscription = await owner_of(suite)
        codes = {
            (await invite(owner, subscription["id"], f"p{n}@example.com"))["code"] for n in range(4)
        }
        assert len(codes) == 4

    async def test_a_plan_without_seats_refuses_invitations(self, suite: Suite) -> None:
        owner = person(suite, "owner")
        subscription = await subscribed(suite, owner, plan="basic")
        response = await owner.post(
            f"/api/v1/subscriptions/{subscription['id']}/members", json={"email": "a@example.com"}
        )
        assert response.status_code == 409
        assert response.json()["error"] == "HouseholdNotOffered"
        assert (await members(owner, subscription["id"]))["items"] == []
        assert await notices(suite, "household.invited") == []

    async def test_a_free_trial_is_not_shared(self, suite: Suite) -> None:
        owner = person(suite, "owner")
        subscription = await trial(suite, owner)
        response = await owner.post(
            f"/api/v1/subscriptions/{subscription['id']}/members", json={"email": "a@example.com"}
        )
        assert response.status_code == 409
        assert response.json()["error"] == "TrialNotShared"
        assert (await members(owner, subscription["id"]))["items"] == []

    @pytest.mark.parametrize(
        "body",
        [{}, {"email": "no-at-sign"}, {"email": ""}, {"email": "a@example.com", "x": 1}],
    )
    async def test_a_malformed_invitation_is_422_and_nothing_is_stored(
        self, suite: Suite, body: dict[str, Any]
    ) -> None:
        owner, subscription = await owner_of(suite)
        response = await owner.post(
            f"/api/v1/subscriptions/{subscription['id']}/members", json=body
        )
        assert response.status_code == 422
        assert set(response.json()) >= {"error", "detail"}
        assert (await members(owner, subscription["id"]))["items"] == []

    async def test_inviting_the_same_email_twice_is_a_conflict(self, suite: Suite) -> None:
        owner, subscription = await owner_of(suite)
        await invite(owner, subscription["id"], "a@example.com")
        again = await owner.post(
            f"/api/v1/subscriptions/{subscription['id']}/members", json={"email": "A@example.com"}
        )
        assert again.status_code == 409
        assert again.json()["error"] == "AlreadyInvited"

    async def test_another_user_cannot_see_invite_or_remove(self, suite: Suite) -> None:
        owner, subscription = await owner_of(suite)
        invited = await invite(owner, subscription["id"], "a@example.com")
        stranger = person(suite, "stranger")
        path = f"/api/v1/subscriptions/{subscription['id']}/members"
        assert (await stranger.get(path)).status_code == 404
        assert (await stranger.post(path, json={"email": "b@example.com"})).status_code == 404
        removed = await suite.http.delete(f"{path}/{invited['id']}", headers=stranger.headers)
        assert removed.status_code == 404
        assert [m["status"] for m in (await members(owner, subscription["id"]))["items"]] == [
            "invited"
        ]


class TestJoin:
    async def test_a_member_watches_through_the_owners_subscription_until_removed(
        self, suite: Suite, access: Access
    ) -> None:
        owner, subscription = await owner_of(suite)
        await access_knows_plans(suite, access)
        member = person(suite, "sister")
        assert not await allowed(suite, access, member)

        invited = await invite(owner, subscription["id"], "sister@example.com")
        response = await join(member, invited["code"])
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "joined"

        (grant,) = household_grants(await latest_grants(suite, member.id))
        (owners,) = await latest_grants(suite, owner.id)
        assert grant["valid_until"] == owners["valid_until"], "ends exactly with the owner's"
        assert grant["plan_id"] == subscription["plan_id"]
        assert await allowed(suite, access, member)
        listed = await members(owner, subscription["id"])
        assert (listed["seats"], listed["seats_taken"]) == (3, 1)
        (joined,) = await notices(suite, "household.joined")
        assert joined["user_id"] == str(member.id)

        removed = await suite.http.delete(
            f"/api/v1/subscriptions/{subscription['id']}/members/{invited['id']}",
            headers=owner.headers,
        )
        assert removed.status_code == 204
        assert not await allowed(suite, access, member)
        assert await allowed(suite, access, owner)
        (told,) = await notices(suite, "household.removed")
        assert (told["user_id"], told["reason"]) == (str(member.id), "removed_by_owner")

    async def test_a_member_sees_the_household_and_leaves_it_freeing_the_seat(
        self, suite: Suite, access: Access
    ) -> None:
        owner, subscription = await owner_of(suite)
        await access_knows_plans(suite, access)
        member, invited = await joined_member(suite, owner, subscription["id"], "brother")
        stranger = person(suite, "stranger")

        [mine] = (await member.get("/api/v1/households/memberships")).json()["items"]
        assert (mine["id"], mine["subscription_id"], mine["status"]) == (
            invited["id"],
            subscription["id"],
            "joined",
        )
        assert (await stranger.get("/api/v1/households/memberships")).json()["items"] == []
        path = f"/api/v1/households/memberships/{invited['id']}/leave"
        refused = await stranger.post(path)
        assert (refused.status_code, refused.json()["error"]) == (404, "MemberNotFound")
        assert await allowed(suite, access, member)

        left = await member.post(path)
        again = await member.post(path)

        assert left.status_code == again.status_code == 200, left.text
        assert left.json()["status"] == "removed" and again.json() == left.json()
        assert not await allowed(suite, access, member)
        assert await allowed(suite, access, owner)
        assert (await member.get("/api/v1/households/memberships")).json()["items"] == []
        listed = await members(owner, subscription["id"])
        assert listed["seats_taken"] == 0
        assert [m["removed_reason"] for m in listed["items"]] == ["left"]
        assert await notices(suite, "household.removed") == []  # they know: they left
        await joined_member(suite, owner, subscription["id"], "cousin")  # the seat is free
        assert (await members(owner, subscription["id"]))["seats_taken"] == 1

    async def test_joining_twice_with_the_same_code_returns_the_same_membership(
        self, suite: Suite
    ) -> None:
        owner, subscription = await owner_of(suite)
        member, invited = await joined_member(suite, owner, subscription["id"], "twice")
        again = await join(member, invited["code"])
        assert again.status_code == 200
        assert again.json()["id"] == invited["id"]
        assert (await members(owner, subscription["id"]))["seats_taken"] == 1

    async def test_an_account_with_another_email_cannot_use_the_code(self, suite: Suite) -> None:
        owner, subscription = await owner_of(suite)
        invited = await invite(owner, subscription["id"], "sister@example.com")
        response = await join(person(suite, "someone-else"), invited["code"])
        assert response.status_code == 403
        assert response.json()["error"] == "InvitationForAnotherEmail"
        assert (await members(owner, subscription["id"]))["items"][0]["status"] == "invited"

    async def test_a_used_code_cannot_be_used_by_another_account(self, suite: Suite) -> None:
        owner, subscription = await owner_of(suite)
        invited = await invite(owner, subscription["id"], "sister@example.com")
        assert (await join(person(suite, "sister"), invited["code"])).status_code == 200
        second = suite.as_user(email="sister@example.com")  # another account, same email
        response = await join(second, invited["code"])
        assert response.status_code == 409
        assert response.json()["error"] == "InvitationNotOpen"

    @pytest.mark.parametrize("code", ["hh_" + "A" * 22, "not-a-code", ""])
    async def test_an_unknown_or_malformed_code_changes_nothing(
        self, suite: Suite, code: str
    ) -> None:
        response = await join(person(suite), code)
        assert response.status_code in (404, 422)
        assert set(response.json()) >= {"error", "detail"}

    async def test_the_owner_cannot_take_a_seat_of_their_own_household(self, suite: Suite) -> None:
        owner, subscription = await owner_of(suite)
        invited = await invite(owner, subscription["id"], "owner@example.com")
        response = await join(owner, invited["code"])
        assert response.status_code == 409
        assert response.json()["error"] == "OwnHousehold"

    async def test_a_person_is_in_one_household_per_plan(self, suite: Suite) -> None:
        first_owner, first = await owner_of(suite)
        second_owner, second = await owner_of(suite)
        cousin, _ = await joined_member(suite, first_owner, first["id"], "cousin")
        invited = await invite(second_owner, second["id"], "cousin@example.com")
        response = await join(cousin, invited["code"])
        assert response.status_code == 409
        assert response.json()["error"] == "AlreadyInHousehold"
        assert (await members(second_owner, second["id"]))["seats_taken"] == 0


class TestSeats:
    async def test_four_people_joining_at_once_for_three_seats_exactly_three_get_in(
        self, suite: Suite, access: Access
    ) -> None:
        plan = await plan_with_seats(suite, 3)
        owner, subscription = await owner_of(suite, plan["code"])
        await access_knows_plans(suite, access)
        people = [person(suite, f"p{n}") for n in range(4)]
        codes = [
            (await invite(owner, subscription["id"], f"p{n}@example.com"))["code"] for n in range(4)
        ]

        answers = await asyncio.gather(*(join(p, c) for p, c in zip(people, codes, strict=True)))

        assert sorted(a.status_code for a in answers) == [200, 200, 200, 409]
        (refused,) = [a for a in answers if a.status_code == 409]
        assert refused.json()["error"] == "HouseholdFull"
        assert (await members(owner, subscription["id"]))["seats_taken"] == 3
        watching = [await allowed(suite, access, p) for p in people]
        assert watching == [a.status_code == 200 for a in answers]

    async def test_a_join_waits_for_an_uncommitted_join_and_then_counts_its_seat(
        self, suite: Suite
    ) -> None:
        """Two real transactions: the first joins the last seat and stays open; the second,
        started meanwhile, waits on the owner's subscription row and is refused once the first
        commits (it counted the seat only after the lock)."""
        from billing_api.customers import Customer
        from billing_api.households import service
        from shared.auth.principal import Principal
        from shared.errors import AppError

        plan = await plan_with_seats(suite, 1)
        owner, subscription = await owner_of(suite, plan["code"])
        first = await invite(owner, subscription["id"], "first@example.com")
        second = await invite(owner, subscription["id"], "second@example.com")

        def customer(email: str) -> Customer:
            user_id = uuid4()
            return Customer(Principal(str(user_id), user_id, email, frozenset()), user_id)

        factory = suite.billing.state.session_factory
        async with factory() as holding:
            await holding.begin()
            await service.join(holding, customer("first@example.com"), first["code"])

            async def second_join() -> str:
                async with factory() as session, session.begin():
                    try:
                        await service.join(session, customer("second@example.com"), second["code"])
                    except AppError as error:
                        return error.name
                    return "joined"

            waiting = asyncio.create_task(second_join())

            async def blocked() -> bool:
                return bool(
                    await suite.scalar(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                )

            await support.eventually(blocked, timeout=5)
            assert not waiting.done()
            await holding.commit()
        assert await waiting == "HouseholdFull"
        assert (await members(owner, subscription["id"]))["seats_taken"] == 1


class TestOwnerChanges:
    async def test_the_owners_refund_revokes_every_member_within_a_second(
        self, suite: Suite, access: Access
    ) -> None:
        owner, subscription = await owner_of(suite)
        await access_knows_plans(suite, access)
        family = [
            (await joined_member(suite, owner, subscription["id"], f"kid{n}"))[0] for n in range(2)
        ]
        assert [await allowed(suite, access, m) for m in family] == [True, True]

        refunded = await owner.post(
            f"/api/v1/payments/{subscription['latest_payment']['id']}/refund",
            json={"reason": "changed my mind"},
        )
        assert refunded.status_code == 201, refunded.text
        started = asyncio.get_running_loop().time()

        async def everyone_revoked() -> bool:
            checks = [await access.check(m.id, FILM) for m in [owner, *family]]
            return not any(check["allowed"] for check in checks)

        await support.eventually(everyone_revoked, timeout=1.0)
        assert asyncio.get_running_loop().time() - started <= 1.0
        told = await notices(suite, "household.removed")
        assert sorted((n["user_id"], n["reason"]) for n in told) == sorted(
            (str(m.id), "subscription_ended") for m in family
        )
        listed = await members(owner, subscription["id"])
        assert {m["status"] for m in listed["items"]} == {"removed"}

    async def test_members_keep_access_through_the_owners_grace_and_lose_it_at_expiry(
        self, suite: Suite, access: Access
    ) -> None:
        owner, subscription = await owner_of(suite)
        await access_knows_plans(suite, access)
        cancel = await owner.post(
            f"/api/v1/subscriptions/{subscription['id']}/cancel", json={"at_period_end": True}
        )
        assert cancel.status_code == 200, cancel.text
        member, _ = await joined_member(suite, owner, subscription["id"], "gran")
        (grant,) = household_grants(await latest_grants(suite, member.id))
        end = end_of(subscription)
        assert datetime.fromisoformat(grant["valid_until"]) == end, "no grace after a cancel"

        await run_jobs(suite, end + timedelta(minutes=1))

        assert (await owner.subscription(subscription["id"]))["status"] == "expired"
        assert household_grants(await latest_grants(suite, member.id)) == []
        assert not await allowed(suite, access, member)
        (told,) = await notices(suite, "household.removed")
        assert told["reason"] == "subscription_ended"

    async def test_an_expiry_run_by_a_real_worker_process_revokes_every_member_within_a_second(
        self, suite: Suite, access: Access, database_url: str, broker_prefix: str
    ) -> None:
        owner, subscription = await owner_of(suite)
        await access_knows_plans(suite, access)
        family = [
            (await joined_member(suite, owner, subscription["id"], f"kin{n}"))[0] for n in range(2)
        ]
        cancel = await owner.post(
            f"/api/v1/subscriptions/{subscription['id']}/cancel", json={"at_period_end": True}
        )
        assert cancel.status_code == 200, cancel.text
        assert [await allowed(suite, access, m) for m in family] == [True, True]

        env = support.suite_environment(database_url, broker_prefix)
        cinema = str(Path(sys.executable).with_name("cinema"))
        at = (end_of(subscription) + timedelta(minutes=1)).isoformat()
        result = await asyncio.to_thread(
            subprocess.run,
            [cinema, "billing", "run-jobs", "--now", at],
            env=env,
            capture_output=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        finished = asyncio.get_running_loop().time()

        async def everyone_revoked() -> bool:
            checks = [await access.check(m.id, FILM) for m in [owner, *family]]
            return not any(check["allowed"] for check in checks)

        await support.eventually(everyone_revoked, timeout=1.0)
        assert asyncio.get_running_loop().time() - finished <= 1.0
        assert (await owner.subscription(subscription["id"]))["status"] == "expired"
        told = await notices(suite, "household.removed")
        assert sorted(n["user_id"] for n in told) == sorted(str(m.id) for m in family)

    async def test_a_change_to_a_plan_with_fewer_seats_removes_the_newest_and_tells_them(
        self, suite: Suite, access: Access
    ) -> None:
        duo = await plan_with_seats(suite, 1, price=99900)
        owner, subscription = await owner_of(suite)
        await access_knows_plans(suite, access)
        names = ["eldest", "middle", "youngest"]
        family = [
            (await joined_member(suite, owner, subscription["id"], name))[0] for name in names
        ]

        answer = await owner.post(
            f"/api/v1/subscriptions/{subscription['id']}/change-plan", json={"plan_id": duo["id"]}
        )
        assert answer.status_code == 200, answer.text
        await suite.pay(answer.json()["payment"]["checkout_url"])

        async def on_duo() -> bool:
            return bool((await owner.subscription(subscription["id"]))["plan_id"] == duo["id"])

        await support.eventually(on_duo, timeout=15)
        assert [await allowed(suite, access, m) for m in family] == [True, False, False]
        (kept,) = household_grants(await latest_grants(suite, family[0].id))
        assert kept["plan_id"] == duo["id"]
        told = await notices(suite, "household.removed")
        assert sorted((n["user_id"], n["reason"]) for n in told) == sorted(
            (str(m.id), "seats_reduced") for m in family[1:]
        )
        listed = await members(owner, subscription["id"])
        assert (listed["seats"], listed["seats_taken"]) == (1, 1)

    async def test_a_downgrade_to_fewer_seats_removes_the_newest_at_the_renewal_that_switches(
        self, suite: Suite, access: Access
    ) -> None:
        single = await plan_with_seats(suite, 1, price=49900)
        owner, subscription = await owner_of(suite)
        await access_knows_plans(suite, access)
        elder, younger = [
            (await joined_member(suite, owner, subscription["id"], name))[0]
            for name in ("elder", "younger")
        ]
        answer = await owner.post(
            f"/api/v1/subscriptions/{subscription['id']}/change-plan",
            json={"plan_id": single["id"]},
        )
        assert answer.json()["change"] == "downgrade", answer.text
        assert [await allowed(suite, access, m) for m in (elder, younger)] == [True, True]

        end = end_of(subscription)
        assert (await run_jobs(suite, end - timedelta(minutes=30)))["renew_due_subscriptions"] == 1

        renewed = await owner.subscription(subscription["id"])
        assert renewed["plan_id"] == single["id"]
        assert [await allowed(suite, access, m) for m in (elder, younger)] == [True, False]
        (kept,) = household_grants(await latest_grants(suite, elder.id))
        (owners,) = await latest_grants(suite, owner.id)
        assert (kept["plan_id"], kept["valid_until"]) == (single["id"], owners["valid_until"])
        (told,) = await notices(suite, "household.removed")
        assert (told["user_id"], told["reason"]) == (str(younger.id), "seats_reduced")


class TestAdmin:
    async def test_staff_find_a_household_by_code_or_email(self, suite: Suite) -> None:
        owner, subscription = await owner_of(suite)
        invited = await invite(owner, subscription["id"], "niece@example.com")
        await invite(owner, subscription["id"], "nephew@example.com")
        path = "/api/v1/admin/households/members"

        by_code = await suite.http.get(
            path, params={"search": invited["code"]}, headers=admin_headers()
        )
        assert by_code.status_code == 200, by_code.text
        assert [m["id"] for m in by_code.json()["items"]] == [invited["id"]]
        by_email = await suite.http.get(path, params={"search": "NIECE@"}, headers=admin_headers())
        assert [m["email"] for m in by_email.json()["items"]] == ["niece@example.com"]
        by_owner = await suite.http.get(path, params={"search": "owner@"}, headers=admin_headers())
        assert len(by_owner.json()["items"]) == 2
        assert (await suite.http.get(path, headers=owner.headers)).status_code == 403

    async def test_staff_remove_a_member_who_loses_access_is_told_and_it_is_audited(
        self, suite: Suite, access: Access
    ) -> None:
        owner, subscription = await owner_of(suite)
        await access_knows_plans(suite, access)
        member, invited = await joined_member(suite, owner, subscription["id"], "lodger")
        assert await allowed(suite, access, member)

        removed = await suite.http.post(
            f"/api/v1/admin/households/members/{invited['id']}/remove",
            json={"reason": "not part of the household"},
            headers=admin_headers(),
        )
        assert removed.status_code == 200, removed.text
        assert removed.json()["status"] == "removed"
        assert removed.json()["removed_reason"] == "removed_by_staff"
        assert not await allowed(suite, access, member)
        (told,) = await notices(suite, "household.removed")
        assert told["reason"] == "removed_by_staff"
        (row,) = await audit_rows(suite, "household_member", invited["id"])
        assert row["action"] == "household.remove"
        assert row["reason"] == "not part of the household"
        assert (row["before"]["status"], row["after"]["status"]) == ("joined", "removed")

        again = await suite.http.post(
            f"/api/v1/admin/households/members/{invited['id']}/remove",
            json={"reason": "twice"},
            headers=admin_headers(),
        )
        assert again.status_code == 409
        assert len(await audit_rows(suite, "household_member", invited["id"])) == 1

    async def test_the_back_office_lists_households_and_searches_by_code(
        self, suite: Suite
    ) -> None:
        owner, subscription = await owner_of(suite)
        invited = await invite(owner, subscription["id"], "aunt@example.com")
        await invite(owner, subscription["id"], "uncle@example.com")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(suite.billing), base_url="http://billing.test"
        ) as http:
            assert (await login(http, "", admin_token())).status_code == 302
            page = await http.get(
                "/admin/household-member/list", params={"search": invited["code"]}
            )
        assert page.status_code == 200
        assert "aunt@example.com" in page.text
        assert "uncle@example.com" not in page.text
