"""access_api: answers "may this user watch this movie?" from its own projection."""

from __future__ import annotations

import asyncio
import gc

from fastapi import FastAPI

from access_api.api import router
from access_api.cache import AccessCache
from access_api.config import SCHEMA, SERVICE, AccessSettings
from access_api.fastpath import FastAccessCheck
from access_api.projection import CONSUMER
from shared import db
from shared.app import create_service_app
from shared.auth import AuthSettings
from shared.resources import Resources

# Young collections every 50,000 allocations instead of 700: a request allocates a few hundred
# short-lived objects, and each collection of the older generations walks every cached grant.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """Keep the collector's pauses out of the access check's tail latency.

    What exists once the app has started (modules, routes, models, settings) lives as long as the
    process: ``gc.freeze()`` moves it out of every future collection, and larger thresholds make
    collections rarer. Memory is still reclaimed by reference counting as before; only cycles
    wait a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(
    settings: AccessSettings | None = None, auth_settings: AuthSettings | None = None
) -> FastAPI:
    settings = settings or AccessSettings()

    async def start(app: FastAPI, resources: Resources) -> None:
        # Cache misses read one row: autocommit and no pre-ping make that one round trip
        # instead of six (BEGIN/ping/ROLLBACK, BEGIN/SELECT/ROLLBACK).
        reader = db.create_engine(
            settings.database_url,
            schema=SCHEMA,
            application_name=f"{SERVICE}-cache",
            pool_size=settings.db_pool_size,
            pre_ping=False,
            isolation_level="AUTOCOMMIT",
        )
        resources.exit_stack.push_async_callback(reader.dispose)
        cache = AccessCache(
            reader, ttl=settings.cache_ttl_seconds, max_users=settings.cache_max_users
        )
        app.state.access_cache = cache
        resources.tasks.append(asyncio.create_task(cache.listen(), name="access-listen"))
        tune_garbage_collector()

    return create_service_app(
        service=SERVICE,
        schema=SCHEMA,
        title="Cinema access API",
        description="Access checks for playback, fed by billing's entitlement events.",
        settings=settings,
        auth_settings=auth_settings,
        routers=[router],
        on_startup=start,
        middleware=[FastAccessCheck],
        consumer=CONSUMER,
    )
