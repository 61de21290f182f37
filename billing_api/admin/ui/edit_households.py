"""The back office's households: members and invitations, searched by code or email; deleting
one removes the member through the admin service (access ends at once, they are told, and the
removal is audited) — the row itself is kept."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqladmin.filters import AllUniqueStringValuesFilter
from starlette.requests import Request

from billing_api.admin.households import service as households
from billing_api.admin.ui.edit import ServiceBackedView, actor
from billing_api.models import HouseholdMember


class HouseholdMemberView(ServiceBackedView, model=HouseholdMember):
    name = "Household member"
    name_plural = "Households"
    icon = "fa-solid fa-people-roof"
    can_create = False
    can_edit = False
    can_delete = True  # "delete" removes the member (audited); the row stays, status removed
    column_list = [
        HouseholdMember.created_at,
        HouseholdMember.subscription_id,
        HouseholdMember.owner_id,
        HouseholdMember.email,
        HouseholdMember.code,
        HouseholdMember.status,
        HouseholdMember.user_id,
        HouseholdMember.joined_at,
        HouseholdMember.removed_reason,
    ]
    column_searchable_list = [HouseholdMember.code, HouseholdMember.email]
    column_filters = [AllUniqueStringValuesFilter(HouseholdMember.status)]
    column_default_sort = [(HouseholdMember.created_at, True)]

    async def delete_model(self, request: Request, pk: Any) -> None:
        await self._run(
            lambda session: households.remove(
                session, actor(request), UUID(str(pk)), "removed in the back office"
            )
        )
