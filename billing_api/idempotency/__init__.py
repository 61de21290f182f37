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

The package, one idea a module: :mod:`~billing_api.idempotency.middleware` (which requests, their
body, capturing and answering the response), :mod:`~billing_api.idempotency.claims` (the key's
row: claim, fence, store or release, and deleting expired keys) and
:mod:`~billing_api.idempotency.key_locks` (the advisory locks that tell a running request from
one that is gone).

Other decisions: headers other than the content type are not replayed; anonymous callers share one
key space (the user API's POSTs need a token, so this only matters for public POSTs, where clients
should send random keys). Pure ASGI, not ``BaseHTTPMiddleware``: the response streams through
unchanged while a copy is kept, and a response that was completely produced is stored even if the
client went away before receiving it — exactly the case a retry with the same key is for.
"""

from billing_api.idempotency.claims import IdempotencyKeyTakenOver, delete_expired
from billing_api.idempotency.key_locks import KeyLocks
from billing_api.idempotency.middleware import (
    ANONYMOUS,
    REPLAYED_HEADER,
    IdempotencyMiddleware,
    rerun_finds_what_was_committed,
)

__all__ = [
    "ANONYMOUS",
    "REPLAYED_HEADER",
    "IdempotencyKeyTakenOver",
    "IdempotencyMiddleware",
    "KeyLocks",
    "delete_expired",
    "rerun_finds_what_was_committed",
]
