"""Gift subscriptions through the API: bought by card or wallet, delivered, redeemed once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from billing_api import jobs
from shared import clock
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_wallet_and_purchases import topped_up

FRIEND = "friend@example.com"


async def gift_by_wallet(
    suite: Suite, buyer: User, *, plan: str = "basic", months: int = 1, **extra: Any
) -> dict[str, Any]:
    await topped_up(suite, buyer, 200000)
    plan_row = await suite.plan(plan)
    response = await buyer.post(
        "/api/v1/gifts",
        json={
            "plan_id": plan_row["id"],
            "months": months,
            "recipient_email": FRIEND,
            "payment_method": "wallet",
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    gift: dict[str, Any] = response.json()
    return gift


async def run_jobs(suite: Suite, now: datetime) -> dict[str, int]:
    state = suite.billing.state
    return await jobs.run_once(state.session_factory, state.gateway, state.settings, now)


class TestBuy:
    async def test_card_gift_is_pending_until_paid_then_has_a_code(self, suite: Suite) -> None:
        buyer = suite.as_user(email="buyer@example.com")
        plan = await suite.plan("basic")
        response = await buyer.post(
            "/api/v1/gifts",
            json={"plan_id": plan["id"], "months": 3, "recipient_email": FRIEND, "message": "Hi"},
        )
        assert response.status_code == 201, response.text
        gift = response.json()
        assert gift["status"] == "pending" and gift["code"] is None
        assert gift["latest_payment"]["checkout_url"]
        # 3 months of basic: 3 * 29900 less the 5 % months tier
        assert gift["latest_payment"]["amount"] == {"amount": 85215, "currency": "RUB"}
        await suite.pay(gift["latest_payment"]["checkout_url"])

        async def paid() -> bool:
            [listed] = (await buyer.get("/api/v1/gifts")).json()["items"]
            return bool(listed["status"] == "paid")

        await support.eventually(paid, timeout=15)
        [listed] = (await buyer.get("/api/v1/gifts")).json()["items"]
        assert len(listed["code"]) == 19 and listed["code"].count("-") == 3
        [purchased] = await suite.events("gift.purchased")
        assert purchased.data.email == "buyer@example.com"
        assert purchased.data.code == listed["code"]
        [delivered] = await suite.events("gift.delivered")
        assert delivered.data.email == FRIEND
        assert delivered.data.redeem_url.endswith(f"/gifts?code={listed['code']}")
        assert delivered.data.message == "Hi"

    async def test_wallet_gift_is_paid_at_once(self, suite: Suite) -> None:
        buyer = suite.as_user()
        gift = await gift_by_wallet(suite, buyer)
        assert gift["status"] == "paid" and gift["code"]
        balances = (await buyer.get("/api/v1/wallet")).json()["balances"]
        assert balances == [{"amount": 200000 - 29900, "currency": "RUB"}]

    async def test_promo_code_lowers_the_price_once_per_user(self, suite: Suite) -> None:
        buyer = suite.as_user()
        gift = await gift_by_wallet(suite, buyer, promo_code="WELCOME15")
        assert gift["latest_payment"]["amount"]["amount"] == 29900 - 4485
        plan = await suite.plan("basic")
        again = await buyer.post(
            "/api/v1/gifts",
            json={
                "plan_id": plan["id"],
                "recipient_email": FRIEND,
                "payment_method": "wallet",
                "promo_code": "WELCOME15",
            },
        )
        assert again.status_code == 409
        assert again.json()["error"] == "PromoCodeAlreadyUsed"

    async def test_same_idempotency_key_buys_one_gift(self, suite: Suite) -> None:
        buyer = suite.as_user()
        await topped_up(suite, buyer, 100000)
        plan = await suite.plan("basic")
        body = {"plan_id": plan["id"], "recipient_email": FRIEND, "payment_method": "wallet"}
        key = {"Idempotency-Key": str(uuid4())}
        first = await buyer.post("/api/v1/gifts", json=body, headers=key)
        second = await buyer.post("/api/v1/gifts", json=body, headers=key)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert len((await buyer.get("/api/v1/gifts")).json()["items"]) == 1
        balances = (await buyer.get("/api/v1/wallet")).json()["balances"]
        assert balances == [{"amount": 100000 - 29900, "currency": "RUB"}]

    async def test_invalid_requests_are_422_and_buy_nothing(self, suite: Suite) -> None:
        buyer = suite.as_user()
        plan = await suite.plan("basic")
        past = (clock.now() - timedelta(days=1)).isoformat()
        beyond = (clock.now() + timedelta(days=366)).isoformat()
        for body in (
            {"plan_id": plan["id"], "recipient_email": "not-an-email"},
            {"plan_id": plan["id"], "recipient_email": FRIEND, "months": 0},
            {"plan_id": plan["id"], "recipient_email": FRIEND, "months": "2"},
            {"plan_id": plan["id"], "recipient_email": FRIEND, "deliver_at": past},
            {"plan_id": plan["id"], "recipient_email": FRIEND, "deliver_at": beyond},
            {"plan_id": plan["id"], "recipient_email": FRIEND, "months": 13},
            {"plan_id": plan["id"], "recipient_email": FRIEND, "surprise": True},
        ):
            response = await buyer.post("/api/v1/gifts", json=body)
            assert response.status_code == 422, body
            assert response.json()["error"], body
        unknown = await buyer.post(
            "/api/v1/gifts", json={"plan_id": str(uuid4()), "recipient_email": FRIEND}
        )
        assert unknown.status_code == 404
        assert await suite.scalar("SELECT count(*) FROM gift") == 0
        assert await suite.scalar("SELECT count(*) FROM payment") == 0

    async def test_short_wallet_is_409_and_buys_nothing(self, suite: Suite) -> None:
        buyer = suite.as_user()
        plan = await suite.plan("basic")
        response = await buyer.post(
            "/api/v1/gifts",
            json={"plan_id": plan["id"], "recipient_email": FRIEND, "payment_method": "wallet"},
        )
        assert response.status_code == 409
        assert response.json()["error"] == "InsufficientFunds"
        assert await suite.scalar("SELECT count(*) FROM gift") == 0

    async def test_another_users_gift_is_404(self, suite: Suite) -> None:
        gift = await gift_by_wallet(suite, suite.as_user())
        response = await suite.as_user().get(f"/api/v1/gifts/{gift['id']}")
        assert response.status_code == 404


class TestAbandoned:
    async def test_a_gift_whose_checkout_expires_unpaid_is_abandoned_without_a_code(
        self, suite: Suite
    ) -> None:
        buyer = suite.as_user()
        plan = await suite.plan("basic")
        gift = (
            await buyer.post(
                "/api/v1/gifts", json={"plan_id": plan["id"], "recipient_email": FRIEND}
            )
        ).json()
        await run_jobs(suite, clock.now() + timedelta(days=2))
        after = (await buyer.get(f"/api/v1/gifts/{gift['id']}")).json()
        assert (after["status"], after["code"]) == ("abandoned", None)
        assert await suite.events("gift.delivered") == []


class TestDelivery:
    async def test_a_later_gift_is_delivered_by_the_job_at_deliver_at(self, suite: Suite) -> None:
        buyer = suite.as_user()
        at = clock.now() + timedelta(days=2)
        gift = await gift_by_wallet(suite, buyer, deliver_at=at.isoformat())
        assert gift["delivered_at"] is None
        await run_jobs(suite, at - timedelta(minutes=1))
        assert await suite.events("gift.delivered") == []
        await run_jobs(suite, at)
        await run_jobs(suite, at + timedelta(minutes=1))  # a second pass sends nothing twice
        [delivered] = await suite.events("gift.delivered")
        assert delivered.data.email == FRIEND and delivered.data.code == gift["code"]
        assert (await buyer.get(f"/api/v1/gifts/{gift['id']}")).json()["delivered_at"]


class TestRedeem:
    async def test_redeeming_starts_a_non_renewing_subscription(self, suite: Suite) -> None:
        gift = await gift_by_wallet(suite, suite.as_user(), months=2)
        friend = suite.as_user(email=FRIEND)
        response = await friend.post("/api/v1/gifts/redeem", json={"code": gift["code"].lower()})
        assert response.status_code == 200, response.text
        redeemed = response.json()
        assert redeemed["status"] == "redeemed" and redeemed["started_subscription"]
        [subscription] = (await friend.get("/api/v1/subscriptions")).json()["items"]
        assert subscription["status"] == "active" and subscription["auto_renew"] is False
        start = datetime.fromisoformat(subscription["current_period_start"])
        end = datetime.fromisoformat(subscription["current_period_end"])
        assert timedelta(days=58) < end - start < timedelta(days=63)
        snapshots = [
            e for e in await suite.events("entitlements.changed") if e.data.user_id == friend.id
        ]
        assert [g.source_id for g in snapshots[-1].data.grants] == [UUID(subscription["id"])]
        [told] = await suite.events("gift.redeemed")
        assert told.data.user_id != friend.id  # the buyer is told

    async def test_redeeming_extends_a_live_subscription_after_its_paid_period(
        self, suite: Suite
    ) -> None:
        friend = suite.as_user(email=FRIEND)
        await topped_up(suite, friend, 100000)
        plan = await suite.plan("basic")
        own = (
            await friend.post(
                "/api/v1/subscriptions", json={"plan_id": plan["id"], "payment_method": "wallet"}
            )
        ).json()
        paid_end = datetime.fromisoformat(own["current_period_end"])
        gift = await gift_by_wallet(suite, suite.as_user(), months=1)
        response = await friend.post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        assert response.status_code == 200, response.text
        assert response.json()["started_subscription"] is False
        after = await friend.subscription(own["id"])
        new_end = datetime.fromisoformat(after["current_period_end"])
        assert timedelta(days=28) <= new_end - paid_end <= timedelta(days=31)
        assert after["auto_renew"] is True
        assert len((await friend.get("/api/v1/subscriptions")).json()["items"]) == 1

    async def test_a_code_redeemed_twice_is_409_the_second_time(self, suite: Suite) -> None:
        gift = await gift_by_wallet(suite, suite.as_user())
        first = await suite.as_user().post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        assert first.status_code == 200
        second_user = suite.as_user()
        second = await second_user.post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        assert second.status_code == 409
        assert second.json()["error"] == "GiftAlreadyRedeemed"
        assert (await second_user.get("/api/v1/subscriptions")).json()["items"] == []

    async def test_concurrent_redeems_give_exactly_one_subscription(self, suite: Suite) -> None:
        gift = await gift_by_wallet(suite, suite.as_user())
        users = [suite.as_user() for _ in range(5)]
        answers = await asyncio.gather(
            *(u.post("/api/v1/gifts/redeem", json={"code": gift["code"]}) for u in users)
        )
        assert sorted(a.status_code for a in answers) == [200, 409, 409, 409, 409]
        assert await suite.scalar("SELECT count(*) FROM subscription") == 1

    async def test_wrong_codes_are_404_then_429_with_retry_after(self, suite: Suite) -> None:
        gift = await gift_by_wallet(suite, suite.as_user())
        guesser = suite.as_user()
        for n in range(10):
            wrong = await guesser.post("/api/v1/gifts/redeem", json={"code": f"nope-{n}"})
            assert wrong.status_code == 404, n
            assert wrong.json()["error"] == "GiftCodeNotFound"
        limited = await guesser.post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        assert limited.status_code == 429
        assert limited.json()["error"] == "TooManyWrongGiftCodes"
        assert 0 < int(limited.headers["Retry-After"]) <= 3600
        # another user is not limited, and the right code still works for them
        other = await suite.as_user().post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        assert other.status_code == 200

    async def test_a_burst_of_wrong_codes_at_once_gets_no_more_than_the_limit(
        self, suite: Suite
    ) -> None:
        guesser = suite.as_user()
        answers = await asyncio.gather(
            *(guesser.post("/api/v1/gifts/redeem", json={"code": f"x{n}"}) for n in range(14))
        )
        assert sorted(a.status_code for a in answers) == [404] * 10 + [429] * 4
