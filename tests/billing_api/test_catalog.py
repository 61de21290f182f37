from __future__ import annotations

from uuid import uuid4

import pytest

from billing_api import demo
from billing_api.catalog.service import PlanSpec, PrivilegedPlanRole, save_plan
from tests.billing_api.conftest import Suite


class TestPlans:
    async def test_active_plans_are_listed_cheapest_first(self, suite: Suite) -> None:
        body = (await suite.http.get("/api/v1/plans")).json()
        assert [p["code"] for p in body["items"]] == ["basic", "premium", "pass-30"]
        assert body["next_cursor"] is None
        basic = body["items"][0]
        assert basic["price"] == {"amount": 29900, "currency": "RUB"}
        assert basic["period"] == "month"
        assert body["items"][2]["period"] == 30

    async def test_plan_detail_lists_its_movies(self, suite: Suite) -> None:
        basic = await suite.plan("basic")
        detail = (await suite.http.get(f"/api/v1/plans/{basic['id']}")).json()
        assert sorted(detail["movie_ids"]) == sorted(
            str(demo.movie_id(title)) for title, _, _ in demo.MOVIES[:3]
        )

    async def test_unknown_plan_is_404(self, suite: Suite) -> None:
        response = await suite.http.get(f"/api/v1/plans/{uuid4()}")
        assert response.status_code == 404
        assert response.json()["error"] == "PlanNotFound"


class TestOffers:
    async def test_offers_list_plans_covering_the_movie_and_its_prices(self, suite: Suite) -> None:
        movie = demo.movie_id("The Long Night Train")
        offers = (await suite.http.get(f"/api/v1/movies/{movie}/offers")).json()
        assert [p["code"] for p in offers["plans"]] == ["basic", "premium", "pass-30"]
        assert [(o["kind"], o["price"]["amount"]) for o in offers["offers"]] == [
            ("buy", 29900),
            ("rent", 14900),
        ]

    async def test_a_movie_outside_the_basic_set_is_not_offered_by_basic(
        self, suite: Suite
    ) -> None:
        movie = demo.movie_id("Paper Moons")
        offers = (await suite.http.get(f"/api/v1/movies/{movie}/offers")).json()
        assert "basic" not in [p["code"] for p in offers["plans"]]


class TestPlanChanged:
    async def test_saving_a_changed_plan_emits_a_newer_snapshot_and_an_unchanged_one_nothing(
        self, suite: Suite
    ) -> None:
        async with suite.billing.state.session_factory() as session, session.begin():
            _, unchanged = await save_plan(
                session,
                PlanSpec(
                    code="basic",
                    name="Basic",
                    description="Three classics, one low price.",
                    price_amount=29900,
                    currency="RUB",
                    movie_ids=tuple(demo.movie_id(t) for t, _, _ in demo.MOVIES[:3]),
                    role="subscriber_basic",
                ),
            )
            _, changed = await save_plan(
                session,
                PlanSpec(
                    code="basic",
                    name="Basic",
                    price_amount=29900,
                    currency="RUB",
                    movie_ids=(demo.movie_id("Paper Moons"),),
                    role="subscriber_basic",
                ),
            )
        assert (unchanged, changed) == (False, True)
        await suite.billing.state.resources.broker.wait_connected()
        import asyncio

        await asyncio.sleep(0.5)
        versions = await suite.scalar("SELECT version FROM plan WHERE code = 'basic'")
        assert versions == 2

    async def test_a_plan_spec_with_a_privileged_role_is_refused_and_stores_nothing(
        self, suite: Suite
    ) -> None:
        # The spec path (demo data, seeds) refuses it too, not only the admin API's schema.
        with pytest.raises(PrivilegedPlanRole) as refused:
            async with suite.billing.state.session_factory() as session, session.begin():
                await save_plan(
                    session,
                    PlanSpec(
                        code="staff", name="Staff", price_amount=100, currency="RUB", role="admin"
                    ),
                )
        assert refused.value.status_code == 422
        assert await suite.scalar("SELECT count(*) FROM plan WHERE code = 'staff'") == 0
