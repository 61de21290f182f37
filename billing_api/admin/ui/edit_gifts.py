"""Gifts in the back office: searchable by code or email, and a revoke action that runs the
admin service (the same transition, ledger recognition and audit row as the API)."""

from __future__ import annotations

import functools
from uuid import UUID

from sqladmin import action
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from billing_api.admin.gifts import service as gifts
from billing_api.admin.gifts.schemas import AdminGiftOut
from billing_api.admin.ui.edit import ServiceBackedView, actor
from billing_api.models import Gift


async def _revoke(session: AsyncSession, *, who: str, gift_id: UUID) -> AdminGiftOut:
    return await gifts.revoke(session, who, gift_id, "revoked in the back office")


class GiftView(ServiceBackedView, model=Gift):
    name_plural = "Gifts"
    icon = "fa-solid fa-gift"
    can_create = False
    can_edit = False
    page_size = 50
    column_list = [
        Gift.created_at,
        Gift.status,
        Gift.buyer_email,
        Gift.recipient_email,
        Gift.code,
        Gift.months,
        Gift.plan_id,
        Gift.expires_at,
        Gift.redeemed_at,
    ]
    column_searchable_list = [Gift.code, Gift.recipient_email, Gift.buyer_email]
    column_default_sort = [(Gift.created_at, True)]

    @action(
        name="revoke",
        label="Revoke",
        confirmation_message="Void the code of the selected unredeemed gifts?",
    )
    async def revoke(self, request: Request) -> Response:
        """Revoke each selected gift still unredeemed, each in its own transaction."""
        who = actor(request)
        for pk in filter(None, request.query_params.get("pks", "").split(",")):
            try:
                await self._run(functools.partial(_revoke, who=who, gift_id=UUID(pk)))
            except ValueError:
                continue  # not a gift, or redeemed, refunded or over already: nothing to revoke
        return RedirectResponse(request.url_for("admin:list", identity=self.identity), 302)
