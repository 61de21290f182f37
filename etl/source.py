"""Reading the movie admin's ``content.film_work``: changes by keyset, and which ids still exist."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from etl.errors import SourceUnavailable


@dataclass(frozen=True)
class Watermark:
    """The last source row loaded, in the order the ETL reads: ``(modified, id)``."""

    modified: datetime
    id: UUID


@dataclass(frozen=True)
class FilmWork:
    id: UUID
    title: str
    description: str | None
    creation_date: date | None
    rating: float | None
    type: str
    created: datetime
    modified: datetime

    @property
    def watermark(self) -> Watermark:
        return Watermark(self.modified, self.id)


_COLUMNS = "id, title, description, creation_date, rating, type, created, modified"
_NOT_TOO_RECENT = "modified <= now() - make_interval(secs => :settle)"
# A row tuple comparison keeps the keyset exact when many rows share one `modified` (a bulk update
# stamps them all alike): the id breaks the tie, so a batch boundary inside them skips nothing.
_CHANGED_AFTER = sa.text(
    f"SELECT {_COLUMNS} FROM content.film_work"
    f" WHERE (modified, id) > (:modified, :id) AND {_NOT_TOO_RECENT}"
    " ORDER BY modified, id LIMIT :limit"
)
_FIRST_CHANGES = sa.text(
    f"SELECT {_COLUMNS} FROM content.film_work WHERE {_NOT_TOO_RECENT}"
    " ORDER BY modified, id LIMIT :limit"
)
_NEWEST = sa.text("SELECT max(modified) FROM content.film_work")
_EXISTING = sa.text("SELECT id FROM content.film_work WHERE id = ANY(:ids)")


@contextlib.asynccontextmanager
async def _reachable() -> AsyncIterator[None]:
    try:
        yield
    except (DBAPIError, InterfaceError, OperationalError, OSError, TimeoutError) as exc:
        raise SourceUnavailable(str(exc).splitlines()[0]) from exc


class Source:
    """The movie admin database, read-only."""

    def __init__(self, engine: AsyncEngine, *, settle_seconds: float = 0.0) -> None:
        self.engine = engine
        self.settle_seconds = settle_seconds

    @classmethod
    def connect(cls, url: str, *, settle_seconds: float = 0.0) -> Source:
        engine = create_async_engine(
            url,
            pool_size=2,
            max_overflow=0,
            pool_pre_ping=True,
            connect_args={"timeout": 10, "server_settings": {"application_name": "etl"}},
        )
        return cls(engine, settle_seconds=settle_seconds)

    async def close(self) -> None:
        await self.engine.dispose()

    async def changed_after(self, watermark: Watermark | None, *, limit: int) -> list[FilmWork]:
        """The next ``limit`` rows after ``watermark`` in ``(modified, id)`` order."""
        params: dict[str, object] = {"limit": limit, "settle": self.settle_seconds}
        if watermark is None:
            query = _FIRST_CHANGES
        else:
            query = _CHANGED_AFTER
            params |= {"modified": watermark.modified, "id": watermark.id}
        async with _reachable(), self.engine.connect() as conn:
            rows = (await conn.execute(query, params)).all()
        return [FilmWork(*row) for row in rows]

    async def newest_modified(self) -> datetime | None:
        async with _reachable(), self.engine.connect() as conn:
            newest: datetime | None = await conn.scalar(_NEWEST)
        return newest

    async def existing_ids(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of ``ids`` are still in the source."""
        if not ids:
            return set()
        async with _reachable(), self.engine.connect() as conn:
            found = await conn.scalars(_EXISTING, {"ids": list(ids)})
            return set(found.all())
