"""Waking the outbox relays of this process when a session that added events commits.

A relay in the process that wrote the rows need not wait for ``NOTIFY`` to travel through
PostgreSQL (nor for its poll): :func:`shared.outbox.add` marks the session, and when that session
commits, every relay registered here for the session's schema is woken at once. ``NOTIFY`` still
wakes the relays of other processes, and polling stays as the fallback for both.

The registry is per process and keyed by schema (a session's ``info["schema"]``, set by
:func:`shared.resources.make_database`). Waking is a call of the relay's own ``wake``, which sets
the relay's event on the loop the relay runs on, whichever thread or loop the commit ran on. A
rolled-back session wakes nobody; a spurious wake costs one empty claim.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

Wake = Callable[[], None]

_PENDING = "cinema.outbox_wake"
_lock = threading.Lock()
_relays: dict[str, list[Wake]] = {}


def register(schema: str, wake: Wake) -> None:
    with _lock:
        _relays.setdefault(schema, []).append(wake)


def unregister(schema: str, wake: Wake) -> None:
    with _lock:
        wakes = _relays.get(schema, [])
        if wake in wakes:
            wakes.remove(wake)
        if not wakes:
            _relays.pop(schema, None)


def wake(schema: str) -> int:
    """Wake this process's relays of ``schema``; returns how many there were."""
    with _lock:
        wakes = list(_relays.get(schema, ()))
    for relay_wake in wakes:
        relay_wake()
    return len(wakes)


def wake_on_commit(session: AsyncSession) -> None:
    """Wake the relays of the session's schema when its transaction commits."""
    schema = session.info.get("schema")
    if schema:
        session.info[_PENDING] = schema


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    schema = session.info.pop(_PENDING, None)
    if schema is not None:
        wake(schema)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)
