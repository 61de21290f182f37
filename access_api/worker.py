"""access-worker: keeps the entitlement projection and syncs roles to the auth service."""

from __future__ import annotations

import asyncio
import logging

from access_api import roles
from access_api.config import SCHEMA, SERVICE, AccessSettings
from access_api.projection import make_consumer
from shared.auth import AuthSettings
from shared.observability import create_http_client
from shared.resources import Resources
from shared.runtime import run_worker

logger = logging.getLogger(__name__)


async def work(resources: Resources, settings: AccessSettings) -> None:
    consumer = make_consumer(resources.broker, resources.session_factory)
    await consumer.start()
    try:
        if not roles.role_sync_enabled(settings):
            logger.info("role sync is off: ACCESS_AUTH_URL is not set")
            await asyncio.Event().wait()
        async with create_http_client() as http:
            syncer = roles.RoleSyncer(resources.session_factory, http, settings, AuthSettings())
            await syncer.run()
    finally:
        await asyncio.shield(consumer.stop())


def main() -> None:
    settings = AccessSettings()
    run_worker(
        settings, service=SERVICE, schema=SCHEMA, main=lambda resources: work(resources, settings)
    )
