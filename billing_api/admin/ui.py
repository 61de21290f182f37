"""The back-office web UI at ``/admin`` (sqladmin) over billing's tables.

* **Login**: an admin JWT pasted as the password (any username), or the configured
  ``BILLING_ADMIN_USERNAME``/``BILLING_ADMIN_PASSWORD`` (unset by default: JWT login only).
  A non-admin token or wrong credentials are refused; every page without a live session
  redirects to the login page.
* **Session**: a signed cookie (``BILLING_ADMIN_SESSION_SECRET``) scoped to ``/admin``,
  ``SameSite=Strict`` and ``HttpOnly``, so other sites' pages cannot make a logged-in browser
  submit the UI's forms; requests that change something must also come from our own origin
  (``Origin``/``Referer`` checked), belt and braces.
* **Edits go through the admin services**, the same functions as the admin API, so plan changes
  emit ``plan.changed`` and every change writes its audit row in the same transaction. Money
  tables (payments, refunds, ledger) and the audit trail are read-only here.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import sqlalchemy as sa
from fastapi import FastAPI
from markupsafe import Markup
from pydantic import SecretStr
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqladmin import Admin, BaseView, ModelView
from sqladmin.authentication import AuthenticationBackend
from sqladmin.filters import AllUniqueStringValuesFilter, BooleanFilter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase
from starlette.requests import Request
from wtforms import Form, SelectMultipleField  # type: ignore[import-untyped]

from billing_api.admin import catalog as admin_catalog
from billing_api.admin import discounts
from billing_api.admin.customers import customers_query
from billing_api.admin.schemas import (
    MonthTierChangesIn,
    MonthTierIn,
    MovieChangesIn,
    MovieIn,
    PersonalDiscountIn,
    PlanChangesIn,
    PlanIn,
    PromoCodeChangesIn,
    PromoCodeIn,
)
from billing_api.catalog import service as catalog_service
from billing_api.models import (
    AdminAudit,
    ComplimentaryGrant,
    LedgerEntry,
    LedgerTransaction,
    MonthTier,
    Movie,
    Payment,
    PersonalDiscount,
    Plan,
    PromoCode,
    Purchase,
    Refund,
    Subscription,
)
from shared.auth import TokenVerifier
from shared.errors import AppError

SESSION_KEY = "billing_admin"
T = TypeVar("T")


class AdminUISettings(BaseSettings):
    """The admin UI's login and session (environment prefix ``BILLING_ADMIN_``)."""

    model_config = SettingsConfigDict(env_prefix="BILLING_ADMIN_", extra="ignore", frozen=True)

    username: str | None = None
    """Username of the built-in back-office login; unset: only admin JWTs log in."""
    password: SecretStr | None = None
    """Password of the built-in login (both must be set to enable it)."""
    session_secret: SecretStr = SecretStr("dev-only-admin-session-secret-change-me-in-prod")
    """Signs the UI's session cookie; set the same value on every replica."""
    session_hours: int = 8
    """How long a UI login lasts."""
    secure_cookie: bool = False
    """Send the session cookie over HTTPS only (turn on behind TLS)."""


class AdminLogin(AuthenticationBackend):
    def __init__(self, settings: AdminUISettings, verifier: TokenVerifier) -> None:
        super().__init__(
            settings.session_secret.get_secret_value(),
            session_cookie=SESSION_KEY,
            max_age=settings.session_hours * 3600,
            path="/admin",
            same_site="strict",
            https_only=settings.secure_cookie,
        )
        self.settings = settings
        self.verifier = verifier

    async def _who(self, username: str, password: str) -> str | None:
        if password.count(".") == 2:  # a JWT: only its subject with the admin role gets in
            try:
                principal = await self.verifier.verify_async(password)
            except AppError:
                return None
            return principal.subject if principal.is_admin else None
        wanted_user, wanted_password = self.settings.username, self.settings.password
        if not wanted_user or wanted_password is None:
            return None
        same_user = hmac.compare_digest(username.encode(), wanted_user.encode())
        same_password = hmac.compare_digest(
            password.encode(), wanted_password.get_secret_value().encode()
        )
        return f"ui:{wanted_user}" if same_user and same_password else None

    async def login(self, request: Request) -> bool:
        form = await request.form()
        username, password = form.get("username", ""), form.get("password", "")
        if not isinstance(username, str) or not isinstance(password, str):
            return False
        actor = await self._who(username.strip(), password.strip())
        if actor is None:
            return False
        request.session.clear()
        request.session.update(
            {"actor": actor, "until": time.time() + self.settings.session_hours * 3600}
        )
        return True

    async def logout(self, request: Request) -> bool:
        request.session.clear()
        return True

    async def authenticate(self, request: Request) -> bool:
        if request.method not in ("GET", "HEAD") and not _same_origin(request):
            return False
        until = request.session.get("until")
        return (
            bool(request.session.get("actor")) and isinstance(until, float) and until > time.time()
        )

    async def get_user_id(self, request: Request) -> Any:
        return request.session.get("actor")


def _same_origin(request: Request) -> bool:
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


def actor(request: Request) -> str:
    return str(request.session.get("actor", "ui:unknown"))


# --- editable views: every change goes through the admin services ---------------------------


class ServiceBackedView(ModelView):
    """A view whose create/edit/delete run an admin service in one transaction of their own."""

    can_export = False
    can_delete = False

    async def _run(self, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        try:
            async with self.session_maker() as session, session.begin():
                return await work(session)
        except PydanticValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise ValueError(problems) from None
        except AppError as exc:
            raise ValueError(exc.detail) from None


def _sent(data: dict[str, Any], *names: str) -> dict[str, Any]:
    """The form fields among ``names`` with empty text turned into ``None``."""
    return {name: (None if data.get(name) == "" else data.get(name)) for name in names}


PLAN_FIELDS = (
    "name",
    "description",
    "max_months",
    "all_movies",
    "role",
    "grace_days",
    "trial_days",
    "refund_window_minutes",
    "refund_policy",
)


def _plan_changes(data: dict[str, Any]) -> dict[str, Any]:
    fields = _sent(data, *PLAN_FIELDS)
    fields["description"] = fields["description"] or ""
    fields["price"] = {"amount": data.get("price_amount"), "currency": data.get("currency")}
    days = data.get("period_days")
    fields["period"] = "month" if data.get("period_unit", "month") == "month" else days
    fields["movie_ids"] = [] if fields["all_movies"] else list(data.get("movie_ids") or [])
    return fields


class PlanView(ServiceBackedView, model=Plan):
    name_plural = "Plans"
    icon = "fa-solid fa-film"
    column_list = [Plan.code, Plan.name, Plan.price_amount, Plan.currency, Plan.active]
    column_searchable_list = [Plan.code, Plan.name]
    column_filters = [BooleanFilter(Plan.active)]
    form_columns = [
        Plan.code,
        Plan.name,
        Plan.description,
        Plan.price_amount,
        Plan.currency,
        Plan.period_unit,
        Plan.period_days,
        Plan.max_months,
        Plan.all_movies,
        Plan.role,
        Plan.grace_days,
        Plan.trial_days,
        Plan.refund_window_minutes,
        Plan.refund_policy,
        Plan.active,
    ]
    form_args = {
        "price_amount": {"label": "Price per period (minor units, e.g. kopecks)"},
        "period_unit": {"description": "month, or day (then set period days)"},
        "active": {"label": "Active (untick to archive: stop selling)"},
    }

    async def scaffold_form(self, rules: list[str] | None = None) -> type[Form]:
        base = await super().scaffold_form(rules)
        movies = await self._run_query(sa.select(Movie).order_by(Movie.title))

        class PlanForm(base):  # type: ignore[valid-type,misc]
            movie_ids = SelectMultipleField(
                "Movies (ignored when the plan covers all movies)",
                choices=[(str(movie.id), movie.title) for movie in movies],
            )

        return PlanForm

    async def get_form_data_for_edit(self, obj: Any) -> dict[str, Any]:
        data = await super().get_form_data_for_edit(obj)
        async with self.session_maker() as session:
            movie_ids = await catalog_service.plan_movie_ids(session, obj.id)
        data["movie_ids"] = [str(movie_id) for movie_id in movie_ids]
        return data

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        body = PlanIn.model_validate({"code": data.get("code"), **_plan_changes(data)})

        async def work(session: AsyncSession) -> Plan:
            out = await admin_catalog.create_plan(session, actor(request), body)
            return await _get(session, Plan, out.id)

        plan = await self._run(work)
        if data.get("active") is False:
            await self._run(
                lambda s: admin_catalog.set_plan_active(s, actor(request), plan.id, active=False)
            )
        return plan

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        body = PlanChangesIn.model_validate(_plan_changes(data))

        async def work(session: AsyncSession) -> Plan:
            plan_id = UUID(pk)
            current = await _get(session, Plan, plan_id)
            if data.get("code") not in (None, current.code):
                raise admin_catalog.InvalidChange("a plan's code cannot change")
            await admin_catalog.update_plan(session, actor(request), plan_id, body)
            if data.get("active") is not None and data["active"] != current.active:
                await admin_catalog.set_plan_active(
                    session, actor(request), plan_id, active=bool(data["active"])
                )
            return await _get(session, Plan, plan_id)

        return await self._run(work)


def _movie_changes(data: dict[str, Any]) -> dict[str, Any]:
    fields = _sent(data, "title", "description", "available", "rent_hours")
    currency = data.get("currency") or "RUB"
    for name, column in (("purchase_price", "purchase_amount"), ("rent_price", "rent_amount")):
        amount = data.get(column)
        fields[name] = None if amount in (None, "") else {"amount": amount, "currency": currency}
    return fields


class MovieView(ServiceBackedView, model=Movie):
    name_plural = "Movies"
    icon = "fa-solid fa-video"
    column_list = [
        Movie.title,
        Movie.available,
        Movie.purchase_amount,
        Movie.rent_amount,
        Movie.rent_hours,
        Movie.currency,
    ]
    column_searchable_list = [Movie.title, Movie.id]
    column_filters = [BooleanFilter(Movie.available)]
    form_columns = [
        Movie.title,
        Movie.description,
        Movie.available,
        Movie.purchase_amount,
        Movie.rent_amount,
        Movie.rent_hours,
        Movie.currency,
    ]

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        body = MovieIn.model_validate({"id": uuid4(), **_movie_changes(data)})

        async def work(session: AsyncSession) -> Movie:
            currency = str(data.get("currency") or "RUB")
            movie: Movie = await admin_catalog.create_movie(
                session, actor(request), body, default_currency=currency
            )
            return movie

        return await self._run(work)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        body = MovieChangesIn.model_validate(_movie_changes(data))

        async def work(session: AsyncSession) -> Movie:
            movie: Movie = await admin_catalog.update_movie(session, actor(request), UUID(pk), body)
            return movie

        return await self._run(work)


class MonthTierView(ServiceBackedView, model=MonthTier):
    name_plural = "Months tiers"
    icon = "fa-solid fa-percent"
    can_delete = True
    column_list = [MonthTier.plan_id, MonthTier.min_months, MonthTier.percent]
    form_columns = [MonthTier.plan_id, MonthTier.min_months, MonthTier.percent]

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        body = MonthTierIn.model_validate(_sent(data, "plan_id", "min_months", "percent"))

        async def work(session: AsyncSession) -> MonthTier:
            out = await discounts.create_tier(session, actor(request), body)
            return await _get(session, MonthTier, out.id)

        return await self._run(work)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        body = MonthTierChangesIn.model_validate(_sent(data, "percent"))

        async def work(session: AsyncSession) -> MonthTier:
            await discounts.update_tier(session, actor(request), UUID(pk), body)
            return await _get(session, MonthTier, UUID(pk))

        return await self._run(work)

    async def delete_model(self, request: Request, pk: Any) -> None:
        await self._run(lambda s: discounts.delete_tier(s, actor(request), UUID(str(pk))))


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

    async def _set(self, request: Request, user_id: Any, data: dict[str, Any]) -> Any:
        body = PersonalDiscountIn.model_validate(
            {"percent": data.get("percent"), "reason": data.get("reason") or ""}
        )

        async def work(session: AsyncSession) -> PersonalDiscount:
            uid = UUID(str(user_id))
            await discounts.set_personal(session, actor(request), uid, body)
            return await _get(session, PersonalDiscount, uid)

        return await self._run(work)

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        return await self._set(request, data.get("user_id"), data)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        return await self._set(request, pk, data)

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
        fields = _sent(
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
            return await _get(session, PromoCode, out.id)

        return await self._run(work)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        body = PromoCodeChangesIn.model_validate(_sent(data, "valid_until", "max_redemptions"))
        active = data.get("active")

        async def work(session: AsyncSession) -> PromoCode:
            await discounts.update_promo(
                session,
                actor(request),
                UUID(pk),
                body,
                active=None if active is None else bool(active),
            )
            return await _get(session, PromoCode, UUID(pk))

        return await self._run(work)


async def _get(session: AsyncSession, model: type[T], pk: Any) -> T:
    row = await session.get(model, pk, populate_existing=True)
    assert row is not None
    return row


# --- read-only views -------------------------------------------------------------------------


class ReadOnlyView(ModelView):
    can_create = False
    can_edit = False
    can_delete = False
    can_export = False
    page_size = 50


class _ViewBase(DeclarativeBase):
    """Mapped read-only selects (not tables): kept out of the migrations' metadata."""


_customers = customers_query()


class Customer(_ViewBase):
    __table__ = _customers
    __mapper_args__ = {"primary_key": [_customers.c.user_id]}


def _payments_link(model: Any, attribute: Any) -> Markup:
    return Markup('<a href="/admin/payment/list?search={0}">payments</a>').format(model.user_id)


class CustomerView(ReadOnlyView, model=Customer):
    name_plural = "Customers"
    icon = "fa-solid fa-users"
    column_list = [
        "user_id",
        "email",
        "subscriptions",
        "payments",
        "last_seen_at",
        "links",
    ]
    column_searchable_list = ["email", "user_id"]
    column_sortable_list = ["last_seen_at", "email"]
    column_default_sort = [("last_seen_at", True)]
    column_formatters = {"links": _payments_link}
    can_view_details = False


class SubscriptionView(ReadOnlyView, model=Subscription):
    name_plural = "Subscriptions"
    icon = "fa-solid fa-repeat"
    column_list = [
        Subscription.id,
        Subscription.user_id,
        Subscription.email,
        Subscription.plan_id,
        Subscription.status,
        Subscription.current_period_end,
        Subscription.auto_renew,
        Subscription.created_at,
    ]
    column_searchable_list = [Subscription.user_id, Subscription.email, Subscription.id]
    column_filters = [
        AllUniqueStringValuesFilter(Subscription.status),
        BooleanFilter(Subscription.auto_renew),
    ]
    column_default_sort = [(Subscription.created_at, True)]


class PaymentView(ReadOnlyView, model=Payment):
    name_plural = "Payments"
    icon = "fa-solid fa-credit-card"
    column_list = [
        Payment.created_at,
        Payment.description,
        Payment.amount,
        Payment.currency,
        Payment.status,
        Payment.method,
        Payment.refunded_amount,
        Payment.email,
        Payment.user_id,
        Payment.id,
    ]
    column_searchable_list = [Payment.user_id, Payment.email, Payment.id, Payment.description]
    column_filters = [
        AllUniqueStringValuesFilter(Payment.status),
        AllUniqueStringValuesFilter(Payment.method),
        AllUniqueStringValuesFilter(Payment.purpose),
    ]
    column_default_sort = [(Payment.created_at, True)]


class PurchaseView(ReadOnlyView, model=Purchase):
    name_plural = "Purchases"
    icon = "fa-solid fa-bag-shopping"
    column_list = [
        Purchase.id,
        Purchase.user_id,
        Purchase.movie_id,
        Purchase.kind,
        Purchase.status,
        Purchase.valid_until,
        Purchase.created_at,
    ]
    column_searchable_list = [Purchase.user_id, Purchase.email]
    column_filters = [
        AllUniqueStringValuesFilter(Purchase.status),
        AllUniqueStringValuesFilter(Purchase.kind),
    ]
    column_default_sort = [(Purchase.created_at, True)]


class RefundView(ReadOnlyView, model=Refund):
    name_plural = "Refunds"
    icon = "fa-solid fa-rotate-left"
    column_list = [
        Refund.id,
        Refund.payment_id,
        Refund.user_id,
        Refund.amount,
        Refund.currency,
        Refund.status,
        Refund.rule,
        Refund.reason,
        Refund.created_at,
    ]
    column_searchable_list = [Refund.user_id, Refund.payment_id, Refund.reason]
    column_filters = [AllUniqueStringValuesFilter(Refund.status)]
    column_default_sort = [(Refund.created_at, True)]


class LedgerTransactionView(ReadOnlyView, model=LedgerTransaction):
    name = "Ledger transaction"
    name_plural = "Ledger"
    icon = "fa-solid fa-book"
    column_list = [
        LedgerTransaction.created_at,
        LedgerTransaction.kind,
        LedgerTransaction.user_id,
        LedgerTransaction.description,
        LedgerTransaction.reference,
    ]
    column_searchable_list = [LedgerTransaction.user_id, LedgerTransaction.reference]
    column_filters = [AllUniqueStringValuesFilter(LedgerTransaction.kind)]
    column_default_sort = [(LedgerTransaction.created_at, True)]


class LedgerEntryView(ReadOnlyView, model=LedgerEntry):
    name_plural = "Ledger entries"
    icon = "fa-solid fa-list"
    column_list = [
        LedgerEntry.id,
        LedgerEntry.transaction_id,
        LedgerEntry.account,
        LedgerEntry.side,
        LedgerEntry.amount,
        LedgerEntry.currency,
    ]
    column_searchable_list = [LedgerEntry.account, LedgerEntry.transaction_id]
    column_filters = [
        AllUniqueStringValuesFilter(LedgerEntry.side),
        AllUniqueStringValuesFilter(LedgerEntry.currency),
    ]
    column_default_sort = [(LedgerEntry.id, True)]


class ComplimentaryGrantView(ReadOnlyView, model=ComplimentaryGrant):
    name_plural = "Complimentary grants"
    icon = "fa-solid fa-gift"
    column_list = [
        ComplimentaryGrant.user_id,
        ComplimentaryGrant.plan_id,
        ComplimentaryGrant.valid_until,
        ComplimentaryGrant.revoked_at,
        ComplimentaryGrant.reason,
        ComplimentaryGrant.granted_by,
    ]
    column_searchable_list = [ComplimentaryGrant.user_id, ComplimentaryGrant.reason]
    column_default_sort = [(ComplimentaryGrant.created_at, True)]


class AuditView(ReadOnlyView, model=AdminAudit):
    name = "Audit entry"
    name_plural = "Audit trail"
    icon = "fa-solid fa-clipboard-list"
    column_list = [
        AdminAudit.created_at,
        AdminAudit.actor,
        AdminAudit.action,
        AdminAudit.entity,
        AdminAudit.entity_id,
        AdminAudit.reason,
    ]
    column_searchable_list = [AdminAudit.actor, AdminAudit.entity_id, AdminAudit.action]
    column_filters = [AllUniqueStringValuesFilter(AdminAudit.entity)]
    column_default_sort = [(AdminAudit.created_at, True)]


VIEWS: tuple[type[ModelView | BaseView], ...] = (
    CustomerView,
    SubscriptionView,
    PaymentView,
    PurchaseView,
    RefundView,
    LedgerTransactionView,
    LedgerEntryView,
    PlanView,
    MovieView,
    MonthTierView,
    PersonalDiscountView,
    PromoCodeView,
    ComplimentaryGrantView,
    AuditView,
)


def mount_admin_ui(
    app: FastAPI, settings: AdminUISettings, verifier: TokenVerifier
) -> async_sessionmaker[AsyncSession]:
    """Mount the UI at ``/admin``; bind the returned session maker to the engine at startup."""
    sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(class_=AsyncSession)
    admin = Admin(
        app,
        session_maker=sessions,
        base_url="/admin",
        title="Cinema billing back office",
        authentication_backend=AdminLogin(settings, verifier),
    )
    for view in VIEWS:
        admin.add_view(view)
    return sessions
