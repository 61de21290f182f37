"""Idempotency keys for the user API: a retried POST gets the first answer, not a second effect.

A ``POST`` under ``/api/v1/`` with an ``Idempotency-Key`` header (1-255 visible ASCII characters,
else 422 ``InvalidIdempotencyKey``) is recorded per caller — the verified token's subject, or
``"anonymous"`` without a valid token — and per key in ``idempotency_key``:

* the first request claims the key (a row *in progress*), runs, and its response is stored for
  ``ttl`` (24 h): status, body and content type;
* the same key with the same request (hash of method, path, query string and body) replays the
  stored response with ``Idempotent-Replayed: true``; with another request it answers 422
  ``IdempotencyKeyReused`` and the route does not run;
* while the first request is still running, the key answers 409 ``IdempotencyKeyInProgress``; a
  claim older than ``in_progress_timeout`` is taken to be a crashed request and one retry takes it
  over (the claim is a conditional upsert, so exactly one taker wins);
* 5xx, 401 and 403 answers, and requests that fail before answering, are not stored: the key is
  released so the client may retry with it. An expired key is claimed afresh.

The guarantee and its limit: claim, store and release are each a short transaction of their own,
separate from the route's. The route commits its transaction *before* the response is stored, so a
crash exactly between the two leaves a claim whose effect happened; once the claim is stale a
retry runs the route again. Routes with money at stake keep their own dedupe for that window
(checkout returns the pending subscription instead of charging twice).

Other decisions: headers other than the content type are not replayed; anonymous callers share one
key space (the user API's POSTs need a token, so this only matters for public POSTs, where clients
should send random keys). Pure ASGI, not ``BaseHTTPMiddleware``: the response streams through
unchanged while a copy is kept, and a response that was completely produced is stored even if the
client went away before receiving it — exactly the case a retry with the same key is for.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing_api.models import IdempotencyKey
from shared import clock
from shared.auth import TokenVerifier
from shared.errors import AppError, error_body

ANONYMOUS = "anonymous"
REPLAYED_HEADER = "Idempotent-Replayed"
_PREFIX = "/api/v1/"
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_NOT_STORED = frozenset({401, 403})  # the caller's credentials, not the request, decided these
_IN_PROGRESS, _DONE = "in_progress", "done"

_SessionFactory = async_sessionmaker[AsyncSession]


@dataclass(frozen=True, slots=True)
class _Claim:
    subject: str
    key: str
    claimed_at: datetime  # also identifies this claim: a takeover or renewal sets a new one


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

    def __init__(
        self,
        app: ASGIApp,
        *,
        ttl: timedelta = timedelta(hours=24),
        in_progress_timeout: timedelta = timedelta(seconds=60),
    ) -> None:
        self.app = app
        self.ttl = ttl
        self.in_progress_timeout = in_progress_timeout

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
        factory: _SessionFactory = scope["app"].state.session_factory
        subject = await _subject(scope)
        outcome = await self._claim(factory, subject, key, scope, _request_hash(scope, body))
        if isinstance(outcome, Response):
            await outcome(scope, receive, send)
            return

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
            # Even when cancelled: a claim left behind would answer 409 until it goes stale.
            with anyio.CancelScope(shield=True):
                await _settle(factory, outcome, captured)

    async def _claim(
        self, factory: _SessionFactory, subject: str, key: str, scope: Scope, request_hash: str
    ) -> _Claim | Response:
        """Claim the key (new, expired or stale) or say why not: replay, 422 or 409."""
        now = clock.now()
        table = IdempotencyKey
        fresh = {
            "method": scope["method"],
            "path": scope["path"][:500],
            "request_hash": request_hash,
            "status": _IN_PROGRESS,
            "created_at": now,
            "expires_at": now + self.ttl,
        }
        row = insert(table).values(subject=subject, key=key, **fresh)
        stale = sa.and_(
            table.status == _IN_PROGRESS,
            table.request_hash == request_hash,
            table.created_at <= now - self.in_progress_timeout,
        )
        cleared = {"response_status": None, "response_body": None, "response_content_type": None}
        claim = row.on_conflict_do_update(
            index_elements=[table.subject, table.key],
            set_={**fresh, **cleared},
            where=sa.or_(table.expires_at <= now, stale),
        ).returning(table.created_at)
        async with factory() as session, session.begin():
            if await session.scalar(claim) is not None:
                return _Claim(subject, key, now)
            # Not claimed: the upsert locked the existing row, so it is still there as read here.
            existing = await session.scalar(
                sa.select(table).where(table.subject == subject, table.key == key)
            )
        if existing is not None and existing.request_hash != request_hash:
            detail = "this Idempotency-Key was already used for a different request"
            return _error(422, "IdempotencyKeyReused", detail)
        if existing is None or existing.status == _IN_PROGRESS:
            detail = "a request with this Idempotency-Key is still being processed"
            return _error(409, "IdempotencyKeyInProgress", detail, headers={"Retry-After": "1"})
        return Response(
            existing.response_body,
            status_code=existing.response_status or 200,
            headers={REPLAYED_HEADER: "true"},
            media_type=existing.response_content_type,
        )


async def delete_expired(session: AsyncSession, now: datetime, *, limit: int = 1000) -> int:
    """Delete up to ``limit`` keys expired at ``now`` (skipping locked ones); the number deleted."""
    table = IdempotencyKey
    batch = (
        sa.select(table.subject, table.key)
        .where(table.expires_at <= now)
        .order_by(table.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await session.execute(
        sa.delete(table).where(sa.tuple_(table.subject, table.key).in_(batch))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def _settle(factory: _SessionFactory, claim: _Claim, captured: _Captured) -> None:
    """Store a complete, storable response under our claim; otherwise release the claim."""
    ours = sa.and_(
        IdempotencyKey.subject == claim.subject,
        IdempotencyKey.key == claim.key,
        IdempotencyKey.status == _IN_PROGRESS,
        IdempotencyKey.created_at == claim.claimed_at,  # not taken over meanwhile
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
    else:
        statement = sa.delete(IdempotencyKey).where(ours)
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
