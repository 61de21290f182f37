"""Start an outbox relay beside an HTTP API (the gateway publishes from its own process)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from shared.outbox import OutboxRelay
from shared.resources import Resources


async def start_outbox_relay(app: FastAPI, resources: Resources) -> None:
    """An ``on_startup`` hook: run this service's relay for as long as the app lives."""
    relay = OutboxRelay(resources.relay_engine, resources.broker, schema=resources.schema)
    app.state.outbox_relay = relay
    resources.tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
