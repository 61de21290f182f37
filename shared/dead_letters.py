"""Operator tools for dead letters: list them, and replay them into their consumer's queue.

``cinema dlq list CONSUMER`` prints one JSON line per dead message (event id, type, attempts, last
error) and leaves the queue as it was; ``cinema dlq replay CONSUMER [--event-id ID]`` moves the
messages back into the consumer's main queue with a fresh attempt count.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage

from shared.broker import Broker, make_message
from shared.consumer import ATTEMPT_HEADER, ERROR_HEADER, attempt_of
from shared.settings import CommandLineSettings


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    event_type: str
    attempts: int
    error: str


def _describe(message: AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers
    return DeadLetter(
        event_id=message.message_id or "",
        event_type=message.type or "",
        attempts=attempt_of(message),
        error=str(headers.get(ERROR_HEADER) or ""),
    )


async def _take_all(broker: Broker, queue_name: str) -> tuple[Any, list[AbstractIncomingMessage]]:
    """Get every message currently in the queue, unacknowledged (so none is handed out twice)."""
    channel = await broker.channel()
    queue = await channel.declare_queue(queue_name, passive=True)
    messages = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        messages.append(message)
    return channel, messages


async def list_dead_letters(broker: Broker, consumer: str) -> list[DeadLetter]:
    channel, messages = await _take_all(broker, broker.name(f"{consumer}.dead"))
    try:
        return [_describe(message) for message in messages]
    finally:
        for message in messages:
            await message.nack(requeue=True)
        await channel.close()


async def replay_dead_letters(
    broker: Broker, consumer: str, *, event_id: str | None = None
) -> list[DeadLetter]:
    """Send dead messages (all, or one event) back to the consumer; returns what was replayed."""
    channel, messages = await _take_all(broker, broker.name(f"{consumer}.dead"))
    replayed = []
    try:
        for message in messages:
            if event_id is not None and message.message_id != event_id:
                await message.nack(requeue=True)
                continue
            headers = {**message.headers, ATTEMPT_HEADER: 1}
            headers.pop(ERROR_HEADER, None)
            await channel.default_exchange.publish(
                make_message(
                    message.body,
                    message.type or "",
                    message.message_id or "",
                    message.correlation_id,
                    headers,
                ),
                routing_key=broker.name(consumer),
            )
            await message.ack()
            replayed.append(_describe(message))
    finally:
        await channel.close()
    return replayed


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("dlq", help="list or replay dead-lettered events")
    actions = parser.add_subparsers(dest="dlq_action", required=True)
    list_parser = actions.add_parser("list", help="print dead letters as JSON lines")
    list_parser.add_argument("consumer", help="consumer name, e.g. billing or notifier")
    list_parser.set_defaults(handler=_run_list)
    replay_parser = actions.add_parser("replay", help="send dead letters back to their consumer")
    replay_parser.add_argument("consumer")
    replay_parser.add_argument("--event-id", help="replay only this event")
    replay_parser.set_defaults(handler=_run_replay)


async def _with_broker(action: Any) -> list[DeadLetter]:
    settings = CommandLineSettings()
    broker = Broker(settings.amqp_url, prefix=settings.broker_prefix, client_name="cinema-dlq")
    await broker.connect()
    try:
        result: list[DeadLetter] = await action(broker)
        return result
    finally:
        await broker.close()


def _print(letters: list[DeadLetter]) -> None:
    for letter in letters:
        print(orjson.dumps(asdict(letter)).decode())


def _run_list(args: argparse.Namespace) -> int:
    _print(asyncio.run(_with_broker(lambda b: list_dead_letters(b, args.consumer))))
    return 0


def _run_replay(args: argparse.Namespace) -> int:
    letters = asyncio.run(
        _with_broker(lambda b: replay_dead_letters(b, args.consumer, event_id=args.event_id))
    )
    _print(letters)
    return 0
