"""Staff roles in a real browser (headless Debian Chromium): a ``support`` member logs in with
their email and password, reads the dashboard, finds a customer by email and refunds a payment
from the customer's page, and sees their name on the audit row; a ``viewer`` finds the same page
without any refund button."""

from __future__ import annotations

import re

from billing_api.admin.staff import service as staff
from tests import support
from tests.billing_api.conftest import Suite
from tests.billing_api.test_admin_ui import _shared_lifespan

PASSWORD = "a long support password"


async def test_support_refunds_from_the_customer_page_and_a_viewer_cannot(suite: Suite) -> None:
    shots = support.ARTIFACTS / "admin"
    shots.mkdir(parents=True, exist_ok=True)
    async with suite.billing.state.session_factory() as session, session.begin():
        await staff.create_user(
            session, email="sofia@example.com", role="support", password=PASSWORD
        )
        await staff.create_user(session, email="vera@example.com", role="viewer", password=PASSWORD)
    pass30 = await suite.plan("pass-30")
    customer = suite.as_user(email="refund.me@example.com")
    created = (await customer.post("/api/v1/subscriptions", json={"plan_id": pass30["id"]})).json()
    await suite.pay(created["latest_payment"]["checkout_url"])
    await customer.wait_for_subscription(created["id"], "active")
    payment_id = created["latest_payment"]["id"]

    async with (
        support.served(_shared_lifespan(suite), support.free_port()) as base,
        support.browser_page() as page,
    ):
        await page.goto(f"{base}/admin/")
        assert page.url.endswith("/admin/login")
        await page.fill("input[name=username]", "sofia@example.com")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/admin/")
        assert re.fullmatch(r"\s*699\.00 RUB\s*", await page.inner_text("#captured"))
        assert await page.locator("svg").count() >= 2  # the revenue and subscriber charts
        await page.screenshot(path=str(shots / "01_support_dashboard.png"), full_page=True)

        await page.goto(f"{base}/admin/customer/list")
        await page.fill("#search-input", "refund.me@")
        await page.click("#search-button")
        await page.wait_for_url(re.compile(r".*search=refund\.me.*"))
        await page.screenshot(path=str(shots / "02_customer_found.png"), full_page=True)
        await page.click("text=refund.me@example.com")
        await page.wait_for_url(re.compile(rf".*/admin/customer/page/{customer.id}$"))
        assert await page.inner_text("#customer-email") == "refund.me@example.com"
        row = page.locator(f'tr[data-payment="{payment_id}"]')
        assert "699.00 RUB" in await row.inner_text()
        await page.screenshot(path=str(shots / "03_customer_page.png"), full_page=True)

        await row.locator("input[name=amount]").fill("250.00")
        await row.locator("input[name=reason]").fill("sound was missing for an hour")
        await row.locator("button[type=submit]").click()
        await page.wait_for_url(re.compile(rf".*/admin/customer/page/{customer.id}$"))
        assert await page.inner_text("#flash") == "Refund of 250.00 RUB made."
        audit = await page.inner_text("#audit")
        assert "sofia@example.com" in audit
        assert "refund.override_window" in audit
        assert "sound was missing for an hour" in audit
        assert "250.00" in await page.locator(f'tr[data-payment="{payment_id}"]').inner_text()
        await page.screenshot(path=str(shots / "04_refunded.png"), full_page=True)

        await page.goto(f"{base}/admin/logout")
        await page.goto(f"{base}/admin/login")
        await page.fill("input[name=username]", "vera@example.com")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/admin/")
        await page.goto(f"{base}/admin/customer/page/{customer.id}")
        assert await page.inner_text("#customer-email") == "refund.me@example.com"
        assert await page.locator("form.refund-form").count() == 0
        assert await page.locator("button", has_text="Refund").count() == 0
        assert await page.locator("#grant-form").count() == 0
        await page.screenshot(path=str(shots / "05_viewer_customer_page.png"), full_page=True)

    assert await suite.scalar("SELECT sum(amount) FROM billing.refund") == 25000
    assert (
        await suite.scalar(
            "SELECT actor FROM billing.admin_audit WHERE action = 'refund.override_window'"
        )
        == "sofia@example.com"
    )
