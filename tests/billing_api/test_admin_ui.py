"""The back-office web UI at /admin: who gets in, what every page shows, and a session in a real
browser that sells a new plan and a promo code and looks at a customer's payments."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID, uuid4

import httpx
from pydantic import SecretStr

from billing_api.app import create_app
from billing_api.config import AdminUISettings, BillingSettings
from shared import clock
from shared.auth import AuthSettings, mint_user_token
from tests import support
from tests.billing_api import report_data
from tests.billing_api.conftest import Suite

ADMIN = uuid4()


def admin_token(staff: UUID = ADMIN) -> str:
    return mint_user_token(AuthSettings(), staff, email="staff@example.com", roles=["admin"])


async def login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post(
        "/admin/login",
        data={"username": username, "password": password},
        headers={"Origin": str(http.base_url).rstrip("/")},
    )


class TestLogin:
    async def test_only_admins_get_in_and_everyone_else_is_sent_to_the_login_page(
        self, suite: Suite
    ) -> None:
        http = suite.http
        first = await http.get("/admin/payment/list")
        assert first.status_code == 302
        assert first.headers["location"].endswith("/admin/login")
        viewer = mint_user_token(AuthSettings(), uuid4(), roles=["subscriber"])
        for username, password in (("", viewer), ("root", "guess"), ("", "not.a.token")):
            refused = await login(http, username, password)
            assert refused.status_code == 400
            assert "Invalid credentials" in refused.text
        assert (await http.get("/admin/plan/list")).status_code == 302

        welcomed = await login(http, "", admin_token())
        assert welcomed.status_code == 302
        cookie = welcomed.headers["set-cookie"].lower()
        assert "samesite=strict" in cookie
        assert "httponly" in cookie
        assert "path=/admin" in cookie
        for page in (
            "customer",
            "subscription",
            "payment",
            "refund",
            "ledger-transaction",
            "ledger-entry",
            "plan",
            "movie",
            "month-tier",
            "personal-discount",
            "promo-code",
            "complimentary-grant",
            "admin-audit",
            "purchase",
        ):
            response = await http.get(f"/admin/{page}/list")
            assert response.status_code == 200, (page, response.text[:500])
        money = await http.get("/admin/payment/create")
        assert money.status_code == 403

        # A form posted from another site is refused even with the session cookie.
        forged = await http.post(
            "/admin/promo-code/create",
            data={"code": "FREE100", "kind": "percent", "percent": "100"},
            headers={"Origin": "https://evil.example"},
        )
        assert forged.status_code == 302
        assert (
            await suite.scalar("SELECT count(*) FROM billing.promo_code WHERE code = 'FREE100'")
            == 0
        )

    async def test_configured_credentials_log_in_as_their_own_actor(self, suite: Suite) -> None:
        settings = AdminUISettings(username="backoffice", password=SecretStr("s3cret-pass"))
        app = create_app(
            BillingSettings(**suite.billing.state.settings.model_dump()), admin_ui_settings=settings
        )
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="http://billing.test"
            ) as http,
        ):
            assert (await login(http, "backoffice", "wrong")).status_code == 400
            assert (await login(http, "backoffice", "s3cret-pass")).status_code == 302
            created = await http.post(
                "/admin/promo-code/create",
                data={"code": "STAFF10", "kind": "percent", "percent": "10", "active": "y"},
                headers={"Origin": "http://billing.test"},
            )
            assert created.status_code == 302, created.text[-2000:]
        actor = await suite.scalar(
            "SELECT actor FROM billing.admin_audit WHERE action = 'promo_code.create'"
            " AND after->>'code' = 'STAFF10'"
        )
        assert actor == "ui:backoffice"


class TestPayments:
    async def test_the_payment_list_shows_which_provider_took_each_payment(
        self, suite: Suite
    ) -> None:
        http = suite.http
        assert (await login(http, "", admin_token())).status_code == 302
        basic = await suite.plan("basic")
        user = suite.as_user()
        created = (await user.post("/api/v1/subscriptions", json={"plan_id": basic["id"]})).json()
        await suite.pay(created["latest_payment"]["checkout_url"])
        await user.wait_for_subscription(created["id"], "active")

        listing = await http.get("/admin/payment/list")

        assert listing.status_code == 200
        assert "Provider" in listing.text
        assert ">sandbox<" in listing.text.replace(" ", "").replace("\n", "")


class TestDashboard:
    async def test_the_landing_page_shows_the_month_s_figures_and_its_charts(
        self, suite: Suite
    ) -> None:
        http = suite.http
        assert (await http.get("/admin/")).status_code == 302  # the dashboard needs a login
        async with suite.billing.state.session_factory() as session, session.begin():
            await report_data.seed_month(session)
        assert (await login(http, "", admin_token())).status_code == 302

        with clock.frozen(report_data.NOW):
            page = await http.get("/admin/", params={"from": "2026-11-01", "to": "2026-11-30"})

        assert page.status_code == 200, page.text[:500]
        text = page.text
        assert "Dashboard" in text
        assert re.search(r'id="captured">\s*2194\.30 RUB<', text)  # in the default currency
        assert re.search(r'id="refunded">\s*399\.00 RUB<', text)
        assert re.search(r'id="net">\s*1795\.30 RUB<', text)
        assert re.search(r'id="mrr">\s*1666\.10 RUB<', text)
        assert re.search(r'id="new">\s*5<', text)
        assert re.search(r'id="churned">\s*4<', text)
        assert "1 / 2 (50.0%)" in text  # trial to paid
        assert "3 / 4 (75.0%)" in text  # renewals
        assert re.search(r'id="wallets">\s*350\.00 RUB in 1<', text)
        assert text.count("<svg") == 2
        assert text.count('class="bar"') == 30  # one bar a day
        assert "<title>2026-11-10: 369.00 RUB</title>" in text  # a bar's tooltip
        assert "cdn" not in text.lower()

        euros = await http.get(
            "/admin/", params={"from": "2026-11-01", "to": "2026-11-30", "currency": "EUR"}
        )
        assert re.search(r'id="captured">\s*19\.98 EUR<', euros.text)

    async def test_a_bad_period_is_explained_on_the_page(self, suite: Suite) -> None:
        http = suite.http
        assert (await login(http, "", admin_token())).status_code == 302
        for params, problem in (
            ({"from": "2026-11-30", "to": "2026-11-01"}, "the period&#39;s start is after its end"),
            ({"from": "2024-01-01", "to": "2026-01-01"}, "at most 366"),
            ({"from": "2026-11-01", "to": "2026-11-30", "currency": "XXY"}, "ISO 4217"),
            ({"from": "someday"}, "someday"),
        ):
            page = await http.get("/admin/", params=params)
            assert page.status_code == 422, params
            assert 'id="report-problem"' in page.text
            assert problem in page.text, (params, page.text[-2000:])
            assert "<svg" not in page.text


class TestPersonalDiscounts:
    async def test_staff_give_a_user_a_discount_and_the_user_s_quote_applies_it(
        self, suite: Suite
    ) -> None:
        http = suite.http
        assert (await login(http, "", admin_token())).status_code == 302
        basic = await suite.plan("basic")
        user = suite.as_user()
        form = await http.get("/admin/personal-discount/create")
        assert form.status_code == 200
        assert 'name="user_id"' in form.text

        created = await http.post(
            "/admin/personal-discount/create",
            data={"user_id": str(user.id), "percent": "20", "reason": "loyal since 2019"},
            headers={"Origin": str(http.base_url).rstrip("/")},
        )
        assert created.status_code == 302, created.text[-2000:]
        quote = await user.get("/api/v1/quote", params={"plan_id": basic["id"]})
        assert quote.status_code == 200, quote.text
        assert quote.json()["applied"]["percent"] == 20
        edit = await http.get(f"/admin/personal-discount/edit/{user.id}")
        assert edit.status_code == 200
        assert 'name="user_id"' not in edit.text  # whose discount it is never changes

    async def test_a_missing_bad_or_taken_user_id_is_shown_on_the_form(self, suite: Suite) -> None:
        http = suite.http
        assert (await login(http, "", admin_token())).status_code == 302
        taken = uuid4()
        await suite.execute(
            "INSERT INTO billing.personal_discount (user_id, percent, reason)"
            " VALUES (:user_id, 5, 'first')",
            user_id=taken,
        )
        for user_id, problem in (
            ("", "This field is required."),
            ("not-a-user", "Invalid UUID format."),
            (str(taken), f"user {taken} already has a personal discount"),
        ):
            response = await http.post(
                "/admin/personal-discount/create",
                data={"user_id": user_id, "percent": "20", "reason": ""},
                headers={"Origin": str(http.base_url).rstrip("/")},
            )
            # The form comes back with the problem on it (sqladmin's status for a refused form).
            assert response.status_code == 400, (user_id, response.text[-2000:])
            assert 'name="user_id"' in response.text
            assert problem in response.text, user_id
        assert await suite.scalar("SELECT percent FROM billing.personal_discount") == 5


async def test_a_back_office_session_in_a_browser(suite: Suite) -> None:
    """Log in, sell a plan with two movies and a promo code, then read a customer's payments."""
    shots = support.ARTIFACTS / "admin_ui"
    shots.mkdir(parents=True, exist_ok=True)
    staff = uuid4()  # this session's audit trail is its own, whatever other tests did as ADMIN
    customer = suite.as_user(email="browser.customer@example.com")
    basic = await suite.plan("basic")
    checkout = await customer.post("/api/v1/subscriptions", json={"plan_id": basic["id"]})
    assert checkout.status_code == 201, checkout.text

    async with (
        support.served(_shared_lifespan(suite), support.free_port()) as base,
        support.browser_page() as page,
    ):
        await page.goto(f"{base}/admin/plan/list")
        assert page.url.endswith("/admin/login")
        await page.fill("input[name=password]", admin_token(staff))
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/admin/")
        await page.screenshot(path=str(shots / "01_logged_in.png"))

        await page.goto(f"{base}/admin/plan/create")
        await page.fill("input[name=code]", "weekend-duo")
        await page.fill("input[name=name]", "Weekend duo")
        await page.fill("input[name=price_amount]", "14900")
        await page.fill("input[name=currency]", "RUB")
        await page.fill("input[name=period_unit]", "month")
        await page.fill("input[name=max_months]", "3")
        await page.fill("input[name=grace_days]", "2")
        await page.fill("input[name=trial_days]", "0")
        await page.fill("input[name=refund_window_minutes]", "60")
        await page.fill("input[name=refund_policy]", "window_then_prorata")
        await page.check("input[name=active]")
        await page.select_option(
            "select[name=movie_ids]", label=["The Long Night Train", "Paper Moons"]
        )
        await page.screenshot(path=str(shots / "02_new_plan.png"), full_page=True)
        await page.click("input[type=submit][value=Save]")
        await page.wait_for_url(re.compile(r".*/admin/plan/list.*"))
        await page.screenshot(path=str(shots / "03_plans.png"), full_page=True)

        public = await suite.http.get("/api/v1/plans")
        plan = next(p for p in public.json()["items"] if p["code"] == "weekend-duo")
        detail = (await suite.http.get(f"/api/v1/plans/{plan['id']}")).json()
        assert plan["price"] == {"amount": 14900, "currency": "RUB"}
        assert len(detail["movie_ids"]) == 2

        await page.goto(f"{base}/admin/promo-code/create")
        await page.fill("input[name=code]", "DUO30")
        await page.fill("input[name=kind]", "percent")
        await page.fill("input[name=percent]", "30")
        await page.check("input[name=active]")
        await page.click("input[type=submit][value=Save]")
        await page.wait_for_url(re.compile(r".*/admin/promo-code/list.*"))
        await page.screenshot(path=str(shots / "04_promo_codes.png"), full_page=True)

        quote = await suite.http.get(
            "/api/v1/quote", params={"plan_id": plan["id"], "promo_code": "duo30"}
        )
        assert quote.status_code == 200, quote.text
        assert quote.json()["applied"]["source"] == "promo"
        assert quote.json()["total"] == {"amount": 14900 - 4470, "currency": "RUB"}

        await page.goto(f"{base}/admin/customer/list?search=browser.customer")
        await page.screenshot(path=str(shots / "05_customers.png"), full_page=True)
        await page.click('a[href^="/admin/payment/list?search="]')
        await page.wait_for_url(re.compile(r".*/admin/payment/list\?search=.*"))
        rows = page.locator("table tbody tr")
        assert await rows.count() == 1
        assert "Basic, 1 month" in (await rows.first.inner_text())
        await page.screenshot(path=str(shots / "06_customer_payments.png"), full_page=True)

    actions = await suite.scalar(
        "SELECT string_agg(action, ',' ORDER BY created_at) FROM billing.admin_audit"
        " WHERE actor = :actor",
        actor=str(staff),
    )
    assert actions == "plan.create,promo_code.create"


def _shared_lifespan(suite: Suite) -> Any:
    """The suite's running billing app, served without starting its lifespan a second time."""
    app = suite.billing

    async def asgi(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] == "lifespan":
            message = await receive()  # type: ignore[operator]
            assert message["type"] == "lifespan.startup"
            await send({"type": "lifespan.startup.complete"})  # type: ignore[operator]
            message = await receive()  # type: ignore[operator]
            await send({"type": "lifespan.shutdown.complete"})  # type: ignore[operator]
            return
        await app(scope, receive, send)  # type: ignore[arg-type]

    return asgi
