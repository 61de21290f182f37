"""The admin UI's read-only views: customers, money and the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from markupsafe import Markup
from sqladmin import ModelView
from sqladmin.filters import AllUniqueStringValuesFilter, BooleanFilter
from sqladmin.pagination import Pagination
from sqlalchemy.orm import DeclarativeBase
from starlette.requests import Request

from billing_api.admin.customers.service import customers_query
from billing_api.config import BillingSettings
from billing_api.models import (
    AdminAudit,
    ComplimentaryGrant,
    LedgerEntry,
    LedgerTransaction,
    Payment,
    Plan,
    Purchase,
    Refund,
    StaffUser,
    Subscription,
)
from billing_api.receipts import links
from billing_api.receipts.links import Kind


def _receipt_link(kind: Kind) -> Callable[[Any, Any, Request], Markup]:
    """The receipt's number, linking to its signed page (the app's settings sign it)."""

    def link(model: Any, attribute: Any, request: Request) -> Markup:
        if model.receipt is None:
            return Markup("")
        settings: BillingSettings = request.app.state.billing_app.state.settings
        return Markup('<a href="{0}" target="_blank">{1}</a>').format(
            links.receipt_url(settings, kind, model.id), model.receipt.number
        )

    return link


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
    return Markup(
        '<a href="/admin/customer/page/{0}">page</a> · '
        '<a href="/admin/payment/list?search={0}">payments</a>'
    ).format(model.user_id)


def _email_link(model: Any, attribute: Any) -> Markup:
    return Markup('<a href="/admin/customer/page/{0}">{1}</a>').format(
        model.user_id, model.email or "(no email)"
    )


class CustomerView(ReadOnlyView, model=Customer):
    name_plural = "Customers"
    icon = "fa-solid fa-users"
    column_list = [
        "email",
        "subscriptions",
        "payments",
        "last_seen_at",
        "links",
        "user_id",
    ]
    column_searchable_list = ["email", "user_id"]
    column_sortable_list = ["last_seen_at", "email"]
    column_default_sort = [("last_seen_at", True)]
    column_formatters = {"links": _payments_link, "email": _email_link}
    can_view_details = False


def _plan_name(model: Any, attribute: Any) -> str:
    return str(getattr(model, PLAN_NAME, ""))


PLAN_NAME = "_listed_plan_name"
"""Where :meth:`SubscriptionView.list` leaves each row's plan name (not a column)."""


class SubscriptionView(ReadOnlyView, model=Subscription):
    name_plural = "Subscriptions"
    icon = "fa-solid fa-repeat"
    column_list = [
        Subscription.email,
        "plan",
        Subscription.status,
        Subscription.current_period_end,
        Subscription.auto_renew,
        Subscription.created_at,
        Subscription.plan_id,
        Subscription.user_id,
        Subscription.id,
    ]
    column_searchable_list = [Subscription.user_id, Subscription.email, Subscription.id]
    column_filters = [
        AllUniqueStringValuesFilter(Subscription.status),
        BooleanFilter(Subscription.auto_renew),
    ]
    column_default_sort = [(Subscription.created_at, True)]
    column_formatters = {"plan": _plan_name}

    async def list(self, request: Request) -> Pagination:
        """The page of subscriptions, each with its plan's name (one query for the page)."""
        page = await super().list(request)
        plan_ids = {row.plan_id for row in page.rows}
        async with self.session_maker() as session:
            found = await session.execute(
                sa.select(Plan.id, Plan.name).where(Plan.id.in_(plan_ids))
            )
            names = {row.id: row.name for row in found}
        for row in page.rows:
            setattr(row, PLAN_NAME, names.get(row.plan_id, ""))
        return page


class PaymentView(ReadOnlyView, model=Payment):
    name_plural = "Payments"
    icon = "fa-solid fa-credit-card"
    column_list = [
        Payment.email,
        Payment.created_at,
        Payment.description,
        Payment.amount,
        Payment.currency,
        Payment.status,
        Payment.method,
        Payment.provider,
        Payment.refunded_amount,
        Payment.user_id,
        Payment.id,
        Payment.receipt,
    ]
    column_searchable_list = [Payment.user_id, Payment.email, Payment.id, Payment.description]
    column_filters = [
        AllUniqueStringValuesFilter(Payment.status),
        AllUniqueStringValuesFilter(Payment.method),
        AllUniqueStringValuesFilter(Payment.provider),
        AllUniqueStringValuesFilter(Payment.purpose),
    ]
    column_default_sort = [(Payment.created_at, True)]
    column_formatters = {"receipt": _receipt_link("payment")}


class PurchaseView(ReadOnlyView, model=Purchase):
    name_plural = "Purchases"
    icon = "fa-solid fa-bag-shopping"
    column_list = [
        Purchase.email,
        Purchase.kind,
        Purchase.status,
        Purchase.valid_until,
        Purchase.created_at,
        Purchase.movie_id,
        Purchase.user_id,
        Purchase.id,
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
        Refund.amount,
        Refund.currency,
        Refund.status,
        Refund.reason,
        Refund.created_at,
        Refund.rule,
        Refund.attempts,
        Refund.next_attempt_at,
        Refund.receipt,
        Refund.payment_id,
        Refund.user_id,
        Refund.id,
        Refund.retry_of,
    ]
    column_searchable_list = [Refund.user_id, Refund.payment_id, Refund.reason]
    column_filters = [AllUniqueStringValuesFilter(Refund.status)]
    column_default_sort = [(Refund.created_at, True)]
    column_formatters = {"receipt": _receipt_link("refund")}


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


class StaffUserView(ReadOnlyView, model=StaffUser):
    """Who may log in and with which role (admins only; accounts come from
    ``cinema admin create-user``). The password hash is never shown."""

    name_plural = "Staff"
    icon = "fa-solid fa-id-badge"
    column_list = [
        StaffUser.email,
        StaffUser.role,
        StaffUser.active,
        StaffUser.last_login_at,
        StaffUser.created_at,
    ]
    column_details_list = column_list
    column_searchable_list = [StaffUser.email]
    column_default_sort = [(StaffUser.email, False)]
