"""The Idempotency-Key middleware on a small app over the real database and broker.

The test routes write into ``scratch.thing`` so each test can count the side effects a user
would notice: a retried POST must not create a second thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel

from billing_api import demo
from billing_api.app import create_app
from billing_api.config import BillingSettings
from billing_api.idempotency import IdempotencyMiddleware, delete_expired
from billing_api.ledger import service as ledger
from shared import clock, db
from shared.app import create_service_app
from shared.auth import AuthSettings, CurrentPrincipal, mint_user_token
from shared.broker import Broker
from shared.errors import AppError, Unauthorized
from shared.settings import ServiceSettings
from tests import support
from tests.billing_api.conftest import truncate_billing

BASE_URL = "http://billing.test"
SLOW = "/api/v1/slow-things"


@dataclass
class Gate:
    """Holds one call of the slow route until the test lets it go (and maybe fail)."""

    fail: bool = False
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_entered(self) -> None:
        await asyncio.wait_for(self.entered.wait(), 5)


class ThingIn(BaseModel):
    name: str


router = APIRouter(prefix="/api/v1")


async def add_thing(request: Request, name: str) -> str:
    thing_id = str(uuid4())
    async with request.app.state.session_factory() as session, session.begin():
        await session.execute(
            sa.text("INSERT INTO scratch.thing (id, name) VALUES (:id, :name)"),
            {"id": thing_id, "name": name},
        )
    return thing_id


@router.post("/things", status_code=201)
async def create_thing(body: ThingIn, user: CurrentPrincipal, request: Request) -> dict[str, str]:
    return {"id": await add_thing(request, body.name), "name": body.name, "owner": user.subject}


@router.post("/slow-things", status_code=201)
async def create_thing_slowly(body: ThingIn, request: Request) -> dict[str, str]:
    """The n-th call waits at the test's n-th gate; calls beyond the gates run straight on."""
    state = request.app.state
    call, state.slow_calls = state.slow_calls, state.slow_calls + 1
    if call < len(state.gates):
        gate: Gate = state.gates[call]
        gate.entered.set()
        await gate.release.wait()
        if gate.fail:
            raise RuntimeError("a bug while the request was slow")
    return {"id": await add_thing(request, body.name)}


@router.post("/broken-things")
async def create_thing_then_fail(body: ThingIn, request: Request) -> dict[str, str]:
    await add_thing(request, body.name)
    raise RuntimeError("a bug after the commit")


@router.post("/revoked-things")
async def create_thing_then_reject(body: ThingIn, request: Request) -> dict[str, str]:
    await add_thing(request, body.name)
    raise Unauthorized("session revoked")


class DependencyDown(AppError):
    status_code = 503


@router.post("/committed-things", status_code=201)
async def commit_thing_then_fail(body: ThingIn, session: db.SessionDep) -> dict[str, str]:
    """Commits the thing in the request's own transaction, as a route that commits before
    calling out does, then fails the way a lost connection or a dependency does: 503."""
    await session.execute(
        sa.text("INSERT INTO scratch.thing (id, name) VALUES (:id, :name)"),
        {"id": str(uuid4()), "name": body.name},
    )
    await db.commit(session)
    raise DependencyDown("down just after the commit")


def _app(service: str, settings: ServiceSettings) -> FastAPI:
    return create_service_app(
        service=service,
        schema="billing",
        title="idempotency test",
        description="a small app behind the idempotency middleware",
        settings=settings,
        routers=[router],
        middleware=[IdempotencyMiddleware],  # as billing_api.app wires it: inside the request id
    )


@pytest.fixture(scope="module")
async def app(service_settings: ServiceSettings, broker: Broker) -> AsyncIterator[FastAPI]:
    # ``broker`` (unused here) removes the exchanges this app declares when the run ends.
    app = _app("billing_api", service_settings)
    async with app.router.lifespan_context(app):
        await app.state.resources.broker.wait_connected()
        async with app.state.resources.engine.begin() as conn:
            await conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS scratch"))
            await conn.execute(
                sa.text("CREATE TABLE IF NOT EXISTS scratch.thing (id uuid PRIMARY KEY, name text)")
            )
        yield app


@pytest.fixture(scope="module")
async def replica(app: FastAPI, service_settings: ServiceSettings) -> AsyncIterator[FastAPI]:
    """A second process of the same service: its own middleware, pool and lock session."""
    replica = _app("billing_replica", service_settings)
    async with replica.router.lifespan_context(replica):
        yield replica


@pytest.fixture
async def replica_client(replica: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    replica.state.gates, replica.state.slow_calls = [], 0
    transport = httpx.ASGITransport(replica, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client
    for gate in replica.state.gates:
        gate.release.set()


async def end_lock_session(app: FastAPI, service: str) -> None:
    """What PostgreSQL does when a process dies: its lock session ends, its locks with it."""
    sessions = (
        "FROM pg_stat_activity WHERE datname = current_database() AND application_name = :name"
    )
    name = {"name": f"{service}-keys"}
    async with app.state.resources.engine.connect() as conn:
        ended = await conn.scalar(
            sa.text(f"SELECT count(pg_terminate_backend(pid)) {sessions}"), name
        )
    assert ended == 1

    async def gone() -> bool:  # the backend exits (and drops its locks) a moment later
        async with app.state.resources.engine.connect() as conn:
            return bool(await conn.scalar(sa.text(f"SELECT count(*) {sessions}"), name) == 0)

    await support.eventually(gone, timeout=5)


@pytest.fixture(autouse=True)
async def clean(app: FastAPI) -> AsyncIterator[None]:
    app.state.gates, app.state.slow_calls = [], 0
    async with app.state.resources.engine.begin() as conn:
        await conn.execute(sa.text("TRUNCATE billing.idempotency_key, scratch.thing"))
    yield
    for gate in app.state.gates:  # a failed test must not leave requests waiting forever
        gate.release.set()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # A route's unhandled error must reach us as the 500 a user sees, not as an exception.
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def auth(key: str | None = None, *, token: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token or mint_user_token(AuthSettings(), uuid4())}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def scalar(app: FastAPI, sql: str) -> int:
    async with app.state.resources.engine.connect() as conn:
        return int(await conn.scalar(sa.text(sql)) or 0)


async def things(app: FastAPI) -> int:
    return await scalar(app, "SELECT count(*) FROM scratch.thing")


async def stored_keys(app: FastAPI) -> int:
    return await scalar(app, "SELECT count(*) FROM billing.idempotency_key")


class TestReplay:
    async def test_same_key_and_body_twice_runs_once_and_replays_the_first_response(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        headers = auth("order-1")
        first = await client.post("/api/v1/things", json={"name": "a"}, headers=headers)
        again = await client.post("/api/v1/things", json={"name": "a"}, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.content == first.content
        assert again.headers["content-type"] == first.headers["content-type"]
        assert again.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        assert await things(app) == 1

    async def test_same_key_with_another_body_is_rejected_without_running(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        headers = auth("order-1")
        await client.post("/api/v1/things", json={"name": "a"}, headers=headers)
        response = await client.post("/api/v1/things", json={"name": "b"}, headers=headers)
        assert response.status_code == 422
        assert response.json()["error"] == "IdempotencyKeyReused"
        assert await things(app) == 1

    async def test_two_users_may_use_the_same_key_independently(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        alice = await client.post("/api/v1/things", json={"name": "a"}, headers=auth("k"))
        bob = await client.post("/api/v1/things", json={"name": "b"}, headers=auth("k"))
        assert alice.status_code == bob.status_code == 201
        assert alice.json()["owner"] != bob.json()["owner"]
        assert "Idempotent-Replayed" not in bob.headers
        assert await things(app) == 2
        assert await stored_keys(app) == 2

    async def test_without_the_header_every_request_runs_and_nothing_is_stored(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        headers = auth()
        for _ in range(2):
            response = await client.post("/api/v1/things", json={"name": "a"}, headers=headers)
            assert response.status_code == 201
        assert await things(app) == 2
        assert await stored_keys(app) == 0

    @pytest.mark.parametrize("key", [b"", b"has space", "naïve".encode(), b"k" * 256])
    async def test_a_malformed_key_is_rejected_without_running(
        self, app: FastAPI, client: httpx.AsyncClient, key: bytes
    ) -> None:
        headers = [(name.encode(), value.encode()) for name, value in auth().items()]
        headers.append((b"Idempotency-Key", key))
        response = await client.post("/api/v1/things", json={"name": "a"}, headers=headers)
        assert response.status_code == 422
        assert response.json()["error"] == "InvalidIdempotencyKey"
        assert await things(app) == 0


class TestInProgress:
    async def test_a_concurrent_request_with_the_key_in_progress_is_a_conflict(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        headers, body, gate = auth("slow-1"), {"name": "a"}, Gate()
        app.state.gates = [gate]
        first = asyncio.create_task(client.post(SLOW, json=body, headers=headers))
        await gate.wait_entered()
        concurrent = await asyncio.wait_for(client.post(SLOW, json=body, headers=headers), 5)
        gate.release.set()
        assert concurrent.status_code == 409
        assert concurrent.json()["error"] == "IdempotencyKeyInProgress"
        assert (await first).status_code == 201
        retry = await client.post(SLOW, json=body, headers=headers)
        assert retry.content == (await first).content
        assert await things(app) == 1

    async def test_a_key_left_in_progress_by_a_crashed_process_is_taken_over_by_one_retry(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        headers = auth("crashed-1")
        await client.post("/api/v1/things", json={"name": "a"}, headers=headers)
        # What a process that crashed a moment ago while running the route leaves behind: the
        # claim, and no session holding its lock (no minute to wait for).
        async with app.state.resources.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "UPDATE billing.idempotency_key SET status = 'in_progress', "
                    "response_status = NULL, response_body = NULL, created_at = now()"
                )
            )
        other = await client.post("/api/v1/things", json={"name": "b"}, headers=headers)
        assert other.status_code == 422  # only the same request may take the key over
        retries = await asyncio.gather(
            *(client.post("/api/v1/things", json={"name": "a"}, headers=headers) for _ in range(5))
        )
        ran = [
            r for r in retries if r.status_code == 201 and "Idempotent-Replayed" not in r.headers
        ]
        assert len(ran) == 1
        assert {r.status_code for r in retries} <= {201, 409}
        assert await things(app) == 2

    @pytest.mark.parametrize("later", [timedelta(seconds=61), timedelta(hours=2)])
    async def test_a_request_still_running_is_never_taken_over_however_long_it_runs(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        replica_client: httpx.AsyncClient,
        later: timedelta,
    ) -> None:
        headers, body, gate = auth("slow-2"), {"name": "a"}, Gate()
        app.state.gates = [gate]
        first = asyncio.create_task(client.post(SLOW, json=body, headers=headers))
        await gate.wait_entered()
        with clock.frozen(clock.now() + later):
            here = await asyncio.wait_for(client.post(SLOW, json=body, headers=headers), 5)
            there = await asyncio.wait_for(replica_client.post(SLOW, json=body, headers=headers), 5)
        assert here.status_code == there.status_code == 409
        assert there.json()["error"] == "IdempotencyKeyInProgress"
        gate.release.set()
        assert (await first).status_code == 201
        replay = await replica_client.post(SLOW, json=body, headers=headers)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.content == (await first).content
        assert await things(app) == 1

    async def test_a_key_whose_process_is_gone_is_taken_over_by_another_replica(
        self,
        app: FastAPI,
        replica: FastAPI,
        client: httpx.AsyncClient,
        replica_client: httpx.AsyncClient,
    ) -> None:
        headers, body = auth("slow-4"), {"name": "a"}
        stuck = Gate(fail=True)
        replica.state.gates = [stuck]
        first = asyncio.create_task(replica_client.post(SLOW, json=body, headers=headers))
        await stuck.wait_entered()
        assert (await client.post(SLOW, json=body, headers=headers)).status_code == 409
        await end_lock_session(app, "billing_replica")  # the replica's process is gone

        taken = await asyncio.wait_for(client.post(SLOW, json=body, headers=headers), 5)
        assert taken.status_code == 201
        stuck.release.set()  # (the stand-in for the dead process must not store anything)
        assert (await first).status_code == 500
        replay = await client.post(SLOW, json=body, headers=headers)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.content == taken.content
        assert await things(app) == 1

    async def test_keys_keep_working_after_the_lock_session_was_cut(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        assert (await client.post(SLOW, json={"name": "a"}, headers=auth("k-1"))).status_code == 201
        await end_lock_session(app, "billing_api")
        headers = auth("k-2")
        response = await client.post(SLOW, json={"name": "b"}, headers=headers)
        assert response.status_code == 201
        replay = await client.post(SLOW, json={"name": "b"}, headers=headers)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert await things(app) == 2

    async def test_a_cancelled_request_releases_its_key(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        headers, body, gate = auth("slow-3"), {"name": "a"}, Gate()
        app.state.gates = [gate]
        first = asyncio.create_task(client.post(SLOW, json=body, headers=headers))
        await gate.wait_entered()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await stored_keys(app) == 0
        retry = await asyncio.wait_for(client.post(SLOW, json=body, headers=headers), 5)
        assert retry.status_code == 201
        assert await things(app) == 1


class TestNotStored:
    async def test_a_server_error_is_not_stored_so_a_retry_runs_again(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        headers = auth("broken-1")
        for _ in range(2):
            response = await client.post(
                "/api/v1/broken-things", json={"name": "a"}, headers=headers
            )
            assert response.status_code == 500
            assert "Idempotent-Replayed" not in response.headers
        assert await things(app) == 2
        assert await stored_keys(app) == 0

    async def test_an_unauthorized_answer_is_not_stored_so_a_retry_runs_again(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        headers = auth("revoked-1")
        for _ in range(2):
            response = await client.post(
                "/api/v1/revoked-things", json={"name": "a"}, headers=headers
            )
            assert response.status_code == 401
            assert response.json()["error"] == "Unauthorized"
        assert await things(app) == 2
        assert await stored_keys(app) == 0

    async def test_a_server_error_after_a_commit_keeps_the_key_and_a_retry_runs_nothing(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        headers = auth("committed-1")
        first = await client.post("/api/v1/committed-things", json={"name": "a"}, headers=headers)
        assert first.status_code == 503
        retry = await client.post("/api/v1/committed-things", json={"name": "a"}, headers=headers)
        assert retry.status_code == 409
        assert retry.json()["error"] == "IdempotentRequestCompleted"
        assert await things(app) == 1

    async def test_a_request_without_a_valid_token_is_answered_401_and_not_stored(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        headers = auth("anon-1", token="not-a-jwt")
        response = await client.post("/api/v1/things", json={"name": "a"}, headers=headers)
        assert response.status_code == 401
        assert await stored_keys(app) == 0


class TestExpiry:
    async def test_an_expired_key_runs_again(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        headers = auth("order-1")  # minted now: still valid for the real clock after the jump
        await client.post("/api/v1/things", json={"name": "a"}, headers=headers)
        with clock.frozen(clock.now() + timedelta(hours=24, seconds=1)):
            again = await client.post("/api/v1/things", json={"name": "a"}, headers=headers)
            replay = await client.post("/api/v1/things", json={"name": "a"}, headers=headers)
        assert again.status_code == 201
        assert "Idempotent-Replayed" not in again.headers
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.content == again.content
        assert await things(app) == 2

    async def test_delete_expired_removes_only_expired_keys(self, app: FastAPI) -> None:
        now = clock.now()
        async with app.state.session_factory() as session, session.begin():
            for key, expires_at in [
                ("old", now - timedelta(hours=1)),
                ("just-expired", now),
                ("fresh", now + timedelta(seconds=1)),
            ]:
                await session.execute(
                    sa.text(
                        "INSERT INTO billing.idempotency_key (subject, key, method, path, "
                        "request_hash, status, created_at, expires_at) VALUES "
                        "('u', :key, 'POST', '/api/v1/things', 'h', 'done', :now, :expires_at)"
                    ),
                    {"key": key, "now": now - timedelta(days=1), "expires_at": expires_at},
                )
        deleted = await delete_expired(app.state.session_factory, now)
        assert deleted == 2
        assert await scalar(app, "SELECT count(*) FROM billing.idempotency_key") == 1
        async with app.state.resources.engine.connect() as conn:
            left = await conn.scalar(sa.text("SELECT key FROM billing.idempotency_key"))
        assert left == "fresh"


# --- the real billing API: a wallet purchase is charged at once, no gateway in between ---------

MOVIE, PRICE, FUNDS = demo.movie_id("Salt and Cedar"), 19900, 50000


@pytest.fixture
async def billing(
    app: FastAPI, service_settings: ServiceSettings
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, FastAPI]]:
    """Two processes of billing-api (their own middleware, pool and lock session), clients of
    each, and the first app (for its database)."""
    settings = BillingSettings(**service_settings.model_dump())
    first, second = create_app(settings), create_app(settings)
    async with (
        first.router.lifespan_context(first),
        second.router.lifespan_context(second),
        _client(first) as here,
        _client(second) as there,
    ):
        await truncate_billing(first)
        async with first.state.session_factory() as session, session.begin():
            await demo.load(session)
        yield here, there, first


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL)


async def wallet_with(billing: FastAPI, amount: int) -> UUID:
    """A user whose wallet holds ``amount`` (a card top-up, as captured)."""
    user_id = uuid4()
    async with billing.state.session_factory() as session, session.begin():
        await ledger.post(
            session,
            kind="payment_captured",
            reference=str(uuid4()),
            user_id=user_id,
            description="wallet top-up",
            currency="RUB",
            lines=ledger.transfer(
                ledger.clearing_account("sandbox"), ledger.wallet_account(user_id), amount
            ),
        )
    return user_id


def user_headers(user_id: UUID, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {mint_user_token(AuthSettings(), user_id)}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def balance(client: httpx.AsyncClient, user_id: UUID) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/wallet", headers=user_headers(user_id))
    balances: list[dict[str, Any]] = response.json()["balances"]
    return balances


async def waiting_for_locks(billing: FastAPI, count: int) -> None:
    """Until ``count`` sessions of this database wait for a lock (requests held mid-way)."""

    async def waiting() -> bool:
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        return await scalar(billing, sql) == count

    await support.eventually(waiting, timeout=5)


async def cut_lock_session_of_running_key(billing: FastAPI) -> None:
    """What a proxy's idle timeout does to a live process: the one lock session that holds a
    key's lock (the request running it goes on) is ended."""
    holder = (
        "SELECT a.pid FROM pg_stat_activity a WHERE a.datname = current_database() "
        "AND a.application_name = 'billing_api-keys' AND EXISTS (SELECT 1 FROM pg_locks l "
        "WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)"
    )
    async with billing.state.resources.engine.connect() as conn:
        [pid] = (await conn.scalars(sa.text(holder))).all()
        await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    async def gone() -> bool:
        return (
            await scalar(billing, f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}") == 0
        )

    await support.eventually(gone, timeout=5)


class TestWalletPurchaseFenced:
    async def test_a_retry_after_the_lock_session_was_cut_charges_the_wallet_once(
        self, billing: tuple[httpx.AsyncClient, httpx.AsyncClient, FastAPI]
    ) -> None:
        here, there, app = billing
        user_id = await wallet_with(app, FUNDS)
        body, headers = (
            {"movie_id": str(MOVIE), "payment_method": "wallet"},
            user_headers(user_id, "buy-1"),
        )
        async with app.state.session_factory() as hold, hold.begin():
            await ledger.lock_wallet(hold, user_id, "RUB")  # the first request waits here
            first = asyncio.create_task(here.post("/api/v1/purchases", json=body, headers=headers))
            await waiting_for_locks(app, 1)
            await cut_lock_session_of_running_key(app)  # the first process lives on
            retry = asyncio.create_task(there.post("/api/v1/purchases", json=body, headers=headers))
            await waiting_for_locks(app, 2)  # the retry took the key over and runs too
        first_answer, retry_answer = await asyncio.wait_for(asyncio.gather(first, retry), 10)

        assert await balance(here, user_id) == [{"amount": FUNDS - PRICE, "currency": "RUB"}]
        # The retry claimed the key before the first committed: the first's commit is refused.
        assert first_answer.status_code == 409
        assert first_answer.json()["error"] == "IdempotencyKeyTakenOver"
        assert retry_answer.status_code == 201
        purchases = (await here.get("/api/v1/purchases", headers=headers)).json()["items"]
        assert [p["status"] for p in purchases] == ["completed"]
        replay = await here.post("/api/v1/purchases", json=body, headers=headers)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.content == retry_answer.content

    async def test_a_retry_after_the_effect_committed_but_no_answer_was_stored_is_refused(
        self, billing: tuple[httpx.AsyncClient, httpx.AsyncClient, FastAPI]
    ) -> None:
        here, there, app = billing
        user_id = await wallet_with(app, FUNDS)
        body, headers = (
            {"movie_id": str(MOVIE), "payment_method": "wallet"},
            user_headers(user_id, "buy-2"),
        )
        assert (await here.post("/api/v1/purchases", json=body, headers=headers)).status_code == 201
        # What a process that died between its commit and storing its answer leaves behind.
        async with app.state.resources.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "UPDATE billing.idempotency_key SET status = 'in_progress', "
                    "response_status = NULL, response_body = NULL"
                )
            )

        retry = await asyncio.wait_for(
            there.post("/api/v1/purchases", json=body, headers=headers), 5
        )
        assert await balance(here, user_id) == [{"amount": FUNDS - PRICE, "currency": "RUB"}]
        assert retry.status_code == 409
        assert retry.json()["error"] == "IdempotentRequestCompleted"
        purchases = (await here.get("/api/v1/purchases", headers=headers)).json()["items"]
        assert [p["status"] for p in purchases] == ["completed"]
