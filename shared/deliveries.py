"""A consumer's deliveries in hand: the buffer batches are taken from, and their acks.

The broker pushes up to ``prefetch`` messages; each one lands here and waits until a batch
takes it. Acks are sent together once a batch is settled, and a single ``basic.ack`` with
``multiple=True`` is used only when it acknowledges exactly the batch: every message of that
channel still unsettled at or below the batch's highest delivery tag must belong to the batch.
Otherwise (another batch still in flight below it, a message being retried) each message is
acked on its own. Tags are counted per channel: a channel the connection re-opened numbers its
deliveries from 1 again, and a message of a closed channel cannot be acked at all (the broker
delivers it again and the inbox skips it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import AbstractChannel

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Delivery:
    """One message and the channel it arrived on (kept: a closed channel's message hides it)."""

    message: AbstractIncomingMessage
    channel: AbstractChannel
    tag: int


class Deliveries:
    """The buffer of unsettled deliveries of one consumer."""

    def __init__(self) -> None:
        self._buffer: asyncio.Queue[Delivery] = asyncio.Queue()
        self._unsettled: dict[AbstractChannel, set[int]] = {}

    async def receive(self, message: AbstractIncomingMessage) -> None:
        """The consume callback: remember the delivery and queue it for a batch.

        Nothing here awaits, so deliveries are registered in the order of their tags (aio-pika
        starts one callback task per delivery, in order): a batch never holds a tag while a lower
        one of the same channel is still unknown here.
        """
        delivery = Delivery(message, message.channel, message.delivery_tag or 0)
        self._unsettled.setdefault(delivery.channel, set()).add(delivery.tag)
        self._buffer.put_nowait(delivery)

    async def take(self, limit: int, wait: float) -> list[Delivery]:
        """Wait for one delivery, then gather up to ``limit`` arriving within ``wait`` seconds."""
        batch = [await self._buffer.get()]
        if limit <= 1:
            return batch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while len(batch) < limit:
            if not self._buffer.empty():
                batch.append(self._buffer.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await self._buffer.get())
            except TimeoutError:
                break
        return batch

    async def ack(self, deliveries: Iterable[Delivery]) -> None:
        """Acknowledge ``deliveries``: one ack per channel when that is exact, else one each.

        Never raises: a delivery whose ack cannot be sent (its channel closed) comes again and
        is skipped by the inbox.
        """
        by_channel: dict[AbstractChannel, list[Delivery]] = {}
        for delivery in deliveries:
            by_channel.setdefault(delivery.channel, []).append(delivery)
        for channel, group in by_channel.items():
            tags = {delivery.tag for delivery in group}
            top = max(group, key=lambda delivery: delivery.tag)
            pending = self._unsettled.get(channel, set())
            try:
                if len(group) > 1 and all(tag in tags for tag in pending if tag <= top.tag):
                    await top.message.ack(multiple=True)
                else:
                    for delivery in group:
                        await delivery.message.ack()
            except Exception as exc:
                logger.warning(
                    "ack failed; the broker will deliver again and the inbox will skip it: %r",
                    exc,
                )
            finally:
                self._forget(channel, tags)

    def _forget(self, channel: AbstractChannel, tags: set[int]) -> None:
        pending = self._unsettled.get(channel)
        if pending is None:
            return
        pending -= tags
        if not pending:
            del self._unsettled[channel]

    def clear(self) -> None:
        """Drop everything (the channel is closing: the broker delivers the unacked again)."""
        self._buffer = asyncio.Queue()
        self._unsettled.clear()
