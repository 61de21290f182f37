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
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqladmin import Admin, BaseView, ModelView
from sqladmin.authentication import AuthenticationBackend
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from billing_api.admin.ui_edit import (
    MonthTierView,
    MovieView,
    PersonalDiscountView,
    PlanView,
    PromoCodeView,
)
from billing_api.admin.ui_lists import (
    AuditView,
    ComplimentaryGrantView,
    CustomerView,
    LedgerEntryView,
    LedgerTransactionView,
    PaymentView,
    PurchaseView,
    RefundView,
    SubscriptionView,
)
from shared import production
from shared.auth import TokenVerifier
from shared.errors import AppError

SESSION_KEY = "billing_admin"


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

    def production_problems(self) -> list[str]:
        """Outside development the cookie must be signed with a secret of this deployment."""
        problem = production.secret_problem(
            "BILLING_ADMIN_SESSION_SECRET",
            self.session_secret,
            development_value=type(self).model_fields["session_secret"].default,
        )
        return [] if problem is None else [problem]


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
