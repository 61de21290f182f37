"""Limits against abuse: how many requests of one kind a user, an address or a resource may send.

A service names its limits once (:class:`RateLimiter`, built in its lifespan from its settings)
and guards a route with a dependency (:func:`per_user_and_ip`, :func:`per_ip_and_path`). Past a
limit the route answers ``429 TooManyRequests`` with ``Retry-After``: the seconds until the
window frees a request (the moving window of the ``limits`` library, so there is no burst at a
window's edge).

Where the counts live: with ``<PREFIX>RATE_LIMIT_STORAGE_URL`` (``redis://host:6379/0``) in Redis,
shared by every replica, so a limit is global; unset, in the process's memory, where each replica
counts on its own (logged at start; fine for development and for a single replica). When Redis
does not answer, requests are let through and a warning is logged (at most every
:data:`FAILURE_LOG_SECONDS`): a limit is a guard against abuse, and refusing every payment
because the guard's store is down would hurt more than a few unlimited requests.
``<PREFIX>RATE_LIMITS_ENABLED=false`` turns every limit off (load tests, the fault suite).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from pydantic import AfterValidator, Field
from pydantic_settings import BaseSettings

from shared import production
from shared.auth import CurrentPrincipal
from shared.errors import AppError

logger = logging.getLogger(__name__)

FAILURE_LOG_SECONDS = 30.0
"""A storage that keeps failing is logged once per this many seconds, not once per request."""
REDIS_TIMEOUT_SECONDS = 0.5
"""How long a request waits for Redis before it is let through unlimited."""


def _valid_rate(value: str) -> str:
    try:
        parse(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a rate such as '20/minute' or '5 per second'") from exc
    return value


Rate = Annotated[str, AfterValidator(_valid_rate)]
"""A rate in the ``limits`` notation: ``20/minute``, ``5 per second``, ``100/hour``."""


class RateLimitSettings(BaseSettings):
    """The limits' storage and switch; mixed into a service's settings (its prefix applies)."""

    rate_limits_enabled: bool = Field(
        True, description="Refuse requests past their limit with 429; false turns limits off."
    )
    rate_limit_storage_url: str = Field(
        "",
        description="redis://host:port/db where every replica counts requests together; empty:"
        " each process counts in its own memory.",
    )
    rate_limit_key_prefix: str = Field(
        "cinema-limits", description="Prefix of the Redis keys the limits write."
    )


class TooManyRequests(AppError):
    status_code = 429
    default_detail = "too many requests; try again later"


Scopes = Mapping[str, str]
"""What one limit counts by (``user``, ``ip``, ``checkout``…) → its rate (``20/minute``)."""


class RateLimiter:
    """The named limits of one service and the storage that counts them."""

    def __init__(
        self, storage: Storage, limits: Mapping[str, Scopes], *, enabled: bool = True
    ) -> None:
        self.storage = storage
        self.strategy = MovingWindowRateLimiter(storage)
        self.enabled = enabled
        self.limits: dict[str, dict[str, RateLimitItem]] = {
            name: {scope: parse(rate) for scope, rate in scopes.items()}
            for name, scopes in limits.items()
        }
        self._failure_logged_at = -math.inf

    async def hit(self, name: str, **keys: str) -> None:
        """Count one request of ``name`` for each of ``keys`` (scope → whose), or raise
        :class:`TooManyRequests` when one of them is past its limit (that one is not counted)."""
        if not self.enabled:
            return
        try:
            for scope, key in keys.items():
                item = self.limits[name].get(scope)  # an unknown name is a bug: KeyError
                if item is None:
                    continue
                if not await self.strategy.hit(item, name, scope, key):
                    raise TooManyRequests(
                        f"too many {name} requests from this {scope}; try again later",
                        extra={"retry_after": await self._retry_after(item, name, scope, key)},
                    )
        except StorageError as exc:
            self._log_failure(exc)

    async def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = await self.strategy.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def _log_failure(self, exc: StorageError) -> None:
        now = time.monotonic()
        if now - self._failure_logged_at >= FAILURE_LOG_SECONDS:
            self._failure_logged_at = now
            logger.warning(
                "rate limit storage unavailable, requests are let through unlimited: %s",
                exc.storage_error,
            )


def create_rate_limiter(
    settings: RateLimitSettings, limits: Mapping[str, Scopes], *, service: str
) -> RateLimiter:
    """The service's limiter with Redis or memory storage as the settings say (logged)."""
    if not settings.rate_limits_enabled:
        logger.warning("%s: rate limits are off (RATE_LIMITS_ENABLED=false)", service)
    url = settings.rate_limit_storage_url
    storage: Storage
    if url:
        storage = RedisStorage(
            "async+" + url.removeprefix("async+"),
            wrap_exceptions=True,
            key_prefix=f"{settings.rate_limit_key_prefix}:{service}",
            connect_timeout=REDIS_TIMEOUT_SECONDS,
            stream_timeout=REDIS_TIMEOUT_SECONDS,
        )
        logger.info("%s: rate limits are counted in Redis, shared by every replica", service)
    else:
        storage = MemoryStorage()
        log = logger.info if production.is_development() else logger.warning
        log(
            "%s: no RATE_LIMIT_STORAGE_URL: rate limits are counted per process, so each"
            " replica allows the full rate",
            service,
        )
    return RateLimiter(storage, limits, enabled=settings.rate_limits_enabled)


def client_ip(request: Request) -> str:
    """The client's address as the server resolved it (uvicorn applies X-Forwarded-For from
    the proxies in FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client is not None else "unknown"


def _limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


CHECKS: set[Callable[..., Any]] = set()
"""Every limit dependency, so the OpenAPI document can say which operations may answer 429."""


def per_user_and_ip(name: str) -> Any:
    """A route dependency: count the request under ``name`` for the token's subject and for
    the client's address."""

    async def check_rate_limit(request: Request, principal: CurrentPrincipal) -> None:
        await _limiter(request).hit(name, user=principal.subject, ip=client_ip(request))

    CHECKS.add(check_rate_limit)
    return Depends(check_rate_limit)


def per_ip_and_path(name: str, parameter: str) -> Any:
    """A route dependency: count the request under ``name`` for the client's address and for
    the resource the path ``parameter`` names (a checkout session: one card-testing run spread
    over many addresses still hits the session's limit)."""

    async def check_rate_limit(request: Request) -> None:
        resource = str(request.path_params.get(parameter, ""))
        await _limiter(request).hit(name, ip=client_ip(request), **{parameter: resource})

    CHECKS.add(check_rate_limit)
    return Depends(check_rate_limit)


__all__ = [
    "Rate",
    "RateLimitSettings",
    "RateLimiter",
    "TooManyRequests",
    "client_ip",
    "create_rate_limiter",
    "per_ip_and_path",
    "per_user_and_ip",
]
