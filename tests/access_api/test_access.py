from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from shared import clock
from shared.auth import AuthSettings, mint_user_token
from tests.access_api.conftest import (
    Access,
    purchase,
    service_headers,
    subscription,
    user_headers,
)


class TestSnapshots:
    async def test_an_older_snapshot_arriving_late_changes_nothing(self, access: Access) -> None:
        user, plan, movie = uuid4(), uuid4(), uuid4()
        await access.plan(plan, all_movies=True)
        await access.grants(user, 2, subscription(plan, clock.now() + timedelta(days=30)))
        await access.grants(user, 1, wait=False)  # v1 (no grants) is late
        await access.grants(user, 2)  # a duplicate of v2 too

        assert (await access.check(user, movie))["allowed"] is True

    async def test_a_newer_snapshot_without_the_grant_revokes_access(self, access: Access) -> None:
        user, plan, movie = uuid4(), uuid4(), uuid4()
        await access.plan(plan, all_movies=True)
        await access.grants(user, 1, subscription(plan, clock.now() + timedelta(days=30)))
        assert (await access.check(user, movie))["allowed"] is True
        await access.grants(user, 2)
        assert (await access.check(user, movie))["allowed"] is False


class TestTime:
    async def test_access_ends_at_valid_until_without_any_event(self, access: Access) -> None:
        user, plan, movie = uuid4(), uuid4(), uuid4()
        end = clock.now() + timedelta(days=30)
        await access.plan(plan, all_movies=True)
        await access.grants(user, 1, subscription(plan, end))

        with clock.frozen(end - timedelta(seconds=1)):
            assert (await access.check(user, movie))["allowed"] is True
        with clock.frozen(end):
            assert (await access.check(user, movie))["allowed"] is False

    async def test_grace_included_in_valid_until_keeps_access_after_the_period(
        self, access: Access
    ) -> None:
        user, plan, movie = uuid4(), uuid4(), uuid4()
        period_end = clock.now() + timedelta(days=30)
        await access.plan(plan, all_movies=True)
        await access.grants(user, 1, subscription(plan, period_end + timedelta(days=2)))
        with clock.frozen(period_end + timedelta(days=1)):
            answer = await access.check(user, movie)
        assert answer["allowed"] is True
        assert answer["valid_until"].startswith(str((period_end + timedelta(days=2)).date()))


class TestPurchases:
    async def test_a_bought_movie_is_watchable_forever_and_only_that_movie(
        self, access: Access
    ) -> None:
        user, movie, other = uuid4(), uuid4(), uuid4()
        await access.grants(user, 1, purchase(movie))
        with clock.frozen(clock.now() + timedelta(days=3650)):
            answer = await access.check(user, movie)
        assert answer == {
            "allowed": True,
            "source": "purchase",
            "plan_codes": [],
            "valid_until": None,
        }
        assert (await access.check(user, other))["allowed"] is False

    async def test_a_rented_movie_stops_at_its_valid_until(self, access: Access) -> None:
        user, movie = uuid4(), uuid4()
        until = clock.now() + timedelta(hours=48)
        await access.grants(user, 1, purchase(movie, until))
        assert (await access.check(user, movie))["allowed"] is True
        with clock.frozen(until + timedelta(seconds=1)):
            assert (await access.check(user, movie))["allowed"] is False


class TestPlans:
    async def test_a_movie_set_plan_covers_only_its_movies(self, access: Access) -> None:
        user, plan, inside, outside = uuid4(), uuid4(), uuid4(), uuid4()
        await access.plan(plan, code="basic", movie_ids=(inside,))
        await access.grants(user, 1, subscription(plan, clock.now() + timedelta(days=30)))
        answer = await access.check(user, inside)
        assert (answer["allowed"], answer["source"], answer["plan_codes"]) == (
            True,
            "subscription",
            ["basic"],
        )
        assert (await access.check(user, outside))["allowed"] is False

    async def test_an_all_movies_plan_covers_any_movie(self, access: Access) -> None:
        user, plan = uuid4(), uuid4()
        await access.plan(plan, code="premium", all_movies=True)
        await access.grants(user, 1, subscription(plan, clock.now() + timedelta(days=30)))
        assert (await access.check(user, uuid4()))["plan_codes"] == ["premium"]

    async def test_a_deactivated_plan_grants_nothing(self, access: Access) -> None:
        user, plan, movie = uuid4(), uuid4(), uuid4()
        await access.plan(plan, all_movies=True)
        await access.grants(user, 1, subscription(plan, clock.now() + timedelta(days=30)))
        assert (await access.check(user, movie))["allowed"] is True
        await access.plan(plan, 2, all_movies=True, active=False)
        assert (await access.check(user, movie))["allowed"] is False

    async def test_a_movie_added_to_the_plan_becomes_watchable(self, access: Access) -> None:
        user, plan, movie = uuid4(), uuid4(), uuid4()
        await access.plan(plan, movie_ids=())
        await access.grants(user, 1, subscription(plan, clock.now() + timedelta(days=30)))
        assert (await access.check(user, movie))["allowed"] is False
        await access.plan(plan, 2, movie_ids=(movie,))
        assert (await access.check(user, movie))["allowed"] is True


class TestUnknown:
    async def test_unknown_user_and_movie_are_simply_not_allowed(self, access: Access) -> None:
        assert await access.check(uuid4(), uuid4()) == {
            "allowed": False,
            "source": None,
            "plan_codes": [],
            "valid_until": None,
        }

    async def test_a_malformed_uuid_is_422(self, access: Access) -> None:
        response = await access.http.get(
            f"/api/v1/access/not-a-uuid/movies/{uuid4()}", headers=service_headers()
        )
        assert response.status_code == 422
        assert response.json()["error"] == "ValidationError"


class TestAuthorization:
    async def test_a_user_may_ask_about_themselves(self, access: Access) -> None:
        user = uuid4()
        response = await access.http.get(
            f"/api/v1/access/{user}/movies/{uuid4()}", headers=user_headers(user)
        )
        assert response.status_code == 200

    async def test_a_user_asking_about_another_user_is_403(self, access: Access) -> None:
        response = await access.http.get(
            f"/api/v1/access/{uuid4()}/movies/{uuid4()}", headers=user_headers(uuid4())
        )
        assert response.status_code == 403
        assert response.json()["error"] == "Forbidden"

    async def test_no_token_is_401(self, access: Access) -> None:
        response = await access.http.get(f"/api/v1/access/{uuid4()}/movies/{uuid4()}")
        assert response.status_code == 401

    async def test_a_partner_service_token_from_the_auth_service_may_ask(
        self, access: Access
    ) -> None:
        # The cinema's player asks with the auth service's token (role service), not ours.
        user, plan, movie = uuid4(), uuid4(), uuid4()
        await access.plan(plan, all_movies=True)
        await access.grants(user, 1, subscription(plan, clock.now() + timedelta(days=30)))
        partner = mint_user_token(AuthSettings(), "cinema-player", roles=["service"])
        response = await access.http.get(
            f"/api/v1/access/{user}/movies/{movie}",
            headers={"Authorization": f"Bearer {partner}"},
        )
        assert response.status_code == 200
        assert response.json()["allowed"] is True


class TestBatch:
    async def test_many_movies_are_answered_at_once(self, access: Access) -> None:
        user, plan, inside, bought, outside = uuid4(), uuid4(), uuid4(), uuid4(), uuid4()
        await access.plan(plan, movie_ids=(inside,))
        await access.grants(
            user, 1, subscription(plan, clock.now() + timedelta(days=30)), purchase(bought)
        )
        response = await access.http.post(
            f"/api/v1/access/{user}/movies",
            json={"movie_ids": [str(inside), str(bought), str(outside)]},
            headers=service_headers(),
        )
        results = response.json()["results"]
        assert [results[str(m)]["allowed"] for m in (inside, bought, outside)] == [
            True,
            True,
            False,
        ]
        assert results[str(bought)]["valid_until"] is None

    @pytest.mark.parametrize("size", [0, 501])
    async def test_empty_or_oversized_batches_are_422(self, access: Access, size: int) -> None:
        response = await access.http.post(
            f"/api/v1/access/{uuid4()}/movies",
            json={"movie_ids": [str(uuid4()) for _ in range(size)]},
            headers=service_headers(),
        )
        assert response.status_code == 422

    async def test_a_malformed_movie_id_in_a_batch_is_422(self, access: Access) -> None:
        response = await access.http.post(
            f"/api/v1/access/{uuid4()}/movies",
            json={"movie_ids": ["nope"]},
            headers=service_headers(),
        )
        assert response.status_code == 422


class TestGrantsView:
    async def test_active_grants_plans_and_roles_are_listed(self, access: Access) -> None:
        user, plan = uuid4(), uuid4()
        await access.plan(plan, code="premium", all_movies=True, role="subscriber_premium")
        await access.grants(
            user,
            1,
            subscription(plan, clock.now() + timedelta(days=30), role="subscriber_premium"),
            purchase(uuid4(), clock.now() - timedelta(days=1)),  # an expired rental
        )
        body = (await access.http.get(f"/api/v1/access/{user}", headers=service_headers())).json()
        assert body["plan_codes"] == ["premium"]
        assert body["roles"] == ["subscriber_premium"]
        assert [g["source"] for g in body["grants"]] == ["subscription"]


class TestFastPath:
    async def test_the_fast_path_answers_like_the_documented_route_and_is_counted(
        self, access: Access
    ) -> None:
        user, plan, movie = uuid4(), uuid4(), uuid4()
        await access.plan(plan, code="premium", all_movies=True)
        await access.grants(user, 1, subscription(plan, clock.now() + timedelta(days=30)))
        answer = await access.http.get(
            f"/api/v1/access/{user}/movies/{movie}", headers=service_headers()
        )
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-request-id"]
        assert answer.json()["plan_codes"] == ["premium"]
        metrics = (await access.http.get("/metrics")).text
        assert 'route="/api/v1/access/{user_id}/movies/{movie_id}",status="200"' in metrics
