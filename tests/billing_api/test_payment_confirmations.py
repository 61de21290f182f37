"""Renewals that need the cardholder's confirmation (3-D Secure, sandbox card
4000002760003184): the renewal waits in ``requires_action`` with the confirmation page, is paid
once confirmed, and is given up (a failed renewal) at the next dunning step if not. Real
gateway, database and broker; the renewal job is driven with time moved."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import orjson

from billing_api.periods import add_months
from shared import clock
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_lifecycle import end_of, off_session_charges, run_jobs, subscribed
from tests.payment_gateway.conftest import BASE_URL

CARD_3DS = "4000002760003184"
STEP = timedelta(hours=1)  # the first dunning step


async def renewal_payments(user: User) -> list[dict[str, Any]]:
    payments = (await user.get("/api/v1/payments", params={"limit": 100})).json()["items"]
    return sorted((p for p in payments if p["purpose"] == "renewal"), key=lambda p: p["created_at"])


async def waiting_renewal(suite: Suite) -> tuple[User, dict[str, Any], dict[str, Any], datetime]:
    """A subscriber whose renewal, charged at ``first_try``, waits for confirmation."""
    user = suite.as_user()
    subscription = await subscribed(suite, user, CARD_3DS)
    first_try = end_of(subscription) - timedelta(minutes=30)
    await run_jobs(suite, first_try)
    [payment] = await renewal_payments(user)
    return user, subscription, payment, first_try


def action_path(payment: dict[str, Any]) -> str:
    url = str(payment["action_url"])
    assert url.startswith(f"{BASE_URL}/sandbox/actions/"), url
    return url.removeprefix(BASE_URL)


async def captured(suite: Suite) -> int:
    sql = "SELECT count(*) FROM ledger_transaction WHERE kind = 'payment_captured'"
    return int(await suite.scalar(sql))


class TestWaiting:
    async def test_the_renewal_waits_with_its_page_and_the_user_is_told_once(
        self, suite: Suite
    ) -> None:
        user, subscription, payment, first_try = await waiting_renewal(suite)

        assert payment["status"] == "requires_action"
        shown = (await user.get(f"/api/v1/payments/{payment['id']}")).json()
        assert (shown["status"], shown["action_url"]) == ("requires_action", payment["action_url"])
        action_path(payment)
        # still active: the period has not ended
        assert (await user.subscription(subscription["id"]))["status"] == "active"
        # the gateway's event and the job's answer both said so: told once
        await support.outbox_published(suite.gateway.state.resources.engine)
        await asyncio.sleep(0.5)
        [notice] = await suite.events("subscription.payment_action_required")
        assert notice.data.action_url == payment["action_url"]
        assert notice.data.confirm_by == first_try + STEP
        assert str(notice.data.payment_id) == payment["id"]
        assert await suite.events("subscription.renewal_failed") == []
        # not charged again while it waits, until the next step
        await run_jobs(suite, first_try + STEP - timedelta(seconds=1))
        assert await off_session_charges(suite) == 1


class TestConfirmed:
    async def test_a_confirmed_renewal_renews_once_from_the_old_end(self, suite: Suite) -> None:
        user, subscription, payment, first_try = await waiting_renewal(suite)
        before = await captured(suite)

        confirmed = await suite.gateway_http.post(f"{action_path(payment)}/confirm")

        assert confirmed.status_code == 200, confirmed.text
        expected_end = add_months(end_of(subscription), 1)

        async def renewed() -> bool:
            return end_of(await user.subscription(subscription["id"])) == expected_end

        await support.eventually(renewed, timeout=40)
        [paid] = await renewal_payments(user)
        assert (paid["status"], paid["action_url"]) == ("succeeded", None)
        # the next step finds nothing to do: nothing is cancelled or charged
        await run_jobs(suite, first_try + STEP)
        assert await off_session_charges(suite) == 1
        assert await captured(suite) - before == 1
        assert len(await suite.events("subscription.renewed")) == 1
        assert await suite.events("subscription.renewal_failed") == []


class TestUnconfirmed:
    async def test_left_unconfirmed_it_fails_at_the_next_step_and_the_page_refuses(
        self, suite: Suite
    ) -> None:
        user, subscription, payment, first_try = await waiting_renewal(suite)

        await run_jobs(suite, first_try + STEP)

        [failed] = await renewal_payments(user)
        assert (failed["status"], failed["action_url"]) == ("failed", None)
        [notice] = await suite.events("subscription.renewal_failed")
        assert notice.data.next_attempt_at == first_try + timedelta(days=1)
        refused = await suite.gateway_http.post(f"{action_path(payment)}/confirm")
        assert refused.status_code == 409
        page = await suite.gateway_http.get(action_path(payment), headers={"Accept-Language": "en"})
        assert "can no longer be confirmed" in page.text
        assert await off_session_charges(suite) == 1  # the step charged nothing new
        # the period ended meanwhile, unpaid: grace, as for any failed renewal
        assert (await user.subscription(subscription["id"]))["status"] == "grace"

    async def test_dunning_charges_again_and_ends_in_grace_then_expiry(self, suite: Suite) -> None:
        user, subscription, _, first_try = await waiting_renewal(suite)
        end = end_of(subscription)

        await run_jobs(suite, first_try + STEP)  # the first charge given up
        await run_jobs(suite, end + timedelta(minutes=1))
        assert (await user.subscription(subscription["id"]))["status"] == "grace"
        await run_jobs(suite, first_try + timedelta(days=1))  # charged again: waits again
        second = (await renewal_payments(user))[1]
        assert second["status"] == "requires_action"
        assert second["action_url"] != (await renewal_payments(user))[0]["action_url"]
        await run_jobs(suite, first_try + timedelta(days=2))  # given up; no step left
        await run_jobs(suite, end + timedelta(days=2))

        assert (await user.subscription(subscription["id"]))["status"] == "expired"
        assert [p["status"] for p in await renewal_payments(user)] == ["failed", "failed"]
        assert await off_session_charges(suite) == 2
        notices = await suite.events("subscription.payment_action_required")
        assert [n.data.confirm_by for n in notices] == [
            first_try + STEP,
            first_try + timedelta(days=2),
        ]
        assert len(await suite.events("subscription.renewal_failed")) == 2
        assert len(await suite.events("subscription.expired")) == 1

    async def test_two_workers_at_the_next_step_give_it_up_once(self, suite: Suite) -> None:
        user, _, _, first_try = await waiting_renewal(suite)

        await asyncio.gather(run_jobs(suite, first_try + STEP), run_jobs(suite, first_try + STEP))

        assert [p["status"] for p in await renewal_payments(user)] == ["failed"]
        await asyncio.sleep(0.5)  # the gateway's payment.failed too
        assert len(await suite.events("subscription.renewal_failed")) == 1
        assert await off_session_charges(suite) == 1


class TestConfirmationRacingTheCancel:
    async def test_a_confirmation_racing_the_next_step_is_never_lost_nor_charged_twice(
        self, suite: Suite
    ) -> None:
        outcomes = set()
        for _ in range(4):
            user, subscription, payment, first_try = await waiting_renewal(suite)
            charges = await off_session_charges(suite)

            confirm, _ = await asyncio.gather(
                suite.gateway_http.post(f"{action_path(payment)}/confirm"),
                run_jobs(suite, first_try + STEP),
            )

            expected = "succeeded" if confirm.status_code == 200 else "failed"
            outcomes.add(expected)

            async def settled(user: User = user, expected: str = expected) -> bool:
                [renewal] = await renewal_payments(user)
                return bool(renewal["status"] == expected)

            await support.eventually(settled, timeout=40)
            now = await user.subscription(subscription["id"])
            if expected == "succeeded":
                assert end_of(now) == add_months(end_of(subscription), 1)
            else:
                assert confirm.status_code == 409
                assert end_of(now) == end_of(subscription)
            assert await off_session_charges(suite) == charges  # nothing new was charged
        renewed = await suite.events("subscription.renewed")
        failed = await suite.events("subscription.renewal_failed")
        assert len(renewed) + len(failed) == 4, outcomes

    async def test_confirmed_but_unreported_by_the_next_step_it_is_settled_as_paid(
        self, suite: Suite
    ) -> None:
        user, subscription, payment, first_try = await waiting_renewal(suite)
        sender = suite.gateway.state.sandbox_sender
        to_gateway = sender.http
        # The sandbox's webhooks cannot reach the gateway for a while: the confirmation is known
        # only to the provider when the next step comes.
        unreachable = httpx.MockTransport(lambda _: httpx.Response(503))
        sender.http = httpx.AsyncClient(transport=unreachable)
        try:
            confirmed = await suite.gateway_http.post(f"{action_path(payment)}/confirm")
            assert confirmed.status_code == 200
            await run_jobs(suite, first_try + STEP)
        finally:
            await sender.http.aclose()
            sender.http = to_gateway

        [paid] = await renewal_payments(user)
        assert paid["status"] == "succeeded"
        assert end_of(await user.subscription(subscription["id"])) == add_months(
            end_of(subscription), 1
        )
        assert await off_session_charges(suite) == 1
        await sender.deliver_due()  # the late webhook changes nothing
        await asyncio.sleep(0.5)
        assert len(await suite.events("subscription.renewed")) == 1
        assert await suite.events("subscription.renewal_failed") == []


class TestWorkerProcesses:
    async def test_real_run_jobs_processes_renew_the_confirmed_and_give_up_the_other(
        self, suite: Suite, database_url: str, broker_prefix: str
    ) -> None:
        confirmer, ignorer = suite.as_user(), suite.as_user()
        subscriptions = [await subscribed(suite, user, CARD_3DS) for user in (confirmer, ignorer)]
        first_try = max(end_of(s) for s in subscriptions) - timedelta(minutes=30)
        env = support.suite_environment(database_url, broker_prefix)
        cinema = str(Path(sys.executable).with_name("cinema"))

        async def run_jobs_process(at: datetime) -> dict[str, int]:
            command = [cinema, "billing", "run-jobs", "--now", at.isoformat()]
            done = await asyncio.to_thread(
                subprocess.run, command, env=env, capture_output=True, check=False
            )
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            result: dict[str, int] = orjson.loads(done.stdout)
            return result

        async with support.served(suite.gateway, support.free_port(), running=True) as gateway_url:
            env["BILLING_GATEWAY_URL"] = gateway_url
            await run_jobs_process(first_try)
            [waiting] = await renewal_payments(confirmer)
            [ignored] = await renewal_payments(ignorer)
            assert {waiting["status"], ignored["status"]} == {"requires_action"}
            async with httpx.AsyncClient(base_url=gateway_url) as browser:
                confirmed = await browser.post(f"{action_path(waiting)}/confirm")
                assert confirmed.status_code == 200, confirmed.text
                renewed_end = add_months(end_of(subscriptions[0]), 1)

                async def renewed() -> bool:
                    now = await confirmer.subscription(subscriptions[0]["id"])
                    return end_of(now) == renewed_end

                await support.eventually(renewed, timeout=90)
                await run_jobs_process(first_try + STEP)
                refused = await browser.post(f"{action_path(ignored)}/confirm")

        assert refused.status_code == 409
        assert [p["status"] for p in await renewal_payments(confirmer)] == ["succeeded"]
        assert [p["status"] for p in await renewal_payments(ignorer)] == ["failed"]
        assert end_of(await ignorer.subscription(subscriptions[1]["id"])) == end_of(
            subscriptions[1]
        )
        assert await off_session_charges(suite) == 2
        assert len(await suite.events("subscription.renewed")) == 1
        assert len(await suite.events("subscription.renewal_failed")) == 1


class TestUpgradeWhileWaiting:
    async def test_an_upgrade_voids_the_waiting_renewal_and_a_late_confirmation_is_refunded(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        premium = await suite.plan("premium")
        subscription = await subscribed(suite, user, CARD_3DS, plan="basic")
        first_try = end_of(subscription) - timedelta(minutes=30)
        await run_jobs(suite, first_try)
        [waiting] = await renewal_payments(user)
        assert waiting["status"] == "requires_action"

        with clock.frozen(first_try + timedelta(minutes=5)):
            answer = await user.post(
                f"/api/v1/subscriptions/{subscription['id']}/change-plan",
                json={"plan_id": premium["id"]},
            )
            assert answer.status_code == 200, answer.text
            await suite.pay(answer.json()["payment"]["checkout_url"])

            async def on_premium() -> bool:
                now = await user.subscription(subscription["id"])
                return bool(now["plan_id"] == premium["id"])

            await support.eventually(on_premium, timeout=40)
        upgraded = await user.subscription(subscription["id"])
        [voided] = await renewal_payments(user)
        assert (voided["status"], voided["action_url"]) == ("expired", None)

        await run_jobs(suite, first_try + STEP)  # the old step: nothing to give up or charge
        assert await suite.events("subscription.renewal_failed") == []
        assert await off_session_charges(suite) == 1

        # confirmed all the same at the provider: the money goes back, the period is unchanged
        confirmed = await suite.gateway_http.post(f"{action_path(waiting)}/confirm")
        assert confirmed.status_code == 200

        async def refunded() -> bool:
            sql = "SELECT count(*) FROM refund WHERE payment_id = :payment_id"
            return bool(await suite.scalar(sql, payment_id=waiting["id"]) == 1)

        await support.eventually(refunded, timeout=40)
        assert end_of(await user.subscription(subscription["id"])) == end_of(upgraded)


class TestCardUpdateWhileWaiting:
    async def test_a_card_update_paying_the_period_voids_the_waiting_renewal_refunded_if_confirmed(
        self, suite: Suite
    ) -> None:
        user, subscription, waiting, first_try = await waiting_renewal(suite)
        renewed_end = add_months(end_of(subscription), 1)

        with clock.frozen(first_try + timedelta(minutes=5)):
            answer = await user.post(
                f"/api/v1/subscriptions/{subscription['id']}/payment-method",
                json={"payment_method": "card"},
            )
            assert answer.status_code == 201, answer.text
            assert answer.json()["purpose"] == "renewal"
            await suite.pay(answer.json()["checkout_url"])

            async def renewed() -> bool:
                return end_of(await user.subscription(subscription["id"])) == renewed_end

            await support.eventually(renewed, timeout=40)
        statuses = {p["id"]: p["status"] for p in await renewal_payments(user)}
        assert statuses[waiting["id"]] == "expired"

        await run_jobs(suite, first_try + STEP)  # the old step: nothing to give up or charge
        assert await suite.events("subscription.renewal_failed") == []
        assert await off_session_charges(suite) == 1

        confirmed = await suite.gateway_http.post(f"{action_path(waiting)}/confirm")
        assert confirmed.status_code == 200

        async def refunded() -> bool:
            sql = "SELECT coalesce(sum(amount), 0) FROM refund WHERE payment_id = :payment_id"
            total = await suite.scalar(sql, payment_id=waiting["id"])
            return bool(total == waiting["amount"]["amount"])

        await support.eventually(refunded, timeout=40)
        assert end_of(await user.subscription(subscription["id"])) == renewed_end
        assert len(await suite.events("subscription.renewed")) == 1

    async def test_a_confirmation_racing_the_card_update_checkout_pays_one_period(
        self, suite: Suite
    ) -> None:
        user, subscription, waiting, first_try = await waiting_renewal(suite)
        renewed_end = add_months(end_of(subscription), 1)

        with clock.frozen(first_try + timedelta(minutes=5)):
            answer = await user.post(
                f"/api/v1/subscriptions/{subscription['id']}/payment-method",
                json={"payment_method": "card"},
            )
            assert answer.status_code == 201, answer.text
            checkout = answer.json()
        # paid after the checkout was opened, whichever is paid first
        with clock.frozen(first_try + timedelta(minutes=6)):
            confirmed, _ = await asyncio.gather(
                suite.gateway_http.post(f"{action_path(waiting)}/confirm"),
                suite.pay(checkout["checkout_url"]),
            )
            assert confirmed.status_code == 200

            async def one_refunded() -> bool:
                sql = (
                    "SELECT count(*) FROM refund WHERE payment_id IN (:a, :b) AND amount = :amount"
                )
                found = await suite.scalar(
                    sql,
                    a=waiting["id"],
                    b=checkout["payment_id"],
                    amount=waiting["amount"]["amount"],
                )
                return bool(found == 1)

            await support.eventually(one_refunded, timeout=40)
        await asyncio.sleep(0.5)
        assert end_of(await user.subscription(subscription["id"])) == renewed_end
        assert len(await suite.events("subscription.renewed")) == 1


class TestCancelledButNotSettled:
    async def test_a_cancel_whose_settlement_died_is_settled_once_by_the_event_and_the_run(
        self, suite: Suite
    ) -> None:
        user, subscription, payment, first_try = await waiting_renewal(suite)

        # the run asked the gateway and died before settling: the gateway's event settles it
        with clock.frozen(first_try + STEP):
            answer = await suite.billing.state.gateway.cancel_payment(UUID(payment["id"]))
        assert answer.status == "failed"

        async def failed() -> bool:
            [renewal] = await renewal_payments(user)
            return bool(renewal["status"] == "failed")

        await support.eventually(failed, timeout=40)
        await run_jobs(suite, first_try + STEP)  # the run after it: nothing left to give up

        assert [p["status"] for p in await renewal_payments(user)] == ["failed"]
        assert len(await suite.events("subscription.renewal_failed")) == 1
        assert await off_session_charges(suite) == 1
        assert end_of(await user.subscription(subscription["id"])) == end_of(subscription)
