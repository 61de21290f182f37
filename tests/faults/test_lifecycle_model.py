"""The subscription lifecycle against a reference model: random sequences of paying (with a
card that works, one whose later charges fail or one whose renewals wait for a 3-D Secure
confirmation), renewals and time passing (the renewal window, the period end, the end of grace),
confirming a renewal, cancel, resume, pausing (its start, its end, resuming during it, taking it
back), updating the card and refunds. After every step billing, the entitlements it publishes and
the money agree with the model.

The machine runs in a worker thread; each rule runs its coroutine on the test's event loop, where
the in-process suite (billing and gateway apps, billing's consumer and relay) lives.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from billing_api.periods import add_months
from shared import clock
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_lifecycle import latest_grants, run_jobs, subscribed
from tests.payment_gateway.conftest import BASE_URL

T = TypeVar("T")
GOOD, FAILS_LATER = "4242424242424242", "4000000000000341"
CARD_3DS = "4000002760003184"  # every off-session renewal waits for the cardholder's confirmation
MAX_PAUSES = 2  # a year, per subscription (BillingSettings.max_pauses_per_year)
PRICE = 29900  # the demo "basic" plan, monthly
PAID = ("succeeded", "partially_refunded", "refunded")


def lifecycle_machine(
    suite: Suite, loop: asyncio.AbstractEventLoop, steps: Counter[str]
) -> type[RuleBasedStateMachine]:
    def wait(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=120)

    class Lifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.user: User = suite.as_user()
            self.subscription: str | None = None
            self.status = "none"
            self.card = GOOD
            self.end: datetime | None = None
            self.cancel_at_end = False
            self.renewal_failed = False
            self.paid = 0
            self.refunded = 0
            # A pause asked for: (its start, its end); ``status`` is "paused" once it began.
            self.pause: tuple[datetime, datetime] | None = None
            self.pauses = 0  # asked for and not taken back, this subscription
            self.action: str | None = None  # a renewal's confirmation page, while it waits

        def _freeze(self, at: datetime, coroutine: Coroutine[Any, Any, T]) -> T:
            async def frozen() -> T:
                with clock.frozen(at):
                    return await coroutine

            return wait(frozen())

        # -- paying ------------------------------------------------------------------------
        @precondition(lambda self: self.status in ("none", "expired", "canceled"))
        @rule(card=st.sampled_from([GOOD, FAILS_LATER, CARD_3DS]))
        def subscribe(self, card: str) -> None:
            steps["subscribe" if card != CARD_3DS else "subscribe_3ds"] += 1
            body = wait(subscribed(suite, self.user, card, plan="basic"))
            self.subscription, self.card = body["id"], card
            self.status, self.end = "active", datetime.fromisoformat(body["current_period_end"])
            self.cancel_at_end = self.renewal_failed = False
            self.pause, self.pauses, self.action = None, 0, None
            self.paid += PRICE

        # -- time passing ------------------------------------------------------------------
        def _jobs(self, at: datetime) -> dict[str, Any]:
            wait(run_jobs(suite, at))
            assert self.subscription is not None
            self.action = self._waiting_action()
            return wait(self.user.subscription(self.subscription))

        def _waiting_action(self) -> str | None:
            """The confirmation page of this subscription's renewal that waits for it, if any
            (a waiting renewal is given up at the next dunning step: read, not predicted)."""
            items = wait(self.user.get("/api/v1/payments", params={"limit": 100})).json()["items"]
            waiting = [
                p["action_url"]
                for p in items
                if p["subscription_id"] == self.subscription and p["status"] == "requires_action"
            ]
            assert len(waiting) <= 1, items
            return waiting[0] if waiting else None

        def _renews(self) -> bool:
            """The renewal charged at this boundary is paid (a pause asked for stops it)."""
            scheduled = self.pause is not None and self.status == "active"
            return not self.cancel_at_end and self.card == GOOD and not scheduled

        def _renewed(self) -> None:
            """A new period from the boundary (the period end, or the pause's end)."""
            assert self.end is not None
            self.end, self.paid = add_months(self.end, 1), self.paid + PRICE
            self.status, self.renewal_failed, self.pause = "active", False, None

        @precondition(lambda self: self.status in ("active", "paused"))
        @rule()
        def renewal_window(self) -> None:
            steps["renewal_window" if self.status == "active" else "pause_end_window"] += 1
            assert self.end is not None
            body = self._jobs(self.end - timedelta(minutes=30))
            if self._renews():
                self._renewed()
            elif not self.cancel_at_end and not (self.pause and self.status == "active"):
                self.renewal_failed = True
                if self.card == CARD_3DS:
                    assert self.action is not None, "the renewal waits for its confirmation"
            assert body["status"] == self.status, (body, self.status)

        @precondition(lambda self: self.status in ("active", "paused"))
        @rule()
        def period_end(self) -> None:
            steps["period_end" if self.status == "active" else "pause_end"] += 1
            assert self.end is not None
            body = self._jobs(self.end + timedelta(minutes=1))
            if self._renews():
                self._renewed()
            elif self.cancel_at_end:
                self.status = "expired"
            elif self.pause is not None and self.status == "active":
                steps["pause_begins"] += 1
                self.status, self.end = "paused", self.pause[1]  # its next boundary
            else:  # the pause's end counts as the period that ended
                self.status, self.renewal_failed, self.pause = "grace", True, None
            assert body["status"] == self.status, (body, self.status)

        @precondition(lambda self: self.status == "grace")
        @rule()
        def grace_end(self) -> None:
            steps["grace_end"] += 1
            assert self.end is not None
            body = self._jobs(self.end + timedelta(days=2, minutes=1))
            self.status, self.action = "expired", None
            assert body["status"] == "expired", body

        @precondition(
            lambda self: self.action is not None and self.status in ("active", "grace", "paused")
        )
        @rule()
        def confirm_pending_action(self) -> None:
            steps["confirm_pending_action"] += 1
            assert self.action is not None and self.subscription is not None
            path = self.action.removeprefix(BASE_URL)
            confirmed = wait(suite.gateway_http.post(f"{path}/confirm"))
            assert confirmed.status_code == 200, confirmed.text
            self._renewed()
            expected = self.end

            async def renewed() -> bool:
                assert self.subscription is not None
                body = await self.user.subscription(self.subscription)
                return body["status"] == "active" and (
                    datetime.fromisoformat(body["current_period_end"]) == expected
                )

            wait(support.eventually(renewed, timeout=40))
            self.action = self._waiting_action()
            assert self.action is None

        # -- the user's choices ------------------------------------------------------------
        @precondition(
            lambda self: self.status == "active" and not self.cancel_at_end and self.pause is None
        )
        @rule()
        def cancel(self) -> None:
            steps["cancel"] += 1
            response = wait(
                self.user.post(f"/api/v1/subscriptions/{self.subscription}/cancel", json={})
            )
            assert response.status_code == 200, response.text
            self.cancel_at_end = True

        @precondition(lambda self: self.status == "active" and self.cancel_at_end)
        @rule()
        def resume(self) -> None:
            steps["resume"] += 1
            response = wait(self.user.post(f"/api/v1/subscriptions/{self.subscription}/resume"))
            assert response.status_code == 200, response.text
            self.cancel_at_end = False

        @precondition(lambda self: self.status in ("active", "grace"))
        @rule()
        def refund_latest(self) -> None:
            steps["refund_latest"] += 1
            assert self.subscription is not None
            body = wait(self.user.subscription(self.subscription))
            payment = body["latest_payment"]["id"]
            quote = wait(self.user.get(f"/api/v1/payments/{payment}/refund-quote")).json()
            amount = quote["refundable_amount"]["amount"]
            response = wait(self.user.post(f"/api/v1/payments/{payment}/refund", json={}))
            if amount == 0:
                assert response.status_code in (409, 422), response.text
                return
            assert response.status_code in (200, 201), response.text
            wait(self.user.wait_for_subscription(self.subscription, "canceled"))
            self.status, self.refunded = "canceled", self.refunded + amount
            self.pause = None

        @precondition(
            lambda self: (
                self.status == "active"
                and not self.cancel_at_end
                and self.pause is None
                and not self.renewal_failed
                and self.pauses < MAX_PAUSES
            )
        )
        @rule(months=st.integers(1, 3))
        def ask_for_a_pause(self, months: int) -> None:
            steps["pause"] += 1
            assert self.end is not None
            response = wait(
                self.user.post(
                    f"/api/v1/subscriptions/{self.subscription}/pause", json={"months": months}
                )
            )
            assert response.status_code == 200, response.text
            self.pause, self.pauses = (self.end, add_months(self.end, months)), self.pauses + 1

        @precondition(lambda self: self.status == "active" and self.pause is not None)
        @rule()
        def take_back_pause(self) -> None:
            steps["take_back_pause"] += 1
            response = wait(self.user.post(f"/api/v1/subscriptions/{self.subscription}/resume"))
            assert response.status_code == 200, response.text
            self.pause, self.pauses = None, self.pauses - 1

        @precondition(
            lambda self: self.status == "paused" and self.card == GOOD and not self.renewal_failed
        )
        @rule()
        def resume_paused(self) -> None:
            steps["resume_paused"] += 1
            assert self.pause is not None
            at = self.pause[0] + timedelta(days=1)  # after the pause began, before its end
            response = self._freeze(
                at, self.user.post(f"/api/v1/subscriptions/{self.subscription}/resume")
            )
            assert response.status_code == 200, response.text
            self.end = at
            self._renewed()
            body = response.json()
            start = datetime.fromisoformat(body["current_period_start"])
            assert (body["status"], start) == ("active", at), body

        def _owes(self) -> bool:
            return self.status == "grace" or (
                self.status == "active" and self.renewal_failed and not self.cancel_at_end
            )

        @precondition(
            lambda self: (
                self.action is None
                and (
                    self._owes()
                    or (self.status in ("active", "paused") and not self.renewal_failed)
                )
            )
        )
        @rule()
        def update_card(self) -> None:
            assert self.end is not None and self.subscription is not None
            url = f"/api/v1/subscriptions/{self.subscription}/payment-method"
            if not self._owes():
                steps["update_card_setup"] += 1
                response = wait(self.user.post(url, json={"payment_method": "card"}))
                assert response.status_code == 201, response.text
                checkout = response.json()
                assert (checkout["purpose"], checkout["amount"]["amount"]) == ("card_update", 0)
                wait(suite.pay(checkout["checkout_url"], GOOD))
                payment = f"/api/v1/payments/{checkout['payment_id']}"

                async def saved() -> bool:
                    return bool((await self.user.get(payment)).json()["status"] == "succeeded")

                wait(support.eventually(saved, timeout=40))
                assert (
                    wait(self.user.subscription(self.subscription))["payment_method"]["last4"]
                    == "4242"
                )
                self.card = GOOD
                return
            steps["update_card_owing"] += 1
            # After the last job run: the declined try (window) or the period end (grace).
            at = self.end + (
                timedelta(hours=3) if self.status == "grace" else -timedelta(minutes=20)
            )

            async def pay() -> dict[str, Any]:
                response = await self.user.post(url, json={"payment_method": "card"})
                assert response.status_code == 201, response.text
                checkout = response.json()
                assert (checkout["purpose"], checkout["amount"]["amount"]) == ("renewal", PRICE)
                await suite.pay(checkout["checkout_url"], GOOD)
                assert self.subscription is not None

                async def renewed() -> bool:
                    assert self.subscription is not None
                    body = await self.user.subscription(self.subscription)
                    return bool(
                        body["status"] == "active" and body["current_period_end"] != old_end
                    )

                await support.eventually(renewed, timeout=40)
                return await self.user.subscription(self.subscription)

            old_end = wait(self.user.subscription(self.subscription))["current_period_end"]
            body = self._freeze(at, pay())
            self._renewed()
            self.card = GOOD
            assert datetime.fromisoformat(body["current_period_end"]) == self.end, body

        # -- what must always hold -----------------------------------------------------------
        @invariant()
        def billing_agrees(self) -> None:
            if self.subscription is None:
                return
            body = wait(self.user.subscription(self.subscription))
            assert body["status"] == self.status, (body, self.status)
            if self.status in ("active", "grace"):
                assert datetime.fromisoformat(body["current_period_end"]) == self.end
                assert body["cancel_at_period_end"] == self.cancel_at_end
            if self.status == "active":
                pause = self.pause and {
                    k: v.isoformat() for k, v in zip(PAUSE, self.pause, strict=True)
                }
                assert _pause_of(body) == pause, (body, self.pause)
            if self.status == "paused":
                window = _pause_of(body)
                assert self.pause is not None and window is not None, body
                assert window["resumes_at"] == self.pause[1].isoformat(), (body, self.pause)

        @invariant()
        def money_adds_up(self) -> None:
            items = wait(self.user.get("/api/v1/payments", params={"limit": 100})).json()["items"]
            paid = sum(p["amount"]["amount"] for p in items if p["status"] in PAID)
            refunded = sum(p["refunded"]["amount"] for p in items)
            assert paid == self.paid, (paid, self.paid)
            assert refunded == self.refunded <= paid

        @invariant()
        def access_follows_the_subscription(self) -> None:
            if self.subscription is None:
                return
            grants = wait(latest_grants(suite, self.user))
            if self.status in ("active", "grace"):
                assert len(grants) == 1, grants
                assert str(grants[0].source_id) == self.subscription
            else:  # expired, canceled, and no access while paused
                assert grants == [], grants

    return Lifecycle


PAUSE = ("starts_at", "resumes_at")


def _pause_of(body: dict[str, Any]) -> dict[str, str] | None:
    """The subscription's pause as ISO timestamps (normalised: the API may format them apart)."""
    window = body.get("pause")
    if window is None:
        return None
    return {k: datetime.fromisoformat(window[k]).isoformat() for k in PAUSE}


@pytest.mark.timeout(280)
async def test_the_subscription_lifecycle_follows_its_model(suite: Suite) -> None:
    steps: Counter[str] = Counter()
    machine = lifecycle_machine(suite, asyncio.get_running_loop(), steps)
    options = settings(
        max_examples=60,
        stateful_step_count=16,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,  # the same sequences every run: CI never flakes on coverage
    )
    await asyncio.to_thread(run_state_machine_as_test, machine, settings=options)
    print(f"lifecycle model steps: {dict(steps)}")
    # The sequences did reach every corner of the lifecycle, not only the first purchase.
    # Resuming during a pause (a good card, paused, no declined renewal) is not reached by these
    # sequences; tests/billing_api/test_pauses.py covers it. The sequences change whenever the
    # machine's rules change: check this set again then.
    assert {
        "subscribe",
        "renewal_window",
        "period_end",
        "grace_end",
        "cancel",
        "resume",
        "refund_latest",
        "subscribe_3ds",
        "confirm_pending_action",
        "pause",
        "pause_begins",
        "pause_end_window",
        "pause_end",
        "take_back_pause",
        "update_card_setup",
        "update_card_owing",
    } <= set(steps), steps
