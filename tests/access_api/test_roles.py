"""Role sync against a stand-in auth service that keeps roles in memory and records every call."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from access_api import roles
from access_api.config import AccessSettings
from access_api.models import PlanCoverage, RoleSync, UserGrants
from shared.auth import AuthSettings, TokenVerifier
from shared.resources import make_database
from shared.settings import ServiceSettings

AUTH_URL = "http://auth.test"
PREMIUM = "subscriber_premium"
T0 = datetime(2030, 1, 1, tzinfo=UTC)


class RoleIn(BaseModel):
    role: str


@dataclass
class StandInAuth:
    """The auth service's role endpoints; ``fail_next`` and ``down_for`` make it answer 503."""

    roles: defaultdict[UUID, set[str]] = field(default_factory=lambda: defaultdict(set))
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)
    fail_next: int = 0
    down_for: set[UUID] = field(default_factory=set)
    during_call: Callable[[], Awaitable[None]] | None = None

    async def failing(self, request: Request, user_id: UUID) -> bool:
        self.calls.append((request.method, request.url.path, request.headers.get("authorization")))
        if self.during_call is not None:
            await self.during_call()
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return user_id in self.down_for

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/api/v1/users/{user_id}/roles")
        async def grant(user_id: UUID, body: RoleIn, request: Request) -> Response:
            if await self.failing(request, user_id):
                return Response(status_code=503)
            if body.role in self.roles[user_id]:
                return Response(status_code=409)
            self.roles[user_id].add(body.role)
            return Response(status_code=201)

        @app.delete("/api/v1/users/{user_id}/roles/{role}")
        async def revoke(user_id: UUID, role: str, request: Request) -> Response:
            if await self.failing(request, user_id):
                return Response(status_code=503)
            if role not in self.roles[user_id]:
                return Response(status_code=404)
            self.roles[user_id].discard(role)
            return Response(status_code=204)

        return app


@dataclass
class Env:
    sessions: async_sessionmaker[AsyncSession]
    auth: StandInAuth
    syncer: roles.RoleSyncer

    async def grants(self, user_id: UUID, *grants: dict[str, Any], at: datetime = T0) -> None:
        async with self.sessions.begin() as session:
            session.add(UserGrants(user_id=user_id, version=1, grants=list(grants), updated_at=at))
            await roles.schedule(session, user_id, at=at)

    async def plan(self, role: str | None) -> None:
        async with self.sessions.begin() as session:
            session.add(
                PlanCoverage(
                    plan_id=uuid4(),
                    code=f"plan-{role}",
                    version=1,
                    all_movies=True,
                    movie_ids=[],
                    role=role,
                    active=True,
                    updated_at=T0,
                )
            )

    async def row(self, user_id: UUID) -> RoleSync:
        async with self.sessions() as session:
            row = await session.get(RoleSync, user_id)
        assert row is not None
        return row


def grant(role: str | None = PREMIUM, until: datetime | None = None) -> dict[str, Any]:
    return {
        "source": "subscription",
        "source_id": str(uuid4()),
        "plan_id": str(uuid4()),
        "movie_id": None,
        "role": role,
        "valid_until": until.isoformat().replace("+00:00", "Z") if until else None,
    }


def access_settings(service_settings: ServiceSettings, **overrides: Any) -> AccessSettings:
    return AccessSettings(**{**service_settings.model_dump(), "auth_url": AUTH_URL, **overrides})


@pytest.fixture(scope="module")
async def sessions(
    service_settings: ServiceSettings,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine, factory = make_database(
        access_settings(service_settings), service="access_api", schema="access"
    )
    yield factory
    await engine.dispose()


@pytest.fixture
async def env(
    service_settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Env]:
    async with sessions.begin() as session:
        await session.execute(sa.text("TRUNCATE user_grants, plan_coverage, role_sync"))
    auth = StandInAuth()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(auth.app())) as http:
        syncer = roles.RoleSyncer(sessions, http, access_settings(service_settings), AuthSettings())
        yield Env(sessions, auth, syncer)


class TestSyncDue:
    async def test_an_active_subscription_grants_its_role(self, env: Env) -> None:
        user = uuid4()
        await env.plan(PREMIUM)
        await env.grants(user, grant(until=T0 + timedelta(days=30)))

        assert await env.syncer.sync_due(T0) == 1

        assert env.auth.roles[user] == {PREMIUM}
        row = await env.row(user)
        assert (row.synced_roles, row.attempts, row.synced_at) == ([PREMIUM], 0, T0)

    async def test_calls_carry_a_valid_service_token(self, env: Env) -> None:
        await env.grants(uuid4(), grant())

        await env.syncer.sync_due(T0)

        [(_, _, authorization)] = env.auth.calls
        assert authorization is not None
        scheme, token = authorization.split(" ")
        assert scheme == "Bearer"
        assert TokenVerifier(AuthSettings()).verify(token).is_service

    async def test_a_configured_auth_token_is_used_as_is(
        self, env: Env, service_settings: ServiceSettings
    ) -> None:
        settings = access_settings(service_settings, auth_token=SecretStr("static-token"))
        await env.grants(uuid4(), grant())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(env.auth.app())) as http:
            syncer = roles.RoleSyncer(env.sessions, http, settings, AuthSettings())
            await syncer.sync_due(T0)

        assert [call[2] for call in env.auth.calls] == ["Bearer static-token"]

    async def test_an_expired_grants_role_is_revoked_and_other_roles_are_untouched(
        self, env: Env
    ) -> None:
        user = uuid4()
        env.auth.roles[user] = {PREMIUM, "moderator"}
        await env.plan(PREMIUM)
        await env.plan(None)
        await env.grants(user, grant(until=T0 - timedelta(days=1)))

        await env.syncer.sync_due(T0)

        assert env.auth.roles[user] == {"moderator"}
        assert [call[:2] for call in env.auth.calls] == [
            ("DELETE", f"/api/v1/users/{user}/roles/{PREMIUM}")
        ]
        assert (await env.row(user)).due_at is None

    async def test_roles_converge_after_the_auth_service_fails_twice(self, env: Env) -> None:
        user = uuid4()
        env.auth.fail_next = 2
        await env.grants(user, grant())

        await env.syncer.sync_due(T0)
        first = await env.row(user)
        assert (first.attempts, first.due_at) == (1, T0 + timedelta(seconds=1))
        assert first.last_error is not None
        assert "503" in first.last_error
        assert await env.syncer.sync_due(T0 + timedelta(milliseconds=500)) == 0

        await env.syncer.sync_due(T0 + timedelta(seconds=1))
        second = await env.row(user)
        assert (second.attempts, second.due_at) == (2, T0 + timedelta(seconds=3))

        await env.syncer.sync_due(T0 + timedelta(seconds=3))
        final = await env.row(user)
        assert (final.attempts, final.last_error, final.due_at) == (0, None, None)
        assert final.synced_roles == [PREMIUM]
        assert env.auth.roles[user] == {PREMIUM}

    async def test_one_users_failure_does_not_stop_another(self, env: Env) -> None:
        broken, fine = uuid4(), uuid4()
        env.auth.down_for.add(broken)
        await env.grants(broken, grant(), at=T0 - timedelta(seconds=1))
        await env.grants(fine, grant())

        assert await env.syncer.sync_due(T0) == 2

        assert env.auth.roles[fine] == {PREMIUM}
        assert (await env.row(fine)).attempts == 0
        assert (await env.row(broken)).attempts == 1
        assert env.auth.roles[broken] == set()

    async def test_a_role_is_revoked_when_its_grant_runs_out_without_any_event(
        self, env: Env
    ) -> None:
        user, end = uuid4(), T0 + timedelta(hours=1)
        await env.plan(PREMIUM)
        await env.grants(user, grant(until=end))
        await env.syncer.sync_due(T0)
        assert (await env.row(user)).due_at == end

        assert await env.syncer.sync_due(end - timedelta(seconds=1)) == 0
        assert env.auth.roles[user] == {PREMIUM}
        assert await env.syncer.sync_due(end) == 1
        assert env.auth.roles[user] == set()

    async def test_a_repeated_sync_changes_nothing(self, env: Env) -> None:
        user = uuid4()
        await env.grants(user, grant())
        await env.syncer.sync_due(T0)
        async with env.sessions.begin() as session:
            await roles.schedule(session, user, at=T0)

        await env.syncer.sync_due(T0)

        assert env.auth.roles[user] == {PREMIUM}
        assert (await env.row(user)).attempts == 0

    async def test_a_change_during_a_sync_keeps_the_user_due(self, env: Env) -> None:
        user = uuid4()
        await env.grants(user, grant())

        async def new_snapshot_arrives() -> None:
            # Would deadlock if the syncer held the row lock while calling the auth service.
            async with env.sessions.begin() as session:
                await roles.schedule(session, user, at=T0 + timedelta(seconds=1))

        env.auth.during_call = new_snapshot_arrives
        async with asyncio.timeout(10):
            await env.syncer.sync_due(T0)

        assert (await env.row(user)).due_at == T0 + timedelta(seconds=1)


class TestSchedule:
    async def test_the_earlier_due_time_wins_and_attempts_are_kept(self, env: Env) -> None:
        user = uuid4()
        async with env.sessions.begin() as session:
            await roles.schedule(session, user, at=T0)
            await session.execute(sa.update(RoleSync).values(attempts=3))
            await roles.schedule(session, user, at=T0 + timedelta(minutes=1))
        assert (await env.row(user)).due_at == T0

        async with env.sessions.begin() as session:
            await roles.schedule(session, user, at=T0 - timedelta(minutes=1))
        row = await env.row(user)
        assert (row.due_at, row.attempts) == (T0 - timedelta(minutes=1), 3)


class TestRules:
    @pytest.mark.parametrize(
        ("grants", "desired", "change"),
        [
            ([], set(), None),
            ([grant(until=None)], {PREMIUM}, None),
            ([grant(until=T0 + timedelta(days=1))], {PREMIUM}, T0 + timedelta(days=1)),
            ([grant(until=T0)], set(), None),
            ([grant(until=T0 - timedelta(days=1))], set(), None),
            ([grant(role=None, until=T0 + timedelta(days=1))], set(), None),
            (
                [grant("a", T0 + timedelta(days=2)), grant("b", T0 + timedelta(days=1))],
                {"a", "b"},
                T0 + timedelta(days=1),
            ),
            ([grant("a", T0 - timedelta(days=1)), grant("a", None)], {"a"}, None),
        ],
    )
    def test_desired_roles_and_next_change(
        self, grants: list[dict[str, Any]], desired: set[str], change: datetime | None
    ) -> None:
        assert roles.desired_roles(grants, T0) == desired
        assert roles.next_change(grants, T0) == change

    @pytest.mark.parametrize(
        ("attempts", "seconds"), [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300), (1000, 300)]
    )
    def test_backoff_doubles_up_to_five_minutes(self, attempts: int, seconds: int) -> None:
        assert roles.backoff(attempts) == timedelta(seconds=seconds)

    def test_role_sync_is_off_without_an_auth_url(self) -> None:
        assert roles.role_sync_enabled(AccessSettings(auth_url=None)) is False
        assert roles.role_sync_enabled(AccessSettings(auth_url=AUTH_URL)) is True
