"""The pipeline benchmark's eyes: when did the access API first answer ``allowed`` for a user?

Polling the access API for every waiting user would load the very process being measured (eight
GETs every 10 ms made the load generator one of the busiest processes of the run). Instead one
PostgreSQL connection listens to ``access_changed``: the access worker sends ``u:<user_id>`` when
a user's grants change, in the transaction that changes them, so the notification arrives once
the access API can serve the new grants. On a notification for a user still waiting, the access
API is asked once; an answer other than allowed (its cache may not have dropped the user yet, or
the notification was for an earlier change) is asked again ``RETRY_S`` later, then twice and four
times that, after which the user waits for its next notification (or the fallback). A 503 (the
access API could not reach its database: on a shared server, PostgreSQL's connection limit) is
asked again ``UNAVAILABLE_RETRY_S`` later and counted; any other error ends the run.

A fallback poll guards against a notification that never comes: once a second it asks about
the ``FALLBACK_BATCH`` users waiting longest who were paid more than ``FALLBACK_AFTER_S`` ago, have
had no notification and were not asked about by it in the last ``FALLBACK_AFTER_S``. It is
bounded (at most ``FALLBACK_BATCH`` requests a second, whatever N) because asking about every
user every second would load the access API more than the payments do. Users it finds allowed
are counted (``allowed_by_fallback``): when the pipeline is slow it may now and then ask about a
user whose notification is on its way, but more than a few say notifications went missing.

Payloads are read loosely (every ``u:<uuid>`` in it), so a worker that some day sends one
notification for several users is still understood; ``p:<plan>`` (a plan changed) is ignored.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Collection

import asyncpg
import httpx

from bench import common

CHANNEL = "access_changed"
CONFIRM_CONCURRENCY = 4
RETRY_S = 0.05
RETRIES = 3
UNAVAILABLE_RETRY_S = 0.2
FALLBACK_EVERY_S = 1.0
FALLBACK_AFTER_S = 5.0
FALLBACK_BATCH = 4

_USER = re.compile(r"u:([0-9a-fA-F-]{36})")


class AccessWatch:
    """Follows ``users`` until the access API allows each of them ``movie``.

    ``paid(user)`` is called by the load generator when that user's payment is sent;
    ``allowed_at[user]`` is the client's monotonic time of the first ``allowed`` answer.
    """

    def __init__(
        self,
        access_url: str,
        database_url: str,
        users: Collection[uuid.UUID],
        *,
        movie: str,
        token: str,
    ) -> None:
        self.access_url = access_url
        self.database_url = database_url
        self.movie = movie
        self.headers = {"Authorization": f"Bearer {token}"}
        self.waiting = set(users)
        self.paid_at: dict[uuid.UUID, float] = {}
        self.allowed_at: dict[uuid.UUID, float] = {}
        self.notified: set[uuid.UUID] = set()
        self.notifications = 0
        self.checks = 0
        self.retries = 0
        self.allowed_by_fallback = 0
        self.unavailable = 0
        self._retried: dict[uuid.UUID, int] = {}
        self._fallback_at: dict[uuid.UUID, float] = {}
        self._queued: set[uuid.UUID] = set()
        self._queue: asyncio.Queue[tuple[uuid.UUID, bool]] = asyncio.Queue()
        self._done = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._failure: BaseException | None = None

    # --- wiring --------------------------------------------------------------------------------

    async def listen(self) -> int:
        """LISTEN before the first payment is sent, so no notification can be missed; returns
        the PostgreSQL backend's pid (its CPU is the load generator's)."""
        self._conn = await asyncpg.connect(common.asyncpg_dsn(self.database_url))
        await self._conn.add_listener(CHANNEL, self._on_notification)
        pid: int = self._conn.get_server_pid()
        return pid

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    def paid(self, user: uuid.UUID) -> None:
        self.paid_at.setdefault(user, time.monotonic())

    def _on_notification(self, conn: object, pid: int, channel: str, payload: str) -> None:
        self.notifications += 1
        for match in _USER.finditer(payload):
            try:
                user = uuid.UUID(match.group(1))
            except ValueError:
                continue
            if user in self.waiting:
                self.notified.add(user)
                self._retried[user] = 0
                self._enqueue(user)

    def _enqueue(self, user: uuid.UUID, *, fallback: bool = False) -> None:
        if user in self.waiting and user not in self._queued:
            self._queued.add(user)
            self._queue.put_nowait((user, fallback))

    # --- the watch -----------------------------------------------------------------------------

    async def wait(self, timeout_s: float) -> None:
        """Until every user is allowed; BenchFailed after ``timeout_s``."""
        if not self.waiting:
            return
        async with httpx.AsyncClient(
            base_url=self.access_url,
            timeout=30,
            limits=httpx.Limits(max_connections=CONFIRM_CONCURRENCY),
        ) as client:
            tasks = [
                asyncio.create_task(self._confirmer(client)) for _ in range(CONFIRM_CONCURRENCY)
            ]
            tasks.append(asyncio.create_task(self._fallback()))
            try:
                async with asyncio.timeout(timeout_s):
                    await self._done.wait()
            except TimeoutError:
                raise common.BenchFailed(
                    f"{len(self.waiting)} of {len(self.paid_at)} paid users still without access "
                    f"after {timeout_s:g}s"
                ) from None
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        if self._failure is not None:
            raise self._failure

    async def _confirmer(self, client: httpx.AsyncClient) -> None:
        while True:
            user, fallback = await self._queue.get()
            try:
                allowed = await self._check(client, user)
            except Exception as exc:  # the run is invalid: stop waiting, say why
                self._failure = exc
                self._done.set()
                return
            self._queued.discard(user)
            if allowed is None:  # 503: the answer itself says to ask again
                self.unavailable += 1
                asyncio.get_running_loop().call_later(UNAVAILABLE_RETRY_S, self._enqueue, user)
            elif allowed:
                self.allowed_at[user] = time.monotonic()
                self.waiting.discard(user)
                self.allowed_by_fallback += fallback
                if not self.waiting:
                    self._done.set()
            elif user in self.notified:
                attempt = self._retried.get(user, 0)
                if attempt < RETRIES:
                    self._retried[user] = attempt + 1
                    self.retries += 1
                    delay = RETRY_S * 2**attempt
                    asyncio.get_running_loop().call_later(delay, self._enqueue, user)
                else:
                    self.notified.discard(user)  # the fallback covers it if nothing else comes

    async def _check(self, client: httpx.AsyncClient, user: uuid.UUID) -> bool | None:
        """Whether the access API allows ``user`` now; None when it answered 503 (counted and
        reported: on a shared database server it means PostgreSQL turned a connection away)."""
        self.checks += 1
        answer = await client.get(
            f"/api/v1/access/{user}/movies/{self.movie}", headers=self.headers
        )
        if answer.status_code == 503:
            return None
        if answer.status_code != 200:
            raise common.BenchFailed(f"access: {answer.status_code} {answer.text[:300]}")
        allowed: bool = answer.json()["allowed"]
        return allowed

    async def _fallback(self) -> None:
        while True:
            await asyncio.sleep(FALLBACK_EVERY_S)
            if self._conn is None or self._conn.is_closed():
                self._failure = common.BenchFailed("the LISTEN connection was lost; rerun")
                self._done.set()
                return
            now = time.monotonic()
            overdue = sorted(
                (paid, user)
                for user, paid in self.paid_at.items()
                if user in self.waiting
                and user not in self.notified
                and user not in self._queued
                and now - paid > FALLBACK_AFTER_S
                and now - self._fallback_at.get(user, float("-inf")) > FALLBACK_AFTER_S
            )
            for _, user in overdue[:FALLBACK_BATCH]:
                self._fallback_at[user] = now
                self._enqueue(user, fallback=True)
