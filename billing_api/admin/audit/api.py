"""Admin route for the audit trail (role ``admin``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from billing_api.admin.access import StaffReader
from billing_api.admin.audit import service
from billing_api.admin.audit.schemas import AuditOut
from shared.db import SessionDep
from shared.pagination import Cursor, Limit, Page

router = APIRouter(prefix="/api/v1/admin/audit", tags=["admin: audit"])


@router.get("", response_model=Page[AuditOut])
async def list_audit(
    session: SessionDep,
    principal: StaffReader,
    cursor: Cursor = None,
    limit: Limit = 50,
    entity: Annotated[str | None, Query(max_length=64)] = None,
    entity_id: Annotated[str | None, Query(max_length=100)] = None,
    actor: Annotated[str | None, Query(max_length=255)] = None,
) -> Page[AuditOut]:
    """Back-office changes, newest first, optionally of one entity or by one actor."""
    items, next_cursor = await service.list_entries(
        session, entity=entity, entity_id=entity_id, actor=actor, cursor=cursor, limit=limit
    )
    return Page(items=items, next_cursor=next_cursor)
