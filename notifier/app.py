"""notifier: tells people what happened to their money, by email and webhook.

One process does three things: the ops API, the consumer of billing's business events (which
only records ``notification`` rows) and one sender loop per enabled channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI

from notifier.api import router as notifications_router
from notifier.config import SCHEMA, SERVICE, NotifierSettings
from notifier.delivery import Sender, build_channels, enabled_channels
from notifier.handlers import CONSUMER, Recipients, make_handlers
from notifier.rendering import Renderer
from shared.app import create_service_app
from shared.auth import AuthSettings
from shared.consumer import Consumer
from shared.observability import create_http_client
from shared.resources import Resources

logger = logging.getLogger(__name__)


async def consume(consumer: Consumer, started: asyncio.Event, *, retry_delay: float = 1.0) -> None:
    """Start consuming once the broker is connected; stop consuming when cancelled."""
    await consumer.broker.wait_connected(timeout=None)
    try:
        while True:
            try:
                await consumer.start()
                break
            except Exception:
                logger.exception("the notifier consumer could not start; retrying")
                with contextlib.suppress(Exception):
                    await consumer.stop()
                await asyncio.sleep(retry_delay)
        started.set()
        await asyncio.Event().wait()
    finally:
        await asyncio.shield(consumer.stop())


def create_app(
    settings: NotifierSettings | None = None, auth_settings: AuthSettings | None = None
) -> FastAPI:
    settings = settings or NotifierSettings()

    async def start(app: FastAPI, resources: Resources) -> None:
        handlers = make_handlers(Renderer(), Recipients.from_settings(settings))
        consumer = Consumer(CONSUMER, resources.broker, resources.session_factory, handlers)
        app.state.consumer = consumer
        resources.tasks.append(
            asyncio.create_task(consume(consumer, app.state.consuming), name="notifier-consumer")
        )
        http = await resources.exit_stack.enter_async_context(create_http_client())
        senders = [
            Sender(resources.session_factory, channel, settings)
            for channel in build_channels(settings, http)
        ]
        app.state.senders = {sender.channel.name: sender for sender in senders}
        for sender in senders:
            resources.tasks.append(
                asyncio.create_task(sender.run(), name=f"notifier-{sender.channel.name}")
            )

    app = create_service_app(
        service=SERVICE,
        schema=SCHEMA,
        title="Cinema notifier",
        description="Email and webhook notifications for billing's business events.",
        settings=settings,
        auth_settings=auth_settings,
        routers=[notifications_router],
        on_startup=start,
        consumer=CONSUMER,
    )
    app.state.channels = frozenset(channel.value for channel in enabled_channels(settings))
    app.state.consuming = asyncio.Event()  # set once the consumer's queue is bound
    return app
