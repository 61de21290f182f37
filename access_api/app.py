"""access_api: answers "may this user watch this movie?" from its own projection."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from access_api.api import router
from access_api.cache import AccessCache
from access_api.config import SCHEMA, SERVICE, AccessSettings
from access_api.fastpath import FastAccessCheck
from shared import db
from shared.app import create_service_app
from shared.auth import AuthSettings
from shared.resources import Resources


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
    )
