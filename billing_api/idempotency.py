"""Idempotency keys for the user API: a retried POST gets the first answer, not a second effect.

A ``POST`` under ``/api/v1/`` with an ``Idempotency-Key`` header (1-255 visible ASCII characters,
else 422 ``InvalidIdempotencyKey``) is recorded per caller — the verified token's subject, or
``"anonymous"`` without a valid token — and per key in ``idempotency_key``:

* the first request claims the key (a row *in progress*, with a new ``owner`` token), runs, and
  its response is stored for ``ttl`` (24 h): status, body and content type;
* the same key with the same request (hash of method, path, query string and body) replays the
  stored response with ``Idempotent-Replayed: true``; with another request it answers 422
  ``IdempotencyKeyReused`` and the route does not run;
* while the first request is still running, the key answers 409 ``IdempotencyKeyInProgress``,
  however long it runs. A claim is taken over (by one retry of the same request: the claim is a
  conditional upsert, setting a new owner) only when its request is gone without committing
  anything. Whether it is gone, PostgreSQL tells us: a running request holds a session-level
  advisory lock on its key (:class:`KeyLocks`), from before it claims the key until after it
  stored its response or released the claim. A claim still *in progress* whose lock is free was
  left by a request that is gone — its process died (the server ends a dead client's session and
  its locks: at once for a process that exits, within about a minute through TCP keepalives for
  a machine that vanished) or it could not release the claim (the database failed just then) —
  or whose lock session was cut while it runs (a proxy's idle timeout, ``pg_terminate_backend``);
* so correctness does not rest on that lock but on a fence in the route's own transaction: every
  commit of it (the session dependency's, and a card checkout's early one: both go through
  :func:`shared.db.commit`) first updates the key's row *as its owner*, setting
  ``effect_committed_at``, and keeps that row locked until the commit. A takeover waits behind
  that row lock, and is refused once ``effect_committed_at`` is set; a request whose claim was
  taken over before it committed has its commit refused (rolled back, 409
  ``IdempotencyKeyTakenOver``). Either way one request's effect is committed, once;
* a claim whose effect is committed but whose response is not stored — its process died between
  the two, or the request ended without answering (cancelled, or an unhandled error) — is never
  run again: a retry answers 409 ``IdempotentRequestCompleted`` ("its response is replayed once
  stored, or read the resource with GET"; it is stored if the first request is still alive) until
  the key expires. The client reads what it made (``GET`` of its subscriptions, purchases or
  payments) or starts afresh with a new key;
* 5xx, 401 and 403 answers are not stored: the key is released so the client may retry with it,
  unless the request committed its effect. Then the key is kept like a claim that was never
  answered (a wallet purchase whose commit reached the database but whose connection was lost
  right after, 503, is not charged again) -- except after a route said that running it again
  finds what it committed instead of making it twice (:func:`rerun_finds_what_was_committed`:
  a card checkout whose gateway is down, 503, opens the same pending payment on the retry). An
  expired key is claimed afresh.

The guarantee and its limit: claim, store and release are each a short transaction of their own,
separate from the route's (which may itself commit more than once: a card checkout commits its
payment before asking the gateway, :mod:`billing_api.payments.checkout`); only the fence is part
of the route's transaction. A route's writes are fenced only when they go through the request's
session (``SessionDep``) and are committed by :func:`shared.db.commit`: a route that opens a
session of its own commits outside the fence. The advisory locks live on one connection per
process, held for the process's life: it must be a real session (not one transaction-pooled by
PgBouncer), and if that connection is cut while the process lives, its locks are taken again on
the next connection (a key a retry took over meanwhile is logged; the fence keeps it to one
effect).

Other decisions: headers other than the content type are not replayed; anonymous callers share one
key space (the user API's POSTs need a token, so this only matters for public POSTs, where clients
should send random keys). Pure ASGI, not ``BaseHTTPMiddleware``: the response streams through
unchanged while a copy is kept, and a response that was completely produced is stored even if the
client went away before receiving it — exactly the case a retry with the same key is for.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import anyio
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing_api.models import IdempotencyKey
from shared import clock, db
from shared.auth import TokenVerifier
from shared.errors import AppError, Conflict, error_body, unavailable_dependency
from shared.resources import Resources, make_database
from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
REPLAYED_HEADER = "Idempotent-Replayed"
_PREFIX = "/api/v1/"
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_NOT_STORED = frozenset({401, 403})  # the caller's credentials, not the request, decided these
_IN_PROGRESS, _DONE = "in_progress", "done"

_SessionFactory = async_sessionmaker[AsyncSession]
_CLAIM = "billing.idempotency_claim"


def rerun_finds_what_was_committed(scope: Scope) -> None:
    """For a route whose request commits and then calls out: running it again finds what it
    committed so far (and asks the outside again under the same id) instead of making it
    twice, so a failed answer (5xx, 401, 403) from now on releases its Idempotency-Key for a
    retry with the key to run the route again. Without a key, nothing to do."""
    claim: _Claim | None = scope.get(_CLAIM)
    if claim is not None:
        claim.rerunnable = True


class IdempotencyKeyTakenOver(Conflict):
    default_detail = (
        "a retry with this Idempotency-Key took it over while this request ran: nothing of this "
        "request was committed; the retry's response is replayed once stored"
    )


@dataclass(slots=True)
class _Claim:
    subject: str
    key: str
    owner: UUID  # identifies this claim: a takeover sets a new one
    rerunnable: bool = False  # a failed answer releases the key even after a commit

    async def fence(self, session: AsyncSession) -> None:
        """In the request's transaction, right before each commit: mark the claim's effect
        committed, as its owner, or refuse the commit (:class:`IdempotencyKeyTakenOver`) when
        a retry took the claim over. The row stays locked until the commit, so a takeover
        waits for it and then sees the effect committed. It is the transaction's last lock, and
        the transactions that take it first (claim, store, release) take no other: no cycle."""
        table = IdempotencyKey
        owned = await session.scalar(
            sa.update(table)
            .where(table.subject == self.subject, table.key == self.key, table.owner == self.owner)
            .values(effect_committed_at=sa.func.coalesce(table.effect_committed_at, clock.now()))
            .returning(table.key)
            .execution_options(synchronize_session=False)
        )
        if owned is None:
            raise IdempotencyKeyTakenOver()


@dataclass(slots=True)
class _Captured:
    status: int | None = None
    content_type: str | None = None
    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False

    def storable(self) -> bool:
        status = self.status
        return self.complete and status is not None and status < 500 and status not in _NOT_STORED


class IdempotencyMiddleware:
    """Store the first response to a keyed ``POST /api/v1/...`` and replay it for retries."""

    def __init__(self, app: ASGIApp, *, ttl: timedelta = timedelta(hours=24)) -> None:
        self.app = app
        self.ttl = ttl
        self.locks = KeyLocks()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _idempotency_key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        if not _VALID_KEY.fullmatch(key):
            detail = "Idempotency-Key must be 1-255 visible ASCII characters"
            await _error(422, "InvalidIdempotencyKey", detail)(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client left before sending its request
            return
        state = scope["app"].state
        factory: _SessionFactory = state.session_factory
        subject = await _subject(scope)
        locked = await self.locks.try_lock(state.resources, state.settings, subject, key)
        try:
            outcome = await self._claim(
                factory, subject, key, scope, _request_hash(scope, body), locked=locked
            )
        except BaseException:
            if locked:
                await self.locks.unlock(subject, key)
            raise
        if isinstance(outcome, Response):
            if locked:
                await self.locks.unlock(subject, key)
            await outcome(scope, receive, send)
            return
        db.guard_commits(scope, outcome.fence)  # every commit of the route's transaction
        scope[_CLAIM] = outcome

        captured = _Captured()

        async def send_and_capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured.status = message["status"]
                captured.content_type = _header(message.get("headers", []), b"content-type")
            elif message["type"] == "http.response.body":
                captured.chunks.append(message.get("body", b""))
                captured.complete = not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, _replaying(body, receive), send_and_capture)
        finally:
            # Even when cancelled: a claim left behind would answer 409 until the lock is free.
            with anyio.CancelScope(shield=True):
                try:
                    await _settle(factory, outcome, captured)
                finally:
                    await self.locks.unlock(subject, key)

    async def _claim(
        self,
        factory: _SessionFactory,
        subject: str,
        key: str,
        scope: Scope,
        request_hash: str,
        *,
        locked: bool,
    ) -> _Claim | Response:
        """Claim the key (new, expired, or left by a request that is gone before committing) or
        say why not: replay, 422 or 409. Only the holder of the key's lock (``locked``) may
        claim."""
        now, owner = clock.now(), uuid4()
        table = IdempotencyKey
        fresh = {
            "method": scope["method"],
            "path": scope["path"][:500],
            "request_hash": request_hash,
            "status": _IN_PROGRESS,
            "created_at": now,
            "expires_at": now + self.ttl,
            "owner": owner,
            "effect_committed_at": None,
        }
        row = insert(table).values(subject=subject, key=key, **fresh)
        # We hold the key's lock, so a claim still in progress was left by a request that is
        # gone -- or whose lock session was cut while it runs: the takeover then waits for its
        # transaction's fence (the row lock) and is refused once its effect is committed.
        abandoned = sa.and_(
            table.status == _IN_PROGRESS,
            table.request_hash == request_hash,
            table.effect_committed_at.is_(None),
        )
        cleared = {"response_status": None, "response_body": None, "response_content_type": None}
        claim = row.on_conflict_do_update(
            index_elements=[table.subject, table.key],
            set_={**fresh, **cleared},
            where=sa.or_(table.expires_at <= now, abandoned),
        ).returning(table.created_at)
        current = sa.select(table).where(table.subject == subject, table.key == key)
        async with factory() as session, session.begin():
            if not locked:  # a running request holds the key: answer from its row, never claim
                existing = await session.scalar(current)
                if existing is not None and existing.expires_at <= now:
                    existing = None
            elif await session.scalar(claim) is not None:
                return _Claim(subject, key, owner)
            else:
                # Not claimed: the upsert locked the existing row, so it is still there.
                existing = await session.scalar(current)
        if existing is not None and existing.request_hash != request_hash:
            detail = "this Idempotency-Key was already used for a different request"
            return _error(422, "IdempotencyKeyReused", detail)
        if existing is not None and existing.status == _IN_PROGRESS and locked:
            # Its effect is committed (else we would have claimed it) and no response stored.
            detail = (
                "the first request with this Idempotency-Key committed its effect; its response "
                "is replayed once stored, or read the resource with GET"
            )
            return _error(409, "IdempotentRequestCompleted", detail)
        if existing is None or existing.status == _IN_PROGRESS:
            detail = "a request with this Idempotency-Key is still being processed"
            return _error(409, "IdempotencyKeyInProgress", detail, headers={"Retry-After": "1"})
        return Response(
            existing.response_body,
            status_code=existing.response_status or 200,
            headers={REPLAYED_HEADER: "true"},
            media_type=existing.response_content_type,
        )


class KeyLocks:
    """Session-level advisory locks on the keys this process is running, on one connection.

    ``pg_try_advisory_lock`` never waits: a key locked by another session belongs to a request
    running now (or just finishing), and is answered 409 (or replayed). The process keeps the
    keys it runs in memory too, because PostgreSQL's advisory locks are re-entrant within a
    session: a second request with the same key in this process must not "get" the lock again.
    The connection comes from an engine of its own (one connection, opened on first use and
    closed with the app's resources), so requests filling the pool never wait behind it. Lock
    and unlock are one short statement each, shielded from cancellation: a connection is only
    dropped when it is already broken, since dropping it frees every key this process runs.
    """

    def __init__(self) -> None:
        self._running: set[tuple[str, str]] = set()  # keys of requests here, lock held or asked
        self._locked: set[tuple[str, str]] = set()  # keys whose lock this process holds
        self._mutex = asyncio.Lock()
        self._engine: AsyncEngine | None = None
        self._connection: AsyncConnection | None = None

    async def try_lock(
        self, resources: Resources, settings: ServiceSettings, subject: str, key: str
    ) -> bool:
        """Whether this request now holds the key's lock (no one else is running it)."""
        name = (subject, key)
        if name in self._running:
            return False
        self._running.add(name)  # before any await: a twin request here sees it
        for attempt in (1, 2):  # a connection found cut is replaced once
            try:
                with anyio.CancelScope(shield=True):
                    async with self._mutex:
                        connection = await self._connect(resources, settings)
                        got = bool(await connection.scalar(sa.select(_try_lock(name))))
                        if got:
                            self._locked.add(name)
                break
            except Exception as exc:
                if not await self._drop_if_broken(exc) or attempt == 2:
                    self._running.discard(name)
                    raise
        if not got:
            self._running.discard(name)
        return got

    async def unlock(self, subject: str, key: str) -> None:
        """Let the key go (its claim was settled or never made)."""
        name = (subject, key)
        try:
            with anyio.CancelScope(shield=True):
                async with self._mutex:
                    if self._connection is not None and name in self._locked:
                        await self._connection.scalar(
                            sa.select(sa.func.pg_advisory_unlock(_lock_id(name)))
                        )
        except Exception as exc:
            logger.warning("idempotency key lock not released: %s", exc)
            await self._drop_if_broken(exc)
        finally:
            self._locked.discard(name)
            self._running.discard(name)

    async def _connect(self, resources: Resources, settings: ServiceSettings) -> AsyncConnection:
        """The keeper's connection. A new one first takes again the locks of the requests still
        running here: the old session's locks ended with it."""
        if self._connection is not None and not self._connection.closed:
            return self._connection
        if self._engine is None:
            self._engine, _ = make_database(
                settings, service=f"{resources.service}-keys", schema=resources.schema, pool_size=1
            )
            resources.exit_stack.push_async_callback(self.close)
        connection = await self._engine.connect()
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        for setting, value in _KEEPALIVE.items():  # a vanished host's locks end within a minute
            await connection.execute(sa.text(f"SET {setting} = {value}"))
        for name in list(self._locked):
            if not await connection.scalar(sa.select(_try_lock(name))):
                self._locked.discard(name)  # its commit is refused unless it came first (fence)
                logger.warning("idempotency key %r of %s taken over while it ran", *name[::-1])
        self._connection = connection
        return connection

    async def _drop_if_broken(self, exc: BaseException) -> bool:
        """Forget the connection if ``exc`` says it is gone (its locks went with it)."""
        if unavailable_dependency(exc) != "database":
            return False
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.invalidate()
            except Exception as error:
                logger.debug("closing the idempotency lock connection: %s", error)
        return True

    async def close(self) -> None:
        """End the session (and every lock with it) and the engine."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()
        self._locked.clear()


_KEEPALIVE = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}


def _lock_id(name: tuple[str, str]) -> sa.ColumnElement[Any]:
    """The advisory lock's 64-bit id; a collision only makes one request answer 409."""
    subject, key = name
    return sa.func.hashtextextended(f"idempotency:{subject}:{key}", 0)


def _try_lock(name: tuple[str, str]) -> sa.ColumnElement[Any]:
    return sa.func.pg_try_advisory_lock(_lock_id(name))


async def delete_expired(sessions: _SessionFactory, now: datetime, *, limit: int = 1000) -> int:
    """Delete up to ``limit`` keys expired at ``now`` (skipping locked ones) in one transaction of
    its own; the number deleted."""
    table = IdempotencyKey
    batch = (
        sa.select(table.subject, table.key)
        .where(table.expires_at <= now)
        .order_by(table.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with sessions() as session, session.begin():
        result = await session.execute(
            sa.delete(table).where(sa.tuple_(table.subject, table.key).in_(batch))
        )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def _settle(factory: _SessionFactory, claim: _Claim, captured: _Captured) -> None:
    """Store a complete, storable response under our claim; otherwise release the claim --
    unless the request committed its effect (and its route did not say a rerun finds it)."""
    ours = sa.and_(
        IdempotencyKey.subject == claim.subject,
        IdempotencyKey.key == claim.key,
        IdempotencyKey.status == _IN_PROGRESS,
        IdempotencyKey.owner == claim.owner,  # not taken over meanwhile
    )
    if captured.storable():
        statement: sa.Executable = (
            sa.update(IdempotencyKey)
            .where(ours)
            .values(
                status=_DONE,
                response_status=captured.status,
                response_body=b"".join(captured.chunks),
                response_content_type=captured.content_type,
            )
        )
    elif captured.complete and claim.rerunnable:  # a failed answer; a rerun finds the effect
        statement = sa.delete(IdempotencyKey).where(ours)
    else:  # a failed answer or none (cancelled, a bug): an effect committed must not run again
        statement = sa.delete(IdempotencyKey).where(
            ours, IdempotencyKey.effect_committed_at.is_(None)
        )
    async with factory() as session, session.begin():
        await session.execute(statement)


def _idempotency_key(scope: Scope) -> str | None:
    """The header's value when this middleware applies to the request, else ``None``."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    if not path.startswith(_PREFIX):
        return None
    return _header(scope["headers"], b"idempotency-key")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    return next((value.decode("latin-1") for key, value in headers if key.lower() == name), None)


async def _subject(scope: Scope) -> str:
    """Whose key space this is; the route itself still rejects a missing or bad token."""
    scheme, _, token = (_header(scope["headers"], b"authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ANONYMOUS
    verifier: TokenVerifier = scope["app"].state.token_verifier
    try:
        return (await verifier.verify_async(token.strip())).subject
    except AppError:
        return ANONYMOUS


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already read body to the app, then waits for disconnect."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _request_hash(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(), scope["query_string"]):
        digest.update(part + b"\0")
    digest.update(body)
    return digest.hexdigest()


def _error(
    status: int, name: str, detail: str, *, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(error_body(name, detail), status_code=status, headers=headers)
