"""The limits against abuse (shared.ratelimit) on a small app: 429 with Retry-After past a limit,
per user, per address and per resource, the window freeing again, replicas sharing Redis, the
per-process fallback, Redis down (requests pass, logged) and the switch that turns limits off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from shared.auth import AuthSettings, TokenVerifier, mint_user_token
from shared.errors import install_error_handlers
from shared.ratelimit import (
    RateLimitSettings,
    Scopes,
    create_rate_limiter,
    per_ip_and_path,
    per_user_and_ip,
)
from tests import support


def limited_app(limits: Mapping[str, Scopes], **settings: Any) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.token_verifier = TokenVerifier(AuthSettings())
    app.state.rate_limiter = create_rate_limiter(
        RateLimitSettings(**settings), limits, service="test"
    )

    @app.post("/orders", dependencies=[per_user_and_ip("order")])
    async def order() -> dict[str, bool]:
        return {"ordered": True}

    @app.post("/sessions/{session_id}/pay", dependencies=[per_ip_and_path("pay", "session_id")])
    async def pay(session_id: str) -> dict[str, str]:
        return {"paid": session_id}

    return app


def client(app: FastAPI, ip: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://limited.test")


def user() -> dict[str, str]:
    token = mint_user_token(AuthSettings(), uuid4(), email="viewer@example.com")
    return {"Authorization": f"Bearer {token}"}


async def statuses(
    http: httpx.AsyncClient, times: int, path: str = "/orders", **kw: Any
) -> list[int]:
    return [(await http.post(path, **kw)).status_code for _ in range(times)]


def redis_settings() -> dict[str, str]:
    """Redis storage under a prefix of this test's own (its counts start at zero)."""
    return {
        "rate_limit_storage_url": support.redis_url(),
        "rate_limit_key_prefix": f"test-limits-{uuid4().hex}",
    }


class TestPerUser:
    async def test_past_the_limit_is_429_with_retry_after_and_the_error_body(self) -> None:
        app = limited_app({"order": {"user": "3/minute", "ip": "100/minute"}})
        alice = user()
        async with client(app) as http:
            assert await statuses(http, 3, headers=alice) == [200, 200, 200]
            refused = await http.post("/orders", headers=alice)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        body = refused.json()
        assert body["error"] == "TooManyRequests"
        assert "order" in body["detail"]
        assert body["retry_after"] == int(refused.headers["Retry-After"])

    async def test_another_user_is_not_limited_by_the_first_ones_requests(self) -> None:
        app = limited_app({"order": {"user": "2/minute", "ip": "100/minute"}})
        alice, bob = user(), user()
        async with client(app) as http:
            assert await statuses(http, 3, headers=alice) == [200, 200, 429]
            assert await statuses(http, 2, headers=bob) == [200, 200]

    async def test_no_token_is_401_not_counted(self) -> None:
        app = limited_app({"order": {"user": "1/minute", "ip": "1/minute"}})
        async with client(app) as http:
            assert await statuses(http, 2) == [401, 401]
            assert await statuses(http, 1, headers=user()) == [200]

    async def test_the_window_frees_again(self) -> None:
        app = limited_app({"order": {"user": "2/second"}})
        alice = user()
        async with client(app) as http:
            assert await statuses(http, 3, headers=alice) == [200, 200, 429]
            await asyncio.sleep(1.1)
            assert await statuses(http, 1, headers=alice) == [200]


class TestPerAddress:
    async def test_the_address_limit_counts_every_user_of_the_address(self) -> None:
        app = limited_app({"order": {"user": "100/minute", "ip": "3/minute"}})
        async with client(app, "198.51.100.1") as office, client(app, "198.51.100.2") as home:
            assert [
                (await office.post("/orders", headers=user())).status_code for _ in range(4)
            ] == [
                200,
                200,
                200,
                429,
            ]
            assert await statuses(home, 1, headers=user()) == [200]


class TestPerResource:
    async def test_one_checkout_session_is_limited_across_addresses(self) -> None:
        app = limited_app({"pay": {"ip": "100/minute", "session_id": "2/minute"}})
        async with client(app, "198.51.100.1") as one, client(app, "198.51.100.2") as two:
            assert await statuses(one, 1, "/sessions/cs_1/pay") == [200]
            assert await statuses(two, 2, "/sessions/cs_1/pay") == [200, 429]
            assert await statuses(two, 1, "/sessions/cs_2/pay") == [200]

    async def test_one_address_is_limited_across_checkout_sessions(self) -> None:
        app = limited_app({"pay": {"ip": "2/minute", "session_id": "100/minute"}})
        async with client(app) as http, client(app, "198.51.100.9") as other:
            assert [(await http.post(f"/sessions/cs_{n}/pay")).status_code for n in range(3)] == [
                200,
                200,
                429,
            ]
            assert await statuses(other, 1, "/sessions/cs_9/pay") == [200]


class TestReplicas:
    async def test_two_replicas_sharing_redis_enforce_one_limit(self) -> None:
        shared = redis_settings()
        limits = {"order": {"user": "4/minute", "ip": "100/minute"}}
        replicas = [limited_app(limits, **shared), limited_app(limits, **shared)]
        alice = user()
        async with client(replicas[0]) as a, client(replicas[1]) as b:
            answers = [(await http.post("/orders", headers=alice)) for http in (a, b, a, b, a, b)]
        assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 429, 429]
        assert int(answers[-1].headers["Retry-After"]) >= 1

    async def test_the_window_frees_again_in_redis(self) -> None:
        app = limited_app({"order": {"user": "2/second"}}, **redis_settings())
        alice = user()
        async with client(app) as http:
            assert await statuses(http, 3, headers=alice) == [200, 200, 429]
            await asyncio.sleep(1.1)
            assert await statuses(http, 1, headers=alice) == [200]

    async def test_without_storage_url_each_process_counts_alone(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        limits = {"order": {"user": "2/minute"}}
        with caplog.at_level(logging.INFO, logger="shared.ratelimit"):
            replicas = [limited_app(limits), limited_app(limits)]
        assert "counted per process" in caplog.text
        alice = user()
        async with client(replicas[0]) as a, client(replicas[1]) as b:
            assert await statuses(a, 3, headers=alice) == [200, 200, 429]
            assert await statuses(b, 2, headers=alice) == [200, 200]


class TestRedisDown:
    async def test_requests_pass_unlimited_and_a_warning_is_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        nobody_listens = f"redis://127.0.0.1:{support.free_port()}/0"
        app = limited_app({"order": {"user": "1/minute"}}, rate_limit_storage_url=nobody_listens)
        alice = user()
        with caplog.at_level(logging.WARNING, logger="shared.ratelimit"):
            async with client(app) as http:
                assert await statuses(http, 3, headers=alice) == [200, 200, 200]
        warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(warnings) == 1  # once per FAILURE_LOG_SECONDS, not once per request


class TestSwitchedOff:
    async def test_no_limit_applies_when_limits_are_off(self) -> None:
        app = limited_app({"order": {"user": "1/minute"}}, rate_limits_enabled=False)
        alice = user()
        async with client(app) as http:
            assert await statuses(http, 5, headers=alice) == [200] * 5
