"""Portal links: who may ask for one, that it opens once and only for a few minutes, and the
session cookie it starts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from billing_api.config import BillingSettings
from billing_api.models import PortalLink
from billing_api.portal import sessions
from shared import clock
from shared.auth import AuthSettings, mint_service_token
from tests.billing_api.conftest import Suite, User

PUBLIC = "http://127.0.0.1:8000"  # BILLING_PUBLIC_URL's default: the tests' apps keep it


def browser(suite: Suite, language: str | None = None) -> httpx.AsyncClient:
    """A browser of its own (its own cookie jar) talking to the suite's billing app."""
    headers = {"Accept-Language": language} if language else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(suite.billing), base_url=PUBLIC, headers=headers
    )


async def portal_link(user: User, **body: Any) -> dict[str, Any]:
    response = await user.post("/api/v1/portal-sessions", json=body)
    assert response.status_code == 201, response.text
    link: dict[str, Any] = response.json()
    return link


def path_of(url: str) -> str:
    assert url.startswith(f"{PUBLIC}/portal/enter/"), url
    return url.removeprefix(PUBLIC)


@contextlib.asynccontextmanager
async def signed_in(
    suite: Suite, user: User, language: str | None = None, **body: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser that opened a fresh portal link of ``user``."""
    link = await portal_link(user, **body)
    async with browser(suite, language) as client:
        entered = await client.get(path_of(link["url"]))
        assert entered.status_code == 303, entered.text
        yield client


def service_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_service_token(AuthSettings(), 'cinema-app')}"}


class TestAskingForALink:
    async def test_a_user_gets_a_link_valid_for_the_configured_seconds(self, suite: Suite) -> None:
        user = suite.as_user()
        start = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
        with clock.frozen(start):
            link = await portal_link(user)
        assert path_of(link["url"])
        assert datetime.fromisoformat(link["expires_at"]) == start + timedelta(seconds=300)

    async def test_a_service_names_the_user_and_the_portal_is_that_users(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        response = await suite.http.post(
            "/api/v1/portal-sessions",
            json={"user_id": str(user.id), "locale": "en"},
            headers=service_headers(),
        )
        assert response.status_code == 201, response.text
        async with browser(suite) as client:
            await client.get(path_of(response.json()["url"]))
            cookie = client.cookies[sessions.COOKIE]
        found = sessions.read_session(suite.billing.state.settings, cookie)
        assert found is not None
        assert (found.user_id, found.locale) == (user.id, "en")

    async def test_a_service_without_a_user_id_is_told_to_send_one(self, suite: Suite) -> None:
        response = await suite.http.post(
            "/api/v1/portal-sessions", json={}, headers=service_headers()
        )
        assert response.status_code == 422
        assert response.json()["error"] == "UserIdRequired"

    async def test_a_user_cannot_open_another_users_portal(self, suite: Suite) -> None:
        user = suite.as_user()
        refused = await user.post("/api/v1/portal-sessions", json={"user_id": str(uuid4())})
        assert refused.status_code == 403
        assert await suite.scalar("SELECT count(*) FROM billing.portal_link") == 0
        own = await user.post("/api/v1/portal-sessions", json={"user_id": str(user.id)})
        assert own.status_code == 201

    async def test_without_a_token_nothing_is_made(self, suite: Suite) -> None:
        response = await suite.http.post("/api/v1/portal-sessions", json={})
        assert response.status_code == 401

    @pytest.mark.parametrize(
        "body",
        [
            {"return_url": "javascript:alert(1)"},
            {"return_url": "/account"},
            {"return_url": "ftp://cinema.example/"},
            {"return_url": "https://cinema.example/a b"},
            {"locale": "de"},
            {"surprise": True},
        ],
    )
    async def test_a_bad_return_url_or_locale_is_refused(
        self, suite: Suite, body: dict[str, Any]
    ) -> None:
        response = await suite.as_user().post("/api/v1/portal-sessions", json=body)
        assert response.status_code == 422, response.text

    async def test_only_the_hash_of_the_token_is_stored(self, suite: Suite) -> None:
        link = await portal_link(suite.as_user())
        token = link["url"].rsplit("/", 1)[1]
        stored = await suite.scalar("SELECT token_hash FROM billing.portal_link")
        assert stored == sessions.hash_token(token)
        assert token not in stored


class TestOpeningALink:
    async def test_it_starts_a_session_in_a_cookie_only_the_portal_sees(self, suite: Suite) -> None:
        link = await portal_link(suite.as_user())
        async with browser(suite) as client:
            entered = await client.get(path_of(link["url"]))
            assert entered.status_code == 303
            assert entered.headers["location"] == "/portal"
            cookie = entered.headers["set-cookie"].lower()
            for flag in ("httponly", "samesite=lax", "path=/portal", "max-age=1800"):
                assert flag in cookie, cookie
            assert "secure" not in cookie, "BILLING_PORTAL_SECURE_COOKIE is off by default"
            page = await client.get("/portal")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")

    def test_the_cookie_is_secure_when_configured(self, suite: Suite) -> None:
        settings: BillingSettings = suite.billing.state.settings
        secure = settings.model_copy(update={"portal_secure_cookie": True})
        link = PortalLink(id=uuid4(), user_id=uuid4(), email=None, locale=None)
        assert sessions.session_cookie(secure, link)["secure"] is True

    async def test_a_link_opens_once(self, suite: Suite) -> None:
        link = await portal_link(suite.as_user(), return_url="https://cinema.example/account")
        async with browser(suite, "en") as first, browser(suite, "en") as second:
            assert (await first.get(path_of(link["url"]))).status_code == 303
            again = await second.get(path_of(link["url"]))
        assert again.status_code == 410
        assert "This link was used already" in again.text
        assert 'href="https://cinema.example/account"' in again.text
        assert sessions.COOKIE not in second.cookies

    async def test_two_browsers_racing_for_one_link_get_one_session(self, suite: Suite) -> None:
        link = await portal_link(suite.as_user())
        async with browser(suite) as first, browser(suite) as second:
            answers = await asyncio.gather(
                first.get(path_of(link["url"])), second.get(path_of(link["url"]))
            )
        assert sorted(answer.status_code for answer in answers) == [303, 410]

    async def test_a_link_opened_after_its_minutes_has_expired(self, suite: Suite) -> None:
        start = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
        with clock.frozen(start) as frozen:
            link = await portal_link(suite.as_user(), locale="ru")
            frozen.advance(timedelta(seconds=300))
            async with browser(suite) as client:
                late = await client.get(path_of(link["url"]))
        assert late.status_code == 410
        assert "Ссылка устарела" in late.text
        assert "Traceback" not in late.text

    async def test_an_unknown_link_is_not_found(self, suite: Suite) -> None:
        async with browser(suite, "en") as client:
            response = await client.get("/portal/enter/not-a-token")
        assert response.status_code == 404
        assert "Link not found" in response.text


class TestTheSession:
    async def test_the_portal_without_a_session_asks_for_a_new_link(self, suite: Suite) -> None:
        async with browser(suite, "en") as client:
            response = await client.get("/portal/payments")
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("text/html")
        assert "Open billing again from the cinema app" in response.text

    async def test_a_session_ends_after_its_minutes(self, suite: Suite) -> None:
        start = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
        with clock.frozen(start) as frozen:
            async with signed_in(suite, suite.as_user()) as client:
                assert (await client.get("/portal")).status_code == 200
                frozen.advance(timedelta(minutes=30))
                assert (await client.get("/portal")).status_code == 401

    async def test_a_tampered_cookie_is_no_session(self, suite: Suite) -> None:
        async with signed_in(suite, suite.as_user()) as client:
            value = client.cookies[sessions.COOKIE]
            client.cookies.clear()
            client.cookies.set(sessions.COOKIE, value[:-2] + "xx", path="/portal")
            assert (await client.get("/portal")).status_code == 401


class TestSpentLinks:
    async def test_links_no_session_can_come_from_are_deleted_by_the_jobs(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        start = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
        with clock.frozen(start):
            async with signed_in(suite, user) as client:
                page = (await client.get("/portal/wallet")).text
                assert "csrf_token" in page
        with clock.frozen(start + timedelta(hours=1)):
            await portal_link(user)  # still openable
        settings: BillingSettings = suite.billing.state.settings
        factory = suite.billing.state.session_factory
        # Expired 5 minutes after it was made, its session lasted 30 minutes more at most.
        assert (
            await sessions.delete_spent_links(factory, settings, start + timedelta(minutes=35)) == 0
        )
        deleted = await sessions.delete_spent_links(factory, settings, start + timedelta(hours=1))
        assert deleted == 1
        assert await suite.scalar("SELECT count(*) FROM billing.portal_link") == 1
