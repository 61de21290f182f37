"""The inbox: which events a consumer has already handled, recorded with their effects.

A row ``(consumer, event_id)`` is written in the transaction of the handler's effects, so a
redelivered event (a relay that published twice, a consumer that died before acking) finds its id
there and does nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.tables import inbox


async def record_in_inbox(session: AsyncSession, consumer: str, event_id: Any) -> bool:
    """Remember that ``consumer`` handled ``event_id``; False when it already had."""
    return bool(await record_all_in_inbox(session, consumer, [event_id]))


async def record_all_in_inbox(
    session: AsyncSession, consumer: str, event_ids: Iterable[UUID]
) -> set[UUID]:
    """Remember that ``consumer`` handled ``event_ids``, in one statement; the ids it had not."""
    ids = sa.bindparam("ids", list(dict.fromkeys(event_ids)), type_=ARRAY(sa.Uuid))
    statement = (
        insert(inbox)
        .from_select(
            ["consumer", "event_id"],
            sa.select(sa.literal(consumer, sa.String), sa.func.unnest(ids)),
        )
        .on_conflict_do_nothing()
        .returning(inbox.c.event_id)
    )
    return set(await session.scalars(statement))
