"""The admin UI's pages mounted at ``/admin``: which views there are, in menu order."""

from __future__ import annotations

from fastapi import FastAPI
from sqladmin import BaseView, ModelView
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api.admin.ui.customer_page import CustomerPageView
from billing_api.admin.ui.dashboard import TEMPLATES, BackOffice
from billing_api.admin.ui.edit_catalog import MovieView, PlanView
from billing_api.admin.ui.edit_discounts import (
    MonthTierView,
    PersonalDiscountView,
    PromoCodeView,
)
from billing_api.admin.ui.edit_gifts import GiftView
from billing_api.admin.ui.edit_households import HouseholdMemberView
from billing_api.admin.ui.lists import (
    AuditView,
    ComplimentaryGrantView,
    LedgerEntryView,
    LedgerTransactionView,
    PaymentView,
    PurchaseView,
    RefundView,
    StaffUserView,
    SubscriptionView,
)
from billing_api.admin.ui.login import AdminLogin
from billing_api.admin.ui.permissions import StaffPermissions
from billing_api.config import AdminUISettings
from shared.auth import TokenVerifier

VIEWS: tuple[type[ModelView | BaseView], ...] = (
    CustomerPageView,
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
    HouseholdMemberView,
    GiftView,
    StaffUserView,
)


def mount_admin_ui(
    app: FastAPI, settings: AdminUISettings, verifier: TokenVerifier
) -> async_sessionmaker[AsyncSession]:
    """Mount the UI at ``/admin`` (its index page is the revenue dashboard); bind the returned
    session maker to the engine at startup."""
    sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(class_=AsyncSession)
    admin = BackOffice(
        app,
        session_maker=sessions,
        base_url="/admin",
        title="Cinema billing back office",
        templates_dir=TEMPLATES,
        authentication_backend=AdminLogin(settings, verifier, sessions),
        authorization_backend=StaffPermissions(),
    )
    # The UI is an app of its own: its pages reach billing's settings (receipt links) through it.
    admin.admin.state.billing_app = app
    for view in VIEWS:
        admin.add_view(view)
    return sessions
