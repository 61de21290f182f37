"""Keyset pagination: ``{"items": [...], "next_cursor": null | "..."}`` ordered newest first;
and the ``from``/``to`` bounds that listings share (``Since``, ``Until``).

The cursor is the position ``(created_at, id)`` of the last item returned, so pages stay stable
while new rows arrive (no OFFSET drift) and every page is one index range scan.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

import orjson
import sqlalchemy as sa
from fastapi import Query
from pydantic import AfterValidator, BaseModel, BeforeValidator

from shared.errors import UnprocessableEntity

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=100, description="Items per page (at most 100).")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page.")]

_ISO_8601_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[Tt ].+)?")


def _iso_8601(value: object) -> object:
    """Only ISO 8601 text is a moment here: pydantic alone would read ``0.5`` or ``1700000000``
    as a Unix time, which is not what a client means by ``from``/``to`` (422 instead)."""
    if isinstance(value, str) and not _ISO_8601_DATE.fullmatch(value):
        raise ValueError("expected an ISO 8601 date or date-time (2026-01-31, 2026-01-31T12:00Z)")
    return value


def _in_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Moment = Annotated[datetime, BeforeValidator(_iso_8601), AfterValidator(_in_utc)]
"""A ``from``/``to`` bound: an ISO 8601 date or date-time; without an offset it is UTC."""

Since = Annotated[
    Moment | None, Query(alias="from", description="Inclusive, ISO 8601 (no offset: UTC).")
]
Until = Annotated[
    Moment | None, Query(alias="to", description="Exclusive, ISO 8601 (no offset: UTC).")
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class BadCursor(UnprocessableEntity):
    default_detail = "the cursor is not one this API gave out"


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    raw = orjson.dumps([created_at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = orjson.loads(raw)
        return datetime.fromisoformat(created_at), UUID(row_id)
    except (ValueError, TypeError) as exc:
        raise BadCursor from exc


def newest_first(
    query: sa.Select[Any], created_at: Any, row_id: Any, cursor: str | None, limit: int
) -> sa.Select[Any]:
    """Order ``query`` newest first and start after ``cursor``; fetches one extra row."""
    if cursor:
        at, last_id = decode_cursor(cursor)
        query = query.where(sa.tuple_(created_at, row_id) < sa.tuple_(at, last_id))
    return query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)


def page_of(rows: Sequence[Any], limit: int) -> tuple[list[Any], str | None]:
    """Split the ``limit + 1`` fetched rows into a page and the cursor of the next one."""
    items = list(rows[:limit])
    if len(rows) <= limit:
        return items, None
    last = items[-1]
    return items, encode_cursor(last.created_at, last.id)
