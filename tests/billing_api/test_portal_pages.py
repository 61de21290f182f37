# ruff: noqa: RUF001 -- the Russian pages are Cyrillic
"""The portal's pages over HTTP: what they show, that each form changes what the API shows
(once, and only with its CSRF token), that refusals are pages with their status code, and the
language they speak."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from billing_api.config import BillingSettings
from billing_api.demo import movie_id
from shared import locales
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_lifecycle import subscribed
from tests.billing_api.test_portal_sessions import browser, path_of, portal_link, signed_in
from tests.billing_api.test_refunds import paid_subscription, topped_up

FORM = re.compile(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def forms_on(page: str) -> dict[str, dict[str, str]]:
    """Every form of a page by its action, with its hidden fields (the last of an action wins)."""
    found = {}
    for action, body in FORM.findall(page):
        found[html.unescape(action)] = {name: html.unescape(v) for name, v in HIDDEN.findall(body)}
    return found


async def send(
    client: httpx.AsyncClient, page_path: str, action: str, **extra: str
) -> httpx.Response:
    """Open ``page_path`` and send its form ``action`` as a browser would."""
    page = await client.get(page_path)
    assert page.status_code == 200, page.text
    fields = forms_on(page.text)[action]
    return await client.post(action, data={**fields, **extra})


async def subscription_of(user: User, subscription: dict[str, Any]) -> dict[str, Any]:
    return await user.subscription(subscription["id"])


class TestSubscriptionsPage:
    async def test_it_shows_the_plan_next_charge_and_card_in_russian(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        settings: BillingSettings = suite.billing.state.settings
        end = datetime.fromisoformat(subscription["current_period_end"])
        charge_day = end - timedelta(minutes=settings.renewal_lead_minutes)
        async with signed_in(suite, user) as client:
            page = (await client.get("/portal")).text
        assert "Basic" in page
        assert "активна" in page
        assert f"299,00\xa0₽, {locales.format_day(charge_day, 'ru')}" in page
        assert "VISA •••• 4242" in page

    async def test_cancel_at_period_end_then_resume_show_in_the_api(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        path = f"/portal/subscriptions/{subscription['id']}"
        async with signed_in(suite, user, "en") as client:
            page = await client.get("/portal")
            cancel_form = forms_on(page.text)[f"{path}/cancel"]
            canceled = await client.post(f"{path}/cancel", data=cancel_form)
            assert canceled.status_code == 303
            assert canceled.headers["location"] == "/portal?done=canceled"
            assert (await subscription_of(user, subscription))["cancel_at_period_end"] is True
            shown = html.unescape((await client.get(canceled.headers["location"])).text)
            assert "Won't renew: the subscription ends on" in shown
            assert "won't renew and ends at the end of the paid period" in shown

            resumed = await send(client, "/portal", f"{path}/resume")
            assert resumed.status_code == 303
            assert (await subscription_of(user, subscription))["cancel_at_period_end"] is False

            # The first cancel form sent again (the back button) does not cancel a second time.
            again = await client.post(f"{path}/cancel", data=cancel_form)
            assert again.status_code == 303
            assert (await subscription_of(user, subscription))["cancel_at_period_end"] is False

    async def test_a_pause_asked_in_the_portal_is_the_apis_pause(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        path = f"/portal/subscriptions/{subscription['id']}"
        async with signed_in(suite, user) as client:
            paused = await send(client, "/portal", f"{path}/pause", months="2")
        assert paused.status_code == 303
        pause = (await subscription_of(user, subscription))["pause"]
        assert pause is not None
        assert pause["starts_at"] == subscription["current_period_end"]

    async def test_an_upgrade_shows_the_prorated_price_it_then_charges(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        premium = await suite.plan("premium")
        path = f"/portal/subscriptions/{subscription['id']}"
        async with signed_in(suite, user, "en") as client:
            page = (await client.get(f"{path}/plans")).text
            section = page[page.index('id="plan-premium"') :]
            shown = re.search(r"Now: pay (\S+)", html.unescape(section))
            assert shown is not None, page
            chosen = forms_on(section.split("</section>")[0])[f"{path}/change-plan"]
            assert chosen["plan_id"] == premium["id"]
            answer = await client.post(f"{path}/change-plan", data=chosen)
        assert answer.status_code == 303
        assert "/sandbox/checkout/" in answer.headers["location"]
        assert answer.headers["location"].endswith("locale=en"), "the page's language"
        payments = (await user.get("/api/v1/payments")).json()["items"]
        upgrade = next(p for p in payments if p["purpose"] == "upgrade")
        charged = locales.format_money(upgrade["amount"]["amount"], "RUB", "en")
        assert shown.group(1) == charged.replace("\xa0", " ") or shown.group(1) == charged
        assert upgrade["amount"]["amount"] < 59900, "less the unused part of this month"

    async def test_update_card_sends_the_browser_to_a_checkout(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        path = f"/portal/subscriptions/{subscription['id']}"
        async with signed_in(suite, user) as client:
            answer = await send(client, "/portal", f"{path}/card")
        assert answer.status_code == 303
        assert "/sandbox/checkout/" in answer.headers["location"]
        payments = (await user.get("/api/v1/payments")).json()["items"]
        assert [p["purpose"] for p in payments].count("card_update") == 1


class TestForms:
    async def test_a_form_without_its_csrf_token_changes_nothing(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        action = f"/portal/subscriptions/{subscription['id']}/cancel"
        async with signed_in(suite, user, "en") as client:
            fields = forms_on((await client.get("/portal")).text)[action]
            without = {k: v for k, v in fields.items() if k != "csrf_token"}
            refused = await client.post(action, data=without)
            assert refused.status_code == 403
            assert "This form has expired" in refused.text
            async with signed_in(suite, user) as other:  # another session's token
                theirs = forms_on((await other.get("/portal")).text)[action]["csrf_token"]
            wrong = await client.post(action, data={**fields, "csrf_token": theirs})
            assert wrong.status_code == 403
            keyless = {k: v for k, v in fields.items() if k != "form_key"}
            assert (await client.post(action, data=keyless)).status_code == 422
        assert (await subscription_of(user, subscription))["cancel_at_period_end"] is False

    async def test_a_refusal_is_a_page_with_its_status_code(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        action = f"/portal/subscriptions/{subscription['id']}/resume"
        async with signed_in(suite, user, "en") as client:
            page = (await client.get("/portal")).text
            fields = forms_on(page)[f"/portal/subscriptions/{subscription['id']}/cancel"]
            # Resume of a subscription that is not ending: the service refuses with a 409.
            refused = await client.post(action, data={**fields})
            assert refused.status_code == 409, refused.text
            assert "That did not work" in refused.text
            assert "Code 409" in refused.text
            someone_else = suite.as_user()
            theirs = await subscribed(suite, someone_else, plan="basic")
            missing = await client.post(
                f"/portal/subscriptions/{theirs['id']}/cancel",
                data={**fields, "form_key": "k" * 20},
            )
            assert missing.status_code == 404
        assert (await subscription_of(someone_else, theirs))["cancel_at_period_end"] is False

    async def test_a_top_up_form_sent_twice_opens_one_checkout(self, suite: Suite) -> None:
        user = suite.as_user()
        async with signed_in(suite, user) as client:
            page = (await client.get("/portal/wallet")).text
            fields = forms_on(page)["/portal/wallet/top-ups"]
            first = await client.post("/portal/wallet/top-ups", data={**fields, "amount": "500"})
            second = await client.post("/portal/wallet/top-ups", data={**fields, "amount": "500"})
            bad = await send(client, "/portal/wallet", "/portal/wallet/top-ups", amount="5,001")
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
        assert "/sandbox/checkout/" in first.headers["location"]
        assert bad.status_code == 422
        payments = (await user.get("/api/v1/payments")).json()["items"]
        assert [(p["purpose"], p["amount"]["amount"]) for p in payments] == [("top_up", 50000)]


class TestPaymentsPage:
    async def test_a_refund_inside_the_window_shows_its_quote_then_refunds_once(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user, "basic")
        async with signed_in(suite, user, "en") as client:
            listed = (await client.get("/portal/payments")).text
            assert f'href="/portal/payments/{payment["id"]}/refund"' in listed
            assert f'href="/portal/payments/{payment["id"]}/receipt"' in listed
            quote_page = await client.get(f"/portal/payments/{payment['id']}/refund")
            assert "You get back RUB299.00." in html.unescape(quote_page.text)
            fields = forms_on(quote_page.text)[f"/portal/payments/{payment['id']}/refund"]
            done = await client.post(f"/portal/payments/{payment['id']}/refund", data=fields)
            assert done.status_code == 303
            again = await client.post(f"/portal/payments/{payment['id']}/refund", data=fields)
            assert again.status_code == 303
            after = (await client.get(done.headers["location"])).text
        assert "Refund requested" in after
        refreshed = (await user.get(f"/api/v1/payments/{payment['id']}")).json()
        assert refreshed["refunded"]["amount"] == 29900
        assert await suite.scalar("SELECT count(*) FROM billing.refund") == 1

    async def test_another_users_refund_quote_is_not_found(self, suite: Suite) -> None:
        _, theirs = await paid_subscription(suite, suite.as_user(), "basic")
        async with signed_in(suite, suite.as_user()) as client:
            response = await client.get(f"/portal/payments/{theirs['id']}/refund")
        assert response.status_code == 404
        assert "Не найдено" in response.text


class TestWalletAndPurchases:
    async def test_the_wallet_shows_its_balance_and_statement(self, suite: Suite) -> None:
        user = suite.as_user()
        await topped_up(suite, user, 152745)
        async with signed_in(suite, user) as client:
            page = (await client.get("/portal/wallet")).text
        assert "1\xa0527,45\xa0₽" in page
        assert page.count('class="statement-line"') == 1

    async def test_a_rental_shows_when_it_ends(self, suite: Suite) -> None:
        user = suite.as_user()
        await topped_up(suite, user, 50000)
        rented = await user.post(
            "/api/v1/purchases",
            json={
                "movie_id": str(movie_id("Paper Moons")),
                "kind": "rent",
                "payment_method": "wallet",
            },
        )
        assert rented.status_code == 201, rented.text
        until = datetime.fromisoformat(rented.json()["valid_until"])
        async with signed_in(suite, user, "en") as client:
            page = html.unescape((await client.get("/portal/purchases")).text)
        assert "Paper Moons" in page
        assert f"Until {locales.format_moment(until, 'en', UTC)}" in page


class TestLanguage:
    async def test_the_session_locale_wins_then_the_browser_then_russian(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        async with signed_in(suite, user, "en-US,en;q=0.9", locale="ru") as client:
            assert "Подписки" in (await client.get("/portal")).text
        async with signed_in(suite, user, "de-DE,en;q=0.8") as client:
            assert "Subscriptions" in (await client.get("/portal")).text
        async with signed_in(suite, user) as client:
            assert "Подписки" in (await client.get("/portal")).text

    async def test_a_page_link_without_a_session_speaks_the_browsers_language(
        self, suite: Suite
    ) -> None:
        link = await portal_link(suite.as_user())
        async with browser(suite, "ru") as client:
            await client.get(path_of(link["url"]))
            again = await client.get(path_of(link["url"]))
        assert "Ссылка уже использована" in again.text


class TestReceipts:
    async def test_a_payment_and_its_refund_have_receipts_as_pages_and_pdfs(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user, "basic")
        number = await suite.scalar(
            "SELECT number FROM billing.receipt WHERE payment_id = :id", id=payment["id"]
        )
        async with signed_in(suite, user, "en") as client:
            page = await client.get(f"/portal/payments/{payment['id']}/receipt")
            assert page.status_code == 200
            assert number in page.text
            pdf = await client.get(f"/portal/payments/{payment['id']}/receipt?format=pdf")
            assert pdf.headers["content-type"] == "application/pdf"
            assert pdf.headers["content-disposition"].startswith("attachment")
            assert pdf.content.startswith(b"%PDF")

            await send(
                client,
                f"/portal/payments/{payment['id']}/refund",
                f"/portal/payments/{payment['id']}/refund",
            )

            async def refunded() -> bool:
                answer = await user.get(f"/api/v1/payments/{payment['id']}")
                return bool(answer.json()["status"] == "refunded")

            await support.eventually(refunded, timeout=15)
            listed = (await client.get("/portal/payments")).text
            [refund_id] = re.findall(r'href="/portal/refunds/([^/"]+)/receipt"', listed)
            receipt = await client.get(f"/portal/refunds/{refund_id}/receipt")
        assert receipt.status_code == 200
        refund_number = await suite.scalar(
            "SELECT number FROM billing.receipt WHERE refund_id = :id", id=refund_id
        )
        assert refund_number in receipt.text

    async def test_another_users_receipt_is_not_found(self, suite: Suite) -> None:
        _, theirs = await paid_subscription(suite, suite.as_user(), "basic")
        async with signed_in(suite, suite.as_user(), "en") as client:
            for suffix in ("", "?format=pdf"):
                response = await client.get(f"/portal/payments/{theirs['id']}/receipt{suffix}")
                assert response.status_code == 404
                assert response.headers["content-type"].startswith("text/html")
                assert "Not found" in response.text
            unknown = await client.get(f"/portal/refunds/{theirs['id']}/receipt")
            assert unknown.status_code == 404
