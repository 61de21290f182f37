"""Card checkouts are committed first and opened at the gateway after (payments/checkout.py).

The real gateway runs in-process behind a stand-in transport that can hold the calls that open
checkouts (a slow provider), lose the gateway's answer (a timeout after the gateway did its
work) or refuse to connect (the gateway is down).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from billing_api import demo
from billing_api.gateway import GatewayClient
from shared import clock
from shared.auth import AuthSettings
from tests import support
from tests.billing_api.conftest import Suite
from tests.billing_api.test_lifecycle import run_jobs, subscribed

OPENING = "/internal/v1/payments"


class GatewayStandIn(httpx.AsyncBaseTransport):
    """The real gateway, with a say over the calls that open a payment."""

    def __init__(self, gateway: httpx.AsyncBaseTransport) -> None:
        self.gateway = gateway
        self.mode = "working"  # | "down" | "answer lost" (each for the next call only)
        self.refusing = False  # answer every opening 404, as a gateway with no provider enabled
        self.hold_for: int | None = None  # hold each opening until this many are inside
        self.openings = 0
        self.inside = 0
        self.most_inside = 0
        self._all_inside = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or request.url.path != OPENING:
            return await self.gateway.handle_async_request(request)
        self.openings += 1
        mode, self.mode = self.mode, "working"
        if self.refusing:
            detail = {"error": "UnknownProvider", "detail": "provider 'sandbox' is not enabled"}
            return httpx.Response(404, json=detail, request=request)
        if mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            if self.hold_for is not None:
                if self.inside >= self.hold_for:
                    self._all_inside.set()
                # A provider that is slow: each call waits for the others (not forever).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._all_inside.wait(), 3)
            response = await self.gateway.handle_async_request(request)
        finally:
            self.inside -= 1
        if mode == "answer lost":
            await response.aread()
            raise httpx.ReadTimeout("the gateway did not answer in time", request=request)
        return response


@pytest.fixture
async def stand_in(suite: Suite) -> AsyncIterator[GatewayStandIn]:
    stand_in = GatewayStandIn(httpx.ASGITransport(suite.gateway))
    async with httpx.AsyncClient(transport=stand_in, base_url="http://gateway.test") as http:
        working = suite.billing.state.gateway
        suite.billing.state.gateway = GatewayClient(http, "http://gateway.test", AuthSettings())
        yield stand_in
        suite.billing.state.gateway = working


async def gateway_payments(suite: Suite) -> int:
    async with suite.gateway.state.resources.engine.connect() as conn:
        return int(await conn.scalar(sa.text("SELECT count(*) FROM payment")) or 0)


async def redemptions(suite: Suite) -> int:
    return int(await suite.scalar("SELECT redemptions FROM promo_code WHERE code = 'WELCOME15'"))


def assert_gateway_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["error"] == "GatewayUnavailable"


class TestPromoCodeCheckouts:
    async def test_checkouts_with_one_promo_code_are_at_a_slow_gateway_together_not_in_turn(
        self, suite: Suite, stand_in: GatewayStandIn
    ) -> None:
        await suite.execute("UPDATE promo_code SET max_redemptions = 2 WHERE code = 'WELCOME15'")
        plan = await suite.plan("basic")
        stand_in.hold_for = 2
        body = {"plan_id": plan["id"], "promo_code": "WELCOME15"}
        answers = await asyncio.gather(
            *(suite.as_user().post("/api/v1/subscriptions", json=body) for _ in range(3))
        )

        assert stand_in.most_inside == 2, "the second checkout waited for the first one's call"
        assert sorted(a.status_code for a in answers) == [201, 201, 409]
        refused = next(a for a in answers if a.status_code == 409)
        assert refused.json()["error"] == "PromoCodeExhausted"
        for answer in answers:
            if answer.status_code == 201:
                assert answer.json()["latest_payment"]["checkout_url"]
        assert await redemptions(suite) == 2


class TestGatewayFailsAfterTheCommit:
    async def test_a_lost_gateway_answer_is_503_and_the_retry_opens_the_same_payment_once(
        self, suite: Suite, stand_in: GatewayStandIn
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("basic")
        body = {"plan_id": plan["id"], "promo_code": "WELCOME15"}
        headers = {"Idempotency-Key": "checkout-1"}
        stand_in.mode = "answer lost"
        first = await user.post("/api/v1/subscriptions", json=body, headers=headers)
        assert_gateway_unavailable(first)
        [pending] = (await user.get("/api/v1/subscriptions")).json()["items"]
        assert pending["status"] == "pending"
        assert pending["latest_payment"]["checkout_url"] is None

        retried = await user.post("/api/v1/subscriptions", json=body, headers=headers)
        assert retried.status_code in (200, 201), retried.text
        subscription = retried.json()
        assert subscription["id"] == pending["id"]
        assert subscription["latest_payment"]["id"] == pending["latest_payment"]["id"]
        assert subscription["latest_payment"]["checkout_url"]
        assert stand_in.openings == 2
        assert await gateway_payments(suite) == 1, "the gateway was asked twice for one payment"
        assert await redemptions(suite) == 1

        await suite.pay(subscription["latest_payment"]["checkout_url"])
        await user.wait_for_subscription(subscription["id"], "active")
        captured = await suite.scalar(
            "SELECT count(*) FROM ledger_transaction WHERE kind = 'payment_captured'"
        )
        assert captured == 1

    async def test_a_movie_bought_while_the_gateway_is_down_is_the_same_purchase_on_retry(
        self, suite: Suite, stand_in: GatewayStandIn
    ) -> None:
        user = suite.as_user()
        body = {"movie_id": str(demo.movie_id("Paper Moons"))}
        stand_in.mode = "down"
        assert_gateway_unavailable(await user.post("/api/v1/purchases", json=body))
        [waiting] = (await user.get("/api/v1/purchases")).json()["items"]
        assert (waiting["status"], waiting["latest_payment"]["checkout_url"]) == ("pending", None)

        retried = await user.post("/api/v1/purchases", json=body)
        assert retried.status_code in (200, 201), retried.text
        assert retried.json()["id"] == waiting["id"]
        assert retried.json()["latest_payment"]["id"] == waiting["latest_payment"]["id"]
        assert retried.json()["latest_payment"]["checkout_url"]
        assert await gateway_payments(suite) == 1

    async def test_a_top_up_retried_with_its_key_after_a_lost_answer_is_one_payment(
        self, suite: Suite, stand_in: GatewayStandIn
    ) -> None:
        user = suite.as_user()
        headers = {"Idempotency-Key": "top-up-1"}
        stand_in.mode = "answer lost"
        first = await user.post("/api/v1/wallet/top-ups", json={"amount": 50000}, headers=headers)
        assert_gateway_unavailable(first)
        retried = await user.post("/api/v1/wallet/top-ups", json={"amount": 50000}, headers=headers)
        assert retried.status_code == 201, retried.text
        payment = retried.json()["payment"]
        assert [p["id"] for p in (await user.get("/api/v1/payments")).json()["items"]] == [
            payment["id"]
        ]
        assert await gateway_payments(suite) == 1

        await suite.pay(payment["checkout_url"])

        async def credited() -> bool:
            balances = (await user.get("/api/v1/wallet")).json()["balances"]
            return any(b["amount"] == 50000 for b in balances)

        await support.eventually(credited, timeout=15)

    async def test_a_gift_retried_after_a_lost_answer_is_one_gift_with_one_checkout(
        self, suite: Suite, stand_in: GatewayStandIn
    ) -> None:
        buyer = suite.as_user()
        plan = await suite.plan("basic")
        body = {"plan_id": plan["id"], "recipient_email": "friend@example.com", "message": "Hi"}
        stand_in.mode = "answer lost"
        first = await buyer.post("/api/v1/gifts", json=body, headers={"Idempotency-Key": "g-1"})
        assert_gateway_unavailable(first)
        [waiting] = (await buyer.get("/api/v1/gifts")).json()["items"]
        assert (waiting["status"], waiting["latest_payment"]["checkout_url"]) == ("pending", None)

        # The same key, its answer lost again; then a new key (the client started over): one gift.
        stand_in.mode = "answer lost"
        retried = await buyer.post("/api/v1/gifts", json=body, headers={"Idempotency-Key": "g-1"})
        assert_gateway_unavailable(retried)
        again = await buyer.post("/api/v1/gifts", json=body, headers={"Idempotency-Key": "g-2"})
        assert again.status_code == 201, again.text
        assert again.json()["id"] == waiting["id"]
        assert again.json()["latest_payment"]["id"] == waiting["latest_payment"]["id"]
        assert again.json()["latest_payment"]["checkout_url"]
        assert len((await buyer.get("/api/v1/gifts")).json()["items"]) == 1
        assert await gateway_payments(suite) == 1

        # Its checkout is open now: the next request is a second gift, as a buyer may give two.
        second = await buyer.post("/api/v1/gifts", json=body)
        assert second.status_code == 201, second.text
        assert second.json()["id"] != waiting["id"]
        # Another recipient while a checkout is unopened is another gift too.
        stand_in.mode = "down"
        assert_gateway_unavailable(await buyer.post("/api/v1/gifts", json=body))
        other = await buyer.post("/api/v1/gifts", json={**body, "recipient_email": "b@example.com"})
        assert other.status_code == 201, other.text
        assert len((await buyer.get("/api/v1/gifts")).json()["items"]) == 4

    async def test_an_upgrade_retried_after_the_gateway_was_down_opens_the_same_payment(
        self, suite: Suite, stand_in: GatewayStandIn
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        premium = await suite.plan("premium")
        path = f"/api/v1/subscriptions/{subscription['id']}/change-plan"
        stand_in.mode = "down"
        assert_gateway_unavailable(await user.post(path, json={"plan_id": premium["id"]}))
        waiting = (await user.get("/api/v1/payments")).json()["items"][0]
        assert (waiting["purpose"], waiting["status"]) == ("upgrade", "pending")
        assert waiting["checkout_url"] is None

        retried = await user.post(path, json={"plan_id": premium["id"]})
        assert retried.status_code == 200, retried.text
        assert retried.json()["payment"]["id"] == waiting["id"]
        assert retried.json()["payment"]["checkout_url"]
        assert await gateway_payments(suite) == 2  # the first subscription's and the upgrade

    async def test_a_trial_started_while_the_gateway_was_down_saves_the_card_on_retry(
        self, suite: Suite, stand_in: GatewayStandIn
    ) -> None:
        user = suite.as_user()
        plan = await trial_plan(suite)
        body = {"plan_id": plan["id"], "trial": True}
        stand_in.mode = "down"
        assert_gateway_unavailable(await user.post("/api/v1/subscriptions", json=body))
        [waiting] = (await user.get("/api/v1/subscriptions")).json()["items"]
        retried = await user.post("/api/v1/subscriptions", json=body)
        assert retried.status_code in (200, 201), retried.text
        assert retried.json()["latest_payment"]["id"] == waiting["latest_payment"]["id"]
        await suite.pay(retried.json()["latest_payment"]["checkout_url"])
        active = await user.wait_for_subscription(retried.json()["id"], "active")
        assert active["trial_end"] is not None
        async with suite.gateway.state.resources.engine.connect() as conn:
            saved = await conn.scalar(
                sa.text("SELECT count(*) FROM payment WHERE save_payment_method")
            )
        assert saved == 1


class TestGatewayRefusesToOpen:
    async def test_a_checkout_the_gateway_refuses_expires_and_frees_its_promo_code_at_once(
        self, suite: Suite, stand_in: GatewayStandIn
    ) -> None:
        await suite.execute("UPDATE promo_code SET max_redemptions = 1 WHERE code = 'WELCOME15'")
        plan = await suite.plan("basic")
        body = {"plan_id": plan["id"], "promo_code": "WELCOME15"}
        user = suite.as_user()
        stand_in.refusing = True
        refused = await user.post("/api/v1/subscriptions", json=body)
        assert refused.status_code == 502, refused.text
        assert refused.json()["error"] == "GatewayRefused"
        [attempt] = (await user.get("/api/v1/subscriptions")).json()["items"]
        assert attempt["status"] == "abandoned"
        assert attempt["latest_payment"]["status"] == "expired"
        assert await redemptions(suite) == 0

        stand_in.refusing = False
        other = await suite.as_user().post("/api/v1/subscriptions", json=body)
        assert other.status_code == 201, other.text
        again = await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})
        assert again.status_code == 201, again.text
        assert again.json()["latest_payment"]["id"] != attempt["latest_payment"]["id"]
        assert again.json()["latest_payment"]["checkout_url"]

    async def test_a_top_up_the_gateway_refused_is_not_handed_out_again(
        self, suite: Suite, stand_in: GatewayStandIn
    ) -> None:
        user = suite.as_user()
        stand_in.refusing = True
        refused = await user.post("/api/v1/wallet/top-ups", json={"amount": 50000})
        assert refused.status_code == 502, refused.text
        stand_in.refusing = False
        retried = await user.post("/api/v1/wallet/top-ups", json={"amount": 50000})
        assert retried.status_code == 201, retried.text
        statuses = {
            p["id"]: p["status"] for p in (await user.get("/api/v1/payments")).json()["items"]
        }
        assert sorted(statuses.values()) == ["expired", "pending"]
        assert statuses[retried.json()["payment"]["id"]] == "pending"

    async def test_reconciliation_expires_a_checkout_the_gateway_refuses_to_open(
        self, suite: Suite, stand_in: GatewayStandIn
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("basic")
        stand_in.mode = "down"
        answer = await user.post(
            "/api/v1/subscriptions", json={"plan_id": plan["id"], "promo_code": "WELCOME15"}
        )
        assert_gateway_unavailable(answer)
        [pending] = (await user.get("/api/v1/subscriptions")).json()["items"]
        assert await redemptions(suite) == 1

        stand_in.refusing = True
        await run_jobs(suite, clock.now() + timedelta(minutes=16))
        assert (await user.subscription(pending["id"]))["status"] == "abandoned"
        payment = (await user.get(f"/api/v1/payments/{pending['latest_payment']['id']}")).json()
        assert payment["status"] == "expired"
        assert await redemptions(suite) == 0


async def trial_plan(suite: Suite) -> dict[str, Any]:
    plans = (await suite.http.get("/api/v1/plans")).json()["items"]
    return next(p for p in plans if p.get("trial_days", 0) > 0)


class TestReconciliation:
    async def test_a_checkout_the_gateway_never_saw_is_opened_then_abandoned_releasing_its_promo(
        self, suite: Suite, stand_in: GatewayStandIn
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("basic")
        stand_in.mode = "down"
        answer = await user.post(
            "/api/v1/subscriptions", json={"plan_id": plan["id"], "promo_code": "WELCOME15"}
        )
        assert_gateway_unavailable(answer)
        [pending] = (await user.get("/api/v1/subscriptions")).json()["items"]
        payment_path = f"/api/v1/payments/{pending['latest_payment']['id']}"
        assert await redemptions(suite) == 1

        await run_jobs(suite, clock.now() + timedelta(minutes=16))
        opened = (await user.get(payment_path)).json()
        assert opened["status"] == "pending"
        assert opened["checkout_url"], "reconciliation opened it under the same id"
        assert await gateway_payments(suite) == 1

        await run_jobs(suite, clock.now() + timedelta(days=2))
        assert (await user.subscription(pending["id"]))["status"] == "abandoned"
        assert (await user.get(payment_path)).json()["status"] == "expired"
        assert await redemptions(suite) == 0


class TestCheckoutPageLanguage:
    async def test_the_checkout_page_speaks_the_language_the_request_asked_for(
        self, suite: Suite
    ) -> None:
        plan = await suite.plan("basic")
        body = {"plan_id": plan["id"]}

        english = await suite.as_user().post(
            "/api/v1/subscriptions", json=body, headers={"Accept-Language": "en-US,en;q=0.9"}
        )
        chosen = await suite.as_user().post(
            "/api/v1/subscriptions?locale=ru", json=body, headers={"Accept-Language": "en"}
        )
        silent = await suite.as_user().post("/api/v1/subscriptions", json=body)

        urls = [a.json()["latest_payment"]["checkout_url"] for a in (english, chosen, silent)]
        assert [url.partition("?")[2] for url in urls] == ["locale=en", "locale=ru", ""]
        opened = urlsplit(urls[0])
        page = await suite.gateway_http.get(
            f"{opened.path}?{opened.query}", headers={"Accept-Language": "ru"}
        )
        assert '<html lang="en">' in page.text  # the checkout's language beats the browser's
