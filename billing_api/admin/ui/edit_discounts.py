"""The admin UI's discount editors: months tiers, personal discounts and promo codes, through
the admin discounts service."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqladmin.filters import AllUniqueStringValuesFilter, BooleanFilter
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from wtforms.validators import InputRequired  # type: ignore[import-untyped]

from billing_api.admin.discounts import service as discounts
from billing_api.admin.discounts.schemas import (
    MonthTierChangesIn,
    MonthTierIn,
    PersonalDiscountIn,
    PromoCodeChangesIn,
    PromoCodeIn,
)
from billing_api.admin.ui.edit import ServiceBackedView, actor, reloaded, sent
from billing_api.models import MonthTier, PersonalDiscount, PromoCode
from shared.errors import Conflict


class MonthTierView(ServiceBackedView, model=MonthTier):
    name_plural = "Months tiers"
    icon = "fa-solid fa-percent"
    can_delete = True
    column_list = [MonthTier.plan_id, MonthTier.min_months, MonthTier.percent]
    form_columns = [MonthTier.plan_id, MonthTier.min_months, MonthTier.percent]

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        body = MonthTierIn.model_validate(sent(data, "plan_id", "min_months", "percent"))

        async def work(session: AsyncSession) -> MonthTier:
            out = await discounts.create_tier(session, actor(request), body)
            return await reloaded(session, MonthTier, out.id)

        return await self._run(work)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        body = MonthTierChangesIn.model_validate(sent(data, "percent"))

        async def work(session: AsyncSession) -> MonthTier:
            await discounts.update_tier(session, actor(request), UUID(pk), body)
            return await reloaded(session, MonthTier, UUID(pk))

        return await self._run(work)

    async def delete_model(self, request: Request, pk: Any) -> None:
        await self._run(lambda s: discounts.delete_tier(s, actor(request), UUID(str(pk))))


class PersonalDiscountExists(Conflict):
    default_detail = "the user already has a personal discount"


class PersonalDiscountView(ServiceBackedView, model=PersonalDiscount):
    name_plural = "Personal discounts"
    icon = "fa-solid fa-user-tag"
    can_delete = True
    column_list = [
        PersonalDiscount.user_id,
        PersonalDiscount.percent,
        PersonalDiscount.reason,
        PersonalDiscount.updated_at,
    ]
    column_searchable_list = [PersonalDiscount.user_id, PersonalDiscount.reason]
    form_columns = [PersonalDiscount.user_id, PersonalDiscount.percent, PersonalDiscount.reason]
    # The user id is the row's primary key, which sqladmin leaves out of forms unless asked: it
    # is asked for when the discount is created (checked as a UUID by the field) and fixed after.
    form_include_pk = True
    form_create_rules = ["user_id", "percent", "reason"]
    form_edit_rules = ["percent", "reason"]
    form_args = {
        "user_id": {
            "label": "User id",
            "description": "The customer's user id (UUID): the sub of their token.",
            "validators": [InputRequired()],
        }
    }

    async def _set(
        self, request: Request, user_id: UUID, data: dict[str, Any], *, new: bool
    ) -> Any:
        body = PersonalDiscountIn.model_validate(
            {"percent": data.get("percent"), "reason": data.get("reason") or ""}
        )

        async def work(session: AsyncSession) -> PersonalDiscount:
            if new and await session.get(PersonalDiscount, user_id) is not None:
                raise PersonalDiscountExists(
                    f"user {user_id} already has a personal discount: edit that one"
                )
            await discounts.set_personal(session, actor(request), user_id, body)
            return await reloaded(session, PersonalDiscount, user_id)

        return await self._run(work)

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        user_id = data.get("user_id")
        if not isinstance(user_id, UUID):  # the form's field checks it; never trust a default
            raise ValueError("user_id: a user id (UUID) is required")
        return await self._set(request, user_id, data, new=True)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        return await self._set(request, UUID(pk), data, new=False)

    async def delete_model(self, request: Request, pk: Any) -> None:
        await self._run(lambda s: discounts.delete_personal(s, actor(request), UUID(str(pk))))


class PromoCodeView(ServiceBackedView, model=PromoCode):
    name_plural = "Promo codes"
    icon = "fa-solid fa-ticket"
    column_list = [
        PromoCode.code,
        PromoCode.kind,
        PromoCode.percent,
        PromoCode.amount,
        PromoCode.currency,
        PromoCode.plan_id,
        PromoCode.valid_until,
        PromoCode.redemptions,
        PromoCode.max_redemptions,
        PromoCode.active,
    ]
    column_searchable_list = [PromoCode.code]
    column_filters = [BooleanFilter(PromoCode.active), AllUniqueStringValuesFilter(PromoCode.kind)]
    form_columns = [
        PromoCode.code,
        PromoCode.kind,
        PromoCode.percent,
        PromoCode.amount,
        PromoCode.currency,
        PromoCode.plan_id,
        PromoCode.valid_from,
        PromoCode.valid_until,
        PromoCode.max_redemptions,
        PromoCode.active,
    ]
    form_args = {"kind": {"description": "percent or fixed"}}

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        fields = sent(
            data,
            "code",
            "kind",
            "percent",
            "plan_id",
            "valid_from",
            "valid_until",
            "max_redemptions",
        )
        if data.get("amount") not in (None, ""):
            fields["amount"] = {"amount": data["amount"], "currency": data.get("currency")}
        body = PromoCodeIn.model_validate(fields)

        async def work(session: AsyncSession) -> PromoCode:
            out = await discounts.create_promo(session, actor(request), body)
            if data.get("active") is False:
                await discounts.update_promo(
                    session, actor(request), out.id, PromoCodeChangesIn(), active=False
                )
            return await reloaded(session, PromoCode, out.id)

        return await self._run(work)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        body = PromoCodeChangesIn.model_validate(sent(data, "valid_until", "max_redemptions"))
        active = data.get("active")

        async def work(session: AsyncSession) -> PromoCode:
            await discounts.update_promo(
                session,
                actor(request),
                UUID(pk),
                body,
                active=None if active is None else bool(active),
            )
            return await reloaded(session, PromoCode, UUID(pk))

        return await self._run(work)
