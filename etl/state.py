"""The ETL's own state in the ``etl`` schema: one :class:`~etl.models.SyncState` row per table."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from etl.errors import StateUnavailable
from etl.models import SyncState
from etl.source import Watermark

FILM_WORK = "film_work"


@dataclass(frozen=True)
class State:
    watermark: Watermark | None
    rows_loaded: int
    full_pass_at: datetime | None


@contextlib.asynccontextmanager
async def _reachable() -> AsyncIterator[None]:
    try:
        yield
    except (DBAPIError, InterfaceError, OperationalError, OSError, TimeoutError) as exc:
        raise StateUnavailable(str(exc).splitlines()[0]) from exc


class StateStore:
    def __init__(self, engine: AsyncEngine, name: str = FILM_WORK) -> None:
        self.engine = engine
        self.name = name

    async def load(self) -> State:
        async with _reachable(), self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(SyncState).where(SyncState.name == self.name))
            ).first()
        if row is None:
            return State(None, 0, None)
        watermark = None
        if row.modified_at is not None and row.last_id is not None:
            watermark = Watermark(row.modified_at, row.last_id)
        return State(watermark, row.rows_loaded, row.full_pass_at)

    async def save_watermark(self, watermark: Watermark, *, loaded: int) -> None:
        """Move the watermark forward (never back: a slower replica cannot undo a faster one)."""
        statement = insert(SyncState).values(
            name=self.name,
            modified_at=watermark.modified,
            last_id=watermark.id,
            rows_loaded=loaded,
        )
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[SyncState.name],
            set_={
                "modified_at": excluded.modified_at,
                "last_id": excluded.last_id,
                "rows_loaded": SyncState.rows_loaded + excluded.rows_loaded,
                "updated_at": sa.func.now(),
            },
            where=sa.or_(
                SyncState.modified_at.is_(None),
                sa.tuple_(SyncState.modified_at, SyncState.last_id)
                < sa.tuple_(excluded.modified_at, excluded.last_id),
            ),
        )
        async with _reachable(), self.engine.begin() as conn:
            await conn.execute(statement)

    async def save_full_pass(self, at: datetime) -> None:
        statement = insert(SyncState).values(name=self.name, full_pass_at=at)
        statement = statement.on_conflict_do_update(
            index_elements=[SyncState.name],
            set_={"full_pass_at": statement.excluded.full_pass_at, "updated_at": sa.func.now()},
        )
        async with _reachable(), self.engine.begin() as conn:
            await conn.execute(statement)
