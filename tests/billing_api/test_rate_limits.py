"""Billing's limits against abuse: checkout, purchases, top-ups, refunds, gifts and gift codes
answer 429 with Retry-After past their limit per user and per address, open nothing then, are
not replayed under an Idempotency-Key, and hold across replicas that share Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

import httpx
import pytest

from billing_api import demo
from billing_api.app import create_app
from billing_api.config import BillingSettings
from shared.ratelimit import create_rate_limiter
from shared.settings import ServiceSettings
from tests import support
from tests.billing_api.conftest import Suite


def limit(suite: Suite, **rates: Any) -> BillingSettings:
    """Billing's limits as ``rates`` (``rate_limit_refund_per_user="1/minute"``…) set them,
    counted in memory from zero."""
    settings = BillingSettings(**rates)
    suite.billing.state.rate_limiter = create_rate_limiter(
        settings, settings.rate_limits, service="billing_api"
    )
    return settings


ROUTES: dict[str, tuple[str, Callable[[str], dict[str, Any]]]] = {
    "checkout": ("/api/v1/subscriptions", lambda plan: {"plan_id": plan}),
    "purchase": ("/api/v1/purchases", lambda _: {"movie_id": str(demo.movie_id("Paper Moons"))}),
    "top_up": ("/api/v1/wallet/top-ups", lambda _: {"amount": 10000}),
    "refund": (f"/api/v1/payments/{uuid4()}/refund", lambda _: {}),
    "gift": (
        "/api/v1/gifts",
        lambda plan: {"plan_id": plan, "months": 1, "recipient_email": "friend@example.com"},
    ),
    "gift_redeem": ("/api/v1/gifts/redeem", lambda _: {"code": "ABCD-EFGH-JKMN-PQRS"}),
}


class TestEveryLimitedRoute:
    @pytest.mark.parametrize("name", sorted(ROUTES))
    async def test_past_the_users_limit_is_429_and_another_user_goes_on(
        self, suite: Suite, name: str
    ) -> None:
        limit(suite, **{f"rate_limit_{name}_per_user": "1/minute"})
        path, body = ROUTES[name]
        plan = (await suite.plan("basic"))["id"]
        alice, bob = suite.as_user(), suite.as_user()

        first = await alice.post(path, json=body(plan))
        refused = await alice.post(path, json=body(plan))
        other = await bob.post(path, json=body(plan))

        assert first.status_code != 429, first.text
        assert refused.status_code == 429
        assert refused.json()["error"] == "TooManyRequests"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert other.status_code == first.status_code, other.text


class TestCheckout:
    async def test_a_refused_checkout_opens_nothing(self, suite: Suite) -> None:
        limit(suite, rate_limit_checkout_per_user="1/minute")
        alice = suite.as_user()
        basic, premium = (await suite.plan("basic"))["id"], (await suite.plan("premium"))["id"]

        assert (
            await alice.post("/api/v1/subscriptions", json={"plan_id": basic})
        ).status_code == 201
        refused = await alice.post("/api/v1/subscriptions", json={"plan_id": premium})

        assert refused.status_code == 429
        items = (await alice.get("/api/v1/subscriptions")).json()["items"]
        assert [item["plan_id"] for item in items] == [basic]
        assert await suite.scalar("SELECT count(*) FROM payment") == 1

    async def test_the_address_limit_counts_every_user_of_the_address(self, suite: Suite) -> None:
        limit(suite, rate_limit_checkout_per_ip="2/minute")
        plan = (await suite.plan("basic"))["id"]
        answers = [
            await suite.as_user().post("/api/v1/subscriptions", json={"plan_id": plan})
            for _ in range(3)
        ]
        assert [answer.status_code for answer in answers] == [201, 201, 429]
        assert "ip" in answers[-1].json()["detail"]


class TestIdempotencyKey:
    async def test_a_429_is_not_replayed_once_the_limit_lets_the_request_through(
        self, suite: Suite
    ) -> None:
        limit(suite, rate_limit_top_up_per_user="1/minute")
        alice = suite.as_user()
        top_up = {"amount": 10000}
        first = await alice.post("/api/v1/wallet/top-ups", top_up, headers={"Idempotency-Key": "a"})
        refused = await alice.post(
            "/api/v1/wallet/top-ups", top_up, headers={"Idempotency-Key": "b"}
        )
        assert (first.status_code, refused.status_code) == (201, 429)

        limit(suite)  # the window has freed
        retried = await alice.post(
            "/api/v1/wallet/top-ups", top_up, headers={"Idempotency-Key": "b"}
        )

        assert retried.status_code == 201, retried.text
        assert "Idempotent-Replayed" not in retried.headers
        assert retried.json()["payment"]["id"] != first.json()["payment"]["id"]


class TestReplicas:
    async def test_two_replicas_sharing_redis_enforce_one_limit(
        self, suite: Suite, service_settings: ServiceSettings
    ) -> None:
        settings = BillingSettings(
            **service_settings.model_dump(),
            rate_limit_storage_url=support.redis_url(),
            rate_limit_key_prefix=f"test-limits-{uuid4().hex}",
            rate_limit_refund_per_user="2/minute",
        )
        suite.billing.state.rate_limiter = create_rate_limiter(
            settings, settings.rate_limits, service="billing_api"
        )
        replica = create_app(settings)
        alice = suite.as_user()
        path = f"/api/v1/payments/{uuid4()}/refund"
        async with (
            replica.router.lifespan_context(replica),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(replica), base_url="http://billing-b.test"
            ) as b,
        ):
            answers = []
            for http in (suite.http, b, suite.http, b):
                answers.append(await http.post(path, json={}, headers=alice.headers))

        assert [answer.status_code for answer in answers] == [404, 404, 429, 429]


class TestOpenAPI:
    def test_the_limited_operations_document_429_with_retry_after(self) -> None:
        paths = create_app(BillingSettings()).openapi()["paths"]
        limited = [
            paths["/api/v1/subscriptions"]["post"],
            paths["/api/v1/purchases"]["post"],
            paths["/api/v1/wallet/top-ups"]["post"],
            paths["/api/v1/payments/{payment_id}/refund"]["post"],
            paths["/api/v1/gifts"]["post"],
            paths["/api/v1/gifts/redeem"]["post"],
        ]
        for operation in limited:
            assert "Retry-After" in operation["responses"]["429"]["headers"], operation
        assert "429" not in paths["/api/v1/plans"]["get"]["responses"]


class TestSettings:
    def test_a_rate_the_library_cannot_read_is_refused_at_start(self) -> None:
        with pytest.raises(ValueError, match="not a rate"):
            BillingSettings(rate_limit_refund_per_user="ten a minute")
