"""The back-office API: plans, movies, discounts, customers, refunds, gifts, and its audit trail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from billing_api import demo
from shared import clock
from shared.auth import AuthSettings, mint_service_token, mint_user_token
from tests import support
from tests.billing_api.conftest import Suite

ADMIN_ID = uuid4()
MOVIES = [str(demo.movie_id(title)) for title, _, _ in demo.MOVIES]


def admin_headers(user_id: UUID = ADMIN_ID) -> dict[str, str]:
    token = mint_user_token(AuthSettings(), user_id, email="staff@example.com", roles=["admin"])
    return {"Authorization": f"Bearer {token}"}


async def admin(suite: Suite, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return await suite.http.request(method, path, headers=admin_headers(), **kwargs)


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def audit_rows(suite: Suite, entity: str, entity_id: str) -> list[dict[str, Any]]:
    body = await ok(
        await admin(
            suite, "GET", "/api/v1/admin/audit", params={"entity": entity, "entity_id": entity_id}
        )
    )
    rows: list[dict[str, Any]] = body["items"]
    return rows


async def plan_events(suite: Suite, plan_id: str) -> list[dict[str, Any]]:
    messages = await support.outbox_messages(suite.billing.state.resources.engine, "plan.changed")
    return [message["data"] for message in messages if message["data"]["plan_id"] == plan_id]


def new_plan(code: str, **fields: Any) -> dict[str, Any]:
    return {"code": code, "name": code.title(), "price": {"amount": 19900, "currency": "RUB"}} | (
        fields
    )


class TestWhoMayCall:
    async def test_every_admin_route_refuses_plain_users_and_anonymous_callers(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        checked = 0
        for path, operations in suite.billing.openapi()["paths"].items():
            if not path.startswith("/api/v1/admin"):
                continue
            concrete = path
            for name in ("plan", "movie", "tier", "user", "promo", "grant", "payment"):
                concrete = concrete.replace(f"{{{name}_id}}", str(uuid4()))
            for method in operations:
                as_user = await suite.http.request(method, concrete, headers=user.headers, json={})
                assert as_user.status_code == 403, (method, path, as_user.text)
                assert as_user.json()["error"] == "Forbidden"
                anonymous = await suite.http.request(method, concrete, json={})
                assert anonymous.status_code == 401, (method, path)
                checked += 1
        assert checked >= 30


class TestPlans:
    async def test_create_a_plan_with_two_movies_sells_it_and_announces_it(
        self, suite: Suite
    ) -> None:
        body = new_plan("duo", movie_ids=MOVIES[:2], role="duo_viewer", max_months=6)
        plan = await ok(await admin(suite, "POST", "/api/v1/admin/plans", json=body), 201)
        assert plan["movie_ids"] == sorted(MOVIES[:2])
        public = await ok(await suite.http.get(f"/api/v1/plans/{plan['id']}"))
        assert public["price"] == {"amount": 19900, "currency": "RUB"}
        assert sorted(public["movie_ids"]) == sorted(MOVIES[:2])
        [event] = await plan_events(suite, plan["id"])
        assert event["active"] is True
        assert sorted(event["movie_ids"]) == sorted(MOVIES[:2])
        [row] = await audit_rows(suite, "plan", plan["id"])
        assert row["actor"] == str(ADMIN_ID)
        assert row["action"] == "plan.create"
        assert row["before"] is None
        assert row["after"]["code"] == "duo"

    async def test_bad_plans_are_refused_and_change_nothing(self, suite: Suite) -> None:
        refused = [
            new_plan("basic"),  # the code is taken
            new_plan("ghost", movie_ids=[str(uuid4())]),
            new_plan("both", all_movies=True, movie_ids=MOVIES[:1]),
            new_plan("Bad Code"),
            new_plan("cheap", price={"amount": "10", "currency": "RUB"}),
            new_plan("longer", max_months=13),
        ]
        for body in refused:
            response = await admin(suite, "POST", "/api/v1/admin/plans", json=body)
            assert response.status_code in (409, 422), response.text
            assert response.json()["error"] in (
                "PlanCodeTaken",
                "UnknownMovies",
                "InvalidChange",
                "ValidationError",
            )
        plans = await ok(await admin(suite, "GET", "/api/v1/admin/plans"))
        assert sorted(p["code"] for p in plans["items"]) == ["basic", "pass-30", "premium"]

    @pytest.mark.parametrize("role", ["admin", "service", " Admin "])
    async def test_a_plan_never_sells_a_privileged_role(self, suite: Suite, role: str) -> None:
        created = await admin(suite, "POST", "/api/v1/admin/plans", json=new_plan("vip", role=role))
        assert created.status_code == 422, created.text
        body = created.json()
        assert body["error"] == "ValidationError"
        assert [error["loc"] for error in body["errors"]] == [["body", "role"]]
        plans = await ok(await admin(suite, "GET", "/api/v1/admin/plans"))
        assert "vip" not in [p["code"] for p in plans["items"]]

        basic = await suite.plan("basic")
        updated = await admin(
            suite, "PATCH", f"/api/v1/admin/plans/{basic['id']}", json={"role": role}
        )
        assert updated.status_code == 422, updated.text
        assert updated.json()["error"] == "ValidationError"
        plan = await ok(await admin(suite, "GET", f"/api/v1/admin/plans/{basic['id']}"))
        assert plan["role"] == "subscriber_basic"
        assert await audit_rows(suite, "plan", basic["id"]) == []
        assert [e["version"] for e in await plan_events(suite, basic["id"])] in ([], [1])

    async def test_an_update_changes_price_and_movies_and_keeps_the_before(
        self, suite: Suite
    ) -> None:
        basic = await suite.plan("basic")
        changes = {"price": {"amount": 34900, "currency": "RUB"}, "movie_ids": MOVIES[3:5]}
        plan = await ok(
            await admin(suite, "PATCH", f"/api/v1/admin/plans/{basic['id']}", json=changes)
        )
        assert plan["price"]["amount"] == 34900
        assert plan["movie_ids"] == sorted(MOVIES[3:5])
        quote = await ok(await suite.http.get("/api/v1/quote", params={"plan_id": basic["id"]}))
        assert quote["total"]["amount"] == 34900
        [row] = await audit_rows(suite, "plan", basic["id"])
        assert row["before"]["price_amount"] == 29900
        assert row["after"]["price_amount"] == 34900
        assert sorted(row["before"]["movie_ids"]) == sorted(MOVIES[:3])
        cleared = await admin(
            suite, "PATCH", f"/api/v1/admin/plans/{basic['id']}", json={"name": None}
        )
        assert cleared.status_code == 422
        assert (await suite.plan("basic"))["name"] == "Basic"

    async def test_archiving_stops_selling_but_subscribers_keep_the_plan(
        self, suite: Suite
    ) -> None:
        basic, premium = await suite.plan("basic"), await suite.plan("premium")
        await suite.execute(
            "INSERT INTO billing.subscription (id, user_id, plan_id, status, months,"
            " current_period_start, current_period_end, auto_renew, cancel_at_period_end,"
            " renewal_attempts, locale, trial, created_at, updated_at) VALUES (:id, :user,"
            " :plan, 'active', 1, now(), now() + interval '30 days', true, false, 0, 'ru',"
            " false, now(), now())",
            id=uuid4(),
            user=uuid4(),
            plan=UUID(basic["id"]),
        )
        for plan, still_granting in ((basic, True), (premium, False)):
            archived = await ok(
                await admin(suite, "POST", f"/api/v1/admin/plans/{plan['id']}/archive")
            )
            assert archived["active"] is False
            assert (await plan_events(suite, plan["id"]))[-1]["active"] is still_granting
            missing = await suite.http.get(f"/api/v1/plans/{plan['id']}")
            assert missing.status_code == 404
        codes = [p["code"] for p in (await ok(await suite.http.get("/api/v1/plans")))["items"]]
        assert codes == ["pass-30"]
        restored = await ok(
            await admin(suite, "POST", f"/api/v1/admin/plans/{basic['id']}/restore")
        )
        assert restored["active"] is True
        actions = [row["action"] for row in await audit_rows(suite, "plan", basic["id"])]
        assert actions == ["plan.restore", "plan.archive"]


class TestMovies:
    async def test_create_read_and_reprice_a_movie(self, suite: Suite) -> None:
        movie_id = str(uuid4())
        body = {
            "id": movie_id,
            "title": "Moon Harbour",
            "purchase_price": {"amount": 9900, "currency": "RUB"},
        }
        created = await ok(await admin(suite, "POST", "/api/v1/admin/movies", json=body), 201)
        assert created["purchase_price"] == {"amount": 9900, "currency": "RUB"}
        again = await admin(suite, "POST", "/api/v1/admin/movies", json=body)
        assert again.status_code == 409
        changes = {
            "purchase_price": None,
            "rent_price": {"amount": 4900, "currency": "RUB"},
            "rent_hours": 24,
        }
        movie = await ok(
            await admin(suite, "PATCH", f"/api/v1/admin/movies/{movie_id}", json=changes)
        )
        assert movie["purchase_price"] is None
        offers = await ok(await suite.http.get(f"/api/v1/movies/{movie_id}/offers"))
        assert offers["offers"] == [
            {"kind": "rent", "price": {"amount": 4900, "currency": "RUB"}, "rent_hours": 24}
        ]
        half_rent = await admin(
            suite, "PATCH", f"/api/v1/admin/movies/{movie_id}", json={"rent_hours": None}
        )
        assert half_rent.status_code == 422
        assert half_rent.json()["error"] == "InvalidChange"
        read = await ok(await admin(suite, "GET", f"/api/v1/admin/movies/{movie_id}"))
        assert read["rent_hours"] == 24
        actions = [row["action"] for row in await audit_rows(suite, "movie", movie_id)]
        assert actions == ["movie.update", "movie.create"]
        missing = await admin(suite, "PATCH", f"/api/v1/admin/movies/{uuid4()}", json={})
        assert missing.status_code == 404

    async def test_the_etl_bulk_upsert_is_audited_under_the_service_name(
        self, suite: Suite
    ) -> None:
        token = mint_service_token(AuthSettings(), "etl")
        batch = {"movies": [{"id": str(uuid4()), "title": "Fresh from the movie admin"}]}
        for _ in range(2):  # the repeated batch changes nothing and leaves no row
            response = await suite.http.post(
                "/api/v1/admin/movies/bulk",
                json=batch,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200, response.text
        rows = await audit_rows(suite, "movie", "bulk")  # other tests' batches are there too
        [row] = [r for r in rows if r["after"]["ids"] == [batch["movies"][0]["id"]]]
        assert (row["actor"], row["action"]) == ("etl", "movie.bulk_upsert")
        assert row["after"]["created"] == 1
        assert row["after"]["ids"] == [batch["movies"][0]["id"]]

    async def test_a_partner_token_with_the_service_role_cannot_load_movies(
        self, suite: Suite
    ) -> None:
        # Only our own ETL (an internal token) loads the catalog; an auth-service token that
        # carries the role service is a partner's, good for the access API only.
        partner = mint_user_token(AuthSettings(), "partner-feed", roles=["service"])
        movie_id = str(uuid4())
        batch = {"movies": [{"id": movie_id, "title": "Smuggled in"}]}
        response = await suite.http.post(
            "/api/v1/admin/movies/bulk",
            json=batch,
            headers={"Authorization": f"Bearer {partner}"},
        )
        assert response.status_code == 403
        assert response.json()["error"] == "Forbidden"
        missing = await admin(suite, "GET", f"/api/v1/admin/movies/{movie_id}")
        assert missing.status_code == 404


class TestDiscounts:
    async def test_tiers_and_personal_discounts_show_in_the_quote(self, suite: Suite) -> None:
        basic = await suite.plan("basic")
        user = suite.as_user()
        tier = await ok(
            await admin(
                suite,
                "POST",
                "/api/v1/admin/month-tiers",
                json={"plan_id": basic["id"], "min_months": 2, "percent": 10},
            ),
            201,
        )
        duplicate = await admin(
            suite,
            "POST",
            "/api/v1/admin/month-tiers",
            json={"plan_id": basic["id"], "min_months": 2, "percent": 15},
        )
        assert duplicate.status_code == 409
        await ok(
            await admin(
                suite,
                "PUT",
                f"/api/v1/admin/personal-discounts/{user.id}",
                json={"percent": 5, "reason": "loyal since 2019"},
            )
        )
        params = {"plan_id": basic["id"], "months": 2}
        quote = await ok(await user.get("/api/v1/quote", params=params))
        assert quote["applied"]["percent"] == 15  # 10 % tier + 5 % personal
        await ok(
            await admin(
                suite, "PATCH", f"/api/v1/admin/month-tiers/{tier['id']}", json={"percent": 20}
            )
        )
        assert (await ok(await user.get("/api/v1/quote", params=params)))["applied"][
            "percent"
        ] == 25
        deleted = await admin(suite, "DELETE", f"/api/v1/admin/month-tiers/{tier['id']}")
        assert deleted.status_code == 204
        removed = await admin(suite, "DELETE", f"/api/v1/admin/personal-discounts/{user.id}")
        assert removed.status_code == 204
        assert (await ok(await user.get("/api/v1/quote", params=params)))["applied"] is None
        tier_actions = [r["action"] for r in await audit_rows(suite, "month_tier", tier["id"])]
        assert tier_actions == ["month_tier.delete", "month_tier.update", "month_tier.create"]
        personal = await audit_rows(suite, "personal_discount", str(user.id))
        assert [r["action"] for r in personal] == [
            "personal_discount.delete",
            "personal_discount.set",
        ]
        assert personal[1]["reason"] == "loyal since 2019"

    async def test_promo_codes_apply_count_redemptions_and_can_be_switched_off(
        self, suite: Suite
    ) -> None:
        premium = await suite.plan("premium")
        body = {"code": "summer25", "kind": "percent", "percent": 25, "max_redemptions": 10}
        promo = await ok(await admin(suite, "POST", "/api/v1/admin/promo-codes", json=body), 201)
        assert promo["code"] == "SUMMER25"
        taken = await admin(suite, "POST", "/api/v1/admin/promo-codes", json=body)
        assert taken.status_code == 409
        shapeless = {"code": "BROKEN", "kind": "fixed", "percent": 10}
        assert (
            await admin(suite, "POST", "/api/v1/admin/promo-codes", json=shapeless)
        ).status_code == 422
        user = suite.as_user()
        quote = await ok(
            await suite.http.get(
                "/api/v1/quote", params={"plan_id": premium["id"], "promo_code": "summer25"}
            )
        )
        assert quote["applied"]["source"] == "promo"
        assert quote["total"]["amount"] == 59900 - 14975
        checkout = await user.post(
            "/api/v1/subscriptions", json={"plan_id": premium["id"], "promo_code": "SUMMER25"}
        )
        assert checkout.status_code == 201, checkout.text
        counted = await ok(await admin(suite, "GET", f"/api/v1/admin/promo-codes/{promo['id']}"))
        assert (counted["redemptions"], counted["reserved"]) == (1, 1)
        lower = await admin(
            suite, "PATCH", f"/api/v1/admin/promo-codes/{promo['id']}", json={"max_redemptions": 0}
        )
        assert lower.status_code == 422
        off = await ok(
            await admin(suite, "POST", f"/api/v1/admin/promo-codes/{promo['id']}/deactivate")
        )
        assert off["active"] is False
        refused = await suite.http.get(
            "/api/v1/quote", params={"plan_id": premium["id"], "promo_code": "SUMMER25"}
        )
        assert refused.json()["error"] == "PromoCodeInactive"
        actions = [r["action"] for r in await audit_rows(suite, "promo_code", promo["id"])]
        assert actions == ["promo_code.deactivate", "promo_code.create"]


class TestCustomers:
    async def test_a_customer_refunded_outside_the_window_and_given_a_gift(
        self, suite: Suite
    ) -> None:
        pass30 = await suite.plan("pass-30")  # window_only: no refund after 60 minutes
        user = suite.as_user(email="mila@example.com")
        created = await ok(
            await user.post("/api/v1/subscriptions", json={"plan_id": pass30["id"]}), 201
        )
        await suite.pay(created["latest_payment"]["checkout_url"])
        await user.wait_for_subscription(created["id"], "active")
        payment_id = created["latest_payment"]["id"]
        await suite.execute(
            "UPDATE billing.payment SET paid_at = paid_at - interval '2 days' WHERE id = :id",
            id=UUID(payment_id),
        )
        own = await ok(await user.get(f"/api/v1/payments/{payment_id}/refund-quote"))
        assert own["refundable_amount"]["amount"] == 0

        customers = await ok(
            await admin(suite, "GET", "/api/v1/admin/users", params={"search": "mila@"})
        )
        assert [c["user_id"] for c in customers["items"]] == [str(user.id)]
        base = f"/api/v1/admin/users/{user.id}"
        payments = await ok(await admin(suite, "GET", f"{base}/payments"))
        assert [p["id"] for p in payments["items"]] == [payment_id]
        subscriptions = await ok(await admin(suite, "GET", f"{base}/subscriptions"))
        assert subscriptions["items"][0]["status"] == "active"
        statement = await ok(await admin(suite, "GET", f"{base}/statement"))
        assert statement["items"][0]["kind"] == "payment_captured"
        assert (await ok(await admin(suite, "GET", f"{base}/purchases")))["items"] == []
        assert (await ok(await admin(suite, "GET", f"{base}/wallet")))["balances"] == [
            {"amount": 0, "currency": "RUB"}
        ]

        no_reason = await admin(
            suite, "POST", f"/api/v1/admin/payments/{payment_id}/refund", json={}
        )
        assert no_reason.status_code == 422
        refund = await ok(
            await admin(
                suite,
                "POST",
                f"/api/v1/admin/payments/{payment_id}/refund",
                json={"reason": "cinema outage on the weekend"},
            ),
            201,
        )
        assert refund["amount"] == {"amount": 69900, "currency": "RUB"}
        assert refund["reason"] == "cinema outage on the weekend"
        await user.wait_for_subscription(created["id"], "canceled")
        again = await admin(
            suite, "POST", f"/api/v1/admin/payments/{payment_id}/refund", json={"reason": "twice"}
        )
        assert again.status_code == 409
        [row] = await audit_rows(suite, "payment", payment_id)
        assert (row["action"], row["reason"]) == ("refund.override_window", refund["reason"])

        premium = await suite.plan("premium")
        for days in (0, 3651):
            bad = {"plan_id": premium["id"], "days": days, "reason": "too long"}
            assert (
                await admin(suite, "POST", f"{base}/complimentary", json=bad)
            ).status_code == 422
        gift = await ok(
            await admin(
                suite,
                "POST",
                f"{base}/complimentary",
                json={"plan_id": premium["id"], "days": 14, "reason": "sorry for the outage"},
            ),
            201,
        )
        assert gift["granted_by"] == str(ADMIN_ID)
        snapshot = (await suite.events("entitlements.changed"))[-1].data
        assert [(g.source, str(g.plan_id)) for g in snapshot.grants] == [
            ("complimentary", premium["id"])
        ]
        assert snapshot.grants[0].valid_until > clock.now() + timedelta(days=13)
        revoked = await ok(
            await admin(
                suite,
                "POST",
                f"/api/v1/admin/complimentary/{gift['id']}/revoke",
                json={"reason": "x"},
            )
        )
        assert revoked["revoked_at"] is not None
        assert (await suite.events("entitlements.changed"))[-1].data.grants == ()
        twice = await admin(
            suite, "POST", f"/api/v1/admin/complimentary/{gift['id']}/revoke", json={"reason": "x"}
        )
        assert twice.status_code == 409
        grants = await audit_rows(suite, "complimentary_grant", gift["id"])
        assert [r["action"] for r in grants] == ["complimentary.revoke", "complimentary.grant"]
