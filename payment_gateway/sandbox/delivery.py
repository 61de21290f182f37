"""The sandbox's webhook sender: signed POSTs to the gateway, retried with backoff until a 2xx.

Rows are claimed with ``FOR UPDATE SKIP LOCKED``, so several gateway replicas deliver each
webhook once while healthy (and at least once when one dies mid-delivery, which the gateway's
webhook store absorbs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta

import httpx
import orjson
import sqlalchemy as sa

from payment_gateway.providers import signatures
from payment_gateway.sandbox.events import SIGNATURE_HEADER
from payment_gateway.sandbox.models import SandboxWebhook
from payment_gateway.sandbox.provider import SandboxProvider
from shared import clock

logger = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=5)


def backoff(attempts: int) -> timedelta:
    """1 s, 2 s, 4 s … capped at five minutes."""
    return min(timedelta(seconds=2 ** max(attempts - 1, 0)), MAX_BACKOFF)


class WebhookSender:
    """Posts due webhooks, :data:`CONCURRENCY` at a time over as many kept-alive connections.

    Few connections on purpose: httpx looks over every pooled connection for each request, so a
    wide pool costs more CPU per webhook than it saves in waiting.
    """

    CONCURRENCY = 8

    def __init__(self, provider: SandboxProvider, http: httpx.AsyncClient, url: str) -> None:
        self.provider = provider
        self.http = http
        self.url = url
        self._slots = asyncio.Semaphore(self.CONCURRENCY)

    @classmethod
    def limits(cls) -> httpx.Limits:
        return httpx.Limits(
            max_connections=cls.CONCURRENCY, max_keepalive_connections=cls.CONCURRENCY
        )

    async def deliver_due(self, *, limit: int = 50) -> int:
        """Send every webhook that is due; returns how many were acknowledged."""
        delivered = 0
        async with self.provider.sessions() as db, db.begin():
            due = list(
                await db.scalars(
                    sa.select(SandboxWebhook)
                    .where(
                        SandboxWebhook.delivered_at.is_(None),
                        SandboxWebhook.next_attempt_at <= clock.now(),
                    )
                    .order_by(SandboxWebhook.created_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            results = await asyncio.gather(*(self._post(hook) for hook in due))
            moment = clock.now()
            for hook, error in zip(due, results, strict=True):
                hook.attempts += 1
                if error is None:
                    hook.delivered_at = moment
                    delivered += 1
                else:
                    hook.last_error = error[:500]
                    hook.next_attempt_at = moment + backoff(hook.attempts)
        return delivered

    async def _post(self, hook: SandboxWebhook) -> str | None:
        body = orjson.dumps(hook.body)
        try:
            async with self._slots:
                # Signatures are about real time on the wire, not the suite clock tests may move.
                header = signatures.sign(body, self.provider.webhook_secret, int(time.time()))
                response = await self.http.post(
                    self.url,
                    content=body,
                    headers={SIGNATURE_HEADER: header, "Content-Type": "application/json"},
                    timeout=10.0,
                )
        except Exception as exc:  # any failure to deliver is retried with backoff
            return f"{type(exc).__name__}: {exc}"
        if response.is_success:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"

    async def run(self, *, interval: float = 0.5) -> None:
        """Deliver forever, woken at once when the sandbox queues a webhook."""
        while True:
            try:
                await self.provider.expire_due()
                while await self.deliver_due():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("sandbox webhook delivery failed")
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the wait ends, and the loop would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.provider.webhooks_waiting.wait()
            self.provider.webhooks_waiting.clear()
