"""The portal in headless Chromium: a subscriber opens a link from the app, sees the
subscription and its next charge, cancels at the period end and resumes, downloads a receipt
and asks for a refund inside the window; every page is photographed in Russian and English,
at a desktop's and a phone's width (``test-artifacts/portal/``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from billing_api.demo import movie_id
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_admin_ui import _shared_lifespan
from tests.billing_api.test_lifecycle import subscribed
from tests.billing_api.test_portal_sessions import PUBLIC, portal_link
from tests.billing_api.test_refunds import topped_up

SHOTS = support.ARTIFACTS / "portal"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


async def link_for(user: User, base: str, locale: str) -> str:
    link = await portal_link(user, locale=locale, return_url="https://cinema.example/account")
    return str(link["url"]).replace(PUBLIC, base)


async def shoot(page: Any, name: str, locale: str, width: str) -> None:
    await page.set_viewport_size(dict(zip(("width", "height"), WIDTHS[width], strict=True)))
    await page.screenshot(path=str(SHOTS / f"{locale}-{width}-{name}.png"), full_page=True)


async def api_subscription(user: User, subscription: dict[str, Any]) -> dict[str, Any]:
    return await user.subscription(subscription["id"])


async def test_a_subscriber_manages_billing_in_the_portal(suite: Suite) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    user = suite.as_user(email="portal.viewer@example.com")
    subscription = await subscribed(suite, user, plan="basic")
    await topped_up(suite, user, 50000)
    rented = await user.post(
        "/api/v1/purchases",
        json={"movie_id": str(movie_id("Paper Moons")), "kind": "rent", "payment_method": "wallet"},
    )
    assert rented.status_code == 201, rented.text
    payment_id = subscription["latest_payment"]["id"]

    async with (
        support.served(_shared_lifespan(suite), support.free_port()) as base,
        support.browser_page() as page,
    ):
        await page.set_viewport_size({"width": 1280, "height": 900})
        first_link = await link_for(user, base, "en")
        await page.goto(first_link)
        assert page.url == f"{base}/portal"
        card = page.locator(f"#subscription-{subscription['id']}")
        assert "Basic" in await card.inner_text()
        assert re.search(
            r"RUB299\.00 on \w+ \d+, \d{4}", await card.locator(".next-charge").inner_text()
        )
        assert "VISA •••• 4242" in await card.locator(".card-on-file").inner_text()
        await shoot(page, "1-subscriptions", "en", "desktop")

        await card.get_by_role("button", name="Cancel at period end").click()
        await page.wait_for_url(f"{base}/portal?done=canceled")
        assert "Won't renew" in await card.locator(".next-charge").inner_text()
        assert (await api_subscription(user, subscription))["cancel_at_period_end"] is True
        await shoot(page, "2-canceled", "en", "desktop")

        await card.get_by_role("button", name="Resume").click()
        await page.wait_for_url(f"{base}/portal?done=resumed")
        assert "RUB299.00 on" in await card.locator(".next-charge").inner_text()
        assert (await api_subscription(user, subscription))["cancel_at_period_end"] is False

        await page.click("nav >> text=Payments")
        await page.wait_for_url(f"{base}/portal/payments")
        row = page.locator(f"#payment-{payment_id}")
        async with page.expect_download() as download_info:
            await row.locator("a.receipt-pdf").click()
        download = await download_info.value
        saved = SHOTS / "receipt.pdf"
        await download.save_as(str(saved))
        assert Path(saved).read_bytes().startswith(b"%PDF")

        await row.locator("a.refund-link").click()
        await page.wait_for_url(f"{base}/portal/payments/{payment_id}/refund")
        assert await page.inner_text(".refund-quote") == "You get back RUB299.00."
        await shoot(page, "5-refund-quote", "en", "desktop")
        await page.get_by_role("button", name="Confirm refund").click()
        await page.wait_for_url(f"{base}/portal/payments?done=refunded")
        assert "Refund requested" in await page.inner_text("#notice")
        refunded = (await user.get(f"/api/v1/payments/{payment_id}")).json()
        assert refunded["refunded"]["amount"] == 29900

        # Every page, in both languages and at both widths.
        links = {"en": first_link, "ru": await link_for(user, base, "ru")}
        for locale, heading in (("en", "Subscriptions"), ("ru", "Подписки")):
            if locale == "ru":
                await page.context.clear_cookies()
                await page.goto(links["ru"])
            for width in WIDTHS:
                for name, path in (
                    ("1-subscriptions", "/portal"),
                    ("3-plans", f"/portal/subscriptions/{subscription['id']}/plans"),
                    ("4-payments", "/portal/payments"),
                    ("6-receipt", f"/portal/payments/{payment_id}/receipt"),
                    ("7-purchases", "/portal/purchases"),
                    ("8-wallet", "/portal/wallet"),
                ):
                    response = await page.goto(f"{base}{path}")
                    assert response is not None, path
                    assert response.status == 200, (locale, path, response.status)
                    await shoot(page, name, locale, width)
                assert heading in await page.inner_text("nav")
            response = await page.goto(links[locale])  # opened already
            assert response is not None and response.status == 410
            await shoot(page, "9-link-used", locale, "phone")

    assert len(list(SHOTS.glob("*.png"))) == 2 + 2 * (2 * 6 + 1)
