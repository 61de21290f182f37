"""Receipts of payments and refunds: who gets one, what it says, as HTML, PDF and signed link."""

from __future__ import annotations

import html
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from pypdf import PdfReader

from billing_api import demo
from billing_api.config import BillingSettings
from shared import clock
from shared.locales import format_money
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_admin_api import admin_headers
from tests.billing_api.test_admin_ui import admin_token, login
from tests.billing_api.test_lifecycle import end_of, run_jobs, subscribed
from tests.billing_api.test_receipt_numbers import pay_top_up
from tests.billing_api.test_refunds import paid_subscription
from tests.billing_api.test_wallet_renewals import PREMIUM, card_subscriber, renewal_payments

BASIC_PRICE = 29900
SELLER_RU = "ООО «Онлайн-кинотеатр»"  # noqa: RUF001


def number(sequence: int) -> str:
    return f"{datetime.now(UTC).year}-{sequence:06d}"


def plain(text: str) -> str:
    """Text with its no-break spaces as spaces (a PDF's text may keep either)."""
    return " ".join(text.replace("\u00a0", " ").replace("\u202f", " ").split())


def shown(page: str) -> str:
    """What a person reads on an HTML page: its text without the markup, terms and values
    joined by ": " as they appear side by side."""
    without_style = re.sub(r"<style.*?</style>", "", page, flags=re.S)
    joined = re.sub(r"</dt>\s*<dd>", ": ", without_style)
    return plain(html.unescape(re.sub(r"<[^>]+>", " ", joined)))


def pdf_text(body: bytes) -> str:
    return plain("\n".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages))


def configure(suite: Suite, **changes: Any) -> BillingSettings:
    settings: BillingSettings = suite.billing.state.settings.model_copy(update=changes)
    suite.billing.state.settings = settings
    return settings


async def receipt_page(
    user: User, kind: str, money_id: str, *, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    return await user.suite.http.get(
        f"/api/v1/{kind}/{money_id}/receipt", headers={**user.headers, **(headers or {})}, **kwargs
    )


class TestWhoGetsAReceipt:
    async def test_a_checkout_payment_gets_a_receipt_with_its_card(self, suite: Suite) -> None:
        user = suite.as_user(email="anna@example.com")
        _, payment = await paid_subscription(suite, user)
        page = await receipt_page(user, "payments", payment["id"])
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        text = shown(page.text)
        assert f"Чек {number(1)}" in text
        assert f"Итого: {plain(format_money(BASIC_PRICE, 'RUB', 'ru'))}" in text
        assert "4242" in text
        assert "1 месяц" in text  # a subscription counts its months
        assert "anna@example.com" in text
        assert "Online Cinema LLC" in text  # the seller, from the settings
        assert "НДС" not in text  # no VAT configured
        [activated] = await suite.events("subscription.activated")
        settings: BillingSettings = suite.billing.state.settings
        assert activated.data.receipt_url is not None
        linked = await suite.http.get(activated.data.receipt_url.removeprefix(settings.public_url))
        assert number(1) in linked.text

    async def test_a_top_up_and_a_wallet_purchase_each_get_one(self, suite: Suite) -> None:
        user = suite.as_user()
        top_up = await pay_top_up(suite, user, 50000)
        response = await user.post(
            "/api/v1/purchases",
            json={
                "movie_id": str(demo.movie_id("Paper Moons")),
                "kind": "rent",
                "payment_method": "wallet",
            },
        )
        assert response.status_code == 201, response.text
        purchase_payment = response.json()["latest_payment"]["id"]
        top_up_page = await receipt_page(user, "payments", top_up["id"])
        purchase_page = await receipt_page(user, "payments", purchase_payment)
        assert number(1) in top_up_page.text
        assert number(2) in purchase_page.text
        assert "Кошелёк" in purchase_page.text  # paid from the wallet
        assert "месяц" not in purchase_page.text  # a movie is one item, not a month

    async def test_a_renewal_settled_by_the_renewal_job_gets_one(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        ran = await run_jobs(suite, end_of(subscription) - timedelta(minutes=30))
        assert ran["renew_due_subscriptions"] == 1
        renewal_id = await suite.scalar(
            "SELECT id FROM payment WHERE purpose = 'renewal' AND status = 'succeeded'"
        )
        page = await receipt_page(user, "payments", str(renewal_id))
        assert page.status_code == 200, page.text
        assert number(2) in page.text

    async def test_a_renewal_paid_from_the_wallet_by_the_job_gets_one_and_its_link(
        self, suite: Suite
    ) -> None:
        user, subscription = await card_subscriber(suite, PREMIUM)  # receipts 1 and 2
        ran = await run_jobs(suite, end_of(subscription) - timedelta(minutes=30))
        assert ran["renew_due_subscriptions"] == 1
        [renewal] = await renewal_payments(user)
        assert renewal["method"] == "wallet"
        page = await receipt_page(user, "payments", renewal["id"])
        assert page.status_code == 200, page.text
        assert number(3) in page.text
        [renewed] = await suite.events("subscription.renewed")
        settings: BillingSettings = suite.billing.state.settings
        assert renewed.data.receipt_url is not None
        linked = await suite.http.get(renewed.data.receipt_url.removeprefix(settings.public_url))
        assert number(3) in linked.text

    async def test_a_refund_gets_one_that_refers_to_its_payments(self, suite: Suite) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        with clock.frozen(datetime.fromisoformat(payment["paid_at"]) + timedelta(minutes=5)):
            refunded = await user.post(
                f"/api/v1/payments/{payment['id']}/refund", json={"reason": "changed my mind"}
            )
        assert refunded.status_code == 201, refunded.text
        refund = refunded.json()
        assert refund["status"] == "succeeded"
        page = await receipt_page(user, "refunds", refund["id"], params={"locale": "en"})
        assert page.status_code == 200, page.text
        text = shown(page.text)
        assert f"Refund receipt {number(2)}" in text
        assert f"Refers to receipt: {number(1)}" in text
        assert "Reason: changed my mind" in text
        assert "Rule: full refund within 60 minutes of payment" in text
        # The payment keeps its receipt once refunded.
        assert number(1) in (await receipt_page(user, "payments", payment["id"])).text

    async def test_a_payment_not_paid_yet_has_none(self, suite: Suite) -> None:
        user = suite.as_user()
        response = await user.post("/api/v1/wallet/top-ups", json={"amount": 1000})
        page = await receipt_page(user, "payments", response.json()["payment"]["id"])
        assert page.status_code == 404
        assert page.json()["error"] == "ReceiptNotFound"


class TestWhoMayRead:
    async def test_another_users_receipt_is_not_found_but_an_admin_reads_any(
        self, suite: Suite
    ) -> None:
        owner = suite.as_user()
        _, payment = await paid_subscription(suite, owner)
        stranger = await receipt_page(suite.as_user(), "payments", payment["id"])
        assert stranger.status_code == 404
        staff = await suite.http.get(
            f"/api/v1/payments/{payment['id']}/receipt", headers=admin_headers()
        )
        assert staff.status_code == 200
        assert number(1) in staff.text
        unknown = await receipt_page(owner, "refunds", str(uuid4()))
        assert unknown.status_code == 404


class TestLanguageAndFormat:
    async def test_english_from_the_browser_and_the_query_wins(self, suite: Suite) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        english = await receipt_page(
            user, "payments", payment["id"], headers={"Accept-Language": "en-US,en;q=0.9"}
        )
        assert f"Total: {plain(format_money(BASIC_PRICE, 'RUB', 'en'))}" in shown(english.text)
        russian = await receipt_page(
            user,
            "payments",
            payment["id"],
            params={"locale": "ru"},
            headers={"Accept-Language": "en"},
        )
        assert "Итого: 299,00 ₽" in shown(russian.text)

    @pytest.mark.parametrize(
        ("locale", "total_label", "title"), [("ru", "Итого", "Чек"), ("en", "Total", "Receipt")]
    )
    async def test_pdf_holds_the_number_the_total_and_the_seller(
        self, suite: Suite, locale: str, total_label: str, title: str
    ) -> None:
        configure(suite, seller_name=SELLER_RU, seller_tax_id="7700000000", vat_percent=20)
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        response = await receipt_page(
            user,
            "payments",
            payment["id"],
            params={"locale": locale},
            headers={"Accept": "application/pdf"},
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pdf"
        assert (
            response.headers["content-disposition"] == f'inline; filename="receipt-{number(1)}.pdf"'
        )
        text = pdf_text(response.content)
        assert f"{title} {number(1)}" in text
        assert f"{total_label}: {plain(format_money(BASIC_PRICE, 'RUB', locale))}" in text
        assert SELLER_RU in text
        assert "7700000000" in text
        # 20% VAT included in 299.00: 49.833… rounds to 49.83.
        assert plain(format_money(4983, "RUB", locale)) in text

    async def test_html_is_kept_when_the_browser_prefers_it(self, suite: Suite) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        response = await receipt_page(
            user,
            "payments",
            payment["id"],
            headers={"Accept": "text/html,application/xhtml+xml,application/pdf;q=0.8,*/*;q=0.5"},
        )
        assert response.headers["content-type"].startswith("text/html")

    async def test_a_missing_font_is_a_503_naming_the_setting(
        self, suite: Suite, caplog: pytest.LogCaptureFixture
    ) -> None:
        configure(suite, receipt_font="/nonexistent/font.ttf")
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        response = await receipt_page(
            user, "payments", payment["id"], headers={"Accept": "application/pdf"}
        )
        assert response.status_code == 503
        assert response.json()["error"] == "ReceiptFontMissing"
        assert "BILLING_RECEIPT_FONT" in response.json()["detail"]
        assert "BILLING_RECEIPT_FONT" in caplog.text


class TestSignedLinks:
    async def test_the_purchase_event_links_to_the_receipt_without_a_login(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        response = await user.post(
            "/api/v1/purchases", json={"movie_id": str(demo.movie_id("Paper Moons"))}
        )
        await suite.pay(response.json()["latest_payment"]["checkout_url"])

        async def completed() -> bool:
            return bool(await suite.events("purchase.completed"))

        await support.eventually(completed, timeout=15)
        [event] = await suite.events("purchase.completed")
        url = event.data.receipt_url
        settings: BillingSettings = suite.billing.state.settings
        assert url is not None and url.startswith(f"{settings.public_url}/receipts/")
        path = url.removeprefix(settings.public_url)
        page = await suite.http.get(path)  # no token
        assert page.status_code == 200
        assert number(1) in page.text
        pdf = await suite.http.get(path, params={"format": "pdf"})
        assert pdf.headers["content-type"] == "application/pdf"
        assert number(1) in pdf_text(pdf.content)
        forged = await suite.http.get(f"{path[:-3]}abc")
        assert forged.status_code == 404

    async def test_the_refund_event_links_to_the_refund_receipt(self, suite: Suite) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        with clock.frozen(datetime.fromisoformat(payment["paid_at"]) + timedelta(minutes=5)):
            refund = (await user.post(f"/api/v1/payments/{payment['id']}/refund")).json()
        await suite.events("refund.completed")
        url = await _refund_receipt_url(suite, UUID(refund["id"]))
        settings: BillingSettings = suite.billing.state.settings
        page = await suite.http.get(url.removeprefix(settings.public_url))
        assert number(2) in page.text


async def _refund_receipt_url(suite: Suite, refund_id: UUID) -> str:
    import orjson

    payloads = await suite.scalar(
        "SELECT payload FROM outbox WHERE event_type = 'refund.completed'"
    )
    data = orjson.loads(payloads)["data"]
    assert data["refund_id"] == str(refund_id)
    return str(data["receipt_url"])


class TestAdminUI:
    async def test_payments_and_refunds_show_their_receipt_linked_to_its_page(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        with clock.frozen(datetime.fromisoformat(payment["paid_at"]) + timedelta(minutes=5)):
            refunded = await user.post(f"/api/v1/payments/{payment['id']}/refund")
        assert refunded.json()["status"] == "succeeded"
        assert (await login(suite.http, "", admin_token())).status_code == 302
        settings: BillingSettings = suite.billing.state.settings
        for page, expected in (("payment", number(1)), ("refund", number(2))):
            listed = (await suite.http.get(f"/admin/{page}/list")).text
            [(href, shown_number)] = re.findall(
                rf'<a href="({re.escape(settings.public_url)}/receipts/[^"]+)"[^>]*>([^<]+)</a>',
                listed,
            )
            assert shown_number == expected
            opened = await suite.http.get(href.removeprefix(settings.public_url))
            assert opened.status_code == 200
            assert expected in opened.text
