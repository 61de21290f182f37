from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import uuid4

import httpx
import pytest

from billing_api.activation.expired_checkouts import abandon_expired_checkouts
from billing_api.gateway import GatewayClient
from billing_api.periods import add_months
from shared import clock
from shared.auth import AuthSettings
from tests import support
from tests.billing_api.conftest import Suite


class TestWholePath:
    async def test_quote_checkout_pay_activate_ledger_and_one_entitlement_snapshot(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("premium")
        quote = (
            await user.get(
                "/api/v1/quote",
                params={"plan_id": plan["id"], "months": 3, "promo_code": "welcome15"},
            )
        ).json()
        assert quote["base"] == {"amount": 3 * 59900, "currency": "RUB"}
        assert quote["applied"]["source"] == "promo"  # 15% beats the 3-month tier's 5%
        assert quote["total"]["amount"] == 3 * 59900 - 26955

        created = await user.post(
            "/api/v1/subscriptions",
            json={"plan_id": plan["id"], "months": 3, "promo_code": "WELCOME15"},
        )
        assert created.status_code == 201, created.text
        subscription = created.json()
        assert subscription["status"] == "pending"
        assert subscription["latest_payment"]["amount"] == quote["total"]
        checkout_url = subscription["latest_payment"]["checkout_url"]
        assert "/sandbox/checkout/" in checkout_url

        assert (await suite.pay(checkout_url)).json()["status"] == "succeeded"
        active = await user.wait_for_subscription(subscription["id"], "active")

        start = active["current_period_start"]
        end = active["current_period_end"]
        from datetime import datetime

        assert datetime.fromisoformat(end) == add_months(datetime.fromisoformat(start), 3)
        payment_id = subscription["latest_payment"]["id"]
        payment = (await user.get(f"/api/v1/payments/{payment_id}")).json()
        assert payment["status"] == "succeeded"
        assert payment["discount"]["amount"] == 26955
        assert payment["provider"] == "sandbox"

        debits = await suite.scalar(
            "SELECT sum(e.amount) FROM ledger_entry e JOIN ledger_transaction t"
            " ON t.id = e.transaction_id WHERE t.reference = :ref AND e.side = 'debit'",
            ref=payment_id,
        )
        credits = await suite.scalar(
            "SELECT sum(e.amount) FROM ledger_entry e JOIN ledger_transaction t"
            " ON t.id = e.transaction_id WHERE t.reference = :ref AND e.side = 'credit'",
            ref=payment_id,
        )
        assert debits == credits == quote["total"]["amount"]

        await asyncio.sleep(0.5)
        snapshots = await suite.events("entitlements.changed")
        mine = [e for e in snapshots if e.data.user_id == user.id]
        assert len(mine) == 1
        assert mine[0].data.grants[0].plan_id is not None
        assert str(mine[0].data.grants[0].plan_id) == plan["id"]

        statement = (await user.get("/api/v1/statement")).json()["items"]
        assert [entry["kind"] for entry in statement] == ["payment_captured"]


class TestDeclined:
    async def test_declined_card_keeps_pending_then_abandons_and_releases_promo(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("basic")
        subscription = (
            await user.post(
                "/api/v1/subscriptions", json={"plan_id": plan["id"], "promo_code": "WELCOME15"}
            )
        ).json()
        payment_id = subscription["latest_payment"]["id"]
        assert await suite.scalar("SELECT redemptions FROM promo_code WHERE code='WELCOME15'") == 1

        declined = await suite.pay(
            subscription["latest_payment"]["checkout_url"], "4000000000000002"
        )
        assert declined.json()["status"] == "failed"

        async def payment_failed() -> bool:
            status = await suite.scalar("SELECT status FROM payment WHERE id = :id", id=payment_id)
            return bool(status == "failed")

        await support.eventually(payment_failed, timeout=15)
        assert (await user.subscription(subscription["id"]))["status"] == "pending"
        assert await suite.scalar("SELECT redemptions FROM promo_code WHERE code='WELCOME15'") == 0

        closed = await abandon_expired_checkouts(
            suite.billing.state.session_factory, clock.now() + timedelta(days=1)
        )
        assert closed == 1
        assert (await user.subscription(subscription["id"]))["status"] == "abandoned"


class TestDuplicates:
    async def test_same_idempotency_key_gives_one_subscription_and_one_gateway_payment(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("basic")
        headers = {"Idempotency-Key": str(uuid4())}
        first = await user.post(
            "/api/v1/subscriptions", json={"plan_id": plan["id"]}, headers=headers
        )
        again = await user.post(
            "/api/v1/subscriptions", json={"plan_id": plan["id"]}, headers=headers
        )

        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        assert again.headers.get("idempotent-replayed") == "true"
        assert await suite.scalar("SELECT count(*) FROM subscription") == 1
        async with suite.gateway.state.resources.engine.connect() as conn:
            import sqlalchemy as sa

            assert await conn.scalar(sa.text("SELECT count(*) FROM payment")) == 1

    async def test_twenty_concurrent_checkouts_make_one_pending_subscription(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("premium")
        responses = await asyncio.gather(
            *(user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]}) for _ in range(20))
        )
        assert {r.status_code for r in responses} <= {200, 201}
        assert sum(r.status_code == 201 for r in responses) == 1
        assert len({r.json()["id"] for r in responses}) == 1
        assert len({r.json()["latest_payment"]["checkout_url"] for r in responses}) == 1
        assert await suite.scalar("SELECT count(*) FROM subscription") == 1
        assert await suite.scalar("SELECT count(*) FROM payment") == 1


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "status", "error"),
        [
            ({"plan_id": str(uuid4())}, 404, "PlanNotFound"),
            ({"months": 13}, 422, "ValidationError"),
            ({"months": True}, 422, "ValidationError"),
            ({"months": 1.5}, 422, "ValidationError"),
            ({"promo_code": "NOPE"}, 422, "PromoCodeNotFound"),
            ({"payment_method": "cash"}, 422, "ValidationError"),
        ],
    )
    async def test_bad_checkout_is_refused_and_writes_nothing(
        self, suite: Suite, body: dict[str, object], status: int, error: str
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("basic")
        response = await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"], **body})
        assert response.status_code == status, response.text
        assert response.json()["error"] == error
        assert await suite.scalar("SELECT count(*) FROM subscription") == 0
        assert await suite.scalar("SELECT count(*) FROM payment") == 0

    async def test_months_beyond_the_plans_maximum_are_refused(self, suite: Suite) -> None:
        user = suite.as_user()
        plan = await suite.plan("pass-30")
        response = await user.post(
            "/api/v1/subscriptions", json={"plan_id": plan["id"], "months": 2}
        )
        assert response.status_code == 422
        assert response.json()["error"] == "MonthsOutOfRange"

    async def test_expired_promo_code_is_refused(self, suite: Suite) -> None:
        await suite.execute("UPDATE promo_code SET valid_until = now() - interval '1 day'")
        user = suite.as_user()
        plan = await suite.plan("basic")
        response = await user.post(
            "/api/v1/subscriptions", json={"plan_id": plan["id"], "promo_code": "WELCOME15"}
        )
        assert response.status_code == 422
        assert response.json()["error"] == "PromoCodeExpired"
        assert await suite.scalar("SELECT count(*) FROM subscription") == 0

    async def test_exhausted_promo_code_is_refused(self, suite: Suite) -> None:
        await suite.execute("UPDATE promo_code SET max_redemptions = 1, redemptions = 1")
        user = suite.as_user()
        plan = await suite.plan("basic")
        response = await user.post(
            "/api/v1/subscriptions", json={"plan_id": plan["id"], "promo_code": "WELCOME15"}
        )
        assert response.status_code == 409
        assert response.json()["error"] == "PromoCodeExhausted"

    async def test_another_users_subscription_is_not_found(self, suite: Suite) -> None:
        owner, stranger = suite.as_user(), suite.as_user()
        plan = await suite.plan("basic")
        mine = (await owner.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})).json()
        response = await stranger.get(f"/api/v1/subscriptions/{mine['id']}")
        payment = await stranger.get(f"/api/v1/payments/{mine['latest_payment']['id']}")
        assert response.status_code == payment.status_code == 404

    async def test_no_token_is_401(self, suite: Suite) -> None:
        response = await suite.http.get("/api/v1/subscriptions")
        assert response.status_code == 401

    @pytest.mark.parametrize(
        "email",
        ["a" * 4988 + "@example.com", "ann\x00@example.com"],
        ids=["5000-characters", "nul-character"],
    )
    async def test_an_email_claim_no_column_can_keep_is_401_and_writes_nothing(
        self, suite: Suite, email: str
    ) -> None:
        user = suite.as_user(email=email)
        plan = await suite.plan("basic")
        response = await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "Unauthorized"
        assert response.json()["detail"].startswith("malformed email claim")
        assert await suite.scalar("SELECT count(*) FROM subscription") == 0
        assert await suite.scalar("SELECT count(*) FROM payment") == 0


class TestGatewayDown:
    async def test_a_checkout_while_the_gateway_is_down_is_a_503_and_a_retry_opens_it(
        self, suite: Suite
    ) -> None:
        down = f"http://127.0.0.1:{support.free_port()}"  # nothing listens there
        working = suite.billing.state.gateway
        async with httpx.AsyncClient() as http:
            suite.billing.state.gateway = GatewayClient(http, down, AuthSettings())
            try:
                user = suite.as_user()
                plan = await suite.plan("basic")
                answer = await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})
            finally:
                suite.billing.state.gateway = working
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "1"
        assert answer.json()["error"] == "GatewayUnavailable"
        assert "retry the same request" in answer.json()["detail"]
        # Committed before the gateway was asked: waiting, with no checkout to pay yet.
        [pending] = (await user.get("/api/v1/subscriptions")).json()["items"]
        assert pending["status"] == "pending"
        assert pending["latest_payment"]["checkout_url"] is None

        retried = await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})
        assert retried.status_code in (200, 201), "works again once the gateway is back"
        assert retried.json()["id"] == pending["id"]
        assert retried.json()["latest_payment"]["id"] == pending["latest_payment"]["id"]
        assert retried.json()["latest_payment"]["checkout_url"]
        assert len((await user.get("/api/v1/payments")).json()["items"]) == 1
