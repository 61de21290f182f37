"""The subscription lifecycle against a reference model: random sequences of paying (with a
card that works or one whose later charges fail), renewals and time passing (the renewal window,
the period end, the end of grace), cancel, resume and refunds. After every step billing, the
entitlements it publishes and the money agree with the model.

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
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_lifecycle import latest_grants, run_jobs, subscribed

T = TypeVar("T")
GOOD, FAILS_LATER = "4242424242424242", "4000000000000341"
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

        # -- paying ------------------------------------------------------------------------
        @precondition(lambda self: self.status in ("none", "expired", "canceled"))
        @rule(card=st.sampled_from([GOOD, FAILS_LATER]))
        def subscribe(self, card: str) -> None:
            steps["subscribe"] += 1
            body = wait(subscribed(suite, self.user, card, plan="basic"))
            self.subscription, self.card = body["id"], card
            self.status, self.end = "active", datetime.fromisoformat(body["current_period_end"])
            self.cancel_at_end = self.renewal_failed = False
            self.paid += PRICE

        # -- time passing ------------------------------------------------------------------
        def _jobs(self, at: datetime) -> dict[str, Any]:
            wait(run_jobs(suite, at))
            assert self.subscription is not None
            return wait(self.user.subscription(self.subscription))

        def _renews(self) -> bool:
            return not self.cancel_at_end and self.card == GOOD

        @precondition(lambda self: self.status == "active")
        @rule()
        def renewal_window(self) -> None:
            steps["renewal_window"] += 1
            assert self.end is not None
            body = self._jobs(self.end - timedelta(minutes=30))
            if self._renews():
                self.end, self.paid = add_months(self.end, 1), self.paid + PRICE
            elif not self.cancel_at_end:
                self.renewal_failed = True
            assert body["status"] == "active"

        @precondition(lambda self: self.status == "active")
        @rule()
        def period_end(self) -> None:
            steps["period_end"] += 1
            assert self.end is not None
            body = self._jobs(self.end + timedelta(minutes=1))
            if self._renews():
                self.end, self.paid = add_months(self.end, 1), self.paid + PRICE
            elif self.cancel_at_end:
                self.status = "expired"
            else:
                self.status, self.renewal_failed = "grace", True
            assert body["status"] == self.status, (body, self.status)

        @precondition(lambda self: self.status == "grace")
        @rule()
        def grace_end(self) -> None:
            steps["grace_end"] += 1
            assert self.end is not None
            body = self._jobs(self.end + timedelta(days=2, minutes=1))
            self.status = "expired"
            assert body["status"] == "expired", body

        # -- the user's choices ------------------------------------------------------------
        @precondition(lambda self: self.status == "active" and not self.cancel_at_end)
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
            else:
                assert grants == [], grants

    return Lifecycle


@pytest.mark.timeout(280)
async def test_the_subscription_lifecycle_follows_its_model(suite: Suite) -> None:
    steps: Counter[str] = Counter()
    machine = lifecycle_machine(suite, asyncio.get_running_loop(), steps)
    options = settings(
        max_examples=25,
        stateful_step_count=10,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,  # the same sequences every run: CI never flakes on coverage
    )
    await asyncio.to_thread(run_state_machine_as_test, machine, settings=options)
    # The sequences did reach every corner of the lifecycle, not only the first purchase.
    assert set(steps) == {
        "subscribe",
        "renewal_window",
        "period_end",
        "grace_end",
        "cancel",
        "resume",
        "refund_latest",
    }, steps
    print(f"lifecycle model steps: {dict(steps)}")
