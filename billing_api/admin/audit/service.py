"""Writing and reading the audit trail. Rows are written in the transaction of the change and
never updated (the database refuses it)."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.admin.audit.schemas import AuditOut
from billing_api.models import AdminAudit
from shared.auth import Principal
from shared.pagination import newest_first, page_of


def actor_of(principal: Principal) -> str:
    """Who the audit row names: the token's subject (a user id, or a service's name)."""
    return principal.subject


def _json_value(value: Any) -> Any:
    if isinstance(value, UUID | Enum):
        return str(value.value if isinstance(value, Enum) else value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple | set):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    return value


def snapshot(row: Any, **extra: Any) -> dict[str, Any]:
    """A JSON-ready copy of a model row's columns (plus ``extra``, e.g. a plan's movie ids)."""
    columns = {attr.key: getattr(row, attr.key) for attr in inspect(row).mapper.column_attrs}
    return {key: _json_value(value) for key, value in (columns | extra).items()}


async def record(
    session: AsyncSession,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> AdminAudit:
    """Add one audit row to the current transaction."""
    row = AdminAudit(
        actor=actor,
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        before=None if before is None else _json_value(before),
        after=None if after is None else _json_value(after),
        reason=reason,
    )
    session.add(row)
    await session.flush()
    return row


async def list_entries(
    session: AsyncSession,
    *,
    entity: str | None,
    entity_id: str | None,
    actor: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[AuditOut], str | None]:
    """Audit rows newest first, optionally of one entity or by one actor, and the next cursor."""
    query = sa.select(AdminAudit)
    if entity is not None:
        query = query.where(AdminAudit.entity == entity)
    if entity_id is not None:
        query = query.where(AdminAudit.entity_id == entity_id)
    if actor is not None:
        query = query.where(AdminAudit.actor == actor)
    rows = (
        await session.scalars(
            newest_first(query, AdminAudit.created_at, AdminAudit.id, cursor, limit)
        )
    ).all()
    items, next_cursor = page_of(rows, limit)
    return [AuditOut.model_validate(row, from_attributes=True) for row in items], next_cursor
