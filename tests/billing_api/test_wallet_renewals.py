"""Renewals paid from the wallet first (``renewal_source: wallet_then_card``), and the link to
the account page that dunning notices carry."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from billing_api import jobs, locks
from billing_api.activation import service as activation
from billing_api.activation.handlers import make_handlers
from billing_api.config import BillingSettings
from billing_api.ledger import service as ledger
from billing_api.lifecycle import renewal_claims, renewals, wallet_renewals
from billing_api.lifecycle.service import LEASE, JobContext
from billing_api.periods import add_months
from billing_api.subscriptions import links
from shared import clock, events
from shared.money import Money
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_lifecycle import end_of, off_session_charges, subscribed
from tests.billing_api.test_wallet_and_purchases import topped_up

PREMIUM = 59900


def settings_of(suite: Suite) -> BillingSettings:
    settings: BillingSettings = suite.billing.state.settings
    return settings


def link(suite: Suite, subscription_id: str) -> str:
    """Where a notice about the subscription sends its owner: BILLING_ACCOUNT_URL's page."""
    return f"{settings_of(suite).account_url}?subscription_id={subscription_id}"


def context(suite: Suite, at: datetime) -> JobContext:
    return JobContext(
        suite.billing.state.session_factory, suite.billing.state.gateway, settings_of(suite), at
    )


async def run_jobs(suite: Suite, at: datetime) -> dict[str, int]:
    with clock.frozen(at):
        return await jobs.run_once(
            suite.billing.state.session_factory, suite.billing.state.gateway, settings_of(suite), at
        )


async def balance(user: User) -> int:
    balances = (await user.get("/api/v1/wallet")).json()["balances"]
    return int(next(b["amount"] for b in balances if b["currency"] == "RUB"))


async def top_up_more(suite: Suite, user: User, amount: int) -> None:
    """Top a wallet that holds money already up by ``amount`` (by card), and wait for it."""
    before = await balance(user)
    response = await user.post("/api/v1/wallet/top-ups", json={"amount": amount})
    await suite.pay(response.json()["payment"]["checkout_url"])

    async def credited() -> bool:
        return await balance(user) == before + amount

    await support.eventually(credited, timeout=15)


async def renewal_payments(user: User) -> list[dict[str, Any]]:
    items = (await user.get("/api/v1/payments", params={"limit": 100})).json()["items"]
    return [p for p in items if p["purpose"] == "renewal"]


async def wallet_first(user: User, subscription_id: str) -> None:
    response = await user.suite.http.patch(
        f"/api/v1/subscriptions/{subscription_id}",
        json={"renewal_source": "wallet_then_card"},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text


async def assert_ledger_balanced(suite: Suite) -> None:
    unbalanced = await suite.scalar(
        "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entry GROUP BY transaction_id"
        " HAVING sum(CASE side WHEN 'debit' THEN amount ELSE -amount END) <> 0) AS t"
    )
    assert unbalanced == 0


async def card_subscriber(suite: Suite, wallet: int) -> tuple[User, dict[str, Any]]:
    """A premium subscriber with a saved card, ``wallet`` in the wallet, renewing from it first."""
    user = suite.as_user()
    subscription = await subscribed(suite, user)
    if wallet:
        await topped_up(suite, user, wallet)
    await wallet_first(user, subscription["id"])
    return user, subscription


async def cardless_subscriber(suite: Suite, left: int) -> tuple[User, dict[str, Any]]:
    """A premium subscriber who paid from the wallet (no card saved), ``left`` still in it."""
    user = suite.as_user()
    await topped_up(suite, user, PREMIUM + left)
    plan = await suite.plan("premium")
    created = await user.post(
        "/api/v1/subscriptions", json={"plan_id": plan["id"], "payment_method": "wallet"}
    )
    assert created.json()["status"] == "active", created.text
    await wallet_first(user, created.json()["id"])
    return user, created.json()


class TestEnoughInTheWallet:
    async def test_the_renewal_is_paid_from_the_wallet_once_and_the_card_is_not_charged(
        self, suite: Suite
    ) -> None:
        user, subscription = await card_subscriber(suite, PREMIUM + 1000)
        end = end_of(subscription)

        assert (await run_jobs(suite, end - timedelta(minutes=30)))["renew_due_subscriptions"] == 1
        assert (await run_jobs(suite, end - timedelta(minutes=20)))["renew_due_subscriptions"] == 0

        renewed = await user.subscription(subscription["id"])
        assert renewed["status"] == "active"
        assert end_of(renewed) == add_months(end, 1), "the period runs on from the old end"
        assert await balance(user) == 1000
        assert await off_session_charges(suite) == 0
        [payment] = await renewal_payments(user)
        assert (payment["method"], payment["status"]) == ("wallet", "succeeded")
        assert payment["amount"] == {"amount": PREMIUM, "currency": "RUB"}
        assert renewed["latest_payment"]["id"] == payment["id"]
        assert len(await suite.events("subscription.renewed")) == 1
        kinds = [e["kind"] for e in (await user.get("/api/v1/statement")).json()["items"]]
        assert kinds.count("wallet_spend") == 1
        await assert_ledger_balanced(suite)

    async def test_a_subscription_without_a_card_renews_from_the_wallet(self, suite: Suite) -> None:
        user, subscription = await cardless_subscriber(suite, PREMIUM)
        end = end_of(subscription)
        assert (await run_jobs(suite, end - timedelta(minutes=30)))["renew_due_subscriptions"] == 1
        assert end_of(await user.subscription(subscription["id"])) == add_months(end, 1)
        assert await balance(user) == 0
        assert await off_session_charges(suite) == 0

    async def test_a_card_renewal_never_touches_the_wallet(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        await topped_up(suite, user, PREMIUM * 2)
        end = end_of(subscription)
        assert (await run_jobs(suite, end - timedelta(minutes=30)))["renew_due_subscriptions"] == 1
        assert await balance(user) == PREMIUM * 2
        assert await off_session_charges(suite) == 1
        [payment] = await renewal_payments(user)
        assert payment["method"] == "card"


class TestTooLittleInTheWallet:
    async def test_the_card_is_charged_and_the_wallet_kept(self, suite: Suite) -> None:
        user, subscription = await card_subscriber(suite, PREMIUM - 1)
        end = end_of(subscription)
        assert (await run_jobs(suite, end - timedelta(minutes=30)))["renew_due_subscriptions"] == 1
        renewed = await user.subscription(subscription["id"])
        assert end_of(renewed) == add_months(end, 1)
        assert await balance(user) == PREMIUM - 1
        assert await off_session_charges(suite) == 1
        [payment] = await renewal_payments(user)
        assert (payment["method"], payment["status"]) == ("card", "succeeded")
        await assert_ledger_balanced(suite)

    async def test_without_a_card_the_renewal_fails_asks_for_a_top_up_and_a_retry_after_one_pays(
        self, suite: Suite
    ) -> None:
        user, subscription = await cardless_subscriber(suite, PREMIUM - 100)
        end = end_of(subscription)
        first_try = end - timedelta(minutes=30)

        await run_jobs(suite, first_try)
        [failed] = await renewal_payments(user)
        assert (failed["method"], failed["status"]) == ("wallet", "failed")
        assert await balance(user) == PREMIUM - 100, "nothing is taken when it does not cover it"
        assert await off_session_charges(suite) == 0
        [notice] = await suite.events("subscription.renewal_failed")
        assert notice.data.renewal_source == "wallet_then_card"
        assert notice.data.reason == wallet_renewals.SHORT_REASON
        assert notice.data.next_attempt_at == first_try + timedelta(hours=1)
        assert notice.data.update_url == link(suite, subscription["id"])

        await run_jobs(suite, end + timedelta(minutes=1))
        assert (await user.subscription(subscription["id"]))["status"] == "grace"
        [grace] = await suite.events("subscription.grace_started")
        assert grace.data.renewal_source == "wallet_then_card"
        assert grace.data.update_url == link(suite, subscription["id"])

        await top_up_more(suite, user, 100)
        await run_jobs(suite, first_try + timedelta(hours=1))
        renewed = await user.subscription(subscription["id"])
        assert renewed["status"] == "active"
        assert end_of(renewed) == add_months(end, 1)
        assert await balance(user) == 0
        assert sorted(p["status"] for p in await renewal_payments(user)) == [
            "failed",
            "succeeded",
        ]
        await assert_ledger_balanced(suite)


class TestCrashBetweenClaimAndSettle:
    async def test_a_wallet_renewal_claimed_by_a_run_that_died_is_settled_once_after_the_lease(
        self, suite: Suite
    ) -> None:
        user, subscription = await card_subscriber(suite, PREMIUM)
        end = end_of(subscription)
        at = end - timedelta(minutes=30)
        with clock.frozen(at):
            [claimed] = await renewal_claims.claim_renewals(context(suite, at))  # then it dies
        assert claimed.wallet == wallet_renewals.PAID
        assert await balance(user) == 0, "the money is taken in the claim's transaction"

        during_lease = at + LEASE - timedelta(seconds=1)
        with clock.frozen(during_lease):
            assert await renewals.renew_due(context(suite, during_lease)) == 0
        after_lease = at + LEASE
        with clock.frozen(after_lease):
            assert await renewals.renew_due(context(suite, after_lease)) == 1
        with clock.frozen(after_lease + LEASE):
            assert await renewals.renew_due(context(suite, after_lease + LEASE)) == 0

        [payment] = await renewal_payments(user)
        assert payment["id"] == str(claimed.payment_id)
        assert (payment["method"], payment["status"]) == ("wallet", "succeeded")
        assert await balance(user) == 0
        assert await off_session_charges(suite) == 0, "a wallet payment never goes to the card"
        assert end_of(await user.subscription(subscription["id"])) == add_months(end, 1)
        assert len(await suite.events("subscription.renewed")) == 1
        await assert_ledger_balanced(suite)

    async def test_a_claimed_wallet_renewal_voided_before_it_is_settled_gives_the_money_back(
        self, suite: Suite
    ) -> None:
        user, subscription = await card_subscriber(suite, PREMIUM)
        at = end_of(subscription) - timedelta(minutes=30)
        with clock.frozen(at):
            [claimed] = await renewal_claims.claim_renewals(context(suite, at))
        async with suite.billing.state.session_factory() as session, session.begin():
            payment = await locks.lock_payment(session, claimed.payment_id)
            assert payment is not None
            assert await activation.expire_payment(session, payment)
        assert await balance(user) == PREMIUM
        after_lease = at + LEASE
        with clock.frozen(after_lease):
            await renewals.renew_due(context(suite, after_lease))
        assert await balance(user) == 0, "the next renewal is paid from the wallet again, once"
        assert sorted(p["status"] for p in await renewal_payments(user)) == [
            "expired",
            "succeeded",
        ]
        await assert_ledger_balanced(suite)


class TestConcurrentWalletSpend:
    async def test_a_checkout_holding_the_wallet_makes_the_renewal_wait_then_go_to_the_card(
        self, suite: Suite
    ) -> None:
        user, subscription = await card_subscriber(suite, PREMIUM)
        end = end_of(subscription)
        at = end - timedelta(minutes=30)
        async with suite.billing.state.session_factory() as checkout, checkout.begin():
            # A checkout paying from the same wallet, its transaction left open.
            await ledger.spend_from_wallet(
                checkout,
                user_id=user.id,
                amount=PREMIUM,
                currency="RUB",
                reference="a-concurrent-checkout",
                description="a movie",
            )
            with clock.frozen(at):
                renewing = asyncio.create_task(renewals.renew_due(context(suite, at)))
                await asyncio.sleep(0.5)
                assert not renewing.done(), "the renewal waits for the wallet's lock"
        with clock.frozen(at):
            assert await renewing == 1
        assert await balance(user) == 0, "never overdrawn"
        assert await off_session_charges(suite) == 1
        [payment] = await renewal_payments(user)
        assert (payment["method"], payment["status"]) == ("card", "succeeded")
        await assert_ledger_balanced(suite)

    async def test_a_wallet_checkout_at_the_same_moment_as_the_renewal_never_overdraws(
        self, suite: Suite
    ) -> None:
        user, subscription = await card_subscriber(suite, PREMIUM)
        end = end_of(subscription)
        at = end - timedelta(minutes=30)
        basic = await suite.plan("basic")
        with clock.frozen(at):
            renewed, checkout = await asyncio.gather(
                renewals.renew_due(context(suite, at)),
                user.post(
                    "/api/v1/subscriptions",
                    json={"plan_id": basic["id"], "payment_method": "wallet"},
                ),
            )
        assert renewed == 1
        wallet_renewal = (await renewal_payments(user))[0]["method"] == "wallet"
        if wallet_renewal:
            assert checkout.status_code == 409 and checkout.json()["error"] == "InsufficientFunds"
            assert await balance(user) == 0
        else:
            assert checkout.status_code == 201, checkout.text
            assert await balance(user) == PREMIUM - 29900
            assert await off_session_charges(suite) == 1
        await assert_ledger_balanced(suite)


class TestAccountLinks:
    def test_the_link_is_the_configured_account_page_opened_on_the_subscription(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("BILLING_ACCOUNT_URL", "https://cinema.example/account")
        subscription_id = UUID(int=7)
        assert links.update_url(BillingSettings().account_url, subscription_id) == (
            f"https://cinema.example/account?subscription_id={subscription_id}"
        )

    async def test_renewal_failed_and_grace_started_link_to_the_account_page(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, "4000000000000341")
        end = end_of(subscription)
        await run_jobs(suite, end - timedelta(minutes=30))
        await run_jobs(suite, end + timedelta(minutes=1))
        expected = link(suite, subscription["id"])
        [failed] = await suite.events("subscription.renewal_failed")
        [grace] = await suite.events("subscription.grace_started")
        assert (failed.data.update_url, failed.data.renewal_source) == (expected, "card")
        assert (grace.data.update_url, grace.data.renewal_source) == (expected, "card")

    async def test_a_decline_from_the_gateways_event_links_to_the_account_page(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        at = end_of(subscription) - timedelta(minutes=30)
        with clock.frozen(at):
            [claimed] = await renewal_claims.claim_renewals(context(suite, at))
        handle = make_handlers(settings_of(suite))[events.PaymentFailed]
        declined = events.PaymentFailed(
            payment_id=claimed.payment_id,
            customer=events.Customer(id=user.id),
            amount=Money(amount=PREMIUM, currency="RUB"),
            provider="sandbox",
            failure_message="card declined",
        )
        async with suite.billing.state.session_factory() as session, session.begin():
            await handle(session, events.wrap(declined, producer="payment_gateway"))
        [failed] = await suite.events("subscription.renewal_failed")
        assert failed.data.update_url == link(suite, subscription["id"])


class TestRenewalSourceApi:
    async def test_the_owner_chooses_the_wallet_first_and_sees_it(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        assert subscription["renewal_source"] == "card"
        path = f"/api/v1/subscriptions/{subscription['id']}"
        response = await suite.http.patch(
            path, json={"renewal_source": "wallet_then_card"}, headers=user.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["renewal_source"] == "wallet_then_card"
        assert response.json()["status"] == "active"
        assert (await user.subscription(subscription["id"]))["renewal_source"] == "wallet_then_card"
        listed = (await user.get("/api/v1/subscriptions")).json()["items"]
        assert [s["renewal_source"] for s in listed] == ["wallet_then_card"]
        back = await suite.http.patch(path, json={"renewal_source": "card"}, headers=user.headers)
        assert back.json()["renewal_source"] == "card"

    async def test_someone_elses_or_no_subscription_is_404(self, suite: Suite) -> None:
        owner = suite.as_user()
        subscription = await subscribed(suite, owner)
        stranger = suite.as_user()
        for path in (
            f"/api/v1/subscriptions/{subscription['id']}",
            f"/api/v1/subscriptions/{UUID(int=1)}",
        ):
            response = await suite.http.patch(
                path, json={"renewal_source": "wallet_then_card"}, headers=stranger.headers
            )
            assert response.status_code == 404
            assert response.json()["error"] == "SubscriptionNotFound"
        assert (await owner.subscription(subscription["id"]))["renewal_source"] == "card"

    async def test_an_unknown_source_is_422(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        path = f"/api/v1/subscriptions/{subscription['id']}"
        for body in (
            {"renewal_source": "wallet"},
            {"renewal_source": None},
            {},
            {"renewal_source": "card", "auto_renew": False},
        ):
            response = await suite.http.patch(path, json=body, headers=user.headers)
            assert response.status_code == 422, body

    async def test_an_ended_or_unpaid_subscription_is_409(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        await user.post(
            f"/api/v1/subscriptions/{subscription['id']}/cancel", json={"at_period_end": False}
        )
        plan = await suite.plan("basic")
        pending = (await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})).json()
        for subscription_id in (subscription["id"], pending["id"]):
            response = await suite.http.patch(
                f"/api/v1/subscriptions/{subscription_id}",
                json={"renewal_source": "wallet_then_card"},
                headers=user.headers,
            )
            assert response.status_code == 409
            assert response.json()["error"] == "SubscriptionNotRenewable"

    async def test_a_subscription_without_a_card_is_due_only_when_it_renews_from_the_wallet(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        await topped_up(suite, user, PREMIUM * 2)
        plan = await suite.plan("premium")
        created = (
            await user.post(
                "/api/v1/subscriptions", json={"plan_id": plan["id"], "payment_method": "wallet"}
            )
        ).json()
        at = end_of(created) - timedelta(minutes=30)
        assert (await run_jobs(suite, at))["renew_due_subscriptions"] == 0
        await wallet_first(user, created["id"])
        assert (await run_jobs(suite, at + timedelta(minutes=1)))["renew_due_subscriptions"] == 1
        assert await balance(user) == 0


class TestVoidedBetweenClaimAndSettle:
    async def test_a_wallet_renewal_voided_after_its_claim_is_not_renewed_by_the_same_run(
        self, suite: Suite
    ) -> None:
        """The run that claimed the renewal (its money taken) settles it after an upgrade or
        an expiry voided it and gave the money back: the period is not renewed for nothing."""
        user, subscription = await card_subscriber(suite, PREMIUM)
        end = end_of(subscription)
        at = end - timedelta(minutes=30)
        with clock.frozen(at):
            ctx = context(suite, at)
            [claimed] = await renewal_claims.claim_renewals(ctx)
            answers = await renewals.charge_all(ctx, [claimed])
        async with suite.billing.state.session_factory() as session, session.begin():
            payment = await locks.lock_payment(session, claimed.payment_id)
            assert payment is not None
            assert await activation.expire_payment(session, payment)
        with clock.frozen(at):
            assert await renewals.settle(ctx, answers) == []

        assert await balance(user) == PREMIUM, "given back once, and kept"
        [renewal] = await renewal_payments(user)
        assert (renewal["method"], renewal["status"]) == ("wallet", "expired")
        assert end_of(await user.subscription(subscription["id"])) == end, "no free period"
        assert await suite.events("subscription.renewed") == []
        await assert_ledger_balanced(suite)

    async def test_a_wallet_renewal_left_by_a_run_that_died_is_given_back_once_renewals_stop(
        self, suite: Suite
    ) -> None:
        """The run dies after taking the money; the subscriber then cancels at the period end,
        so the subscription is never due again: the renewal's money comes back to the wallet."""
        user, subscription = await card_subscriber(suite, PREMIUM)
        end = end_of(subscription)
        at = end - timedelta(minutes=30)
        with clock.frozen(at):
            [claimed] = await renewal_claims.claim_renewals(context(suite, at))  # then it dies
        assert await balance(user) == 0
        with clock.frozen(at + timedelta(minutes=1)):
            cancelled = await user.post(
                f"/api/v1/subscriptions/{subscription['id']}/cancel", json={"at_period_end": True}
            )
        assert cancelled.status_code == 200, cancelled.text

        for later in (at + LEASE, end + timedelta(minutes=1), end + timedelta(days=2)):
            await run_jobs(suite, later)

        assert await balance(user) == PREMIUM, "the renewal's money is not kept for nothing"
        [renewal] = await renewal_payments(user)
        assert renewal["id"] == str(claimed.payment_id)
        assert renewal["status"] != "pending"
        assert (await user.subscription(subscription["id"]))["status"] != "active"
        assert await off_session_charges(suite) == 0
        await assert_ledger_balanced(suite)
