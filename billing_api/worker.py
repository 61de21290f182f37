"""billing-worker: consumes payment results, runs the scheduled jobs, publishes the outbox."""

from __future__ import annotations

import asyncio

from billing_api import jobs
from billing_api.activation.handlers import make_consumer
from billing_api.config import SCHEMA, SERVICE, BillingSettings
from billing_api.gateway import GatewayClient
from billing_api.receipts import links as receipt_links
from shared.auth import AuthSettings
from shared.observability import create_http_client
from shared.outbox import OutboxRelay
from shared.resources import Resources
from shared.runtime import run_worker


async def work(resources: Resources, settings: BillingSettings) -> None:
    receipt_links.install(resources.session_factory, settings)
    consumer = make_consumer(resources.broker, resources.session_factory, settings)
    await consumer.start()
    try:
        async with create_http_client() as http, asyncio.TaskGroup() as group:
            gateway = GatewayClient(http, settings.gateway_url, AuthSettings())
            relay = OutboxRelay(resources.relay_engine, resources.broker, schema=SCHEMA)
            group.create_task(relay.run())
            group.create_task(jobs.run_forever(resources.session_factory, gateway, settings))
    finally:
        await asyncio.shield(consumer.stop())


def main() -> None:
    settings = BillingSettings()
    run_worker(
        settings, service=SERVICE, schema=SCHEMA, main=lambda resources: work(resources, settings)
    )
