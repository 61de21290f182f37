"""Back-office staff accounts and roles: the command that creates one, logging in with it (and
waiting after failed logins), what each role may do in the admin API and the UI, and whose name
the audit trail keeps."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from pydantic import SecretStr

from billing_api.admin.staff import service as staff
from billing_api.app import create_app
from billing_api.config import AdminUISettings, BillingSettings
from shared.auth import AuthSettings, mint_user_token
from tests import support
from tests.billing_api.conftest import Suite

CINEMA = str(Path(sys.executable).with_name("cinema"))
PASSWORD = "correct horse battery staple"


def token_of(*roles: str, subject: UUID | None = None) -> str:
    return mint_user_token(
        AuthSettings(), subject or uuid4(), email="staff@example.com", roles=list(roles)
    )


def bearer(*roles: str, subject: UUID | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(*roles, subject=subject)}"}


async def ui_login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post(
        "/admin/login",
        data={"username": username, "password": password},
        headers={"Origin": str(http.base_url).rstrip("/")},
    )


async def add_staff(suite: Suite, email: str, role: str, password: str = PASSWORD) -> None:
    async with suite.billing.state.session_factory() as session, session.begin():
        await staff.create_user(session, email=email, role=role, password=password)


async def admin_command(
    database_url: str, *args: str, password: str | None = None
) -> tuple[int, str, str]:
    """``cinema admin <args>`` as an operator runs it; ``password`` goes to its stdin."""
    process = await asyncio.create_subprocess_exec(
        CINEMA,
        "admin",
        *args,
        *(["--password-stdin"] if password is not None else []),
        env=support.suite_environment(database_url, "staff-cli"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(f"{password}\n".encode() if password else b"")
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def create_user_command(database_url: str, *args: str, password: str) -> tuple[int, str, str]:
    return await admin_command(database_url, "create-user", *args, password=password)


async def paid_pass(suite: Suite, email: str) -> tuple[Any, str]:
    """A customer who bought the 30-day pass (699.00 RUB); returns them and the payment id."""
    pass30 = await suite.plan("pass-30")
    user = suite.as_user(email=email)
    created = (await user.post("/api/v1/subscriptions", json={"plan_id": pass30["id"]})).json()
    await suite.pay(created["latest_payment"]["checkout_url"])
    await user.wait_for_subscription(created["id"], "active")
    return user, created["latest_payment"]["id"]


class TestCreateUserCommand:
    async def test_the_command_keeps_an_argon2_hash_and_the_account_logs_in(
        self, suite: Suite, database_url: str
    ) -> None:
        code, out, err = await create_user_command(
            database_url, "--email", " Nina@Example.COM ", "--role", "support", password=PASSWORD
        )
        assert code == 0, err
        assert "nina@example.com" in out
        row = await suite.scalar(
            "SELECT json_build_object('email', email, 'role', role, 'hash', password_hash,"
            " 'active', active) FROM billing.staff_user"
        )
        assert (row["email"], row["role"], row["active"]) == ("nina@example.com", "support", True)
        assert row["hash"].startswith("$argon2id$")
        assert PASSWORD not in row["hash"]

        again, _, err = await create_user_command(
            database_url, "--email", "nina@example.com", "--role", "viewer", password=PASSWORD
        )
        assert again == 1
        assert "has a staff account already" in err
        short, _, err = await create_user_command(
            database_url, "--email", "ola@example.com", "--role", "viewer", password="short"
        )
        assert short == 1
        assert "at least 12 characters" in err

        assert (
            await ui_login(suite.http, "nina@example.com", "wrong password!")
        ).status_code == 400
        welcomed = await ui_login(suite.http, "NINA@example.com", PASSWORD)
        assert welcomed.status_code == 302
        assert (await suite.http.get("/admin/payment/list")).status_code == 200
        assert (await suite.http.get("/admin/staff-user/list")).status_code == 403  # not admin
        await add_staff(suite, "boss@example.com", "admin")
        assert (await ui_login(suite.http, "boss@example.com", PASSWORD)).status_code == 302
        staff_list = await suite.http.get("/admin/staff-user/list")
        assert staff_list.status_code == 200
        assert "nina@example.com" in staff_list.text
        assert "$argon2" not in staff_list.text
        assert await suite.scalar("SELECT last_login_at IS NOT NULL FROM billing.staff_user")


class TestManagingAccounts:
    async def test_an_operator_changes_a_role_deactivates_and_resets_a_password(
        self, suite: Suite, database_url: str
    ) -> None:
        await add_staff(suite, "rita@example.com", "viewer")
        assert (await ui_login(suite.http, "rita@example.com", PASSWORD)).status_code == 302
        assert (await suite.http.get("/admin/staff-user/list")).status_code == 403

        code, out, err = await admin_command(
            database_url, "set-role", "--email", "Rita@example.com", "--role", "admin"
        )
        assert (code, out.strip()) == (0, "staff account rita@example.com now has the role admin")
        assert (await suite.http.get("/admin/staff-user/list")).status_code == 200  # at once

        code, out, err = await admin_command(
            database_url, "deactivate-user", "--email", "rita@example.com"
        )
        assert code == 0, err
        assert (await suite.http.get("/admin/payment/list")).status_code == 302  # logged out
        assert (await ui_login(suite.http, "rita@example.com", PASSWORD)).status_code == 400
        code, out, _ = await admin_command(database_url, "list-users")
        assert out.splitlines() == ["rita@example.com\tadmin\tdeactivated"]

        code, _, err = await admin_command(
            database_url, "activate-user", "--email", "rita@example.com"
        )
        assert code == 0, err
        for _ in range(5):
            await ui_login(suite.http, "rita@example.com", "a forgotten password")
        assert (await ui_login(suite.http, "rita@example.com", PASSWORD)).status_code == 429

        new_password = "a brand new passphrase"
        code, out, err = await admin_command(
            database_url, "set-password", "--email", "rita@example.com", password=new_password
        )
        assert (code, out.strip()) == (0, "staff account rita@example.com has a new password")
        assert (await ui_login(suite.http, "rita@example.com", PASSWORD)).status_code == 400
        assert (await ui_login(suite.http, "rita@example.com", new_password)).status_code == 302

    async def test_an_unknown_account_or_a_short_password_is_refused_and_changes_nothing(
        self, suite: Suite, database_url: str
    ) -> None:
        await add_staff(suite, "sam@example.com", "support")
        code, _, err = await admin_command(
            database_url, "set-role", "--email", "nobody@example.com", "--role", "admin"
        )
        assert (code, err.strip()) == (1, "no staff account has the email nobody@example.com")
        code, _, err = await admin_command(
            database_url, "set-password", "--email", "sam@example.com", password="short"
        )
        assert (code, "at least 12 characters" in err) == (1, True)
        assert (await ui_login(suite.http, "sam@example.com", PASSWORD)).status_code == 302
        code, out, _ = await admin_command(database_url, "list-users")
        assert out.splitlines() == ["sam@example.com\tsupport\tactive"]


class TestLoginLimit:
    async def test_after_five_wrong_passwords_even_the_right_one_must_wait(
        self, suite: Suite
    ) -> None:
        await add_staff(suite, "pat@example.com", "viewer")
        for _ in range(5):
            refused = await ui_login(suite.http, "pat@example.com", "not the password")
            assert refused.status_code == 400
            assert "Invalid credentials" in refused.text

        waiting = await ui_login(suite.http, "pat@example.com", PASSWORD)

        assert waiting.status_code == 429
        assert "Too many failed logins. Wait 15 minutes" in waiting.text
        assert (await suite.http.get("/admin/payment/list")).status_code == 302
        # The window over, the right password gets in again.
        await suite.execute(
            "UPDATE billing.staff_login_failure SET failed_at = failed_at - interval '16 minutes'"
        )
        assert (await ui_login(suite.http, "pat@example.com", PASSWORD)).status_code == 302

    async def test_wrong_passwords_sent_all_at_once_are_still_only_five_guesses(
        self, suite: Suite
    ) -> None:
        await add_staff(suite, "sam@example.com", "admin")

        answers = await asyncio.gather(
            *(ui_login(suite.http, "sam@example.com", f"guess {n}") for n in range(12))
        )

        checked = [a for a in answers if "Invalid credentials" in a.text]
        assert len(checked) == 5
        assert sum(a.status_code == 429 for a in answers) == 7

    async def test_one_address_guessing_many_emails_must_wait_too(self, suite: Suite) -> None:
        await add_staff(suite, "quinn@example.com", "viewer")
        for number in range(20):
            refused = await ui_login(suite.http, f"guess{number}@example.com", "guess")
            assert refused.status_code == 400

        waiting = await ui_login(suite.http, "quinn@example.com", PASSWORD)

        assert waiting.status_code == 429

    async def test_the_built_in_pair_is_limited_the_same_way(self, suite: Suite) -> None:
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
            for _ in range(5):
                assert (await ui_login(http, "backoffice", "guess")).status_code == 400
            assert (await ui_login(http, "backoffice", "s3cret-pass")).status_code == 429

    async def test_an_inactive_account_does_not_get_in(self, suite: Suite) -> None:
        await add_staff(suite, "rui@example.com", "admin")
        await suite.execute("UPDATE billing.staff_user SET active = false")
        assert (await ui_login(suite.http, "rui@example.com", PASSWORD)).status_code == 400

    async def test_a_deactivated_account_is_logged_out_of_its_open_session(
        self, suite: Suite
    ) -> None:
        await add_staff(suite, "ulla@example.com", "support")
        assert (await ui_login(suite.http, "ulla@example.com", PASSWORD)).status_code == 302
        page = f"/admin/customer/page/{uuid4()}"
        assert (await suite.http.get(page)).status_code == 200

        await suite.execute("UPDATE billing.staff_user SET active = false")

        assert (await suite.http.get(page)).status_code == 302


class TestRolesInTheAdminAPI:
    async def test_each_role_reads_refunds_reports_and_edits_what_it_may(
        self, suite: Suite
    ) -> None:
        suite.billing.state.admin_ui_settings = AdminUISettings(support_refund_limit=30000)
        user, payment_id = await paid_pass(suite, "matrix@example.com")
        refund_path = f"/api/v1/admin/payments/{payment_id}/refund"
        reads = [f"/api/v1/admin/users/{user.id}/payments", "/api/v1/admin/audit"]
        report = (
            "/api/v1/admin/reports/summary",
            {"from": "2026-01-01", "to": "2026-01-31", "currency": "RUB"},
        )
        new_plan = {
            "code": "staff-made",
            "name": "Staff made",
            "price": {"amount": 19900, "currency": "RUB"},
        }

        for role in ("viewer", "support", "finance", "admin"):
            for path in reads:
                assert (await suite.http.get(path, headers=bearer(role))).status_code == 200
        for role in ("viewer", "support"):
            refused = await suite.http.get(report[0], params=report[1], headers=bearer(role))
            assert refused.status_code == 403, role
        for role in ("finance", "admin"):
            allowed = await suite.http.get(report[0], params=report[1], headers=bearer(role))
            assert allowed.status_code == 200, role
        for role in ("viewer", "support", "finance"):
            refused = await suite.http.post(
                "/api/v1/admin/plans", json=new_plan, headers=bearer(role)
            )
            assert refused.status_code == 403, role
        assert (
            await suite.http.post("/api/v1/admin/plans", json=new_plan, headers=bearer("admin"))
        ).status_code == 201
        assert (
            await suite.http.post(
                "/api/v1/admin/plans", json=new_plan, headers=bearer("subscriber")
            )
        ).status_code == 403

        viewer = await suite.http.post(
            refund_path, json={"reason": "asked nicely"}, headers=bearer("viewer")
        )
        assert viewer.status_code == 403
        above = await suite.http.post(
            refund_path, json={"reason": "too much", "amount": 30001}, headers=bearer("support")
        )
        assert above.status_code == 403
        assert above.json()["error"] == "RefundAboveLimit"
        everything = await suite.http.post(
            refund_path, json={"reason": "all of it"}, headers=bearer("support")
        )
        assert everything.status_code == 403  # 699.00 left: above the limit too
        assert await suite.scalar("SELECT count(*) FROM billing.refund") == 0

        support_subject = uuid4()
        within = await suite.http.post(
            refund_path,
            json={"reason": "one bad evening", "amount": 30000},
            headers=bearer("support", subject=support_subject),
        )
        assert within.status_code == 201, within.text
        assert within.json()["amount"] == {"amount": 30000, "currency": "RUB"}
        rest = await suite.http.post(
            refund_path, json={"reason": "the rest, approved"}, headers=bearer("finance")
        )
        assert rest.status_code == 201, rest.text
        assert rest.json()["amount"] == {"amount": 69900 - 30000, "currency": "RUB"}

        actors = await suite.scalar(
            "SELECT string_agg(actor || ':' || reason, ',' ORDER BY created_at)"
            " FROM billing.admin_audit WHERE action = 'refund.override_window'"
        )
        assert actors.split(",")[0] == f"{support_subject}:one bad evening"

    async def test_support_cannot_pass_its_limit_by_splitting_one_refund_into_several(
        self, suite: Suite
    ) -> None:
        suite.billing.state.admin_ui_settings = AdminUISettings(support_refund_limit=30000)
        _, payment_id = await paid_pass(suite, "split@example.com")
        refund_path = f"/api/v1/admin/payments/{payment_id}/refund"

        at_once = await asyncio.gather(
            *(
                suite.http.post(
                    refund_path,
                    json={"reason": f"part {n}", "amount": 20000},
                    headers=bearer("support"),
                )
                for n in range(3)
            )
        )
        later = await suite.http.post(
            refund_path, json={"reason": "a bit more", "amount": 10001}, headers=bearer("support")
        )

        assert sorted(r.status_code for r in at_once) == [201, 403, 403]
        assert later.status_code == 403
        assert later.json()["error"] == "RefundAboveLimit"
        assert await suite.scalar("SELECT sum(amount) FROM billing.refund") == 20000

    async def test_the_support_limit_in_roubles_lets_no_dollars_through(self, suite: Suite) -> None:
        # 300.00 RUB is the limit; 300.00 USD is about ninety times that.
        suite.billing.state.admin_ui_settings = AdminUISettings(support_refund_limit=30000)
        created_plan = await suite.http.post(
            "/api/v1/admin/plans",
            json={
                "code": "dollar-pass",
                "name": "Dollar pass",
                "price": {"amount": 30000, "currency": "USD"},
            },
            headers=bearer("admin"),
        )
        assert created_plan.status_code == 201, created_plan.text
        user = suite.as_user(email="dollars@example.com")
        created = (
            await user.post("/api/v1/subscriptions", json={"plan_id": created_plan.json()["id"]})
        ).json()
        await suite.pay(created["latest_payment"]["checkout_url"])
        await user.wait_for_subscription(created["id"], "active")
        refund_path = f"/api/v1/admin/payments/{created['latest_payment']['id']}/refund"

        support = await suite.http.post(
            refund_path, json={"reason": "all of it"}, headers=bearer("support")
        )

        assert support.status_code == 403, support.text
        assert support.json()["error"] == "RefundAboveLimit"
        assert await suite.scalar("SELECT count(*) FROM billing.refund") == 0

    async def test_support_gives_complimentary_access_and_a_viewer_cannot(
        self, suite: Suite
    ) -> None:
        premium = await suite.plan("premium")
        body = {"plan_id": premium["id"], "days": 7, "reason": "apology for the outage"}
        path = f"/api/v1/admin/users/{uuid4()}/complimentary"
        assert (await suite.http.post(path, json=body, headers=bearer("viewer"))).status_code == 403
        assert (
            await suite.http.post(path, json=body, headers=bearer("support"))
        ).status_code == 201


class TestJWTLogin:
    def test_the_paste_login_is_on_in_development_and_off_in_production(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CINEMA_ENV", "development")
        assert AdminUISettings().jwt_login_enabled
        monkeypatch.setenv("CINEMA_ENV", "production")
        assert not AdminUISettings().jwt_login_enabled
        monkeypatch.setenv("BILLING_ADMIN_JWT_LOGIN", "true")
        assert AdminUISettings().jwt_login_enabled

    async def test_a_pasted_token_is_refused_when_the_paste_login_is_off(
        self, suite: Suite
    ) -> None:
        app = create_app(
            BillingSettings(**suite.billing.state.settings.model_dump()),
            admin_ui_settings=AdminUISettings(jwt_login=False),
        )
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="http://billing.test"
            ) as http,
        ):
            assert (await ui_login(http, "", token_of("admin"))).status_code == 400
        # On (the suite's development default), a token with a staff role logs in with it.
        assert (await ui_login(suite.http, "", token_of("viewer"))).status_code == 302
        assert (await suite.http.get("/admin/plan/create")).status_code == 403


class TestCustomerPage:
    async def test_support_refunds_from_the_page_and_the_audit_names_them(
        self, suite: Suite
    ) -> None:
        user, payment_id = await paid_pass(suite, "page.customer@example.com")
        await add_staff(suite, "sam@example.com", "support")
        assert (await ui_login(suite.http, "sam@example.com", PASSWORD)).status_code == 302
        page = await suite.http.get(f"/admin/customer/page/{user.id}")
        assert page.status_code == 200
        assert "page.customer@example.com" in page.text
        assert "<td>30-day pass</td>" in page.text  # the subscription, by its plan's name
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        refund_url = f"/admin/customer/page/{user.id}/refund"
        origin = {"Origin": "http://billing.test"}

        forged = await suite.http.post(
            refund_url,
            data={"csrf": "guess", "payment_id": payment_id, "reason": "x"},
            headers=origin,
        )
        assert forged.status_code == 403
        assert "the form expired" in forged.text
        form = {
            "csrf": csrf[1],
            "payment_id": payment_id,
            "refunds_seen": "0",
            "amount": "100.50",
            "reason": "the film stopped halfway",
        }
        done, twice = await asyncio.gather(  # a double click: the same form posted twice at once
            suite.http.post(refund_url, data=form, headers=origin),
            suite.http.post(refund_url, data=form, headers=origin),
        )
        assert (done.status_code, twice.status_code) == (303, 303)
        assert await suite.scalar("SELECT count(*) FROM billing.refund") == 1
        assert await suite.scalar("SELECT amount FROM billing.refund") == 10050
        stale = await suite.http.post(refund_url, data=form, headers=origin)  # a reload resends
        assert (
            "refunded since the page was loaded"
            in (await suite.http.get(stale.headers["location"])).text
        )
        assert await suite.scalar("SELECT count(*) FROM billing.refund") == 1
        shown = await suite.http.get(f"/admin/customer/page/{user.id}")
        assert 'name="refunds_seen" value="1"' in shown.text
        actor = await suite.scalar(
            "SELECT actor FROM billing.admin_audit WHERE action = 'refund.override_window'"
        )
        assert actor == "sam@example.com"
        assert "sam@example.com" in shown.text and "the film stopped halfway" in shown.text

        premium = await suite.plan("premium")
        granted = await suite.http.post(
            f"/admin/customer/page/{user.id}/grant",
            data={"csrf": csrf[1], "plan_id": premium["id"], "days": "14", "reason": "sorry"},
            headers=origin,
        )
        assert granted.status_code == 303
        shown = await suite.http.get(granted.headers["location"])
        assert "Complimentary access for 14 days given." in shown.text
        assert await suite.scalar("SELECT granted_by FROM billing.complimentary_grant") == (
            "sam@example.com"
        )

    async def test_a_viewer_sees_no_refund_button_and_cannot_post_one(self, suite: Suite) -> None:
        user, payment_id = await paid_pass(suite, "viewed@example.com")
        await add_staff(suite, "val@example.com", "viewer")
        assert (await ui_login(suite.http, "val@example.com", PASSWORD)).status_code == 302
        page = await suite.http.get(f"/admin/customer/page/{user.id}")
        assert page.status_code == 200
        assert "viewed@example.com" in page.text
        assert ">Refund<" not in page.text and "Give access" not in page.text
        assert (await suite.http.get("/admin/promo-code/create")).status_code == 403
        assert (await suite.http.get("/admin/staff-user/list")).status_code == 403
        listed = await suite.http.get("/admin/subscription/list")
        assert listed.status_code == 200
        assert "30-day pass" in listed.text  # lists lead with the plan's name, not its id
        assert listed.text.index("viewed@example.com") < listed.text.index("30-day pass")
        posted = await suite.http.post(
            f"/admin/customer/page/{user.id}/refund",
            data={"csrf": "", "payment_id": payment_id, "reason": "no"},
            headers={"Origin": "http://billing.test"},
        )
        assert posted.status_code == 403
        assert "your role may not refund payments" in posted.text
        assert await suite.scalar("SELECT count(*) FROM billing.refund") == 0
