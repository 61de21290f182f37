"""Gift money: deferred until used, refunded before redemption (the code is void), refunded
after it like the subscription it became, recognised when it expires."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from billing_api.refunds import handlers
from shared import clock, events
from shared.auth import AuthSettings
from shared.money import Money
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_gifts import FRIEND, gift_by_wallet, run_jobs
from tests.billing_api.test_refunds import NeverAsked, handle, paid_subscription, thirty_day_plan
from tests.billing_api.test_wallet_and_purchases import topped_up

BASIC = 29900


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def balance(suite: Suite, account: str) -> int:
    """Credits minus debits of a ledger account."""
    value = await suite.scalar(
        "SELECT coalesce(sum(CASE side WHEN 'credit' THEN amount ELSE -amount END), 0)"
        " FROM ledger_entry WHERE account = :account",
        account=account,
    )
    return int(value)


async def unbalanced_transactions(suite: Suite) -> int:
    return int(
        await suite.scalar(
            "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entry GROUP BY 1 HAVING"
            " sum(CASE side WHEN 'debit' THEN amount ELSE -amount END) <> 0) AS t"
        )
    )


async def card_gift(suite: Suite, buyer: User, plan: str = "basic") -> dict[str, Any]:
    plan_row = await suite.plan(plan)
    response = await buyer.post(
        "/api/v1/gifts", json={"plan_id": plan_row["id"], "recipient_email": FRIEND}
    )
    assert response.status_code == 201, response.text
    gift: dict[str, Any] = response.json()
    await suite.pay(gift["latest_payment"]["checkout_url"])

    async def paid() -> bool:
        found = (await buyer.get(f"/api/v1/gifts/{gift['id']}")).json()
        gift.update(found)
        return bool(found["status"] == "paid")

    await support.eventually(paid, timeout=15)
    return gift


async def grants_of(suite: Suite, user: User) -> tuple[Any, ...]:
    snapshots = [e for e in await suite.events("entitlements.changed") if e.data.user_id == user.id]
    return tuple(snapshots[-1].data.grants) if snapshots else ()


class TestLedger:
    async def test_a_gift_sale_is_deferred_until_redeemed(self, suite: Suite) -> None:
        gift = await gift_by_wallet(suite, suite.as_user())
        assert await balance(suite, "deferred_revenue:gifts") == BASIC
        assert await balance(suite, "revenue") == 0
        response = await suite.as_user().post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        assert response.status_code == 200
        assert await balance(suite, "deferred_revenue:gifts") == 0
        assert await balance(suite, "revenue") == BASIC
        assert await unbalanced_transactions(suite) == 0


class TestRefundBeforeRedemption:
    async def test_card_gift_refund_voids_the_code(self, suite: Suite) -> None:
        buyer = suite.as_user()
        gift = await card_gift(suite, buyer)
        payment_id = gift["latest_payment"]["id"]
        quote = (await buyer.get(f"/api/v1/payments/{payment_id}/refund-quote")).json()
        assert quote["refundable_amount"]["amount"] == BASIC
        response = await buyer.post(f"/api/v1/payments/{payment_id}/refund")
        assert response.status_code == 201, response.text
        assert response.json()["amount"]["amount"] == BASIC

        async def refunded() -> bool:
            found = (await buyer.get(f"/api/v1/gifts/{gift['id']}")).json()
            return bool(found["status"] == "refunded")

        await support.eventually(refunded, timeout=15)
        friend = suite.as_user(email=FRIEND)
        redeem = await friend.post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        assert redeem.status_code == 409
        assert redeem.json()["error"] == "GiftNotRedeemable"
        assert (await friend.get("/api/v1/subscriptions")).json()["items"] == []
        assert await balance(suite, "deferred_revenue:gifts") == 0
        assert await balance(suite, "revenue") + await balance(suite, "refunds") == 0
        assert await unbalanced_transactions(suite) == 0
        again = await buyer.post(f"/api/v1/payments/{payment_id}/refund")
        assert again.status_code == 409

    async def test_wallet_gift_refund_goes_back_to_the_wallet(self, suite: Suite) -> None:
        buyer = suite.as_user()
        gift = await gift_by_wallet(suite, buyer)
        response = await buyer.post(f"/api/v1/payments/{gift['latest_payment']['id']}/refund")
        assert response.status_code == 201, response.text
        balances = (await buyer.get("/api/v1/wallet")).json()["balances"]
        assert balances == [{"amount": 200000, "currency": "RUB"}]
        assert (await buyer.get(f"/api/v1/gifts/{gift['id']}")).json()["status"] == "refunded"

    async def test_window_only_plan_is_not_refundable_after_its_window(self, suite: Suite) -> None:
        buyer = suite.as_user()
        gift = await gift_by_wallet(suite, buyer, plan="pass-30")
        payment_id = gift["latest_payment"]["id"]
        with clock.frozen(clock.now() + timedelta(hours=2)):
            response = await buyer.post(f"/api/v1/payments/{payment_id}/refund")
        assert response.status_code == 409
        assert response.json()["detail"] == "nothing to refund: refund window closed"
        assert (await buyer.get(f"/api/v1/gifts/{gift['id']}")).json()["status"] == "paid"

    async def test_the_code_is_held_while_a_card_refund_travels_and_works_again_if_refused(
        self, suite: Suite
    ) -> None:
        buyer = suite.as_user()
        gift = await card_gift(suite, buyer)
        suite.billing.state.gateway = NeverAsked(
            suite.gateway_http, "http://gateway.test", AuthSettings()
        )
        payment_id = gift["latest_payment"]["id"]
        refund = (await buyer.post(f"/api/v1/payments/{payment_id}/refund")).json()
        assert refund["status"] == "pending"
        assert (await buyer.get(f"/api/v1/gifts/{gift['id']}")).json()["status"] == "refunding"
        friend = suite.as_user(email=FRIEND)
        held = await friend.post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        assert held.status_code == 409
        assert held.json()["error"] == "GiftNotRedeemable"

        failed = events.RefundFailed(
            refund_id=UUID(refund["id"]),
            payment_id=UUID(gift["latest_payment"]["id"]),
            customer=events.Customer(id=buyer.id),
            amount=Money(amount=BASIC, currency="RUB"),
            provider="sandbox",
            failure_message="card account closed",
        )
        await handle(suite, handlers.on_refund_failed, failed)
        assert (await buyer.get(f"/api/v1/gifts/{gift['id']}")).json()["status"] == "paid"
        redeemed = await friend.post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        assert redeemed.status_code == 200, redeemed.text
        assert await balance(suite, "deferred_revenue:gifts") == 0


class TestRefundAfterRedemption:
    async def test_refund_cancels_the_subscription_the_gift_started(self, suite: Suite) -> None:
        buyer = suite.as_user()
        gift = await gift_by_wallet(suite, buyer)
        friend = suite.as_user(email=FRIEND)
        redeemed = (await friend.post("/api/v1/gifts/redeem", json={"code": gift["code"]})).json()
        assert await grants_of(suite, friend)
        response = await buyer.post(f"/api/v1/payments/{gift['latest_payment']['id']}/refund")
        assert response.status_code == 201, response.text
        assert response.json()["rule"] == "full refund within 60 minutes of payment"
        subscription = await friend.subscription(redeemed["subscription_id"])
        assert subscription["status"] == "canceled"
        assert await grants_of(suite, friend) == ()
        assert await unbalanced_transactions(suite) == 0

    async def test_refund_takes_the_gift_months_off_an_extended_subscription(
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
        buyer = suite.as_user()
        gift = await gift_by_wallet(suite, buyer)
        await friend.post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        response = await buyer.post(f"/api/v1/payments/{gift['latest_payment']['id']}/refund")
        assert response.status_code == 201, response.text
        after = await friend.subscription(own["id"])
        assert after["status"] == "active"
        assert after["current_period_end"] == own["current_period_end"]
        [grant] = await grants_of(suite, friend)
        assert grant.source_id == UUID(own["id"])


class TestDispute:
    async def test_a_disputed_gift_payment_voids_the_unredeemed_code(self, suite: Suite) -> None:
        buyer = suite.as_user()
        gift = await card_gift(suite, buyer)
        disputed = events.PaymentDisputed(
            payment_id=UUID(gift["latest_payment"]["id"]),
            customer=events.Customer(id=buyer.id),
            amount=Money(amount=BASIC, currency="RUB"),
            provider="sandbox",
            reason="fraudulent",
        )
        await handle(suite, handlers.on_payment_disputed, disputed)
        assert (await buyer.get(f"/api/v1/gifts/{gift['id']}")).json()["status"] == "revoked"
        redeem = await suite.as_user().post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        assert redeem.status_code == 409
        assert await balance(suite, "deferred_revenue:gifts") == 0
        assert await unbalanced_transactions(suite) == 0

    async def test_a_disputed_redeemed_gift_ends_the_subscription_it_started(
        self, suite: Suite
    ) -> None:
        buyer = suite.as_user()
        gift = await card_gift(suite, buyer)
        friend = suite.as_user(email=FRIEND)
        redeemed = (await friend.post("/api/v1/gifts/redeem", json={"code": gift["code"]})).json()
        disputed = events.PaymentDisputed(
            payment_id=UUID(gift["latest_payment"]["id"]),
            customer=events.Customer(id=buyer.id),
            amount=Money(amount=BASIC, currency="RUB"),
            provider="sandbox",
            reason="fraudulent",
        )
        await handle(suite, handlers.on_payment_disputed, disputed)
        assert (await friend.subscription(redeemed["subscription_id"]))["status"] == "canceled"
        assert await grants_of(suite, friend) == ()


class TestOwnPaymentOfAnExtendedSubscription:
    async def test_its_prorata_refund_counts_only_the_days_it_paid_for(self, suite: Suite) -> None:
        await thirty_day_plan(suite)
        friend = suite.as_user(email=FRIEND)
        await topped_up(suite, friend, BASIC)
        subscription, payment = await paid_subscription(suite, friend, "days-30", method="wallet")
        gift = await gift_by_wallet(suite, suite.as_user(), plan="days-30")
        await friend.post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        extended = await friend.subscription(subscription["id"])
        start = at(extended["current_period_start"])
        assert at(extended["current_period_end"]) - start == timedelta(days=60)
        with clock.frozen(start + timedelta(days=9, hours=3)):  # day 10 of the 30 paid days
            quote = (await friend.get(f"/api/v1/payments/{payment['id']}/refund-quote")).json()
        assert quote["refundable_amount"]["amount"] == BASIC * 20 // 30
        assert quote["rule"] == "unused 20 of 30 days"


class TestExpiry:
    async def test_unredeemed_gift_is_reminded_then_expires_with_its_revenue_recognised(
        self, suite: Suite
    ) -> None:
        buyer = suite.as_user(email="buyer@example.com")
        gift = await gift_by_wallet(suite, buyer)
        expires = at(gift["expires_at"])
        assert timedelta(days=364) < expires - clock.now() <= timedelta(days=365)
        await run_jobs(suite, expires - timedelta(days=13))
        await run_jobs(suite, expires - timedelta(days=12))
        [reminder] = await suite.events("gift.expiring")
        assert reminder.data.email == "buyer@example.com" and reminder.data.code == gift["code"]
        assert await balance(suite, "deferred_revenue:gifts") == BASIC
        await run_jobs(suite, expires)
        assert (await buyer.get(f"/api/v1/gifts/{gift['id']}")).json()["status"] == "expired"
        assert await balance(suite, "deferred_revenue:gifts") == 0
        assert await balance(suite, "revenue") == BASIC
        with clock.frozen(expires + timedelta(minutes=1)):
            late = await suite.as_user().post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        assert late.status_code == 409
        quote = (
            await buyer.get(f"/api/v1/payments/{gift['latest_payment']['id']}/refund-quote")
        ).json()
        assert quote["refundable_amount"]["amount"] == 0
