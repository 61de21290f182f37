"""What a renewal charges: today's price with the user's discounts, nothing for a free plan, and
never a plan that grants nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_admin_api import admin, new_plan, ok, plan_events
from tests.billing_api.test_lifecycle import end_of, off_session_charges, run_jobs, subscribed
from tests.billing_api.test_plan_change import change


async def create_plan(suite: Suite, code: str, amount: int) -> dict[str, Any]:
    body = new_plan(code, price={"amount": amount, "currency": "RUB"}, all_movies=True)
    plan: dict[str, Any] = await ok(
        await admin(suite, "POST", "/api/v1/admin/plans", json=body), 201
    )
    return plan


async def renewal_payments(user: User) -> list[dict[str, Any]]:
    items = (await user.get("/api/v1/payments", params={"limit": 100})).json()["items"]
    return [p for p in items if p["purpose"] == "renewal"]


async def give_personal_discount(suite: Suite, user: User, percent: int) -> None:
    await ok(
        await admin(
            suite,
            "PUT",
            f"/api/v1/admin/personal-discounts/{user.id}",
            json={"percent": percent, "reason": "loyal customer"},
        )
    )


async def quoted_total(user: User, plan_id: str, months: int) -> dict[str, Any]:
    answer = await user.get("/api/v1/quote", params={"plan_id": plan_id, "months": months})
    quote: dict[str, Any] = await ok(answer)
    return quote


class TestRenewalPrice:
    async def test_a_renewal_takes_the_personal_discount_given_after_the_purchase(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        basic = await suite.plan("basic")
        subscription = await subscribed(suite, user, plan="basic")
        await give_personal_discount(suite, user, 20)

        await run_jobs(suite, end_of(subscription) - timedelta(minutes=30))

        [renewal] = await renewal_payments(user)
        assert renewal["status"] == "succeeded"
        assert renewal["amount"] == {"amount": 23920, "currency": "RUB"}, "29,900 less 20 %"
        assert renewal["base_amount"] == {"amount": 29900, "currency": "RUB"}
        assert renewal["discount"] == {"amount": 5980, "currency": "RUB"}
        today = await quoted_total(user, basic["id"], 1)
        assert renewal["amount"] == today["total"], "the same as buying the month today"

    async def test_a_three_month_renewal_takes_the_months_tier_and_personal_but_not_the_promo(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        basic = await suite.plan("basic")
        subscription = await subscribed(suite, user, plan="basic", months=3, promo_code="WELCOME15")
        first = (await user.get(f"/api/v1/payments/{subscription['latest_payment']['id']}")).json()
        assert first["discount"]["amount"] == 89700 * 15 // 100, "the promo paid the first one"
        await give_personal_discount(suite, user, 20)

        await run_jobs(suite, end_of(subscription) - timedelta(minutes=30))

        [renewal] = await renewal_payments(user)
        base = 29900 * 3
        discount = (base * 25 + 50) // 100  # months tier 5 % + personal 20 %, half up
        assert renewal["status"] == "succeeded"
        assert renewal["base_amount"]["amount"] == base
        assert renewal["discount"]["amount"] == discount
        assert renewal["amount"]["amount"] == base - discount
        today = await quoted_total(user, basic["id"], 3)
        assert renewal["amount"] == today["total"]


class TestFreeRenewal:
    async def test_a_downgrade_to_a_free_plan_renews_without_a_charge_and_stays_active(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        free = await create_plan(suite, "free", 0)
        subscription = await subscribed(suite, user, plan="basic")
        assert (await change(user, subscription["id"], free["id"])).json()["change"] == "downgrade"
        end = end_of(subscription)

        await run_jobs(suite, end - timedelta(minutes=30))
        renewed = await user.subscription(subscription["id"])
        assert renewed["plan_id"] == free["id"]
        assert renewed["status"] == "active"
        [renewal] = await renewal_payments(user)
        assert renewal["status"] == "succeeded"
        assert renewal["amount"] == {"amount": 0, "currency": "RUB"}
        assert renewal["method"] == "free"
        assert await off_session_charges(suite) == 0, "nothing was asked of the card"

        await run_jobs(suite, end + timedelta(days=3))
        after = await user.subscription(subscription["id"])
        assert after["status"] == "active", "no grace, no expiry: the free period was renewed"
        assert len(await renewal_payments(user)) == 1

    async def test_a_free_plan_checked_out_without_a_card_renews(self, suite: Suite) -> None:
        user = suite.as_user()
        free = await create_plan(suite, "free", 0)
        created = await user.post("/api/v1/subscriptions", json={"plan_id": free["id"]})
        subscription = await user.wait_for_subscription(created.json()["id"], "active")
        end = end_of(subscription)

        await run_jobs(suite, end - timedelta(minutes=30))
        await run_jobs(suite, end + timedelta(days=3))

        after = await user.subscription(subscription["id"])
        assert after["status"] == "active"
        assert end_of(after) > end
        [renewal] = await renewal_payments(user)
        assert renewal["status"] == "succeeded"
        assert renewal["amount"]["amount"] == 0


class TestArchivedPlan:
    async def test_archiving_a_plan_a_downgrade_waits_for_keeps_it_granting_and_renewing_onto_it(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        lite = await create_plan(suite, "lite", 19900)
        subscription = await subscribed(suite, user, plan="basic")
        await change(user, subscription["id"], lite["id"])

        await ok(await admin(suite, "POST", f"/api/v1/admin/plans/{lite['id']}/archive"))
        assert (await plan_events(suite, lite["id"]))[-1]["active"] is True, (
            "a plan someone will be on keeps granting"
        )

        await run_jobs(suite, end_of(subscription) - timedelta(minutes=30))
        renewed = await user.subscription(subscription["id"])
        assert renewed["plan_id"] == lite["id"]
        assert renewed["status"] == "active"
        [renewal] = await renewal_payments(user)
        assert renewal["amount"]["amount"] == 19900
        assert (await plan_events(suite, lite["id"]))[-1]["active"] is True

    async def test_a_renewal_onto_a_plan_published_as_granting_nothing_publishes_it_granting(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        lite = await create_plan(suite, "lite", 19900)
        subscription = await subscribed(suite, user, plan="basic")
        # The archive commits first, with nobody on the plan; a downgrade that was checked
        # against the plan while it was still on sale commits after it.
        await ok(await admin(suite, "POST", f"/api/v1/admin/plans/{lite['id']}/archive"))
        assert (await plan_events(suite, lite["id"]))[-1]["active"] is False
        await suite.execute(
            "UPDATE billing.subscription SET pending_plan_id = :plan WHERE id = :id",
            plan=lite["id"],
            id=subscription["id"],
        )

        await run_jobs(suite, end_of(subscription) - timedelta(minutes=30))

        [renewal] = await renewal_payments(user)
        assert renewal["status"] == "succeeded"
        published = (await plan_events(suite, lite["id"]))[-1]
        assert published["active"] is True, "what the renewal charged for grants access"
        assert published["version"] > 2
