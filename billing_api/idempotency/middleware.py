"""The Idempotency-Key middleware: which requests it applies to, whose key space, reading the
body once, and answering a retry -- with the stored response, or 422 / 409 saying why not -- or
running the route with a claim and keeping a copy of its response to store
(:mod:`billing_api.idempotency` describes the whole guarantee)."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import anyio
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing_api.idempotency import claims
from billing_api.idempotency.key_locks import KeyLocks
from billing_api.models import IdempotencyKey, IdempotencyKeyStatus
from shared import db
from shared.auth import TokenVerifier
from shared.errors import AppError, error_body

ANONYMOUS = "anonymous"
REPLAYED_HEADER = "Idempotent-Replayed"
_PREFIX = "/api/v1/"
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_CLAIM = "billing.idempotency_claim"


def rerun_finds_what_was_committed(scope: Scope) -> None:
    """For a route whose request commits and then calls out: running it again finds what it
    committed so far (and asks the outside again under the same id) instead of making it
    twice, so a failed answer (5xx, 401, 403) from now on releases its Idempotency-Key for a
    retry with the key to run the route again. Without a key, nothing to do."""
    claim: claims.Claim | None = scope.get(_CLAIM)
    if claim is not None:
        claim.rerunnable = True


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
        factory: claims.SessionFactory = state.session_factory
        subject = await _subject(scope)
        request_hash = _request_hash(scope, body)
        locked = await self.locks.try_lock(state.resources, state.settings, subject, key)
        try:
            outcome = await claims.claim_key(
                factory,
                subject,
                key,
                method=scope["method"],
                path=scope["path"],
                request_hash=request_hash,
                ttl=self.ttl,
                locked=locked,
            )
        except BaseException:
            if locked:
                await self.locks.unlock(subject, key)
            raise
        if not isinstance(outcome, claims.Claim):
            if locked:
                await self.locks.unlock(subject, key)
            await _answer(outcome, request_hash, locked=locked)(scope, receive, send)
            return
        db.guard_commits(scope, outcome.fence)  # every commit of the route's transaction
        scope[_CLAIM] = outcome

        captured = claims.CapturedResponse()

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
                    await claims.settle(factory, outcome, captured)
                finally:
                    await self.locks.unlock(subject, key)


def _answer(existing: IdempotencyKey | None, request_hash: str, *, locked: bool) -> Response:
    """Why the key was not claimed, from its row: the stored response replayed, or 422 / 409.
    ``locked``: this request holds the key's lock (no other request with it is running)."""
    if existing is not None and existing.request_hash != request_hash:
        detail = "this Idempotency-Key was already used for a different request"
        return _error(422, "IdempotencyKeyReused", detail)
    if existing is not None and existing.status == IdempotencyKeyStatus.IN_PROGRESS and locked:
        # Its effect is committed (else we would have claimed it) and no response stored.
        detail = (
            "the first request with this Idempotency-Key committed its effect; its response "
            "is replayed once stored, or read the resource with GET"
        )
        return _error(409, "IdempotentRequestCompleted", detail)
    if existing is None or existing.status == IdempotencyKeyStatus.IN_PROGRESS:
        detail = "a request with this Idempotency-Key is still being processed"
        return _error(409, "IdempotencyKeyInProgress", detail, headers={"Retry-After": "1"})
    return Response(
        existing.response_body,
        status_code=existing.response_status or 200,
        headers={REPLAYED_HEADER: "true"},
        media_type=existing.response_content_type,
    )


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
